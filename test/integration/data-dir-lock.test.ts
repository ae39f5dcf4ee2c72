// test-lane: parallel (its own managers, hollow hosts, databases, temp dirs and ports: no host network, guest, cgroup or host-wide scan)
import assert from 'node:assert/strict';
import { existsSync, mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import { lockDirectory } from '../../src/kit/dir-lock.js';
import { freePort } from '../support/ports.js';
import { tempDir } from '../support/temp-dir.js';
import { runNexus } from '../support/nexus-process.js';
import { startTestManager } from '../support/test-manager.js';

describe('embedded database dir lock', () => {
  it('a second manager on the same data dir refuses to start, naming the holder', async () => {
    const first = await startTestManager();
    try {
      const port = await freePort();
      const second = await runNexus(['manager', '--listen', `127.0.0.1:${port}`, '--data-dir', first.dataDir]);
      assert.equal(second.code, 1);
      assert.match(second.output, new RegExp(`locked by process ${process.pid}`));
      assert.match(second.output, /corrupt/);
      // The first manager is untouched.
      assert.equal((await fetch(`${first.url}/healthz`)).status, 200);
    } finally {
      await first.dispose();
    }
  });

  it('takes over a lock left by a dead process, and releases its own on close', async () => {
    const dir = tempDir('nexus-lock-');
    try {
      mkdirSync(dir.path, { recursive: true });
      writeFileSync(join(dir.path, 'nexus.lock'), JSON.stringify({ pid: 2 ** 22 + 7, start_ticks: 1, purpose: 'crashed manager' }));
      const lock = await lockDirectory(dir.path, 'test');
      await assert.rejects(lockDirectory(dir.path, 'test again'), /locked by process/);
      await lock.release();
      assert.equal(existsSync(join(dir.path, 'nexus.lock')), false);
    } finally {
      dir.remove();
    }
  });

  it('does not mistake a reused pid for the owner', async () => {
    const dir = tempDir('nexus-lock-');
    try {
      // Our own pid, but a start time that is not ours: the process that wrote it is gone.
      writeFileSync(join(dir.path, 'nexus.lock'), JSON.stringify({ pid: process.pid, start_ticks: 1, purpose: 'old' }));
      const lock = await lockDirectory(dir.path, 'test');
      await lock.release();
    } finally {
      dir.remove();
    }
  });
});
