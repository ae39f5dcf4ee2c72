import { hostname } from 'node:os';
import { basename, isAbsolute, join, resolve } from 'node:path';
import { type ListenAddress, parseListenAddress } from '../kit/listen-address.js';
import { NexusError } from '../kit/nexus-error.js';
import { type TlsOptions, type TlsSettings, tlsSettingsOf } from '../kit/tls-files.js';
import { type IdRange, MAX_ID, parseIdRange } from './domain/id-range.js';
import { type Ipv4Cidr, parseIpv4Cidr } from './domain/ipv4.js';
import { FIRECRACKER_LOG_LEVELS, type FirecrackerLogLevel } from './drivers/firecracker/firecracker-requests.js';

/** What may be given to the agent, on the command line or in the environment. All optional. */
export interface AgentOptions extends TlsOptions {
  bind?: string;
  advertise?: string;
  runDir?: string;
  stateDir?: string;
  managerUrl?: string;
  joinToken?: string;
  name?: string;
  logLevel?: string;
  /** Exit when the parent process goes away (set by `nexus dev`, which runs the agent as a child). */
  exitWithParent?: boolean;
  /** Stop every VM when the agent stops (set by `nexus dev`; a production agent leaves them running). */
  stopVmsOnExit?: boolean;
  /** Tests shorten the overlap of a credential rotation. */
  credentialOverlapMs?: number;
}

/** The agent's complete configuration; each field says its default. */
export interface AgentConfig {
  /** Where the agent API listens. `--bind` / AGENT_BIND, default 127.0.0.1:9090. */
  bind: ListenAddress;
  /** host:port the manager uses to reach this agent. `--advertise` / AGENT_ADVERTISE, default the bind address. */
  advertise: string | undefined;
  /** VM folders, images, sockets. `--run-dir` / FC_RUN_DIR, default /srv/fc. */
  runDir: string;
  /** The credential and enrollment record. `--state-dir` / NEXUS_AGENT_STATE_DIR, default <run-dir>/agent. */
  stateDir: string;
  /** The manager to enroll with and heartbeat to. `--manager` / NEXUS_MANAGER_URL; absent = standalone. */
  managerUrl: string | undefined;
  /** Single-use join token. `--join-token` / NEXUS_JOIN_TOKEN (the variable keeps it out of `ps`). */
  joinToken: string | undefined;
  /** This host's name in the registry. `--name` / NEXUS_HOST_NAME, default the machine's hostname. */
  name: string;
  /** pino level. NEXUS_LOG_LEVEL, default info. */
  logLevel: string;
  /** QEMU binary. NEXUS_QEMU_BIN, default qemu-system-x86_64 on PATH. */
  qemuBinary: string;
  /** Firecracker binary. NEXUS_FIRECRACKER_BIN, default firecracker on PATH. */
  firecrackerBinary: string;
  /** The level of Firecracker's own log (logs/firecracker.log). NEXUS_FIRECRACKER_LOG_LEVEL: Error, Warning, Info (default), Debug, Trace, Off. */
  firecrackerLogLevel: FirecrackerLogLevel;
  /**
   * Run Firecracker through its jailer. NEXUS_JAILER_BIN (absent: no jailer), with
   * NEXUS_JAILER_UID_RANGE (`first-last`, required with it: each jailed VM runs as a uid, and a gid
   * of the same number, of its own from it) and NEXUS_JAILER_CHROOT_BASE (default <run-dir>/jail).
   */
  jailer: { binary: string; uidRange: IdRange; chrootBaseDir: string } | undefined;
  exitWithParent: boolean;
  stopVmsOnExit: boolean;
  /**
   * HTTPS for the agent API (`--tls-cert`/NEXUS_TLS_CERT with `--tls-key`/NEXUS_TLS_KEY; default
   * plain HTTP), and the CA that signed the manager's certificate when --manager is https
   * (`--ca`/NEXUS_CA; default the system's roots).
   */
  tls: TlsSettings;
  /** The guest bridge. NEXUS_BRIDGE, default fcbr0. */
  bridge: string;
  /** The bridge's address and the guests' subnet. NEXUS_BRIDGE_CIDR, default 172.31.0.1/24. */
  bridgeCidr: Ipv4Cidr;
  /** Masquerade guest traffic out of the host. NEXUS_NAT (on|off), default on. */
  nat: boolean;
  /**
   * Where the agent keeps its rules (the bridge's NAT, networks' isolation and egress, published
   * ports). NEXUS_FIREWALL (auto|nftables|iptables), default auto: nftables when `nft` is installed,
   * else iptables.
   */
  firewall?: 'nftables' | 'iptables';
  /** Each running VM's metrics are sampled this often. NEXUS_METRICS_INTERVAL_MS, default 5000 (at least 200). */
  metricsIntervalMs: number;
  /** After a credential rotation, the old credential is still accepted this long. NEXUS_CREDENTIAL_OVERLAP_MS, default 60000. */
  credentialOverlapMs: number;
  /** How long the socket proxy waits for a VMM's answer before a 504. NEXUS_PROXY_TIMEOUT_MS, default 10000. */
  proxyTimeoutMs: number;
  /** Each VM log (console, Firecracker's log and metrics) is cut back past this. NEXUS_VM_LOG_MAX_BYTES, default 16 MiB. */
  vmLogMaxBytes: number;
}

