import type { Logger } from '../kit/logger.js';
import { printError } from './output/print.js';

export interface Service {
  close(): Promise<void>;
  /**
   * Called on every further stop request while `close` runs: finish sooner, still leaving nothing
   * behind. A service without it exits at once on the second request.
   */
  hurry?(): void;
}

export interface ServiceOptions {
  /** Also stop when the parent's IPC channel closes (the parent died or let go of us). */
  exitWithParent?: boolean;
}

/** Called by a running service when a part of it died: the whole service stops, exit code 1. */
export type FailService = (reason: string) => void;

/**
 * Runs a long-lived service until SIGINT or SIGTERM (or the parent going away, or a part of it
 * failing), then closes it and exits (0 when asked to stop, 1 on failure). Signals are handled
 * from the first moment: one that arrives while the service is still starting stops it as soon
 * as it has started, so nothing it started is left behind. A second signal exits at once (130),
 * unless the service can hurry: then it is told to, and exits when its close is done.
 */
export async function runService(log: Logger, start: (fail: FailService) => Promise<Service>, options: ServiceOptions = {}): Promise<void> {
  let service: Service | undefined;
  let requested: { reason: string; exitCode: number } | undefined;

  const shutDown = (exitCode: number) => {
    (service?.close() ?? Promise.resolve())
      .then(() => process.exit(exitCode))
      .catch((error: unknown) => {
        log.error({ err: error }, 'clean stop failed');
        process.exit(1);
      });
  };
  const stop = (reason: string, exitCode: number) => {
    if (requested) {
      if (service?.hurry) {
        log.warn({ reason }, 'asked again: hurrying the stop');
        service.hurry();
        return;
      }
      log.warn({ reason }, 'stopping now, without finishing cleanup');
      process.exit(130);
    }
    requested = { reason, exitCode };
    if (exitCode === 0) log.info({ reason }, 'stopping');
    else log.error({ reason }, 'stopping after a failure');
    if (service) shutDown(exitCode);
  };
  process.on('SIGINT', () => stop('SIGINT', 0));
  process.on('SIGTERM', () => stop('SIGTERM', 0));
  if (options.exitWithParent && process.connected) process.on('disconnect', () => stop('parent went away', 0));

  try {
    service = await start((reason) => stop(reason, 1));
  } catch (error) {
    printError(error, false);
    process.exit(requested?.exitCode ?? 1);
  }
  if (requested) shutDown(requested.exitCode);
}
