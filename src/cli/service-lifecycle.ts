import type { Logger } from '../kit/logger.js';
import { printError } from './output/print.js';

export interface Service {
  close(): Promise<void>;
}

export interface ServiceOptions {
  /** Also stop when the parent's IPC channel closes (the parent died or let go of us). */
  exitWithParent?: boolean;
}

/** Called by a running service when a part of it died: the whole service stops, exit code 1. */
export type FailService = (reason: string) => void;

/**
 * Runs a long-lived service until SIGINT or SIGTERM (or the parent going away, or a part of it
 * failing), then closes it and exits (0 when asked to stop, 1 on failure). A second signal while
 * closing exits at once with 130.
 */
export async function runService(log: Logger, start: (fail: FailService) => Promise<Service>, options: ServiceOptions = {}): Promise<void> {
  let service: Service | undefined;
  let stopping = false;
  const stop = (reason: string, exitCode: number) => {
    if (stopping) {
      log.warn({ reason }, 'stopping now, without finishing cleanup');
      process.exit(130);
    }
    stopping = true;
    if (exitCode === 0) log.info({ reason }, 'stopping');
    else log.error({ reason }, 'stopping after a failure');
    (service?.close() ?? Promise.resolve())
      .then(() => process.exit(exitCode))
      .catch((error: unknown) => {
        log.error({ err: error }, 'clean stop failed');
        process.exit(1);
      });
  };
  try {
    service = await start((reason) => stop(reason, 1));
  } catch (error) {
    printError(error, false);
    process.exit(1);
  }
  process.on('SIGINT', () => stop('SIGINT', 0));
  process.on('SIGTERM', () => stop('SIGTERM', 0));
  if (options.exitWithParent && process.connected) process.on('disconnect', () => stop('parent went away', 0));
}
