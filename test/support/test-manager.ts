import { readFileSync } from 'node:fs';
import { type ManagerOptions, adminTokenFile, resolveManagerConfig } from '../../src/manager/config.js';
import { type RunningManager, startManager } from '../../src/manager/main.js';
import { type CapturedLogger, captureLogger } from './capture-logger.js';
import { seedEmbeddedDatabase } from './embedded-db-template.js';
import { testNetworkPool } from './net-names.js';
import { tempDir } from './temp-dir.js';

/**
 * API tokens by manager origin: `send` presents the one registered for the URL it calls (unless
 * the call sets its own Authorization, or asks to be anonymous). Every test manager registers its
 * first admin token here, so tests read as calls by an admin unless they say otherwise.
 */
const apiTokens = new Map<string, string>();

/** Makes `send` present `token` to the manager at `url`. */
export function useApiToken(url: string, token: string): void {
  apiTokens.set(new URL(url).origin, token);
}

/** The token `send` presents to the server at `url`, if one was registered. */
export function apiTokenFor(url: string): string | undefined {
  return apiTokens.get(new URL(url).origin);
}

/** The admin token a dev-mode manager saved in its data dir. */
export function adminTokenIn(dataDir: string): string {
  return readFileSync(adminTokenFile(dataDir), 'utf8').trim();
}

export interface TestManager extends RunningManager {
  /** The first admin token of its fresh database. */
  adminToken: string;
  logs: CapturedLogger['lines'];
  dataDir: string;
  /** The key file sealing its database's secrets: another manager joining that database needs it. */
  secretKeyFile: string;
  /** Closes the manager and removes its data dir. */
  dispose(): Promise<void>;
}

/**
 * A real manager on loopback with a fresh embedded database, or on the database named by
 * `options.databaseUrl`. A manager joining a database another test manager already holds mints no
 * admin token: pass that manager's as `sharedAdminToken`, and its `secretKeyFile` in `options`.
 */
export async function startTestManager(options: ManagerOptions = {}, env: NodeJS.ProcessEnv = {}, sharedAdminToken?: string): Promise<TestManager> {
  // A data dir of the test's own (options.dataDir) stays the test's to remove; else one is made here.
  const dir = options.dataDir === undefined ? tempDir('nexus-manager-') : { path: options.dataDir, remove: () => {} };
  const { log, lines } = captureLogger('manager');
  let manager: RunningManager | undefined;
  let secretKeyFile: string;
  try {
    // Every test calls from loopback, many of them quickly: the per-address limit is set out of reach
    // unless a test sets it (the default is for real clients, each from an address of its own).
    const outOfReach = env.NEXUS_RATE_LIMIT_ADDRESS === undefined ? { requestsPerAddressPerMinute: 1_000_000 } : {};
    // Default networks from a pool of this manager's own: two test managers on one host never make two bridges of one block.
    const pool = env.NEXUS_NETWORK_POOL === undefined ? { NEXUS_NETWORK_POOL: testNetworkPool() } : {};
    const config = resolveManagerConfig({ listen: '127.0.0.1:0', dataDir: dir.path, mode: 'dev', ...outOfReach, ...options }, { ...pool, ...env });
    secretKeyFile = config.secretKeyFile;
    if (!config.databaseUrl) await seedEmbeddedDatabase(config.dataDir);
    manager = await startManager(config, log);
  } catch (error) {
    dir.remove();
    throw error;
  }
  const adminToken = manager.bootstrapAdminToken ?? sharedAdminToken;
  if (!adminToken) {
    // Never leave a manager running behind a failed start: its server would keep the test file alive.
    await manager.close();
    dir.remove();
    throw new Error('the test manager has no admin token: a fresh database mints one, a shared one needs sharedAdminToken');
  }
  useApiToken(manager.url, adminToken);
  return {
    ...manager,
    adminToken,
    logs: lines,
    dataDir: dir.path,
    secretKeyFile,
    dispose: async () => {
      await manager.close();
      dir.remove();
    },
  };
}

/** fetch with a JSON body; answers status, headers and parsed body. */
export async function send(
  url: string,
  init: { method?: string; body?: unknown; raw?: string; headers?: Record<string, string>; anonymous?: boolean } = {},
): Promise<{ status: number; headers: Headers; body: any }> {
  const headers: Record<string, string> = { ...init.headers };
  const token = apiTokens.get(new URL(url).origin);
  if (token && !init.anonymous && !Object.keys(headers).some((name) => name.toLowerCase() === 'authorization')) headers.authorization = `Bearer ${token}`;
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
