import { isAbsolute, join, resolve } from 'node:path';
import { type ListenAddress, parseListenAddress } from '../kit/listen-address.js';
import { parseIpv4Block } from '../kit/ipv4.js';
import { LARGEST_PREFIX, SMALLEST_PREFIX } from './domain/network-rules.js';
import type { DefaultNetworkPool } from './ports/network-repo.js';
import { NexusError } from '../kit/nexus-error.js';
import { type TlsOptions, type TlsSettings, tlsSettingsOf } from '../kit/tls-files.js';

/** What may be given to the manager, on the command line or in the environment. All optional. */
export interface ManagerOptions extends TlsOptions {
  listen?: string;
  databaseUrl?: string;
  dataDir?: string;
  mode?: 'production' | 'dev';
  heartbeatTimeoutMs?: number;
  heartbeatIntervalMs?: number;
  logLevel?: string;
  resyncMs?: number;
  orphanGraceMs?: number;
  readsPerMinute?: number;
  writesPerMinute?: number;
  secretKeyFile?: string;
  requestsPerAddressPerMinute?: number;
}

/** The manager's complete configuration; each field says its default. */
export interface ManagerConfig {
  /** Where the API listens. `--listen` / NEXUS_LISTEN, default 127.0.0.1:8080. */
  listen: ListenAddress;
  /** A real Postgres server. DATABASE_URL; absent = embedded PGlite in `dataDir`. */
  databaseUrl: string | undefined;
  /** The embedded database and other local state. NEXUS_DATA_DIR, default ./.nexus (made absolute). */
  dataDir: string;
  /**
   * The key that seals the secrets the manager must read back (host credentials) in the database:
   * 32 random bytes in base64, made (mode 0600) on first start when missing. Managers sharing one
   * Postgres need the same file. NEXUS_SECRET_KEY_FILE (made absolute), default <dataDir>/secret.key.
   */
  secretKeyFile: string;
  /** `dev` for `nexus dev` (raw paths, local conveniences), `production` for `nexus manager`. */
  mode: 'production' | 'dev';
  /** A host not heard from for this long is `unreachable`. NEXUS_HEARTBEAT_TIMEOUT_MS, default 15000. */
  heartbeatTimeoutMs: number;
  /** How often agents heartbeat. NEXUS_HEARTBEAT_INTERVAL_MS, default 5000 (a third of the timeout at most). */
  heartbeatIntervalMs: number;
  /** pino level. NEXUS_LOG_LEVEL, default info. */
  logLevel: string;
  /** The reconciler looks at every VM this often. NEXUS_RESYNC_MS, default 15000. */
  resyncMs: number;
  /** vCPUs a host may promise per real one when placing VMs. NEXUS_VCPU_OVERCOMMIT, default 4. */
  vcpuOvercommit: number;
  /** A host leftover that belongs to no VM is removed after this long. NEXUS_ORPHAN_GRACE_MS, default 60000. */
  orphanGraceMs: number;
  /** Reads (GET) per token per minute. NEXUS_RATE_LIMIT_READS, default 1000. */
  readsPerMinute: number;
  /** Writes per token per minute. NEXUS_RATE_LIMIT_WRITES, default 100. */
  writesPerMinute: number;
  /**
   * Requests of any kind per client address per minute, counted before the token is looked at.
   * NEXUS_RATE_LIMIT_ADDRESS, default 6000: far above any one client's use, well below a flood.
   */
  requestsPerAddressPerMinute: number;
  /**
   * HTTPS for the API (`--tls-cert`/NEXUS_TLS_CERT with `--tls-key`/NEXUS_TLS_KEY; default plain
   * HTTP), and the CA that signed the agents' certificates (`--ca`/NEXUS_CA): when set, the
   * manager calls every agent over https and verifies it against that CA.
   */
  tls: TlsSettings;
  /** Browser origins allowed to call the API (CORS), exactly. NEXUS_CORS_ORIGINS, comma-separated; default none. */
  corsOrigins: string[];
  /**
   * Where each project's default network comes from: the first free block of NEXUS_NETWORK_PREFIX
   * (default 24) in NEXUS_NETWORK_POOL (default 10.220.0.0/14: 1,024 networks of 254 VMs).
   */
  networkPool: DefaultNetworkPool;
}

