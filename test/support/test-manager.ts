import { type ManagerOptions, resolveManagerConfig } from '../../src/manager/config.js';
import { type RunningManager, startManager } from '../../src/manager/main.js';
import { type CapturedLogger, captureLogger } from './capture-logger.js';
import { tempDir } from './temp-dir.js';

export interface TestManager extends RunningManager {
  logs: CapturedLogger['lines'];
  dataDir: string;
  /** Closes the manager and removes its data dir. */
  dispose(): Promise<void>;
}

/** A real manager on loopback with a fresh embedded database (or DATABASE_URL given in options). */
export async function startTestManager(options: ManagerOptions = {}): Promise<TestManager> {
  const dir = tempDir('nexus-manager-');
  const { log, lines } = captureLogger('manager');
  const config = resolveManagerConfig({ listen: '127.0.0.1:0', dataDir: dir.path, mode: 'dev', ...options }, {});
  const manager = await startManager(config, log).catch((error: unknown) => {
    dir.remove();
    throw error;
  });
  return {
    ...manager,
    logs: lines,
    dataDir: dir.path,
    dispose: async () => {
      await manager.close();
      dir.remove();
    },
  };
}

/** fetch with a JSON body; answers status, headers and parsed body. */
export async function send(
  url: string,
  init: { method?: string; body?: unknown; raw?: string; headers?: Record<string, string> } = {},
): Promise<{ status: number; headers: Headers; body: any }> {
  const headers: Record<string, string> = { ...init.headers };
  let body: string | undefined = init.raw;
  if (init.body !== undefined) {
    body = JSON.stringify(init.body);
    headers['content-type'] ??= 'application/json';
  }
  const response = await fetch(url, { method: init.method ?? (body === undefined ? 'GET' : 'POST'), headers, body });
  const text = await response.text();
  let parsed: unknown = text;
  try {
    parsed = text ? JSON.parse(text) : undefined;
  } catch {
    // not JSON: keep the text
  }
  return { status: response.status, headers: response.headers, body: parsed };
}
