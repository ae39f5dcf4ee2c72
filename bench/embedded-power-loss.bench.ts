/**
 * How long a commit acknowledged by the embedded database (PGlite, which never fsyncs) stays only
 * in the page cache, where a power loss would take it: one single-row commit, then after a delay
 * an fdatasync of the WAL segments, counting the sectors the disk wrote meanwhile
 * (/sys/dev/block/<major:minor>/stat). Sectors written by that fdatasync mean the commit was still
 * only in memory when the delay ended; none mean the kernel had written it back already. Other
 * writers on the same disk add noise, so read the column, not one row. docs/operations.md quotes
 * it. BENCH_POWER_DELAYS (seconds, comma-separated) and BENCH_POWER_DIR (a dir on the disk to
 * measure; default a temp dir) change what is measured. Prints; asserts nothing.
 */
import { PGlite } from '@electric-sql/pglite';
import { closeSync, fdatasyncSync, openSync, readFileSync, readdirSync, rmSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { tempDir } from '../test/support/temp-dir.js';

const DELAYS_S = (process.env.BENCH_POWER_DELAYS ?? '0,10,20,29,31,33,40').split(',').map(Number);

/** Sectors the block device holding `path` has written since boot. */
function sectorsWritten(path: string): number {
  const dev = statSync(path).dev;
  const major = Math.floor(dev / 256) & 0xfff;
  const minor = (dev & 0xff) | (Math.floor(dev / 4096) & 0xfff00);
  const fields = readFileSync(`/sys/dev/block/${major}:${minor}/stat`, 'utf8').trim().split(/\s+/);
  return Number(fields[6]);
}

function syncWal(walDir: string): void {
  for (const name of readdirSync(walDir)) {
    if (!/^[0-9A-F]{24}$/.test(name)) continue;
    const fd = openSync(join(walDir, name), 'r+');
    try {
      fdatasyncSync(fd);
    } finally {
      closeSync(fd);
    }
  }
}

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));
const dir = process.env.BENCH_POWER_DIR ? { path: process.env.BENCH_POWER_DIR, remove: () => undefined } : tempDir('nexus-bench-power-');
const dataDir = join(dir.path, `pglite-${process.pid}`);
const db = await PGlite.create({ dataDir });
try {
  const settings = ['dirty_expire_centisecs', 'dirty_writeback_centisecs'].map((name) => `vm.${name} ${readFileSync(`/proc/sys/vm/${name}`, 'utf8').trim()}`);
  console.log(`\nThe embedded database's power-loss window (${settings.join(', ')}), data dir ${dataDir}`);
  await db.exec('CREATE TABLE commit_probe (id serial PRIMARY KEY, at timestamptz NOT NULL DEFAULT now())');
  const walDir = join(dataDir, 'pg_wal');
  for (const delayS of DELAYS_S) {
    // Everything earlier on disk first, so what the probe's fdatasync writes is the probe's commit.
    syncWal(walDir);
    await sleep(1000);
    await db.query('INSERT INTO commit_probe DEFAULT VALUES');
    await sleep(delayS * 1000);
    const before = sectorsWritten(dataDir);
    syncWal(walDir);
    const written = sectorsWritten(dataDir) - before;
    console.log(
      `  ${String(delayS).padStart(3)} s after the commit: fdatasync wrote ${String(written).padStart(4)} sectors (${written > 0 ? 'still only in memory' : 'already on disk'})`,
    );
  }
} finally {
  await db.close();
  rmSync(dataDir, { recursive: true, force: true });
  dir.remove();
}
