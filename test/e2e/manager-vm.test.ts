import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { existsSync, mkdirSync, readFileSync, symlinkSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { promisify } from 'node:util';
import { tapNameOf, vmNetnsNameOf } from '../../src/contracts/host-names.js';
import { readLink } from '../../src/agent/host/net/ip-command.js';
import { endGuests } from '../support/guest-teardown.js';
import { guestVm } from '../support/guest-host.js';
import { type AgentHarness, startAgentProcess } from '../support/agent-harness.js';
import { assertErrorContract } from '../support/error-contract.js';
import { testGuestImage } from '../support/guest-image.js';
import { eventually, isAlive } from '../support/nexus-process.js';
import { testBridgeCidr, testBridgeName, testVmId } from '../support/net-names.js';
import { tempDir } from '../support/temp-dir.js';
import { type TestManager, send, startTestManager } from '../support/test-manager.js';

const run = promisify(execFile);

/** The walking skeleton: a real guest created, stopped and deleted through the manager's API. */
describe('VM lifecycle through the manager', () => {
  const dir = tempDir('nexus-manager-vm-');
  const runDir = join(dir.path, 'run');
  const bridge = testBridgeName();
  let manager: TestManager;
  let agent: AgentHarness;
  let images: string;

  before(async () => {
    const image = await testGuestImage();
    mkdirSync(runDir, { recursive: true });
    symlinkSync(join(image.dir, '..'), join(runDir, 'images'));
    images = join(runDir, 'images', image.manifest.name);
    // Heartbeats every second with a 10 s timeout: a loaded machine never makes a live host look
    // unreachable. A 5 s grace: a VM folder an ensure is still filling is never taken for a leftover.
    manager = await startTestManager({ resyncMs: 1000, orphanGraceMs: 5000, heartbeatTimeoutMs: 10_000, heartbeatIntervalMs: 1000 });
    const token = (await manager.hosts.mintJoinToken(600)).token;
    agent = await startAgentProcess(runDir, agentEnv(token), manager.url);
    await eventually('the host is ready', async () => (await manager.hosts.list()).some((host) => host.status === 'ready'));
  });

  after(async () => {
    // Whatever a failed test left: delete through the manager, stop the agent, sweep what still runs.
    await endGuests(manager?.url, agent, runDir, agentEnv());
    await manager?.dispose();
    await run('ip', ['link', 'del', 'dev', bridge]).catch(() => undefined);
    dir.remove();
  });

  const url = (path: string) => `${manager.url}${path}`;
  const cidr = testBridgeCidr();
  const agentEnv = (token?: string) => ({ NEXUS_BRIDGE: bridge, NEXUS_BRIDGE_CIDR: cidr, NEXUS_NAT: 'off', ...(token ? { NEXUS_JOIN_TOKEN: token } : {}) });
  const stateOf = async (id: string) => (await send(url(`/v1/vms/${id}`))).body.state as string;
  const create = (name: string, extra: Record<string, unknown> = {}) => send(url('/v1/vms'), { body: guestVm(images, name, extra) });

  it('create -> running with the boot marker; stop -> stopping, stopped; delete -> gone on the host too', async () => {
    const created = await create('web-1');
    assert.equal(created.status, 201, JSON.stringify(created.body));
    const id = created.body.id;
    assert.equal(created.body.desired_state, 'running');

    await eventually('the VM is running', async () => (await send(url(`/v1/vms/${id}`))).body.state === 'running', 30_000);
    const vm = (await send(url(`/v1/vms/${id}`))).body;
    assert.ok(vm.host_id);
    assert.equal(vm.tap, vmNetnsNameOf(id), 'on its default network: the veth to its namespace');
    assert.equal(vm.console_log, join(runDir, 'vms', id, 'logs', 'console.log'));
    assert.equal(vm.driver, 'qemu');
    assert.equal(vm.api_socket, join(runDir, 'vms', id, 'sock', 'qmp.sock'));
    await eventually('the boot marker', () => existsSync(vm.console_log) && readFileSync(vm.console_log, 'utf8').includes('NEXUS_BOOT_OK'), 90_000);

    const stop = await send(url(`/v1/vms/${id}/stop?wait=60`), { method: 'POST' });
    assert.equal(stop.status, 200, JSON.stringify(stop.body));
    assert.equal((await send(url(`/v1/vms/${id}`))).body.state, 'stopped');
    const states = (await send(url(`/v1/vms/${id}/events`))).body.items.map((event: { to_state: string }) => event.to_state);
    assert.ok(states.indexOf('stopping') >= 0 && states.indexOf('stopping') < states.lastIndexOf('stopped'), states.join(' -> '));
    assert.ok(states.includes('starting') && states.includes('running'));

    const deleted = await send(url(`/v1/vms/${id}?wait=60`), { method: 'DELETE' });
    assert.equal(deleted.status, 200, JSON.stringify(deleted.body));
    assertErrorContract(await send(url(`/v1/vms/${id}`)), 404, 'not_found');
    assertErrorContract(await agent.call('GET', `/agent/v1/vms/${id}`), 404, 'not_found');
    assert.equal(await readLink(vmNetnsNameOf(id)), undefined, 'veth gone');
    assert.equal(existsSync(`/run/netns/${vmNetnsNameOf(id)}`), false, 'namespace gone');
    assert.equal(existsSync(join(runDir, 'vms', id)), false, 'run dir and sockets gone');
  });

  it('create, boot, stop and delete 6 times with real guests: every one runs, nothing leaks', async () => {
    for (let i = 0; i < 6; i++) {
      const created = await create(`cycle-${i}`, { ...(i % 2 ? { nic: false } : {}) });
      assert.equal(created.status, 201, JSON.stringify(created.body));
      const id = created.body.id;
      await eventually(`cycle ${i} runs`, async () => (await stateOf(id)) === 'running', 30_000);
      const consoleLog = join(runDir, 'vms', id, 'logs', 'console.log');
      await eventually(`cycle ${i} boots`, () => existsSync(consoleLog) && readFileSync(consoleLog, 'utf8').includes('NEXUS_BOOT_OK'), 60_000);
      assert.equal((await send(url(`/v1/vms/${id}/stop?wait=60`), { method: 'POST' })).status, 200);
      assert.equal((await send(url(`/v1/vms/${id}?wait=60`), { method: 'DELETE' })).status, 200);
      assert.equal(existsSync(join(runDir, 'vms', id)), false);
      for (const device of [tapNameOf(id), vmNetnsNameOf(id)]) assert.equal(await readLink(device), undefined, `${device} gone`);
      assert.equal(existsSync(`/run/netns/${vmNetnsNameOf(id)}`), false, 'namespace gone');
    }
    const inventory = (await agent.call('GET', '/agent/v1/inventory')).body;
    assert.deepEqual(inventory.vms, []);
    assert.deepEqual(inventory.orphans, { dirs: [], taps: [], processes: [], sockets: [] });
  });

  it('restarts a guest whose VMM was killed while it should run', async () => {
    const created = await create('crashy-1');
    const id = created.body.id;
    await eventually('running', async () => (await send(url(`/v1/vms/${id}`))).body.state === 'running', 30_000);
    const pid = (await agent.call('GET', `/agent/v1/vms/${id}`)).body.pid;
    process.kill(pid, 'SIGKILL');
    await eventually(
      'a new VMM runs',
      async () => {
        const now = (await agent.call('GET', `/agent/v1/vms/${id}`)).body;
        return now.state === 'running' && now.pid !== pid;
      },
      30_000,
    );
    assert.ok(!isAlive(pid));
    const events = (await send(url(`/v1/vms/${id}/events`))).body.items.map((event: { message: string }) => event.message);
    assert.ok(
      events.some((message: string) => /VMM exited while the VM should run/.test(message)),
      events.join('\n'),
    );
    assert.equal((await send(url(`/v1/vms/${id}?wait=60`), { method: 'DELETE' })).status, 200);
  });

  it('a stop cut short by the agent crashing completes when the agent returns', async () => {
    // The guest's init is `sleep` (no acpid): it never answers the power button, however far it
    // has booted, so each stop waits out its 10 s before QEMU is told to quit. Kill the agent then.
    const id = (await create('half-stopped-1', { boot_args: 'console=ttyS0 reboot=t panic=1 rdinit=/bin/sleep 86400' })).body.id;
    await eventually('running', async () => (await stateOf(id)) === 'running', 30_000);
    const pid = (await agent.call('GET', `/agent/v1/vms/${id}`)).body.pid;
    assert.equal((await send(url(`/v1/vms/${id}/stop`), { method: 'POST' })).status, 200);
    await eventually('stopping', async () => (await stateOf(id)) === 'stopping', 30_000);
    agent.process.child.kill('SIGKILL');
    await agent.process.exited;
    assert.ok(isAlive(pid), 'the guest outlived the agent, its stop unfinished');
    agent = await startAgentProcess(runDir, agentEnv(), manager.url);
    await eventually('stopped', async () => (await stateOf(id)) === 'stopped', 90_000);
    assert.ok(!isAlive(pid));
    assert.equal((await send(url(`/v1/vms/${id}?wait=60`), { method: 'DELETE' })).status, 200);
  });

  it('restarts a VM whose veth was deleted by hand, with a fresh namespace', async () => {
    const id = (await create('cut-1')).body.id;
    await eventually('running', async () => (await stateOf(id)) === 'running', 30_000);
    const pid = (await agent.call('GET', `/agent/v1/vms/${id}`)).body.pid;
    await run('ip', ['link', 'del', 'dev', vmNetnsNameOf(id)]);
    await eventually(
      'running again with a fresh namespace',
      async () => {
        const now = (await agent.call('GET', `/agent/v1/vms/${id}`)).body;
        return now.state === 'running' && now.pid !== pid && now.tap_present === true;
      },
      30_000,
    );
    assert.equal((await readLink(vmNetnsNameOf(id)))?.linkinfo?.info_kind, 'veth', 'the fresh veth is there');
    const messages = (await send(url(`/v1/vms/${id}/events`))).body.items.map((event: { message: string }) => event.message);
    assert.ok(
      messages.some((message: string) => /network device .* is gone from the host/.test(message)),
      messages.join('\n'),
    );
    assert.equal((await send(url(`/v1/vms/${id}?wait=60`), { method: 'DELETE' })).status, 200);
  });

  it('keeps a VM running through kill -9 of its agent: unknown while the host is unreachable, running again after', async () => {
    const id = (await create('survivor-1')).body.id;
    await eventually('running', async () => (await stateOf(id)) === 'running', 30_000);
    const pid = (await agent.call('GET', `/agent/v1/vms/${id}`)).body.pid;
    agent.process.child.kill('SIGKILL');
    await agent.process.exited;
    // Within the heartbeat timeout and one liveness sweep of it; the bound leaves room for a loaded machine.
    await eventually('the VM is unknown', async () => (await stateOf(id)) === 'unknown', 60_000);
    assert.ok(isAlive(pid), 'the guest kept running');
    agent = await startAgentProcess(runDir, agentEnv(), manager.url);
    await eventually('running again', async () => (await stateOf(id)) === 'running', 60_000);
    assert.equal((await agent.call('GET', `/agent/v1/vms/${id}`)).body.pid, pid, 'the same VMM, re-adopted');
    assert.equal((await send(url(`/v1/vms/${id}?wait=60`), { method: 'DELETE' })).status, 200);
  });

  it('collects leftovers that belong to no VM after the grace period, and nothing else', async (t) => {
    const keeper = (await create('keeper-1', { desired_state: 'stopped' })).body.id;
    await eventually('the keeper is configured', async () => ['configured', 'stopped'].includes(await stateOf(keeper)), 30_000);
    const strayTap = tapNameOf(testVmId());
    await run('ip', ['tuntap', 'add', 'dev', strayTap, 'mode', 'tap']);
    // A VM namespace of no VM, as a crash mid-create leaves it: its record made, the namespace too.
    const strayNetns = vmNetnsNameOf(testVmId());
    mkdirSync(join(runDir, 'net', 'vms', strayNetns), { recursive: true });
    await run('ip', ['netns', 'add', strayNetns]);
    // A namespace this agent has no record of: another agent's on this host, never collected.
    const foreignNetns = vmNetnsNameOf(testVmId());
    await run('ip', ['netns', 'add', foreignNetns]);
    t.after(() => run('ip', ['netns', 'del', foreignNetns]));
    const strayDir = join(runDir, 'vms', 'left-behind');
    mkdirSync(strayDir, { recursive: true });
    const unknownVm = testVmId();
    const ensured = await agent.call('PUT', `/agent/v1/vms/${unknownVm}`, {
      vcpu: 1,
      mem_mib: 128,
      kernel: { path: join(images, 'vmlinux'), cmdline: 'console=ttyS0 root=/dev/vda rw' },
      initrd: { path: join(images, 'initrd.img') },
      drives: [{ id: 'rootfs', path: join(images, 'rootfs.ext4'), is_root: true }],
      nics: [{}],
    });
    assert.equal(ensured.status, 200);
    await eventually(
      'the leftovers are gone',
      async () =>
        (await readLink(strayTap)) === undefined &&
        !existsSync(`/run/netns/${strayNetns}`) &&
        !existsSync(strayDir) &&
        !existsSync(join(runDir, 'vms', unknownVm)) &&
        (await readLink(tapNameOf(unknownVm))) === undefined,
      60_000,
    );
    assert.equal((await agent.call('GET', `/agent/v1/vms/${keeper}`)).status, 200, 'a VM the manager knows is kept');
    assert.ok(existsSync(`/run/netns/${foreignNetns}`), "another agent's namespace is kept");
    const metrics = (await send(url('/metrics'))).body as string;
    for (const kind of ['vm', 'tap', 'dir']) assert.match(metrics, new RegExp(`nexus_manager_orphans_removed_total\\{kind="${kind}"\\} [1-9]`));
    assert.equal((await send(url(`/v1/vms/${keeper}?wait=30`), { method: 'DELETE' })).status, 200);
  });

  it('an ephemeral VM (ttl_seconds) is stopped and deleted when it expires', async () => {
    const created = await create('ephemeral-1', { ttl_seconds: 10 });
    assert.equal(created.status, 201);
    const id = created.body.id;
    assert.ok(Date.parse(created.body.expires_at) > Date.now());
    await eventually('running', async () => (await stateOf(id)) === 'running', 30_000);
    await eventually('gone', async () => (await send(url(`/v1/vms/${id}`))).status === 404, 30_000);
    assert.equal(existsSync(join(runDir, 'vms', id)), false);
  });

  describe('bad input and impossible transitions', () => {
    it('a duplicate name -> 409', async () => {
      const first = await create('dup-1', { desired_state: 'stopped' });
      assert.equal(first.status, 201);
      assertErrorContract(await create('dup-1'), 409, 'conflict');
      assert.equal((await send(url(`/v1/vms/${first.body.id}?wait=30`), { method: 'DELETE' })).status, 200);
    });
    it('out-of-range vcpu and mem_mib, bad names and unknown fields -> 400', async () => {
      assertErrorContract(await create('cpu-0', { vcpu: 0 }), 400, 'validation_failed');
      assertErrorContract(await create('cpu-33', { vcpu: 33 }), 400, 'validation_failed');
      assertErrorContract(await create('mem-small', { mem_mib: 64 }), 400, 'validation_failed');
      assertErrorContract(await create('Bad_Name'), 400, 'validation_failed');
      assertErrorContract(await create('extra', { colour: 'red' }), 400, 'validation_failed');
      assertErrorContract(await create('ttl-short', { ttl_seconds: 1 }), 400, 'validation_failed');
    });
    it('more memory than any host has -> 400 naming the largest', async () => {
      const response = await create('huge', { mem_mib: 1024 * 1024 });
      assertErrorContract(response, 400, 'validation_failed');
      assert.match(response.body.fault_message, /more than the largest host has/);
    });
    it('pause a stopped VM -> 409 with the state and a suggestion; resume a stopped one too', async () => {
      const vm = (await create('idle-1', { desired_state: 'stopped' })).body;
      await eventually('configured', async () => ['configured', 'stopped'].includes((await send(url(`/v1/vms/${vm.id}`))).body.state), 30_000);
      for (const action of ['pause', 'resume']) {
        const response = await send(url(`/v1/vms/${vm.id}/${action}`), { method: 'POST' });
        assertErrorContract(response, 409, 'conflict');
        assert.match(response.body.fault_message, /\(state (configured|stopped), desired stopped\)/);
        assert.ok(response.body.suggestion);
      }
      assertErrorContract(await send(url(`/v1/vms/${vm.id}/reboot`), { method: 'POST' }), 400, 'validation_failed');
      assert.equal((await send(url(`/v1/vms/${vm.id}?wait=30`), { method: 'DELETE' })).status, 200);
    });
    it('unknown ids -> 404, deleting one too (a retried delete that already won reads it as done)', async () => {
      const unknown = '00000000-0000-4000-8000-000000000000';
      assertErrorContract(await send(url(`/v1/vms/${unknown}`)), 404, 'not_found');
      assertErrorContract(await send(url(`/v1/vms/${unknown}/start`), { method: 'POST' }), 404, 'not_found');
      assertErrorContract(await send(url(`/v1/vms/${unknown}`), { method: 'DELETE' }), 404, 'not_found');
    });
    it("a kernel outside the agent allow-list fails the VM with the agent's reason", async () => {
      const vm = (await create('outside-1', { kernel_path: '/etc/hostname' })).body;
      await eventually('failed', async () => (await send(url(`/v1/vms/${vm.id}`))).body.state === 'failed', 30_000);
      const failed = (await send(url(`/v1/vms/${vm.id}`))).body;
      assert.equal(failed.last_error.reason, 'forbidden');
      assert.match(failed.last_error.message, /outside the allowed roots/);
      assert.equal((await send(url(`/v1/vms/${vm.id}?wait=30`), { method: 'DELETE' })).status, 200);
    });
  });

  it('lists with filters and a cursor', async () => {
    const ids: string[] = [];
    for (const name of ['list-a', 'list-b', 'list-c']) ids.push((await create(name, { desired_state: 'stopped' })).body.id);
    const page1 = (await send(url('/v1/vms?name_prefix=list-&limit=2'))).body;
    assert.deepEqual(
      page1.items.map((vm: { name: string }) => vm.name),
      ['list-a', 'list-b'],
    );
    const page2 = (await send(url(`/v1/vms?name_prefix=list-&limit=2&cursor=${page1.next_cursor}`))).body;
    assert.deepEqual(
      page2.items.map((vm: { name: string }) => vm.name),
      ['list-c'],
    );
    assert.equal(page2.next_cursor, null);
    for (const id of ids) await send(url(`/v1/vms/${id}?wait=30`), { method: 'DELETE' });
  });
});
