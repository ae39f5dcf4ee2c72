import assert from 'node:assert/strict';
import { type ChildProcess, spawn } from 'node:child_process';
import { existsSync, mkdirSync, statSync, symlinkSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { after, describe, it } from 'node:test';
import { jailLayout, jailerArgs, listJails, populateJail, removeJail } from '../../../src/agent/drivers/firecracker/jailer.js';
import { tempDir } from '../../support/temp-dir.js';

const VM = '0b5e8a3c-1d2f-4a6b-8c9d-0e1f2a3b4c5d';
const ENTER_JAIL = fileURLToPath(new URL('../../doubles/enter-jail', import.meta.url));

describe('jailer', () => {
  const dir = tempDir('nexus-jail-');
  after(() => dir.remove());
  const config = { binary: '/usr/bin/jailer', uidRange: { first: 100, last: 199 }, chrootBaseDir: join(dir.path, 'jail') };
  const user = { uid: 123, gid: 456 };

  it('lays a launch out as the jailer does: <base>/<exec name>/<id>/root', () => {
    const jail = jailLayout(config, '/opt/fc/firecracker', VM, 'lq2x9k');
    assert.equal(jail.id, `${VM}-lq2x9k`);
    assert.equal(jail.dir, join(config.chrootBaseDir, 'firecracker', jail.id));
    assert.equal(jail.root, join(jail.dir, 'root'));
    assert.equal(jail.socket, join(jail.root, 'fc.sock'), 'the socket the args put at /fc.sock inside');
    assert.throws(() => jailLayout(config, '/opt/fc/firecracker', VM, 'x'.repeat(30)), /1-64 letters/);
    assert.throws(() => jailLayout(config, '/opt/fc/firecracker', VM, 'a_b'), /1-64 letters/);
  });

  it("builds the argv: id, exec file, the VM's own uid/gid, chroot base, cgroup v2, then Firecracker flags after --", () => {
    const jail = jailLayout(config, '/opt/fc/firecracker', VM, 'a1');
    assert.deepEqual(jailerArgs(config, '/opt/fc/firecracker', jail, user), [
      '--id',
      jail.id,
      '--exec-file',
      '/opt/fc/firecracker',
      '--uid',
      '123',
      '--gid',
      '456',
      '--chroot-base-dir',
      config.chrootBaseDir,
      '--cgroup-version',
      '2',
      '--',
      '--api-sock',
      '/fc.sock',
    ]);
    assert.deepEqual(
      jailerArgs(config, '/opt/fc/firecracker', jail, { uid: 124, gid: 124 }).slice(4, 8),
      ['--uid', '124', '--gid', '124'],
      'another VM, another user',
    );
    const withNetns = jailerArgs({ ...config, netns: '/var/run/netns/vm1' }, '/opt/fc/firecracker', jail, user);
    assert.deepEqual(withNetns.slice(12, 14), ['--netns', '/var/run/netns/vm1']);
    assert.equal(withNetns.indexOf('--netns') < withNetns.indexOf('--'), true, 'jailer flags come before --');
  });

  it('links the VM files into the jail, hands only writable ones to the jailed user, and cleanup removes the jail', async () => {
    const files = join(dir.path, 'files');
    mkdirSync(files, { recursive: true });
    writeFileSync(join(files, 'vmlinux'), 'kernel');
    writeFileSync(join(files, 'rootfs.ext4'), 'disk');
    const jail = jailLayout(config, '/opt/fc/firecracker', VM, 'b2');
    await populateJail(user, jail, [
      { hostPath: join(files, 'vmlinux'), jailPath: '/vm/kernel', writable: false },
      { hostPath: join(files, 'rootfs.ext4'), jailPath: '/vm/drive-rootfs', writable: true },
    ]);
    const kernel = statSync(join(jail.root, 'vm', 'kernel'));
    const disk = statSync(join(jail.root, 'vm', 'drive-rootfs'));
    assert.equal(kernel.ino, statSync(join(files, 'vmlinux')).ino, 'hard-linked, not copied');
    assert.equal(kernel.uid, 0, 'a shared read-only file keeps its owner');
    assert.deepEqual([disk.uid, disk.gid], [123, 456], 'the writable disk belongs to the jailed user');
    assert.equal(statSync(jail.root).uid, 123);
    await removeJail(jail);
    assert.equal(existsSync(jail.dir), false);
    assert.equal(existsSync(join(files, 'vmlinux')), true, 'the sources stay');
  });

  it('lists the jails under the chroot base with their owner, and nothing that is not one or leads outside it', async () => {
    const base = join(dir.path, 'listed');
    const exec = join(base, 'firecracker');
    const jail = (name: string, root = true) => mkdirSync(join(exec, name, ...(root ? ['root'] : [])), { recursive: true });
    assert.deepEqual(await listJails({ chrootBaseDir: base }, '/opt/fc/firecracker'), [], 'no base yet: nothing');
    jail(`${VM}-lq2x9k`);
    jail(`${VM}-x`, false); // no root folder: not a jail the driver made
    jail('notes'); // not <vm id>-<launch>
    jail(`${VM}-a_b`); // not a launch the driver makes
    jail(`${VM.toUpperCase()}-aa`);
    const outside = join(dir.path, 'elsewhere', 'root');
    mkdirSync(outside, { recursive: true });
    symlinkSync(join(outside, '..'), join(exec, `${VM.replace(/^0/, '1')}-aa`)); // a link out of the base
    const found = await listJails({ chrootBaseDir: base }, '/opt/fc/firecracker');
    assert.deepEqual(found, [
      { vmId: VM, dir: join(exec, `${VM}-lq2x9k`), rootUid: statSync(join(exec, `${VM}-lq2x9k`, 'root')).uid, running: false, processUids: [] },
    ]);
    assert.deepEqual(await listJails({ chrootBaseDir: base }, '/opt/fc/other-firecracker'), [], "another exec file's folder is not looked at");

    // The exec folder itself a link out of the base: nothing under it is listed.
    const linkedBase = join(dir.path, 'linked');
    mkdirSync(linkedBase);
    symlinkSync(exec, join(linkedBase, 'firecracker'));
    assert.deepEqual(await listJails({ chrootBaseDir: linkedBase }, '/opt/fc/firecracker'), []);
  });

  it('tells a jail whose Firecracker runs by the root of the processes, not by a pid file (the jailer writes none without --new-pid-ns)', async () => {
    const base = join(dir.path, 'running');
    const jailId = `${VM}-r1`;
    const root = join(base, 'firecracker', jailId, 'root');
    mkdirSync(root, { recursive: true });
    const listed = async () => (await listJails({ chrootBaseDir: base }, '/opt/fc/firecracker'))[0];
    assert.equal((await listed())?.running, false, 'nothing runs in it');
    // A process carrying the jail's --id, named by a pid file in the jail, but not in the jail.
    const outside = spawnSleeper(['--', '--id', jailId]);
    writeFileSync(join(root, 'firecracker.pid'), String(outside.pid));
    // A process in another jail.
    const otherRoot = join(base, 'firecracker', `${VM}-r2`, 'root');
    mkdirSync(otherRoot, { recursive: true });
    const elsewhere = await jailedSleeper(otherRoot, 54_320);
    try {
      assert.equal((await listed())?.running, false, 'neither a pid file nor an --id makes it run');
      const inside = await jailedSleeper(root, 54_321);
      try {
        assert.deepEqual(
          [(await listed())?.running, (await listed())?.processUids],
          [true, [54_321]],
          'a process whose root is the jail root runs in it, as its uid',
        );
      } finally {
        inside.kill('SIGKILL');
        await exited(inside);
      }
      assert.equal((await listed())?.running, false, 'once it has exited, nothing runs in it');
    } finally {
      outside.kill('SIGKILL');
      elsewhere.kill('SIGKILL');
      await exited(elsewhere);
    }
  });
});

/** A Node process that sleeps, carrying `args`. */
function spawnSleeper(args: string[]): ChildProcess {
  return spawn(process.execPath, ['-e', 'setTimeout(() => {}, 60_000)', ...args], { stdio: 'ignore' });
}

/** A process chrooted in `root` as `uid`, as the jailer leaves Firecracker (test/doubles/enter-jail); resolves once it runs there. */
async function jailedSleeper(root: string, uid: number): Promise<ChildProcess> {
  const child = spawn(ENTER_JAIL, [root, String(uid), String(uid), process.execPath, '-e', 'console.log("in"); setTimeout(() => {}, 60_000)'], {
    stdio: ['ignore', 'pipe', 'inherit'],
  });
  await new Promise<void>((resolve, reject) => {
    child.stdout?.once('data', () => resolve());
    child.once('exit', (code) => reject(new Error(`enter-jail exited (${code})`)));
  });
  return child;
}

function exited(child: ChildProcess): Promise<void> {
  return child.exitCode !== null || child.signalCode !== null ? Promise.resolve() : new Promise((resolve) => child.once('exit', () => resolve()));
}
