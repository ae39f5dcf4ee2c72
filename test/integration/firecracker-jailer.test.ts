import assert from 'node:assert/strict';
import { chmodSync, existsSync, realpathSync, mkdirSync, readFileSync, readdirSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { tapNameOf } from '../../src/contracts/host-names.js';
import { readLink } from '../../src/agent/host/net/ip-command.js';
import { type FirecrackerAgent, JAILED_ID, doubleImage, startFirecrackerAgent } from '../support/firecracker-agent.js';
import { eventually, isAlive } from '../support/nexus-process.js';
import { testVmId } from '../support/net-names.js';
import { tempDir } from '../support/temp-dir.js';

/**
 * The Firecracker driver launching through the jailer (its double: same argv and jail layout,
 * privileges dropped to the jailed uid, paths resolved under the jail root): the VM's files are
 * linked into the jail, the API is reached in it, snapshots come out of it, and every jail is
 * removed when its process ends.
 */
describe('Firecracker through the jailer (doubles)', () => {
  const dir = tempDir('nexus-fc-jail-');
  const runDir = join(dir.path, 'run');
  const jails = join(runDir, 'jail', 'firecracker-double');
  let fc: FirecrackerAgent;
  const id = testVmId();

  before(async () => {
    // The jailed user must reach its jail root (a real chroot would not look at the parents).
    chmodSync(dir.path, 0o755);
    const image = doubleImage(runDir);
    mkdirSync(join(image.kernel, '..'), { recursive: true });
    writeFileSync(image.kernel, 'kernel');
    writeFileSync(image.rootfs, Buffer.alloc(1 << 20));
    fc = await startFirecrackerAgent({ runDir, jailed: true });
  });
  after(async () => {
    await fc?.call('DELETE', `/agent/v1/vms/${id}`).catch(() => undefined);
    await fc?.close();
    dir.remove();
  });

  const act = async (id: string, action: string, extra: Record<string, unknown> = {}) => {
    const response = await fc.call('POST', `/agent/v1/vms/${id}/actions`, { action, ...extra });
    assert.equal(response.status, 200, JSON.stringify(response.body));
    return response.body;
  };
  const jailsNow = () => (existsSync(jails) ? readdirSync(jails) : []);

  it('runs the VM in a fresh jail per launch and removes each jail when its process ends', async () => {
    const image = doubleImage(runDir);
    const ensured = await fc.call('PUT', `/agent/v1/vms/${id}`, {
      vcpu: 1,
      mem_mib: 128,
      kernel: { path: image.kernel, cmdline: 'console=ttyS0 reboot=k panic=1' },
      drives: [{ id: 'rootfs', path: image.rootfs, is_root: true }],
      nics: [{}],
    });
    assert.equal(ensured.status, 200, JSON.stringify(ensured.body));
    const started = await act(id, 'start');
    assert.equal(started.vm.state, 'running');
    const [jail = ''] = jailsNow();
    assert.ok(jail.startsWith(`${id}-`), `a jail named after the VM: ${jailsNow().join(', ')}`);
    const root = join(jails, jail, 'root');
    assert.equal(readFileSync(join(root, 'firecracker-double.pid'), 'utf8'), String(started.vm.pid), 'the jailer runs Firecracker in place');
    assert.equal(statSync(join(root, 'vm', 'drive-rootfs')).uid, JAILED_ID, 'the writable disk belongs to the jailed user');
    assert.equal(statSync(join(root, 'vm', 'kernel')).ino, statSync(image.kernel).ino, 'the kernel is linked, not copied');
    assert.equal(statSync(join(root, 'fc.sock')).uid, JAILED_ID, 'Firecracker runs as the jailed user');
    assert.equal(realpathSync(join(runDir, 'vms', id, 'sock', 'fc.sock')), join(root, 'fc.sock'), "the VM's socket path leads into the jail");
    await eventually('the guest console reaches the VM console log', () => readFileSync(join(runDir, 'vms', id, 'logs', 'console.log'), 'utf8').includes('NEXUS_BOOT_OK'), 10_000);
    const firecrackerLog = join(runDir, 'vms', id, 'logs', 'firecracker.log');
    assert.match(readFileSync(firecrackerLog, 'utf8'), /Running Firecracker|InstanceStart|successfully/, "Firecracker's own log lands in the VM folder");
    const tap = await readLink(tapNameOf(id));
    const tun = (tap?.linkinfo as { info_data?: { user?: number; group?: number } } | undefined)?.info_data;
    assert.deepEqual([tun?.user, tun?.group], [JAILED_ID, JAILED_ID], `the TAP belongs to the jailed user: ${JSON.stringify(tap?.linkinfo)}`);
    const info = await fc.call('GET', `/agent/v1/vms/${id}/proxy/`);
    assert.equal(info.body.state, 'Running', 'the proxy finds the socket in the jail');

    await act(id, 'pause');
    const { snapshot } = await act(id, 'snapshot');
    assert.ok(snapshot.state_file.startsWith(join(runDir, 'vms', id, 'snapshots')), 'the snapshot comes out of the jail into the VM folder');
    assert.ok(existsSync(snapshot.memory_file));
    await act(id, 'stop', { timeout_ms: 2000 });
    assert.deepEqual(jailsNow(), [], 'the jail goes with its process');
    assert.ok(readFileSync(firecrackerLog, 'utf8').length > 0, 'the log outlives the jail');

    const restored = await act(id, 'restore', { snapshot_id: snapshot.snapshot_id });
    assert.equal(restored.vm.state, 'running');
    const [second] = jailsNow();
    assert.ok(second && second !== jail, 'a fresh jail id for the new launch');
    // A snapshot of the restored VM must not write over the one it came from (linked into the jail to load it).
    const savedState = readFileSync(snapshot.state_file, 'utf8');
    await act(id, 'pause');
    const { snapshot: later } = await act(id, 'snapshot');
    assert.notEqual(later.state_file, snapshot.state_file);
    assert.equal(readFileSync(snapshot.state_file, 'utf8'), savedState, 'the first snapshot is unchanged');
    assert.notEqual(statSync(later.memory_file).ino, statSync(snapshot.memory_file).ino, 'two snapshots, two memory files');
    await act(id, 'resume');

    assert.equal((await fc.call('DELETE', `/agent/v1/vms/${id}`)).status, 200);
    await eventually('the VMM exited', () => !isAlive(restored.vm.pid), 5000);
    assert.deepEqual(jailsNow(), [], 'no jail left after delete');
    assert.equal(existsSync(join(runDir, 'vms', id)), false);
    assert.equal(await readLink(tapNameOf(id)), undefined);
  });
});
