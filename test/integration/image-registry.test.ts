// test-lane: parallel (its own managers, hollow hosts, databases, temp dirs and ports: no host network, guest, cgroup or host-wide scan)
import assert from 'node:assert/strict';
import { rmSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { assertErrorContract } from '../support/error-contract.js';
import { writeFakeImageBuild } from '../support/fake-image-build.js';
import { type HollowAgent, startHollowAgent } from '../support/hollow-agents.js';
import { eventually } from '../support/nexus-process.js';
import { tempDir } from '../support/temp-dir.js';
import { type TestManager, send, startTestManager } from '../support/test-manager.js';

interface ImageAnswer {
  id: string;
  name: string;
  kind: string;
  boot_args: string | null;
  host_ids: string[];
}

/**
 * The image registry, on a production-mode manager (images by id only) with two hollow hosts:
 * alpha holds builds `alpha` and `shared`, beta holds `beta` and the same `shared`.
 */
describe('image registry', () => {
  const dir = tempDir('nexus-images-');
  let manager: TestManager;
  const agents: HollowAgent[] = [];
  const url = (path: string) => `${manager.url}${path}`;
  let hostOf: Record<'alpha' | 'beta', string>;

  const images = async (query = ''): Promise<ImageAnswer[]> => (await send(url(`/v1/images${query}`))).body.items;
  const imageOf = async (name: string, kind: string): Promise<ImageAnswer> => {
    const found = (await images(`?name=${name}&kind=${kind}`))[0];
    assert.ok(found, `image ${name}/${kind}`);
    return found;
  };
  const idsOf = async (name: string) => ({
    kernel_image_id: (await imageOf(name, 'kernel')).id,
    initrd_image_id: (await imageOf(name, 'initrd')).id,
    rootfs_image_id: (await imageOf(name, 'rootfs')).id,
  });

  before(async () => {
    manager = await startTestManager({ mode: 'production', resyncMs: 500, heartbeatIntervalMs: 200 });
    for (const [name, builds] of [
      ['alpha', ['alpha', 'shared']],
      ['beta', ['beta', 'shared']],
    ] as const) {
      const runDir = join(dir.path, name);
      for (const build of builds) await writeFakeImageBuild(join(runDir, 'images'), build, build);
      agents.push(await startHollowAgent(manager.url, (await manager.hosts.mintJoinToken(600)).token, runDir, name));
    }
    await eventually('both hosts report their images', async () => (await images()).length === 9);
    const hosts = (await manager.hosts.list()).map((host) => [host.name, host.id]);
    hostOf = Object.fromEntries(hosts) as Record<'alpha' | 'beta', string>;
  });
  after(async () => {
    await Promise.all(agents.map((agent) => agent.agent.close()));
    await manager?.dispose();
    dir.remove();
  });

  it('lists each image once by content, with the hosts that hold it', async () => {
    const shared = await imageOf('shared', 'kernel');
    assert.deepEqual([...shared.host_ids].sort(), [hostOf.alpha, hostOf.beta].sort(), 'one image, two holders');
    assert.deepEqual((await imageOf('alpha', 'rootfs')).host_ids, [hostOf.alpha]);
    assert.equal(shared.boot_args, 'console=ttyS0 root=/dev/vda rw build=shared');
    assert.equal((await imageOf('shared', 'rootfs')).boot_args, null);
    assert.equal((await images('?kind=initrd')).length, 3);
    assert.deepEqual(await images('?name=nothing'), []);
    const one = await send(url(`/v1/images/${shared.id}`));
    assert.equal(one.status, 200);
    assert.equal(one.body.sha256.length, 64);
    assertErrorContract(await send(url('/v1/images/00000000-0000-4000-8000-000000000000')), 404, 'not_found');
    assertErrorContract(await send(url('/v1/images/not-a-uuid')), 400, 'validation_failed');
    assertErrorContract(await send(url('/v1/images?kind=floppy')), 400, 'validation_failed');
  });

  it('a VM made from images runs on a host that holds them, booting with the image boot_args', async () => {
    const created = await send(url('/v1/vms?wait=10'), { body: { name: 'from-beta', vcpu: 1, mem_mib: 128, ...(await idsOf('beta')) } });
    assert.equal(created.status, 201, JSON.stringify(created.body));
    const vm = created.body;
    assert.equal(vm.state, 'running');
    assert.equal(vm.host_id, hostOf.beta);
    assert.equal(vm.kernel_path, join(dir.path, 'beta', 'images', 'beta', 'vmlinux'), 'the path of the chosen host copy');
    assert.equal(vm.rootfs_path, join(dir.path, 'beta', 'images', 'beta', 'rootfs.ext4'));
    assert.equal(vm.boot_args, 'console=ttyS0 root=/dev/vda rw build=beta');
    const beta = agents[1];
    assert.ok(beta);
    const spec = beta.host.supervisor.processes.get(vm.id);
    assert.ok(spec, 'the hollow host runs it');

    const mine = await send(url('/v1/vms?wait=10'), {
      body: { name: 'own-args', vcpu: 1, mem_mib: 128, boot_args: 'console=ttyS0 quiet', ...(await idsOf('shared')) },
    });
    assert.equal(mine.body.state, 'running');
    assert.equal(mine.body.boot_args, 'console=ttyS0 quiet', 'given boot_args win over the image');
  });

  it('extra drives come from images too', async () => {
    const drive = (await imageOf('alpha', 'rootfs')).id;
    const created = await send(url('/v1/vms?wait=10'), {
      body: { name: 'with-data', vcpu: 1, mem_mib: 128, ...(await idsOf('shared')), extra_drives: [{ id: 'data', image_id: drive, read_only: true }] },
    });
    assert.equal(created.status, 201, JSON.stringify(created.body));
    assert.equal(created.body.state, 'running');
    assert.equal(created.body.host_id, hostOf.alpha, 'only alpha holds the data image');
  });

  it('images no single host holds together: failed with reason image_unavailable', async () => {
    const alpha = await idsOf('alpha');
    const beta = await idsOf('beta');
    const vm = (await send(url('/v1/vms'), { body: { name: 'split', vcpu: 1, mem_mib: 128, ...alpha, rootfs_image_id: beta.rootfs_image_id } })).body;
    const failed = (await send(url(`/v1/vms/${vm.id}/wait?state=failed&timeout=10`))).body;
    assert.equal(failed.last_error.reason, 'image_unavailable');
    assert.match(failed.last_error.message, /no ready host holds all of images/);
    assert.equal(failed.host_id, null);
  });

  it('bad image references: 404 for an unknown id, 400 for a wrong kind, both or neither of id and path', async () => {
    const ids = await idsOf('shared');
    const base = { vcpu: 1, mem_mib: 128, ...ids };
    const unknown = '00000000-0000-4000-8000-000000000000';
    const missing = await send(url('/v1/vms'), { body: { ...base, name: 'bad-1', kernel_image_id: unknown } });
    assertErrorContract(missing, 404, 'not_found');
    assert.match(missing.body.fault_message, /kernel_image_id: no image/);
    const wrongKind = await send(url('/v1/vms'), { body: { ...base, name: 'bad-2', kernel_image_id: ids.rootfs_image_id } });
    assertErrorContract(wrongKind, 400, 'validation_failed');
    assert.match(wrongKind.body.fault_message, /is a rootfs image, not a kernel image/);
    const driveKind = await send(url('/v1/vms'), { body: { ...base, name: 'bad-3', extra_drives: [{ id: 'data', image_id: ids.kernel_image_id }] } });
    assertErrorContract(driveKind, 400, 'validation_failed');
    assert.match(driveKind.body.fault_message, /extra_drives\[0\]\.image_id/);
    const both = await send(url('/v1/vms'), { body: { ...base, name: 'bad-4', rootfs_path: '/srv/fc/images/x/rootfs.ext4' } });
    assertErrorContract(both, 400, 'validation_failed');
    assert.match(both.body.fault_message, /rootfs_image_id or rootfs_path, not both/);
    const neither = await send(url('/v1/vms'), { body: { vcpu: 1, mem_mib: 128, name: 'bad-5', rootfs_image_id: ids.rootfs_image_id } });
    assertErrorContract(neither, 400, 'validation_failed');
    assert.match(neither.body.fault_message, /kernel_image_id is required/);
    const driveNeither = await send(url('/v1/vms'), { body: { ...base, name: 'bad-6', extra_drives: [{ id: 'data' }] } });
    assertErrorContract(driveNeither, 400, 'validation_failed');
    const rawDrive = await send(url('/v1/vms'), { body: { ...base, name: 'bad-7', extra_drives: [{ id: 'data', path: '/srv/fc/d.img' }] } });
    assertErrorContract(rawDrive, 403, 'forbidden');
    assert.match(rawDrive.body.fault_message, /extra_drives\[0\]\.path: raw host paths are accepted in dev mode only/);
    assertErrorContract(await send(url('/v1/vms'), { body: { ...base, name: 'bad-8', initrd_image_id: 'nope' } }), 400, 'validation_failed');
    const names = (await send(url('/v1/vms?name_prefix=bad-'))).body.items;
    assert.deepEqual(names, [], 'no refused create left a VM behind');
  });

  it('a build removed from a host stops being placed there', async () => {
    const kernel = await imageOf('alpha', 'kernel');
    rmSync(join(dir.path, 'alpha', 'images', 'alpha'), { recursive: true });
    await eventually('alpha no longer holds its build', async () => (await imageOf('alpha', 'kernel')).host_ids.length === 0);
    const vm = (await send(url('/v1/vms'), { body: { name: 'gone-build', vcpu: 1, mem_mib: 128, ...(await idsOf('alpha')) } })).body;
    assert.equal(vm.kernel_image_id, kernel.id, 'the registry keeps the image: its id still means the same bytes');
    const failed = (await send(url(`/v1/vms/${vm.id}/wait?state=failed&timeout=10`))).body;
    assert.equal(failed.last_error.reason, 'image_unavailable');
    assert.match(failed.last_error.message, new RegExp(`no ready host holds image ${kernel.id}`));
  });
});
