import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { existsSync, mkdirSync, readFileSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import { type GuestHost, startGuestHost } from '../support/guest-host.js';
import { assertErrorContract } from '../support/error-contract.js';
import { eventually, isAlive } from '../support/nexus-process.js';
import { send } from '../support/test-manager.js';

const run = promisify(execFile);

/** Snapshots through the manager's API, of real guests on a real agent. */
describe('snapshots through the manager', () => {
  let host: GuestHost;

  before(async () => {
    // A short grace: the snapshot folder left without a row is collected within the test.
    host = await startGuestHost({ manager: { orphanGraceMs: 3000 } });
  });
  after(async () => {
    await host?.close();
  });

  const url = (path: string) => `${host.manager.url}${path}`;
  const consoleOf = (id: string) => {
    try {
      return readFileSync(join(host.runDir, 'vms', id, 'logs', 'console.log'), 'utf8');
    } catch {
      return '';
    }
  };
  const lastCounter = (id: string) => {
    const matches = [...consoleOf(id).matchAll(/NEXUS_COUNTER (\d+)/g)];
    return matches.length ? Number(matches.at(-1)?.[1]) : -1;
  };
  const folderOf = (snapshotId: string) => join(host.runDir, 'snapshots', snapshotId);
  const snapshot = async (vmId: string, body: Record<string, unknown>) => {
    const taken = await send(url(`/v1/vms/${vmId}/snapshots`), { body });
    assert.equal(taken.status, 201, JSON.stringify(taken.body));
    return taken.body;
  };

  it("makes a clone that goes on from the snapshot's counter while the original counts on; each answers a ping at its own address", async () => {
    const made = await send(url('/v1/vms?wait=60'), { body: host.guest('origin') });
    assert.equal(made.status, 201, JSON.stringify(made.body));
    const origin = made.body;
    await eventually('the original counts', () => lastCounter(origin.id) >= 2, 90_000);
    const before = lastCounter(origin.id);
    const snapshotOf = await snapshot(origin.id, { name: 'origin-warm' });
    const after = lastCounter(origin.id);

    const instantiated = await send(url(`/v1/snapshots/${snapshotOf.id}/instantiate?wait=60`), { body: { name: 'clone', tags: { from: 'origin-warm' } } });
    assert.equal(instantiated.status, 201, JSON.stringify(instantiated.body));
    const clone = instantiated.body;
    assert.equal(clone.state, 'running', 'restored and running');
    assert.equal(clone.snapshot_id, snapshotOf.id);
    assert.equal(clone.host_id, origin.host_id);
    assert.equal(clone.addresses[0].network_id, origin.addresses[0].network_id, 'on the same network');
    assert.notEqual(clone.addresses[0].ip, origin.addresses[0].ip, 'at an address of its own');

    await eventually('the clone counts', () => lastCounter(clone.id) > 0, 30_000);
    const cloneConsole = consoleOf(clone.id);
    const first = Number(/NEXUS_COUNTER (\d+)/.exec(cloneConsole)?.[1]);
    assert.ok(first > before && first <= after + 1, `the clone goes on from the snapshot (${before}..${after}), not from a boot: it printed ${first} first`);
    assert.ok(!cloneConsole.includes('NEXUS_BOOT_OK'), 'it did not boot');
    const [cloneAt, originAt] = [lastCounter(clone.id), lastCounter(origin.id)];
    await eventually('both count on', () => lastCounter(clone.id) > cloneAt && lastCounter(origin.id) > originAt, 30_000);

    for (const [who, ip] of [
      ['the clone', clone.addresses[0].ip],
      ['the original', origin.addresses[0].ip],
    ]) {
      await eventually(`${who} answers a ping at ${ip}`, () =>
        run('busybox', ['ping', '-c', '1', '-W', '2', ip]).then(
          () => true,
          () => false,
        ),
      );
    }

    assert.equal((await send(url(`/v1/vms/${clone.id}?wait=60`), { method: 'DELETE' })).status, 200);
    assert.equal((await send(url(`/v1/vms/${origin.id}?wait=60`), { method: 'DELETE' })).status, 200);
    assertErrorContract(await send(url(`/v1/snapshots/${snapshotOf.id}`)), 404, 'not_found');
    const inventory = (await host.agent.call('GET', '/agent/v1/inventory')).body;
    assert.deepEqual([inventory.vms, inventory.snapshots], [[], []], 'nothing of either is left on the host');
  });

  it('hibernates and wakes a guest ten times in a row: no VMM while it sleeps, its counter goes on, each wake an event', async () => {
    const made = await send(url('/v1/vms?wait=60'), { body: host.guest('sleeper') });
    assert.equal(made.status, 201, JSON.stringify(made.body));
    const id = made.body.id as string;
    await eventually('the guest counts', () => lastCounter(id) >= 1, 90_000);
    for (let cycle = 1; cycle <= 10; cycle++) {
      const pid = (await host.agent.call('GET', `/agent/v1/vms/${id}`)).body.pid as number;
      const slept = await send(url(`/v1/vms/${id}/hibernate?wait=60`), { method: 'POST' });
      assert.equal(slept.status, 200, `cycle ${cycle}: ${JSON.stringify(slept.body)}`);
      assert.equal((await send(url(`/v1/vms/${id}`))).body.state, 'hibernated');
      const onHost = (await host.agent.call('GET', `/agent/v1/vms/${id}`)).body;
      assert.deepEqual([onHost.state, onHost.pid], ['hibernated', null], `cycle ${cycle}: no VMM`);
      assert.equal(isAlive(pid), false, `cycle ${cycle}: its VMM process ${pid} is gone, its memory back with the host`);
      const asleepAt = lastCounter(id);
      const woke = await send(url(`/v1/vms/${id}/wake?wait=60`), { method: 'POST' });
      assert.equal(woke.status, 200, `cycle ${cycle}: ${JSON.stringify(woke.body)}`);
      assert.equal((await send(url(`/v1/vms/${id}`))).body.state, 'running');
      await eventually(`cycle ${cycle}: the counter goes on from ${asleepAt}`, () => lastCounter(id) > asleepAt, 30_000);
      assert.ok(lastCounter(id) <= asleepAt + 5, `cycle ${cycle}: it went on from where it was (${asleepAt} -> ${lastCounter(id)}), not from a boot`);
    }
    assert.equal(consoleOf(id).split('NEXUS_BOOT_OK').length - 1, 1, 'booted once, ten wakes ago');
    const wakes = (await send(url(`/v1/vms/${id}/events`))).body.items.filter((event: { message: string }) =>
      /^woke from hibernation in \d+ ms( \(\d+ ms after it was asked\))?$/.test(event.message),
    );
    assert.equal(wakes.length, 10, 'each wake is an event saying how long it took');
    assertErrorContract(await send(url(`/v1/vms/${randomUUID()}/hibernate`), { method: 'POST' }), 404, 'not_found');
    assert.equal((await send(url(`/v1/vms/${id}?wait=60`), { method: 'DELETE' })).status, 200);
  });

  it('captures running guests that count on; catalogs, deletes, keeps with ?keep_snapshots, collects leftovers', async () => {
    // Two guests booting side by side: one whose snapshots are kept past it, one whose go with it.
    const made = await Promise.all(['keeper', 'goner'].map((name) => send(url('/v1/vms?wait=60'), { body: host.guest(name, { nic: false }) })));
    for (const each of made) assert.equal(each.status, 201, JSON.stringify(each.body));
    const [keeper, goner] = made.map((each) => each.body.id as string) as [string, string];
    await eventually('both guests count', () => lastCounter(keeper) >= 1 && lastCounter(goner) >= 1, 90_000);

    const warm = await snapshot(keeper, { name: 'warm' });
    assert.equal(warm.status, 'ready', 'answered once whole');
    assert.equal(warm.vm_id, keeper);
    assert.equal(warm.vm_name, 'keeper');
    assert.equal(warm.driver, 'qemu');
    assert.deepEqual(
      warm.files.map((file: { kind: string; drive_id?: string; path: string }) => [file.kind, file.drive_id ?? null, file.path]),
      [
        ['state', null, join(folderOf(warm.id), 'state.bin')],
        ['drive', 'rootfs', join(folderOf(warm.id), 'drive-rootfs.img')],
      ],
      'its memory and state, and a private copy of the writable disk, on its host',
    );
    for (const file of warm.files) assert.equal(file.size_bytes, statSync(file.path).size, `${file.kind}: its size as on disk`);
    assert.equal(
      warm.size_bytes,
      warm.files.reduce((sum: number, file: { size_bytes: number }) => sum + file.size_bytes, 0),
    );
    assert.ok(warm.size_bytes > 1024 * 1024, 'guest memory is in it');
    const at = lastCounter(keeper);
    await eventually('the guest counts on after the capture', () => lastCounter(keeper) > at, 30_000);
    assert.equal((await send(url(`/v1/vms/${keeper}`))).body.state, 'running');

    // The catalog.
    assert.deepEqual((await send(url(`/v1/snapshots/${warm.id}`))).body, warm);
    assert.deepEqual(
      (await send(url(`/v1/vms/${keeper}/snapshots`))).body.items.map((each: { id: string }) => each.id),
      [warm.id],
    );
    const named = await snapshot(goner, {});
    assert.equal(named.name, `goner-${named.id.slice(0, 8)}`, 'named after its VM when no name is given');
    assert.deepEqual(
      (await send(url('/v1/snapshots'))).body.items.map((each: { id: string }) => each.id),
      [named.id, warm.id],
      'newest first',
    );
    assert.deepEqual(
      (await send(url(`/v1/snapshots?vm_id=${goner}`))).body.items.map((each: { id: string }) => each.id),
      [named.id],
    );

    // Refusals, each in the error contract, none leaving anything behind.
    assertErrorContract(await send(url(`/v1/vms/${keeper}/snapshots`), { body: { name: 'warm' } }), 409, 'conflict');
    for (const bad of [{ name: 'Not_A_Label' }, { resume: 'yes' }, { name: 'x', extra: 1 }]) {
      assertErrorContract(await send(url(`/v1/vms/${keeper}/snapshots`), { body: bad }), 400, 'validation_failed');
    }
    assertErrorContract(await send(url('/v1/vms/not-a-uuid/snapshots'), { body: {} }), 400, 'validation_failed');
    assertErrorContract(await send(url(`/v1/vms/${randomUUID()}/snapshots`), { body: {} }), 404, 'not_found');
    assertErrorContract(await send(url('/v1/snapshots/not-a-uuid')), 400, 'validation_failed');
    assertErrorContract(await send(url(`/v1/snapshots/${randomUUID()}`)), 404, 'not_found');
    assertErrorContract(await send(url(`/v1/snapshots?vm_id=nope`)), 400, 'validation_failed');
    assert.equal((await send(url('/v1/projects'), { body: { name: 'snapshot-other' } })).status, 201);
    const minted = await send(url('/v1/tokens'), { body: { owner: 'snapshot-other-op', role: 'operator', project: 'snapshot-other' } });
    const stranger = { authorization: `Bearer ${minted.body.token}` };
    assertErrorContract(await send(url(`/v1/snapshots/${warm.id}`), { headers: stranger }), 404, 'not_found');
    assertErrorContract(await send(url(`/v1/snapshots/${warm.id}`), { method: 'DELETE', headers: stranger }), 404, 'not_found');
    assertErrorContract(await send(url(`/v1/vms/${keeper}/snapshots`), { body: {}, headers: stranger }), 404, 'not_found');
    assert.deepEqual((await send(url('/v1/snapshots'), { headers: stranger })).body.items, [], "another project's snapshots are not listed");

    // resume: false stops the guest once captured, and it stays stopped; a stopped VM is not snapshotted.
    const cold = await snapshot(keeper, { name: 'cold', resume: false });
    assert.equal(cold.status, 'ready');
    const stopped = (await send(url(`/v1/vms/${keeper}`))).body;
    assert.equal(stopped.desired_state, 'stopped', 'wanted stopped, so nothing starts it again');
    await eventually('the VM is seen stopped', async () => (await send(url(`/v1/vms/${keeper}`))).body.state === 'stopped', 30_000);
    assertErrorContract(await send(url(`/v1/vms/${keeper}/snapshots`), { body: {} }), 409, 'conflict');
    assert.deepEqual(
      (await send(url(`/v1/vms/${keeper}/snapshots`))).body.items.map((each: { name: string }) => each.name),
      ['cold', 'warm'],
      'the refusals made no snapshot',
    );

    // The audit names each snapshot taken and deleted.
    const deleted = await send(url(`/v1/snapshots/${warm.id}`), { method: 'DELETE' });
    assert.equal(deleted.status, 200, JSON.stringify(deleted.body));
    assert.equal(existsSync(folderOf(warm.id)), false, 'its files went with it');
    assertErrorContract(await send(url(`/v1/snapshots/${warm.id}`)), 404, 'not_found');
    assertErrorContract(await send(url(`/v1/snapshots/${warm.id}`), { method: 'DELETE' }), 404, 'not_found');
    const audit = (await send(url('/v1/audit?limit=1000'))).body.items as Array<{
      action: string;
      resource_id: string;
      result: string;
      after: { id?: string };
    }>;
    assert.ok(
      audit.some((row) => row.action === 'snapshot.create' && row.resource_id === keeper && row.after.id === warm.id && row.result === 'success'),
      "the snapshot's creation is audited under its VM, naming it",
    );
    assert.ok(
      audit.some((row) => row.action === 'snapshot.delete' && row.resource_id === warm.id && row.result === 'success'),
      'its deletion is audited',
    );

    // Deleting a VM deletes its snapshots, unless they are to be kept.
    assert.equal((await send(url(`/v1/vms/${goner}?wait=60`), { method: 'DELETE' })).status, 200);
    assertErrorContract(await send(url(`/v1/snapshots/${named.id}`)), 404, 'not_found');
    assert.equal(existsSync(folderOf(named.id)), false, "the goner's snapshot files are gone");
    assert.equal((await send(url(`/v1/vms/${keeper}?wait=60&keep_snapshots=true`), { method: 'DELETE' })).status, 200);
    const kept = await send(url(`/v1/snapshots/${cold.id}`));
    assert.equal(kept.status, 200, 'a kept snapshot outlives its VM');
    assert.equal(kept.body.vm_id, keeper, 'and still names the VM it was of');
    assert.ok(existsSync(join(folderOf(cold.id), 'snapshot.json')), 'its files are kept on the host');
    assertErrorContract(await send(url(`/v1/vms/${keeper}/snapshots`)), 404, 'not_found');

    // Files a host keeps without a row (a take whose answer was lost) are collected.
    const stray = randomUUID();
    mkdirSync(folderOf(stray), { recursive: true });
    await eventually('the stray snapshot folder is collected', () => !existsSync(folderOf(stray)), 30_000);
    assert.ok(existsSync(folderOf(cold.id)), 'a snapshot with a row is left alone');

    assert.equal((await send(url(`/v1/snapshots/${cold.id}`), { method: 'DELETE' })).status, 200);
    assert.deepEqual((await host.agent.call('GET', '/agent/v1/inventory')).body.snapshots, [], 'nothing is left on the host');
  });
});

/** A snapshot the disk cannot hold, on a run dir of 96 MiB (a tmpfs of its own) and a guest of 128 MiB. */
describe('a snapshot on a disk too small for it', () => {
  let host: GuestHost;

  before(async () => {
    host = await startGuestHost({ runDirMib: 96 });
  });
  after(async () => {
    await host?.close();
  });

  it('is refused with a 507 that says what filled up; the guest runs on, nothing is left', async () => {
    const url = (path: string) => `${host.manager.url}${path}`;
    const created = await send(url('/v1/vms?wait=60'), { body: host.guest('cramped', { nic: false }) });
    assert.equal(created.status, 201, JSON.stringify(created.body));
    const id = created.body.id as string;
    const consoleLog = join(host.runDir, 'vms', id, 'logs', 'console.log');
    const counter = () => {
      const matches = [...(existsSync(consoleLog) ? readFileSync(consoleLog, 'utf8') : '').matchAll(/NEXUS_COUNTER (\d+)/g)];
      return matches.length ? Number(matches.at(-1)?.[1]) : -1;
    };
    await eventually('the guest counts', () => counter() >= 1, 90_000);

    const refused = await send(url(`/v1/vms/${id}/snapshots`), { body: { name: 'too-big' } });
    assertErrorContract(refused, 507, 'insufficient_storage');
    assert.match(
      refused.body.fault_message,
      new RegExp(`the disk holding ${host.runDir}/snapshots has \\d+ MiB free; a snapshot of VM ${id} may need \\d+ MiB`),
    );
    assert.match(refused.body.suggestion, /Free space/);
    const at = counter();
    await eventually('the guest counts on', () => counter() > at, 30_000);
    assert.equal((await send(url(`/v1/vms/${id}`))).body.state, 'running');
    assert.deepEqual((await send(url('/v1/snapshots'))).body.items, [], 'no row');
    assert.deepEqual((await host.agent.call('GET', '/agent/v1/inventory')).body.snapshots, [], 'no folder on the host');
  });
});
