import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { type HostLoad, placeVm } from '../../../src/manager/scheduler/placement.js';

const host = (name: string, memoryMib: number, allocatedMemoryMib = 0, vcpus = 2, allocatedVcpus = 0): HostLoad => ({
  hostId: `id-${name}`,
  name,
  vcpus,
  memoryMib,
  allocatedVcpus,
  allocatedMemoryMib,
});

describe('placeVm', () => {
  it('places a VM that publishes ports only where all of them are free, and says who holds them when none has', () => {
    const taken = (name: string, ports: Record<string, string>) => ({ ...host(name, 4096), takenPorts: new Map(Object.entries(ports)) });
    const hosts = [taken('a', { '8080/tcp': 'VM web' }), taken('b', { '9090/tcp': 'VM api' }), taken('c', {})];
    assert.deepEqual(placeVm({ vcpu: 1, memMib: 128, ports: ['8080/tcp', '9090/tcp'] }, hosts, 4), { ok: true, hostId: 'id-c' });
    const none = placeVm({ vcpu: 1, memMib: 128, ports: ['8080/tcp'] }, [taken('a', { '8080/tcp': 'VM web' })], 4);
    assert.deepEqual(none, { ok: false, reason: 'port_unavailable', message: 'no ready host has every port it publishes free: 8080/tcp by VM web on a' });
    assert.equal(placeVm({ vcpu: 1, memMib: 128, ports: ['8080/udp'] }, [taken('a', { '8080/tcp': 'VM web' })], 4).ok, true, 'another protocol');
  });

  it('spreads to the least loaded host that fits', () => {
    const placed = placeVm({ vcpu: 1, memMib: 512 }, [host('a', 4096, 3000), host('b', 4096, 1000), host('c', 1024, 0)], 4);
    assert.deepEqual(placed, { ok: true, hostId: 'id-b' });
  });
  it('treats memory as a hard cap', () => {
    assert.equal(placeVm({ vcpu: 1, memMib: 1025 }, [host('a', 2048, 1024)], 4).ok, false);
    assert.deepEqual(placeVm({ vcpu: 1, memMib: 1024 }, [host('a', 2048, 1024)], 4), { ok: true, hostId: 'id-a' });
  });
  it('overcommits vCPUs up to the ratio and no further', () => {
    assert.equal(placeVm({ vcpu: 1, memMib: 128 }, [host('a', 8192, 0, 2, 8)], 4).ok, false);
    assert.equal(placeVm({ vcpu: 1, memMib: 128 }, [host('a', 8192, 0, 2, 7)], 4).ok, true);
  });
  it('says no_capacity and names the biggest free host', () => {
    const placed = placeVm({ vcpu: 1, memMib: 4096 }, [host('small', 2048, 1024), host('big', 3072, 0)], 4);
    assert.equal(placed.ok, false);
    if (!placed.ok) {
      assert.equal(placed.reason, 'no_capacity');
      assert.match(placed.message, /biggest free host is big with 3072 MiB/);
    }
    const none = placeVm({ vcpu: 1, memMib: 128 }, [], 4);
    assert.ok(!none.ok && /no host is ready/.test(none.message));
  });
  it('goes only where every image the VM names is, and says which image no host holds', () => {
    const holding = (load: HostLoad, ...ids: string[]): HostLoad => ({ ...load, imageIds: new Set(ids) });
    const hosts = [holding(host('a', 4096), 'k1', 'r1'), holding(host('b', 8192), 'k1'), holding(host('c', 8192), 'k2', 'r1')];
    assert.deepEqual(placeVm({ vcpu: 1, memMib: 128, imageIds: ['k1', 'r1'] }, hosts, 4), { ok: true, hostId: 'id-a' }, 'a holds both, though b is emptier');
    assert.deepEqual(placeVm({ vcpu: 1, memMib: 128, imageIds: ['k1'] }, hosts, 4), { ok: true, hostId: 'id-b' });
    const nowhere = placeVm({ vcpu: 1, memMib: 128, imageIds: ['k1', 'r9'] }, hosts, 4);
    assert.deepEqual(nowhere, { ok: false, reason: 'image_unavailable', message: 'no ready host holds image r9' });
    const apart = placeVm({ vcpu: 1, memMib: 128, imageIds: ['k2', 'k1'] }, hosts, 4);
    assert.ok(!apart.ok && apart.reason === 'image_unavailable' && /all of images k2, k1 at once/.test(apart.message));
    const full = placeVm({ vcpu: 1, memMib: 8192, imageIds: ['k1', 'r1'] }, hosts, 4);
    assert.ok(!full.ok && full.reason === 'no_capacity', 'holders without room: no_capacity');
    assert.ok(!placeVm({ vcpu: 1, memMib: 128, imageIds: ['k1'] }, [], 4).ok);
  });
});