export function resolveManagerConfig(options: ManagerOptions, env: NodeJS.ProcessEnv): ManagerConfig {
  const heartbeatTimeoutMs = options.heartbeatTimeoutMs ?? positiveInt(env.NEXUS_HEARTBEAT_TIMEOUT_MS, 'NEXUS_HEARTBEAT_TIMEOUT_MS') ?? 15_000;
  const heartbeatIntervalMs =
    options.heartbeatIntervalMs ??
    positiveInt(env.NEXUS_HEARTBEAT_INTERVAL_MS, 'NEXUS_HEARTBEAT_INTERVAL_MS') ??
    Math.min(5_000, Math.floor(heartbeatTimeoutMs / 3));
  if (heartbeatIntervalMs >= heartbeatTimeoutMs) {
    throw new NexusError('bad_request', `the heartbeat interval (${heartbeatIntervalMs} ms) must be shorter than the timeout (${heartbeatTimeoutMs} ms)`, {
      suggestion: 'Keep the interval at a third of the timeout or less.',
    });
  }
  const dataDir = options.dataDir ?? env.NEXUS_DATA_DIR ?? './.nexus';
  const databaseUrl = options.databaseUrl ?? (env.DATABASE_URL || undefined);
  if (databaseUrl !== undefined && !/^postgres(ql)?:\/\//.test(databaseUrl)) {
    throw new NexusError('bad_request', 'DATABASE_URL must be a postgres:// URL', {
      suggestion: 'For example postgres://nexus:secret@db.internal:5432/nexus, or unset it to use the embedded database.',
    });
  }
  const absoluteDataDir = isAbsolute(dataDir) ? dataDir : resolve(dataDir);
  return {
    listen: parseListenAddress(options.listen ?? env.NEXUS_LISTEN ?? '127.0.0.1:8080', 'NEXUS_LISTEN'),
    databaseUrl,
    dataDir: absoluteDataDir,
    secretKeyFile: resolve(options.secretKeyFile ?? (env.NEXUS_SECRET_KEY_FILE || join(absoluteDataDir, 'secret.key'))),
    mode: options.mode ?? 'production',
    heartbeatTimeoutMs,
    heartbeatIntervalMs,
    logLevel: options.logLevel ?? env.NEXUS_LOG_LEVEL ?? 'info',
    resyncMs: options.resyncMs ?? positiveInt(env.NEXUS_RESYNC_MS, 'NEXUS_RESYNC_MS') ?? 15_000,
    vcpuOvercommit: positiveInt(env.NEXUS_VCPU_OVERCOMMIT, 'NEXUS_VCPU_OVERCOMMIT') ?? 4,
    orphanGraceMs: options.orphanGraceMs ?? positiveInt(env.NEXUS_ORPHAN_GRACE_MS, 'NEXUS_ORPHAN_GRACE_MS') ?? 60_000,
    readsPerMinute: options.readsPerMinute ?? positiveInt(env.NEXUS_RATE_LIMIT_READS, 'NEXUS_RATE_LIMIT_READS') ?? 1000,
    writesPerMinute: options.writesPerMinute ?? positiveInt(env.NEXUS_RATE_LIMIT_WRITES, 'NEXUS_RATE_LIMIT_WRITES') ?? 100,
    requestsPerAddressPerMinute: options.requestsPerAddressPerMinute ?? positiveInt(env.NEXUS_RATE_LIMIT_ADDRESS, 'NEXUS_RATE_LIMIT_ADDRESS') ?? 6000,
    corsOrigins: corsOrigins(env.NEXUS_CORS_ORIGINS ?? ''),
    tls: tlsSettingsOf(options, env),
    networkPool: networkPoolOf(env.NEXUS_NETWORK_POOL || '10.220.0.0/14', env.NEXUS_NETWORK_PREFIX || '24'),
  };
}

function networkPoolOf(poolText: string, prefixText: string): DefaultNetworkPool {
  const pool = parseIpv4Block(poolText);
  if (!pool || pool.hostBitsSet) {
    throw new NexusError('bad_request', `NEXUS_NETWORK_POOL must be an IPv4 block like 10.220.0.0/14 (got '${poolText}')`);
  }
  const prefixLength = Number(prefixText);
  if (!Number.isInteger(prefixLength) || prefixLength < Math.max(pool.prefixLength, LARGEST_PREFIX) || prefixLength > SMALLEST_PREFIX) {
    throw new NexusError(
      'bad_request',
      `NEXUS_NETWORK_PREFIX must be a prefix length from /${Math.max(pool.prefixLength, LARGEST_PREFIX)} to /${SMALLEST_PREFIX} (got '${prefixText}')`,
      { suggestion: 'Default networks are blocks of the pool: no larger than it, and /16 to /30.' },
    );
  }
  return { pool: { base: pool.base, prefixLength: pool.prefixLength }, prefixLength };
}

/** Exact origins (`https://console.example.com`), no wildcards: a browser page elsewhere gets no CORS grant. */
function corsOrigins(text: string): string[] {
  const origins = text
    .split(',')
    .map((origin) => origin.trim())
    .filter(Boolean);
  for (const origin of origins) {
    if (!/^https?:\/\/[^/*\s]+$/.test(origin)) {
      throw new NexusError('bad_request', `NEXUS_CORS_ORIGINS takes exact origins like https://console.example.com (got '${origin}')`);
    }
  }
  return origins;
}

export function positiveInt(text: string | undefined, name: string): number | undefined {
  if (text === undefined || text === '') return undefined;
  const value = Number(text);
  if (!Number.isInteger(value) || value <= 0) {
    throw new NexusError('bad_request', `${name} must be a positive whole number (got '${text}')`);
  }
  return value;
}

/** Where a dev-mode manager keeps the first admin token for the CLI: `<data-dir>/admin.token`, readable by its owner only. */
export function adminTokenFile(dataDir: string): string {
  return join(dataDir, 'admin.token');
}
