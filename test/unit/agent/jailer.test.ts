import assert from 'node:assert/strict';
import { existsSync, mkdirSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, describe, it } from 'node:test';
import { jailLayout, jailerArgs, populateJail, removeJail } from '../../../src/agent/drivers/firecracker/jailer.js';
import { tempDir } from '../../support/temp-dir.js';

const VM = '0b5e8a3c-1d2f-4a6b-8c9d-0e1f2a3b4c5d';

describe('jailer', () => {
  const dir = tempDir('nexus-jail-');
  after(() => dir.remove());
  const config = { binary: '/usr/bin/jailer', uid: 123, gid: 456, chrootBaseDir: join(dir.path, 'jail') };

  it('lays a launch out as the jailer does: <base>/<exec name>/<id>/root, pid file named after the exec file', () => {
    const jail = jailLayout(config, '/opt/fc/firecracker', VM, 'lq2x9k');
    assert.equal(jail.id, `${VM}-lq2x9k`);
    assert.equal(jail.dir, join(config.chrootBaseDir, 'firecracker', jail.id));
    assert.equal(jail.root, join(jail.dir, 'root'));
    assert.equal(jail.pidFile, join(jail.root, 'firecracker.pid'));
    assert.equal(jail.socket, join(jail.root, 'fc.sock'), 'the socket the args put at /fc.sock inside');
    assert.throws(() => jailLayout(config, '/opt/fc/firecracker', VM, 'x'.repeat(30)), /1-64 letters/);
    assert.throws(() => jailLayout(config, '/opt/fc/firecracker', VM, 'a_b'), /1-64 letters/);
  });

  it('builds the argv: id, exec file, uid/gid, chroot base, cgroup v2, then Firecracker flags after --', () => {
    const jail = jailLayout(config, '/opt/fc/firecracker', VM, 'a1');
    assert.deepEqual(jailerArgs(config, '/opt/fc/firecracker', jail), [
      '--id', jail.id,
      '--exec-file', '/opt/fc/firecracker',
      '--uid', '123',
      '--gid', '456',
      '--chroot-base-dir', config.chrootBaseDir,
      '--cgroup-version', '2',
      '--',
      '--api-sock', '/fc.sock',
    ]);
    const withNetns = jailerArgs({ ...config, netns: '/var/run/netns/vm1' }, '/opt/fc/firecracker', jail);
    assert.deepEqual(withNetns.slice(12, 14), ['--netns', '/var/run/netns/vm1']);
    assert.equal(withNetns.indexOf('--netns') < withNetns.indexOf('--'), true, 'jailer flags come before --');
  });

  it('links the VM files into the jail, hands only writable ones to the jailed user, and cleanup removes the jail', async () => {
    const files = join(dir.path, 'files');
    mkdirSync(files, { recursive: true });
    writeFileSync(join(files, 'vmlinux'), 'kernel');
    writeFileSync(join(files, 'rootfs.ext4'), 'disk');
    const jail = jailLayout(config, '/opt/fc/firecracker', VM, 'b2');
    await populateJail(config, jail, [
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
});
