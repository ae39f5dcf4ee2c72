import { execFile, execFileSync, spawnSync } from 'node:child_process';
import { promisify } from 'node:util';
import { chownSync, existsSync, mkdtempSync, readFileSync, readdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import pg from 'pg';
import { freePort } from './ports.js';

export interface PostgresServer {
  /** URL of the server's `postgres` database, for admin work. */
  adminUrl: string;
  /** Creates a fresh, empty database and answers its URL. */
  createDatabase(): Promise<string>;
  /**
   * Stops the server as an operator or a crash would (`pg_ctl stop -m fast`: sessions are ended
   * with 57P01; `immediate`: no shutdown checkpoint, crash recovery at the next start) and leaves
   * it down until `startAgain`. Runs pg_ctl without blocking this process's event loop, so a
   * manager in this process keeps serving while the server goes.
   */
  shutDown(mode: 'fast' | 'immediate'): Promise<void>;
  /** Starts the server again on the same port and data dir, and waits until it accepts connections. */
  startAgain(): Promise<void>;
  stop(): Promise<void>;
}

/** The newest installed PostgreSQL's bin dir (Debian keeps them under /usr/lib/postgresql/<v>/bin). */
function postgresBinDir(): string {
  const root = '/usr/lib/postgresql';
  const versions = existsSync(root) ? readdirSync(root).filter((v) => existsSync(join(root, v, 'bin', 'initdb'))) : [];
  const newest = versions.sort((a, b) => Number(b) - Number(a))[0];
  if (!newest) throw new Error('no PostgreSQL server binaries under /usr/lib/postgresql: apt-get install postgresql (.ci/run does)');
  return join(root, newest, 'bin');
}

export interface PostgresOptions {
  /**
   * Acknowledge a commit only once its WAL is written to the kernel (synchronous_commit=on). Off by
   * default, for speed: then an immediate stop may lose the last commits, as a crash would.
   */
  durableCommits?: boolean;
}

/**
 * Starts a throwaway PostgreSQL server from the installed binaries: initdb in a temp dir, listening
 * on a free loopback port and a socket in that dir. Postgres refuses to run as root, so as root the
 * dir is handed to the `postgres` user. Stopped by its postmaster pid, never by name.
 */
export async function startPostgres(serverOptions: PostgresOptions = {}): Promise<PostgresServer> {
  const bin = postgresBinDir();
  const dir = mkdtempSync(join(tmpdir(), 'nexus-pg-'));
  const asRoot = process.getuid?.() === 0;
  const runAs = (command: string, args: string[]) => {
    const [file, argv] = asRoot ? ['runuser', ['-u', 'postgres', '--', command, ...args]] : [command, args];
    const result = spawnSync(file, argv, { encoding: 'utf8' });
    if (result.status !== 0) throw new Error(`${command} failed: ${result.stderr || result.stdout}`);
  };
  if (asRoot) {
    const uid = Number(execFileSync('id', ['-u', 'postgres'], { encoding: 'utf8' }));
    const gid = Number(execFileSync('id', ['-g', 'postgres'], { encoding: 'utf8' }));
    chownSync(dir, uid, gid);
  }
  const runAsync = async (command: string, args: string[]) => {
    const [file, argv] = asRoot ? ['runuser', ['-u', 'postgres', '--', command, ...args]] : [command, args];
    await promisify(execFile)(file, argv, { encoding: 'utf8' }).catch((error: Error & { stderr?: string }) => {
      throw new Error(`${command} failed: ${error.stderr || error.message}`);
    });
  };
  const data = join(dir, 'data');
  const port = await freePort();
  const synchronousCommit = serverOptions.durableCommits ? 'on' : 'off';
  const options = `-c listen_addresses=127.0.0.1 -p ${port} -k ${dir} -c fsync=off -c synchronous_commit=${synchronousCommit} -c full_page_writes=off`;
  const startArgs = ['-D', data, '-l', join(dir, 'server.log'), '-o', options, '-w', 'start'];
  const postmasterPid = () => Number(readFileSync(join(data, 'postmaster.pid'), 'utf8').split('\n')[0]);
  let pid: number | undefined;
  try {
    runAs(join(bin, 'initdb'), ['-D', data, '-U', 'nexus', '-A', 'trust', '--no-sync', '-E', 'UTF8']);
    runAs(join(bin, 'pg_ctl'), startArgs);
    pid = postmasterPid();
  } catch (error) {
    rmSync(dir, { recursive: true, force: true });
    throw error;
  }

  const adminUrl = `postgres://nexus@127.0.0.1:${port}/postgres`;
  let counter = 0;
  return {
    adminUrl,
    async createDatabase() {
      const name = `nexus_test_${process.pid}_${++counter}`;
      const client = new pg.Client({ connectionString: adminUrl });
      await client.connect();
      try {
        await client.query(`CREATE DATABASE ${name}`);
      } finally {
        await client.end();
      }
      return `postgres://nexus@127.0.0.1:${port}/${name}`;
    },
    async shutDown(mode) {
      await runAsync(join(bin, 'pg_ctl'), ['-D', data, '-m', mode, '-w', 'stop']);
      pid = undefined;
    },
    async startAgain() {
      await runAsync(join(bin, 'pg_ctl'), startArgs);
      pid = postmasterPid();
    },
    async stop() {
      if (pid !== undefined) await stopByPid(pid);
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

/** SIGINT is Postgres's "fast shutdown": clients are disconnected, then it exits. */
async function stopByPid(pid: number): Promise<void> {
  try {
    process.kill(pid, 'SIGINT');
  } catch {
    return;
  }
  for (let i = 0; i < 200; i++) {
    try {
      process.kill(pid, 0);
    } catch {
      return;
    }
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
  process.kill(pid, 'SIGKILL');
}
