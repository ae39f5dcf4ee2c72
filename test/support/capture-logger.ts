import { Writable } from 'node:stream';
import { type Logger, createLogger } from '../../src/kit/logger.js';

export interface CapturedLogger {
  log: Logger;
  /** Every line logged so far, parsed. */
  lines: Array<Record<string, unknown>>;
}

/** A real pino logger whose lines are kept for assertions instead of printed. */
export function captureLogger(name = 'test'): CapturedLogger {
  const lines: Array<Record<string, unknown>> = [];
  const destination = new Writable({
    write(chunk: Buffer, _encoding, done) {
      for (const line of chunk.toString('utf8').split('\n')) if (line) lines.push(JSON.parse(line) as Record<string, unknown>);
      done();
    },
  });
  return { log: createLogger({ name, level: 'debug', destination }), lines };
}
