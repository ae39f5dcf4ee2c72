import { randomUUID } from 'node:crypto';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { existsSync, readFileSync, statSync, symlinkSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { promisify } from 'node:util';
import { tapNameOf } from '../../src/contracts/host-names.js';
import { readLink } from '../../src/agent/host/net/ip-command.js';
import { withQmp } from '../../src/agent/drivers/qemu/qmp-client.js';
import { type AgentHarness, startAgentProcess } from '../support/agent-harness.js';
import { assertErrorContract } from '../support/error-contract.js';
import { testGuestImage } from '../support/guest-image.js';
import { descendantsOf, eventually, isAlive } from '../support/nexus-process.js';
import { testBridgeCidr, testBridgeName, testVmId } from '../support/net-names.js';
import { tempDir } from '../support/temp-dir.js';

const run = promisify(execFile);

/**
 * Real guests under QEMU (TCG here), driven through the agent's HTTP API as the manager will
 * drive it: a real agent process, a real bridge and TAP, a real ping.
 */
describe('agent runs a real guest', () => {
  const dir = tempDir('nexus-agent-vm-');
  const runDir = join(dir.path, 'run');
  const bridge = testBridgeName();
  const cidr = testBridgeCidr();
  const subnet = cidr.split('.').slice(0, 3).join('.');
  const env = { NEXUS_BRIDGE: bridge, NEXUS_BRIDGE_CIDR: cidr, NEXUS_NAT: 'off' };
  let agent: AgentHarness;
  let imageDir: string;
  const created: string[] = [];

  before(async () => {
    const image = await testGuestImage();
    imageDir = image.dir;
    // The agent only boots files under <run-dir>/images: link the shared test image in.
    await run('mkdir', ['-p', runDir]);
    symlinkSync(join(image.dir, '..'), join(runDir, 'images'));
    agent = await startAgentProcess(runDir, env);
  });

  after(async () => {
    for (const id of created) await agent?.call('DELETE', `/agent/v1/vms/${id}`).catch(() => undefined);
    await agent?.process.stop();
    await run('ip', ['link', 'del', 'dev', bridge]).catch(() => undefined);
    dir.remove();
  });

  const spec = (id: string, ip: string) => ({
    vcpu: 1,
    mem_mib: 128,
    kernel: {
      path: join(runDir, 'images', 'test', 'vmlinux'),
      cmdline: `console=ttyS0 reboot=t panic=1 root=/dev/vda rw nexus.ip=${ip}/24 nexus.gw=${subnet}.1`,
    },
    initrd: { path: join(runDir, 'images', 'test', 'initrd.img') },
    drives: [{ id: 'rootfs', path: join(runDir, 'images', 'test', 'rootfs.ext4'), is_root: true }],
    nics: [{}],
  });
  const consoleOf = (id: string) => {
    try {
      return readFileSync(join(runDir, 'vms', id, 'logs', 'console.log'), 'utf8');
    } catch {
      return '';
    }
  };
  const lastCounter = (id: string) => {
    const matches = [...consoleOf(id).matchAll(/NEXUS_COUNTER (\d+)/g)];
    return matches.length ? Number(matches.at(-1)?.[1]) : -1;
  };
  const act = async (id: string, action: string, extra: Record<string, unknown> = {}) => {
    const response = await agent.call('POST', `/agent/v1/vms/${id}/actions`, { action, ...extra });
    assert.equal(response.status, 200, JSON.stringify(response.body));
    return response.body;
  };
  const qemuPids = () =>
    descendantsOf(1).filter((pid) => {
      try {
        const cmdline = readFileSync(`/proc/${pid}/cmdline`, 'utf8');
        return cmdline.startsWith('qemu-system') && cmdline.includes(runDir);
      } catch {
        return false;
      }
    });

  it('boots, answers ping through the bridge, pauses and resumes, snapshots and restores, and stops without leftovers', async () => {
    const id = testVmId();
    created.push(id);
    const ip = `${subnet}.2`;

    const ensured = await agent.call('PUT', `/agent/v1/vms/${id}`, spec(id, ip));
    assert.equal(ensured.status, 200, JSON.stringify(ensured.body));
    assert.equal(ensured.body.state, 'configured');
    assert.equal(ensured.body.tap, tapNameOf(id));
    assert.equal((await readLink(tapNameOf(id)))?.master, bridge);
    // The writable root drive is a private copy, never the shared image.
    assert.equal(ensured.body.spec.drives[0].path, join(runDir, 'vms', id, 'drives', 'rootfs.img'));
    assert.deepEqual((await agent.call('PUT', `/agent/v1/vms/${id}`, spec(id, ip))).body, ensured.body, 'ensure is idempotent');

    const started = await act(id, 'start');
    assert.ok(started.vm.pid > 0);
    const cgroup2 = readFileSync('/proc/self/mounts', 'utf8')
      .split('\n')
      .map((line) => line.split(' '))
      .find((f) => f[2] === 'cgroup2')?.[1];
    if (cgroup2)
      assert.match(readFileSync(`/proc/${started.vm.pid}/cgroup`, 'utf8'), new RegExp(`^0::/nexus/fc-${id}$`, 'm'), 'the VMM runs in a cgroup of its own');
    await eventually('the boot marker', () => consoleOf(id).includes('NEXUS_BOOT_OK'), 90_000);
    await eventually(
      'the guest answers ping',
      async () => {
        const { stdout } = await run('busybox', ['ping', '-c', '1', '-W', '2', ip]).catch((error: { stdout?: string }) => ({ stdout: error.stdout ?? '' }));
        return /1 packets received/.test(stdout);
      },
      30_000,
    );

    // Throttle the root drive at runtime: QEMU applies it at once, the spec keeps it.
    const limited = await agent.call('PATCH', `/agent/v1/vms/${id}/drives/rootfs`, { bytes_per_second: 1048576, ops_per_second: 200 });
    assert.equal(limited.status, 200, JSON.stringify(limited.body));
    assert.deepEqual(limited.body.spec.drives[0].rate_limit, { bytes_per_second: 1048576, ops_per_second: 200 });
    const block = await withQmp(join(runDir, 'vms', id, 'sock', 'qmp.sock'), (qmp) =>
      qmp.execute<Array<{ device: string; qdev?: string; inserted?: { bps: number; iops: number } }>>('query-block'),
    );
    const root = block.find((entry) => entry.device === 'rootfs' || entry.qdev === 'rootfs');
    assert.equal(root?.inserted?.bps, 1048576);
    assert.equal(root?.inserted?.iops, 200);
    assertErrorContract(await agent.call('PATCH', `/agent/v1/vms/${id}/drives/nope`, { bytes_per_second: 1 }), 404, 'not_found');

    await eventually('the counter runs', () => lastCounter(id) >= 1, 30_000);
    assert.equal((await act(id, 'pause')).vm.state, 'paused');
    const pausedAt = lastCounter(id);
    await new Promise((resolve) => setTimeout(resolve, 2500));
    assert.equal(lastCounter(id), pausedAt, 'a paused guest does not count');
    assert.equal((await act(id, 'resume')).vm.state, 'running');
    await eventually('the counter moves again', () => lastCounter(id) > pausedAt, 15_000);

    // Snapshot a paused guest, stop it, restore into a new process: the count goes on from there.
    await act(id, 'pause');
    const savedAt = lastCounter(id);
    const { snapshot } = await act(id, 'snapshot');
    assert.ok(statSync(snapshot.state_file).size > 1024 * 1024, 'guest memory is in the state file');
    assert.equal(snapshot.size_bytes, statSync(snapshot.state_file).size);
    assert.equal(snapshot.drives[0].id, 'rootfs');
    const oldPid = started.vm.pid;
    assert.equal((await act(id, 'stop', { timeout_ms: 1000 })).vm.state, 'stopped');
    assert.ok(!isAlive(oldPid));
    // The console log is appended to across processes: what the restored guest printed starts here.
    const restoredFrom = consoleOf(id).length;
    const restored = await act(id, 'restore', { snapshot_id: snapshot.snapshot_id });
    assert.equal(restored.vm.state, 'running');
    assert.notEqual(restored.vm.pid, oldPid);
    await eventually('the restored guest counts on', () => lastCounter(id) > savedAt, 30_000);
    const firstAfterRestore = Number(/NEXUS_COUNTER (\d+)/.exec(consoleOf(id).slice(restoredFrom))?.[1] ?? -1);
    assert.ok(firstAfterRestore >= savedAt, `counting resumed from ${savedAt}, not from scratch (${firstAfterRestore})`);

    // A graceful stop: the ACPI power button, handled by the guest.
    const stopped = await act(id, 'stop');
    assert.equal(stopped.vm.state, 'stopped');
    assert.equal(stopped.vm.pid, null);
    assert.ok(!isAlive(restored.vm.pid));

    const deleted = await agent.call('DELETE', `/agent/v1/vms/${id}`);
    assert.equal(deleted.status, 200);
    assert.equal(await readLink(tapNameOf(id)), undefined, 'TAP gone');
    assert.equal(existsSync(join(runDir, 'vms', id)), false, 'run dir gone');
    assert.deepEqual(qemuPids(), [], 'no qemu left');
    if (cgroup2) assert.equal(existsSync(join(cgroup2, 'nexus', `fc-${id}`)), false, 'its cgroup is gone');
    assertErrorContract(await agent.call('GET', `/agent/v1/vms/${id}`), 404, 'not_found');
  });

  it('takes a snapshot kept on the host from a running guest, which counts on; then one that stops it; both removed', async () => {
    const id = testVmId();
    created.push(id);
    assert.equal((await agent.call('PUT', `/agent/v1/vms/${id}`, spec(id, `${subnet}.5`))).status, 200);
    await act(id, 'start');
    await eventually('the guest counts', () => lastCounter(id) >= 1, 60_000);
    const sid = randomUUID();
    const taken = await agent.call('POST', `/agent/v1/vms/${id}/snapshots`, { snapshot_id: sid });
    assert.equal(taken.status, 201, JSON.stringify(taken.body));
    const { snapshot, vm } = taken.body;
    assert.equal(vm.state, 'running', 'resumed after the capture');
    const dir = join(runDir, 'snapshots', sid);
    assert.equal(snapshot.state_file, join(dir, 'state.bin'));
    assert.ok(statSync(snapshot.state_file).size > 1024 * 1024, 'guest memory is in the state file');
    assert.deepEqual(
      snapshot.drives.map((drive: { id: string; path: string }) => [drive.id, drive.path]),
      [['rootfs', join(dir, 'drive-rootfs.img')]],
    );
    assert.equal(snapshot.size_bytes, statSync(snapshot.state_file).size + statSync(join(dir, 'drive-rootfs.img')).size, 'state and drive copy');
    const at = lastCounter(id);
    await eventually('the guest counts on after the capture', () => lastCounter(id) > at, 30_000);
    assert.deepEqual((await agent.call('GET', `/agent/v1/snapshots/${sid}`)).body, snapshot, 'kept on the host');
    assert.deepEqual(
      (await agent.call('POST', `/agent/v1/vms/${id}/snapshots`, { snapshot_id: sid })).body.snapshot,
      snapshot,
      'the same id again: the same snapshot',
    );
    assert.deepEqual((await agent.call('GET', '/agent/v1/inventory')).body.snapshots, [sid], 'in the inventory');
    assert.equal(statSync(join(runDir, 'snapshots')).mode & 0o777, 0o700, 'open to root alone: guest memory is in there');
    assert.equal(statSync(dir).mode & 0o777, 0o700);

    // A paused guest stays paused, and can be captured again (QEMU takes no second save straight after one).
    await act(id, 'pause');
    const pausedTwice = [randomUUID(), randomUUID()];
    for (const each of pausedTwice) {
      const again = await agent.call('POST', `/agent/v1/vms/${id}/snapshots`, { snapshot_id: each });
      assert.equal(again.status, 201, JSON.stringify(again.body));
      assert.equal(again.body.vm.state, 'paused');
    }
    await act(id, 'resume');
    for (const bad of [{ snapshot_id: 'not-a-uuid' }, { snapshot_id: randomUUID(), then: 'sleep' }, { snapshot_id: randomUUID(), extra: 1 }]) {
      assertErrorContract(await agent.call('POST', `/agent/v1/vms/${id}/snapshots`, bad), 400, 'validation_failed');
    }
    assertErrorContract(await agent.call('GET', '/agent/v1/snapshots/not-a-uuid'), 400, 'validation_failed');

    const last = randomUUID();
    const stopping = await agent.call('POST', `/agent/v1/vms/${id}/snapshots`, { snapshot_id: last, then: 'stop' });
    assert.equal(stopping.status, 201, JSON.stringify(stopping.body));
    assert.equal(stopping.body.vm.state, 'stopped', 'stopped after the capture');
    assertErrorContract(await agent.call('POST', `/agent/v1/vms/${id}/snapshots`, { snapshot_id: randomUUID() }), 409, 'conflict');

    for (const each of [sid, last, ...pausedTwice]) assert.equal((await agent.call('DELETE', `/agent/v1/snapshots/${each}`)).status, 200);
    assert.equal(existsSync(join(runDir, 'snapshots', sid)) || existsSync(join(runDir, 'snapshots', last)), false, 'their folders are gone');
    assertErrorContract(await agent.call('GET', `/agent/v1/snapshots/${sid}`), 404, 'not_found');
    assert.equal((await agent.call('DELETE', `/agent/v1/vms/${id}`)).status, 200);
  });

  it('keeps a VM running across kill -9 of the agent, and re-adopts it', async () => {
    const id = testVmId();
    created.push(id);
    assert.equal((await agent.call('PUT', `/agent/v1/vms/${id}`, spec(id, `${subnet}.3`))).status, 200);
    const pid = (await act(id, 'start')).vm.pid;
    await eventually('the boot marker', () => consoleOf(id).includes('NEXUS_BOOT_OK'), 90_000);

    agent.process.child.kill('SIGKILL');
    await agent.process.exited;
    assert.ok(isAlive(pid), 'the VM outlived its agent');
    agent = await startAgentProcess(runDir, env);

    const vm = (await agent.call('GET', `/agent/v1/vms/${id}`)).body;
    assert.equal(vm.state, 'running');
    assert.equal(vm.pid, pid);
    const inventory = (await agent.call('GET', '/agent/v1/inventory')).body;
    assert.ok(inventory.vms.some((entry: { id: string; pid: number }) => entry.id === id && entry.pid === pid));

    // What belongs to no VM is reported: a stray folder, a stray TAP, and a VMM no pid file names.
    const strayTap = tapNameOf(testVmId());
    await run('ip', ['tuntap', 'add', 'dev', strayTap, 'mode', 'tap']);
    await run('mkdir', ['-p', join(runDir, 'vms', 'not-a-vm')]);
    const pidFile = join(runDir, 'vms', id, 'pid');
    await run('mv', [pidFile, `${pidFile}.aside`]);
    try {
      const { orphans } = (await agent.call('GET', '/agent/v1/inventory')).body;
      assert.deepEqual(orphans.dirs, [join(runDir, 'vms', 'not-a-vm')]);
      assert.ok(orphans.taps.includes(strayTap));
      assert.ok(!orphans.taps.includes(tapNameOf(id)), "a VM's own TAP is not an orphan");
      assert.deepEqual(
        orphans.processes.map((entry: { pid: number; vm_id: string }) => [entry.pid, entry.vm_id]),
        [[pid, id]],
      );
    } finally {
      await run('mv', [`${pidFile}.aside`, pidFile]);
      await run('ip', ['link', 'del', 'dev', strayTap]);
      await run('rmdir', [join(runDir, 'vms', 'not-a-vm')]);
    }

    // A clean restart leaves it running too, and sweeps what belongs to no VM it knows.
    const strayOnRestart = tapNameOf(testVmId());
    await run('ip', ['tuntap', 'add', 'dev', strayOnRestart, 'mode', 'tap']);
    await run('mkdir', ['-p', join(runDir, 'vms', 'junk-on-restart')]);
    await agent.process.stop();
    assert.ok(isAlive(pid));
    agent = await startAgentProcess(runDir, env);
    assert.equal(await readLink(strayOnRestart), undefined, 'a stray TAP is swept on start');
    assert.equal(existsSync(join(runDir, 'vms', 'junk-on-restart')), false, 'a stray folder is swept on start');
    assert.equal((await act(id, 'stop', { timeout_ms: 500 })).vm.state, 'stopped');
    assert.ok(!isAlive(pid));
    assert.equal((await agent.call('DELETE', `/agent/v1/vms/${id}`)).status, 200);
  });

  it('takes the fine-grained steps: tap, then spawn (process up, guest not run), then resume boots it', async () => {
    const id = testVmId();
    created.push(id);
    assert.equal((await agent.call('PUT', `/agent/v1/vms/${id}`, spec(id, `${subnet}.4`))).status, 200);
    const tap = await agent.call('POST', `/agent/v1/vms/${id}/tap`);
    assert.deepEqual(tap.body, { tap: tapNameOf(id) });
    assert.equal((await readLink(tapNameOf(id)))?.master, bridge);
    const spawned = await agent.call('POST', `/agent/v1/vms/${id}/spawn`);
    assert.equal(spawned.status, 200, JSON.stringify(spawned.body));
    assert.equal(spawned.body.state, 'paused');
    assert.ok(spawned.body.pid > 0);
    assert.equal((await agent.call('POST', `/agent/v1/vms/${id}/spawn`)).body.pid, spawned.body.pid, 'spawn is idempotent');
    await new Promise((resolve) => setTimeout(resolve, 1000));
    assert.equal(consoleOf(id), '', 'the guest has not run');
    await act(id, 'resume');
    await eventually('the boot marker', () => consoleOf(id).includes('NEXUS_BOOT_OK'), 90_000);
    assert.equal((await agent.call('DELETE', `/agent/v1/vms/${id}`)).status, 200);
    assert.ok(!isAlive(spawned.body.pid));
  });

  it('deletes a VM whose expires_at has passed on its own, with no manager', async () => {
    const id = testVmId();
    created.push(id);
    // Far enough ahead for the ensure and the start to finish first on a loaded machine: the VM
    // must be running, with its VMM and TAP, when it expires.
    const leadMs = 15_000;
    const expiresAt = new Date(Date.now() + leadMs).toISOString();
    const ephemeral = { ...spec(id, `${subnet}.13`), expires_at: expiresAt };
    assert.equal((await agent.call('PUT', `/agent/v1/vms/${id}`, ephemeral)).status, 200);
    const pid = (await act(id, 'start')).vm.pid;
    await eventually('the VM is gone', async () => !existsSync(join(runDir, 'vms', id)), leadMs + 60_000);
    assert.ok(Date.now() >= Date.parse(expiresAt), 'not before its expiry');
    assert.ok(!isAlive(pid));
    assert.equal(await readLink(tapNameOf(id)), undefined);
  });

  describe('a failed ensure leaves nothing behind', () => {
    const leftovers = async (id: string) => {
      assert.equal(existsSync(join(runDir, 'vms', id)), false, 'no run dir');
      assert.equal(await readLink(tapNameOf(id)), undefined, 'no TAP');
    };

    it('a missing kernel -> 400 with a suggestion', async () => {
      const id = testVmId();
      const bad = spec(id, `${subnet}.9`);
      bad.kernel.path = join(runDir, 'images', 'test', 'no-such-vmlinux');
      const response = await agent.call('PUT', `/agent/v1/vms/${id}`, bad);
      assertErrorContract(response, 400, 'bad_request');
      assert.ok(response.body.suggestion);
      await leftovers(id);
    });

    it('a path outside the allowed roots -> 403 for the kernel, the initrd, the root disk and an extra drive, also through a symlink or ..', async () => {
      const id = testVmId();
      symlinkSync('/etc/hostname', join(dir.path, 'evil-link'));
      // Written out by hand, not with join(): the agent must see the '..' itself.
      const outside = [
        '/etc/passwd',
        '/no/such/file',
        `${runDir}/vms/../agent/identity.json`,
        `${runDir}/images/test/../../../run/agent/identity.json`,
        join(dir.path, 'evil-link'),
      ];
      const placements: Record<string, (bad: ReturnType<typeof spec>, path: string) => void> = {
        kernel: (bad, path) => (bad.kernel.path = path),
        initrd: (bad, path) => (bad.initrd = { path }),
        'root disk': (bad, path) => (bad.drives[0] = { id: 'rootfs', path, is_root: true }),
        'extra drive': (bad, path) => bad.drives.push({ id: 'data', path, is_root: false }),
      };
      for (const [field, place] of Object.entries(placements)) {
        for (const path of outside) {
          const bad = spec(id, `${subnet}.9`);
          place(bad, path);
          const answer = await agent.call('PUT', `/agent/v1/vms/${id}`, bad);
          assert.equal(answer.status, 403, `${field} ${path}: ${JSON.stringify(answer.body)}`);
          assertErrorContract(answer, 403, 'forbidden');
        }
      }
      await leftovers(id);
    });

    it('a root disk that is a folder -> 400; a percent-encoded ".." is a plain name and escapes nothing', async () => {
      const id = testVmId();
      const folder = spec(id, `${subnet}.9`);
      folder.drives[0] = { id: 'rootfs', path: join(runDir, 'images', 'test'), is_root: true };
      const response = await agent.call('PUT', `/agent/v1/vms/${id}`, folder);
      assertErrorContract(response, 400, 'bad_request');
      assert.match(response.body.fault_message, /is not a file/);
      const encoded = spec(id, `${subnet}.9`);
      encoded.kernel.path = `${runDir}/images/%2e%2e/%2e%2e/agent/identity.json`;
      const refused = await agent.call('PUT', `/agent/v1/vms/${id}`, encoded);
      assertErrorContract(refused, 400, 'bad_request');
      assert.match(refused.body.fault_message, /does not exist/);
      await leftovers(id);
    });

    it('a TAP name taken by a foreign device -> 409, the device untouched', async () => {
      const id = testVmId();
      await run('ip', ['link', 'add', tapNameOf(id), 'type', 'bridge']);
      try {
        const response = await agent.call('PUT', `/agent/v1/vms/${id}`, spec(id, `${subnet}.9`));
        assertErrorContract(response, 409, 'conflict');
        assert.match(response.body.fault_message, /not made by Nexus/);
        assert.equal(existsSync(join(runDir, 'vms', id)), false, 'no run dir');
        assert.equal((await readLink(tapNameOf(id)))?.linkinfo?.info_kind, 'bridge');
      } finally {
        await run('ip', ['link', 'del', 'dev', tapNameOf(id)]);
      }
    });

    it("a kernel that is not a kernel fails at start with the VMM's words, and leaves no process", async () => {
      const id = testVmId();
      created.push(id);
      const bad = spec(id, `${subnet}.9`);
      bad.kernel.path = join(runDir, 'images', 'test', 'manifest.json');
      assert.equal((await agent.call('PUT', `/agent/v1/vms/${id}`, bad)).status, 200);
      const response = await agent.call('POST', `/agent/v1/vms/${id}/actions`, { action: 'start' });
      assertErrorContract(response, 502, 'vmm_failed');
      assert.match(response.body.fault_message, /QEMU exited while starting/);
      assert.equal((await agent.call('GET', `/agent/v1/vms/${id}`)).body.pid, null);
      assert.equal((await agent.call('DELETE', `/agent/v1/vms/${id}`)).status, 200);
      await leftovers(id);
    });
  });

  it('refuses actions on a VM it does not have, and pausing a stopped VM', async () => {
    const id = testVmId();
    assertErrorContract(await agent.call('POST', `/agent/v1/vms/${id}/actions`, { action: 'start' }), 404, 'not_found');
    created.push(id);
    await agent.call('PUT', `/agent/v1/vms/${id}`, spec(id, `${subnet}.10`));
    const response = await agent.call('POST', `/agent/v1/vms/${id}/actions`, { action: 'pause' });
    assertErrorContract(response, 409, 'conflict');
    assert.ok(response.body.suggestion);
    assertErrorContract(await agent.call('POST', `/agent/v1/vms/${id}/actions`, { action: 'reboot' }), 400, 'validation_failed');
    assert.equal((await agent.call('DELETE', `/agent/v1/vms/${id}`)).status, 200);
  });

  it("never gives a guest the agent's own files in a VM folder, and copies image disks however they are spelled", async () => {
    const id = testVmId();
    created.push(id);
    const base = spec(id, `${subnet}.11`);
    assert.equal((await agent.call('PUT', `/agent/v1/vms/${id}`, base)).status, 200);
    for (const file of ['spec.json', 'pid', 'logs/console.log']) {
      const path = join(runDir, 'vms', id, file);
      await run('mkdir', ['-p', join(path, '..')]);
      await run('touch', [path]);
      const bad = spec(id, `${subnet}.11`);
      bad.drives = [{ id: 'rootfs', path, is_root: true }];
      assertErrorContract(await agent.call('PUT', `/agent/v1/vms/${id}`, bad), 403, 'forbidden');
    }
    // Odd spellings of an image-store disk still get the VM's private copy, never the image itself.
    const other = testVmId();
    created.push(other);
    const odd = spec(other, `${subnet}.12`);
    odd.drives = [{ id: 'rootfs', path: `${runDir}//images/./test/../test/rootfs.ext4`, is_root: true }];
    const ensured = await agent.call('PUT', `/agent/v1/vms/${other}`, odd);
    assert.equal(ensured.status, 200, JSON.stringify(ensured.body));
    assert.equal(ensured.body.spec.drives[0].path, join(runDir, 'vms', other, 'drives', 'rootfs.img'));
    assert.equal(ensured.body.spec.kernel.path, join(imageDir, 'vmlinux'), 'paths are stored canonical');
    for (const vmId of [id, other]) assert.equal((await agent.call('DELETE', `/agent/v1/vms/${vmId}`)).status, 200);
  });
});
