import { type ChildProcess, spawn } from 'node:child_process';
import { NexusError } from './nexus-error.js';

/** The Debian package that provides each program Nexus runs, for the hint when one is missing. */
const PACKAGE_OF_TOOL: Readonly<Record<string, string>> = {
  'apt-get': 'apt',
  'apt-cache': 'apt',
  'dpkg-deb': 'dpkg',
  tar: 'tar',
  xz: 'xz-utils',
  zstd: 'zstd',
  cp: 'coreutils',
  'mkfs.ext4': 'e2fsprogs',
  debugfs: 'e2fsprogs',
  dmesg: 'util-linux',
  nsenter: 'util-linux',
  ip: 'iproute2',
  nft: 'nftables',
  dnsmasq: 'dnsmasq-base',
  iptables: 'iptables',
  'iptables-restore': 'iptables',
  'iptables-save': 'iptables',
};

/** Keep the end of a tool's stderr: the reason for a failure is on its last lines. */
const STDERR_KEPT_CHARS = 4000;

export interface HostToolOptions {
  cwd?: string;
  env?: NodeJS.ProcessEnv;
  /** Where stdin comes from: nothing, the stdout of another child (a pipeline), or a pipe we write. */
  stdin?: ChildProcess | 'pipe';
  /** What the caller was doing, for the error message ("extracting vmlinux"). */
  doing: string;
}

export interface RunHostToolOptions extends Omit<HostToolOptions, 'stdin'> {
  /** Written to the program's stdin, which is then closed (`nft -f -`); default: no stdin. */
  input?: string;
}

export interface HostToolResult {
  stdout: string;
  stderr: string;
}

/**
 * Runs a program to completion, collecting its output. A missing program or a non-zero exit
 * becomes an `unavailable` NexusError that says what we were doing, the command, and the tail
 * of its stderr, with the Debian package to install when the program is missing.
 */
export function runHostTool(command: string, args: readonly string[], options: RunHostToolOptions): Promise<HostToolResult> {
  const { input, ...rest } = options;
  const child = spawnHostTool(command, args, { ...rest, stdout: 'pipe', ...(input !== undefined ? { stdin: 'pipe' as const } : {}) });
  // A program that exits without reading it all closes the pipe: its exit status tells, not EPIPE.
  if (input !== undefined) child.stdin?.on('error', () => undefined).end(input);
  let stdout = '';
  child.stdout?.setEncoding('utf8').on('data', (chunk: string) => (stdout += chunk));
  return waitForHostTool(child, command, args, options.doing).then((stderr) => ({ stdout, stderr }));
}

/**
 * Starts a program whose stdout the caller consumes (a stream or a pipeline); finish with
 * {@link waitForHostTool}, which must be called so that failures are reported.
 */
export function spawnHostTool(
  command: string,
  args: readonly string[],
  options: Omit<HostToolOptions, 'doing'> & { stdout: 'pipe' | 'ignore' | number },
): ChildProcess {
  const child = spawn(command, args, {
    cwd: options.cwd,
    env: options.env ?? { ...process.env, LC_ALL: 'C' },
    stdio: [stdinOf(options.stdin), options.stdout, 'pipe'],
  });
  // The next program of a pipeline has its own copy of the pipe; ours would keep the previous
  // program's 'close' from ever firing.
  if (typeof options.stdin === 'object') options.stdin.stdout?.destroy();
  return child;
}

/** Resolves with the child's stderr once it exits 0; rejects with a NexusError otherwise. */
export function waitForHostTool(child: ChildProcess, command: string, args: readonly string[], doing: string): Promise<string> {
  let stderr = '';
  child.stderr?.setEncoding('utf8').on('data', (chunk: string) => {
    stderr = (stderr + chunk).slice(-STDERR_KEPT_CHARS);
  });
  return new Promise((resolve, reject) => {
    child.once('error', (error: NodeJS.ErrnoException) => {
      if (error.code === 'ENOENT') {
        const debianPackage = PACKAGE_OF_TOOL[command];
        reject(
          new NexusError('unavailable', `${doing}: the program ${command} is not installed`, {
            cause: error,
            suggestion: debianPackage ? `As root: apt-get install -y ${debianPackage}` : `Install ${command}.`,
          }),
        );
      } else reject(new NexusError('unavailable', `${doing}: could not run ${command}: ${error.message}`, { cause: error, terminal: false }));
    });
    child.once('close', (code, signal) => {
      if (code === 0) return resolve(stderr);
      const reason = signal ? `was killed by ${signal}` : `exited with code ${code}`;
      const detail = stderr.trim() ? `: ${stderr.trim()}` : '';
      reject(new NexusError('unavailable', `${doing}: ${[command, ...args].join(' ')} ${reason}${detail}`, { terminal: false }));
    });
  });
}

function stdinOf(source: HostToolOptions['stdin']): 'ignore' | 'pipe' | NonNullable<ChildProcess['stdout']> {
  if (source === undefined) return 'ignore';
  if (source === 'pipe') return 'pipe';
  if (!source.stdout) throw new Error('a pipeline needs the previous program started with stdout: pipe');
  return source.stdout;
}