export function resolveAgentConfig(options: AgentOptions, env: NodeJS.ProcessEnv): AgentConfig {
  const runDir = absolute(options.runDir ?? env.FC_RUN_DIR ?? '/srv/fc');
  // A unix socket path holds at most 107 bytes: <run-dir>/vms/<36-char id>/sock/qmp.sock must fit.
  const socketPathBytes = Buffer.byteLength(runDir) + '/vms/'.length + 36 + '/sock/qmp.sock'.length;
  if (socketPathBytes > 107) {
    throw new NexusError('bad_request', `the run dir ${runDir} is too long: VM sockets under it would exceed the 107-byte unix socket limit`, {
      suggestion: `Use a run dir of at most ${107 - (socketPathBytes - Buffer.byteLength(runDir))} bytes, like /srv/fc.`,
    });
  }
  const managerUrl = options.managerUrl ?? (env.NEXUS_MANAGER_URL || undefined);
  if (managerUrl !== undefined && !/^https?:\/\/[^/]+/.test(managerUrl)) {
    throw new NexusError('bad_request', `--manager must be an http(s) URL (got '${managerUrl}')`, {
      suggestion: 'For example http://10.0.0.1:8080.',
    });
  }
  const joinToken = options.joinToken ?? (env.NEXUS_JOIN_TOKEN || undefined);
  if (joinToken !== undefined && managerUrl === undefined) {
    throw new NexusError('bad_request', 'a join token needs --manager (or NEXUS_MANAGER_URL) to enroll with', {
      suggestion: 'Pass --manager http://<manager>:8080 as well.',
    });
  }
  const advertise = options.advertise ?? (env.AGENT_ADVERTISE || undefined);
  if (advertise !== undefined) parseListenAddress(advertise, 'AGENT_ADVERTISE');
  return {
    bind: parseListenAddress(options.bind ?? env.AGENT_BIND ?? '127.0.0.1:9090', 'AGENT_BIND'),
    advertise,
    runDir,
    stateDir: absolute(options.stateDir ?? env.NEXUS_AGENT_STATE_DIR ?? join(runDir, 'agent')),
    managerUrl: managerUrl?.replace(/\/+$/, ''),
    joinToken,
    name: options.name ?? env.NEXUS_HOST_NAME ?? hostname(),
    logLevel: options.logLevel ?? env.NEXUS_LOG_LEVEL ?? 'info',
    qemuBinary: env.NEXUS_QEMU_BIN || 'qemu-system-x86_64',
    firecrackerBinary: env.NEXUS_FIRECRACKER_BIN || 'firecracker',
    firecrackerLogLevel: firecrackerLogLevel(env.NEXUS_FIRECRACKER_LOG_LEVEL ?? 'Info'),
    jailer: jailerOf(env, runDir, env.NEXUS_FIRECRACKER_BIN || 'firecracker'),
    exitWithParent: options.exitWithParent ?? false,
    stopVmsOnExit: options.stopVmsOnExit ?? false,
    bridge: bridgeName(env.NEXUS_BRIDGE ?? 'fcbr0'),
    tls: tlsSettingsOf(options, env),
    bridgeCidr: bridgeCidr(env.NEXUS_BRIDGE_CIDR ?? '172.31.0.1/24'),
    nat: onOff(env.NEXUS_NAT ?? 'on', 'NEXUS_NAT'),
    firewall: firewallOf(env.NEXUS_FIREWALL ?? 'auto'),
    metricsIntervalMs: metricsInterval(env.NEXUS_METRICS_INTERVAL_MS ?? '5000'),
    credentialOverlapMs: options.credentialOverlapMs ?? positiveMs(env.NEXUS_CREDENTIAL_OVERLAP_MS ?? '60000', 'NEXUS_CREDENTIAL_OVERLAP_MS'),
    proxyTimeoutMs: positiveMs(env.NEXUS_PROXY_TIMEOUT_MS ?? '10000', 'NEXUS_PROXY_TIMEOUT_MS'),
    vmLogMaxBytes: vmLogCap(env.NEXUS_VM_LOG_MAX_BYTES ?? String(16 * 1024 * 1024)),
  };
}

