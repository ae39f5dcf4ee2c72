import { type DestinationStream, type Logger, pino } from 'pino';

export type { Logger } from 'pino';

export interface LoggerOptions {
  /** The process's role, on every line: `manager`, `agent`. */
  name: string;
  level?: string;
  destination?: DestinationStream;
}

/** One JSON object per line on stdout, with ISO timestamps; what log shippers expect. */
export function createLogger(options: LoggerOptions): Logger {
  return pino(
    {
      name: options.name,
      level: options.level ?? 'info',
      timestamp: pino.stdTimeFunctions.isoTime,
      formatters: { level: (label) => ({ level: label }) },
      redact: { paths: ['req.headers.authorization', 'credential', 'join_token', 'token'], censor: '[redacted]' },
    },
    options.destination,
  );
}
