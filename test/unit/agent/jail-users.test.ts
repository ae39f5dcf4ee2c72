import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { chownSync, mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { after, describe, it } from 'node:test';
import { JAIL_USER_RECORD, JailUsers } from '../../../src/agent/drivers/firecracker/jail-users.js';
import { vmLayout } from '../../../src/contracts/vm-layout.js';
import { NexusError } from '../../../src/kit/nexus-error.js';
import { testVmId } from '../../support/net-names.js';
import { tempDir } from '../../support/temp-dir.js';

const ENTER_JAIL = fileURLToPath(new URL('../../doubles/enter-jail', import.meta.url));

/** The allocator's I/O: records in VM folders and jail roots' owners as the ids in use. */
describe('JailUsers', () => {
  const dir = tempDir('nexus-jail-users-');
  after(() => dir.remove());
  let runs = 0;
  const setUp = (first = 500, last = 502) => {
    const runDir = join(dir.path, `run-${++runs}`);
    const config = { uidRange: { first, last }, chrootBaseDir: join(runDir, 'jail') };
    const vm = () => {
      const layout = vmLayout(runDir, testVmId());
      mkdirSync(layout.dir, { recursive: true });
      return layout;
    };
    return { runDir, config, vm, users: new JailUsers(config, '/opt/fc/firecracker') };
  };

  it('gives each VM the lowest free id as uid and gid, records it in its folder, and keeps it across a restart', async () => {
    const { config, vm, users } = setUp();
    const [a, b] = [vm(), vm()];
    assert.deepEqual(await users.of(a), { uid: 500, gid: 500 });
    assert.deepEqual(await users.of(b), { uid: 501, gid: 501 });
    assert.deepEqual(await users.of(a), { uid: 500, gid: 500 }, 'asked again: the same');
    assert.deepEqual(JSON.parse(readFileSync(join(a.dir, JAIL_USER_RECORD), 'utf8')), { uid: 500, gid: 500 });
    const restarted = new JailUsers(config, '/opt/fc/firecracker');
    assert.deepEqual(await restarted.of(b), { uid: 501, gid: 501 }, 'a new agent reads the record');
    assert.deepEqual(await restarted.of(vm()), { uid: 502, gid: 502 }, 'and gives nobody an id already held');
  });

  it('never gives one id to two VMs asking at once', async () => {
    const { vm, users } = setUp(600, 609);
    const ids = await Promise.all(Array.from({ length: 6 }, () => users.of(vm()).then((user) => user.uid)));
    assert.deepEqual([...ids].sort(), [600, 601, 602, 603, 604, 605]);
  });

  it("frees an id once the VM's folder and jails are gone, not before", async () => {
    const { config, vm, users } = setUp();
    const [a, b] = [vm(), vm()];
    await users.of(a);
    await users.of(b);
    // a's folder is gone but a jail of it (a crash mid-delete) still belongs to its uid, 500.
    const jailRoot = join(config.chrootBaseDir, 'firecracker', `${a.id}-lq2x9k`, 'root');
    mkdirSync(jailRoot, { recursive: true });
    chownSync(jailRoot, 500, 500);
    rmSync(a.dir, { recursive: true });
    assert.deepEqual(await users.of(vm()), { uid: 502, gid: 502 }, 'the jail still holds 500');
    rmSync(join(jailRoot, '..'), { recursive: true });
    assert.deepEqual(await users.of(vm()), { uid: 500, gid: 500 }, 'folder and jail gone: 500 is taken again');
  });

  it('holds the uid a process in a jail runs as, found by its root in /proc, whoever owns the jail folder', async () => {
    const { config, vm, users } = setUp(900, 902);
    // A jail of a VM with no folder whose root is root's (not the jailed user's): only the process tells its uid.
    const jailRoot = join(config.chrootBaseDir, 'firecracker', `${testVmId()}-lq2x9k`, 'root');
    mkdirSync(jailRoot, { recursive: true });
    chownSync(jailRoot, 0, 0);
    const jailed = spawn(ENTER_JAIL, [jailRoot, '900', '900', process.execPath, '-e', 'console.log("in"); setTimeout(() => {}, 60_000)'], {
      stdio: ['ignore', 'pipe', 'inherit'],
    });
    try {
      await new Promise<void>((resolve, reject) => {
        jailed.stdout?.once('data', () => resolve());
        jailed.once('exit', (code) => reject(new Error(`enter-jail exited (${code})`)));
      });
      assert.deepEqual(await users.of(vm()), { uid: 901, gid: 901 }, '900 runs in a jail: not free');
    } finally {
      jailed.kill('SIGKILL');
      await new Promise((resolve) => (jailed.exitCode !== null || jailed.signalCode !== null ? resolve(undefined) : jailed.once('exit', resolve)));
    }
    assert.deepEqual(await users.of(vm()), { uid: 900, gid: 900 }, "its process gone (the jail is root's): 900 is free again");
  });

  it('refuses a VM when every id is held, with what to do about it', async () => {
    const { vm, users } = setUp(700, 701);
    await users.of(vm());
    await users.of(vm());
    const third = vm();
    await assert.rejects(users.of(third), (error: unknown) => {
      assert.ok(error instanceof NexusError, `a NexusError: ${String(error)}`);
      assert.equal(error.code, 'conflict');
      assert.match(error.message, /no uid of NEXUS_JAILER_UID_RANGE 700-701 is free: all 2 are held by other jailed VMs/);
      assert.match(error.suggestion ?? '', /Delete VMs .* or widen NEXUS_JAILER_UID_RANGE/);
      return true;
    });
    assert.throws(() => readFileSync(join(third.dir, JAIL_USER_RECORD)), /ENOENT/, 'nothing recorded for the refused VM');
  });

  it('does not trust a record outside the range or not written by it: the VM gets a free id instead', async () => {
    const { vm, users } = setUp(800, 802);
    const [a, b, c] = [vm(), vm(), vm()];
    writeFileSync(join(a.dir, JAIL_USER_RECORD), JSON.stringify({ uid: 42, gid: 42 })); // a range since changed
    writeFileSync(join(b.dir, JAIL_USER_RECORD), JSON.stringify({ uid: 800, gid: 0 })); // gid root
    writeFileSync(join(c.dir, JAIL_USER_RECORD), '{ not json');
    assert.deepEqual(await users.of(a), { uid: 800, gid: 800 });
    assert.deepEqual(await users.of(b), { uid: 801, gid: 801 });
    assert.deepEqual(await users.of(c), { uid: 802, gid: 802 });
    assert.deepEqual(JSON.parse(readFileSync(join(b.dir, JAIL_USER_RECORD), 'utf8')), { uid: 801, gid: 801 }, 'the record is rewritten');
    // A folder copied by hand brings its record along: the copy does not share the id.
    const copy = vm();
    writeFileSync(join(copy.dir, JAIL_USER_RECORD), readFileSync(join(a.dir, JAIL_USER_RECORD)));
    rmSync(join(c.dir, JAIL_USER_RECORD));
    assert.deepEqual(await users.of(copy), { uid: 802, gid: 802 }, "800 is a's");
    assert.deepEqual(await users.of(a), { uid: 800, gid: 800 }, 'a keeps its own');
  });
});