function jailerOf(env: NodeJS.ProcessEnv, runDir: string, firecrackerBinary: string): AgentConfig['jailer'] {
  const binary = env.NEXUS_JAILER_BIN || undefined;
  if (binary === undefined) return undefined;
  // The jailer refuses an exec file whose name does not contain "firecracker".
  if (!basename(firecrackerBinary).includes('firecracker')) {
    throw new NexusError(
      'bad_request',
      `the jailer runs only a binary whose file name contains "firecracker" (NEXUS_FIRECRACKER_BIN is ${firecrackerBinary})`,
      {
        suggestion: 'Install or link the binary under a name like /usr/local/bin/firecracker.',
      },
    );
  }
  const example = 'Pick ids no account, group or /etc/subuid entry uses, e.g. NEXUS_JAILER_UID_RANGE=900000-965535 (65536 VMs).';
  // One shared uid let a compromised Firecracker reach every other jailed VM's files and TAP: refused, not read.
  const replaced = (['NEXUS_JAILER_UID', 'NEXUS_JAILER_GID'] as const).filter((name) => env[name]);
  if (replaced.length > 0) {
    throw new NexusError(
      'bad_request',
      `${replaced.join(' and ')} no longer apply: every jailed VM now runs as a uid and gid of its own, from NEXUS_JAILER_UID_RANGE`,
      {
        suggestion: `Unset ${replaced.join(' and ')} and set NEXUS_JAILER_UID_RANGE=first-last instead. ${example}`,
      },
    );
  }
  const text = env.NEXUS_JAILER_UID_RANGE ?? '';
  const uidRange = parseIdRange(text);
  if (!uidRange) {
    throw new NexusError(
      'bad_request',
      `NEXUS_JAILER_BIN needs NEXUS_JAILER_UID_RANGE: first-last, the non-root uids (and gids) jailed VMs run as, one per VM, 1 to ${MAX_ID} with first <= last (got '${text}')`,
      {
        suggestion: example,
      },
    );
  }
  return { binary, uidRange, chrootBaseDir: absolute(env.NEXUS_JAILER_CHROOT_BASE || join(runDir, 'jail')) };
}

function firecrackerLogLevel(text: string): FirecrackerLogLevel {
  const level = FIRECRACKER_LOG_LEVELS.find((candidate) => candidate.toLowerCase() === text.toLowerCase());
  if (!level) throw new NexusError('bad_request', `NEXUS_FIRECRACKER_LOG_LEVEL must be one of ${FIRECRACKER_LOG_LEVELS.join(', ')} (got '${text}')`);
  return level;
}

function metricsInterval(text: string): number {
  const value = positiveMs(text, 'NEXUS_METRICS_INTERVAL_MS');
  if (value < 200) throw new NexusError('bad_request', `NEXUS_METRICS_INTERVAL_MS must be at least 200 (got '${text}')`);
  return value;
}

function vmLogCap(text: string): number {
  if (!/^[0-9]{1,12}$/.test(text) || Number(text) < 65_536) {
    throw new NexusError('bad_request', `NEXUS_VM_LOG_MAX_BYTES must be a whole number of bytes, at least 65536 (got '${text}')`);
  }
  return Number(text);
}

function positiveMs(text: string, name: string): number {
  if (!/^[1-9][0-9]{0,6}$/.test(text)) throw new NexusError('bad_request', `${name} must be a whole number of milliseconds, 1 to 9999999 (got '${text}')`);
  return Number(text);
}

function bridgeName(name: string): string {
  if (!/^[a-zA-Z0-9][a-zA-Z0-9_.-]{0,14}$/.test(name)) {
    throw new NexusError('bad_request', `NEXUS_BRIDGE must be a network device name of at most 15 characters (got '${name}')`);
  }
  return name;
}

function bridgeCidr(text: string): Ipv4Cidr {
  const cidr = parseIpv4Cidr(text);
  if (!cidr) throw new NexusError('bad_request', `NEXUS_BRIDGE_CIDR must be an IPv4 address with a /8../30 prefix, like 172.31.0.1/24 (got '${text}')`);
  return cidr;
}

function firewallOf(text: string): AgentConfig['firewall'] {
  if (text === 'nftables' || text === 'iptables') return text;
  if (text === 'auto' || text === '') return undefined;
  throw new NexusError('bad_request', `NEXUS_FIREWALL must be auto, nftables or iptables (got '${text}')`);
}

function onOff(text: string, name: string): boolean {
  if (text === 'on' || text === '1' || text === 'true') return true;
  if (text === 'off' || text === '0' || text === 'false') return false;
  throw new NexusError('bad_request', `${name} must be on or off (got '${text}')`);
}

function absolute(path: string): string {
  return isAbsolute(path) ? path : resolve(path);
}
