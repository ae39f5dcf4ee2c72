import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import type { MachineSpec } from '../../../src/contracts/machine-spec.js';
import {
  FIRECRACKER_API_VERSIONS,
  FIRECRACKER_LOG_LEVELS,
  type FirecrackerRequest,
  configureRequests,
  describeInstance,
  driveRateLimitUpdate,
  flushMetrics,
  instanceStart,
  observabilityRequests,
  pauseVm,
  resumeVm,
  sendCtrlAltDel,
  snapshotCreate,
  snapshotLoad,
} from '../../../src/agent/drivers/firecracker/firecracker-requests.js';
import { firecrackerContract } from '../../doubles/firecracker-contract.js';

const paths = {
  kernel: '/srv/fc/images/default/vmlinux',
  initrd: '/srv/fc/images/default/initrd.img',
  drives: new Map([
    ['rootfs', '/srv/fc/vms/x/drives/rootfs.img'],
    ['data-1', '/srv/fc/vms/x/drives/data-1.img'],
  ]),
  logFile: '/srv/fc/vms/x/logs/firecracker.log',
  metricsFile: '/srv/fc/vms/x/metrics.json',
};

const spec: MachineSpec = {
  vcpu: 2,
  mem_mib: 256,
  kernel: { path: paths.kernel, cmdline: 'console=ttyS0 reboot=k panic=1' },
  initrd: { path: paths.initrd },
  drives: [
    { id: 'data-1', path: '/x', read_only: true, rate_limit: { bytes_per_second: 10_000_000 } },
    { id: 'rootfs', path: '/y', is_root: true },
  ],
  nics: [{}],
};

/** Every request the driver can send, for one version. */
function everyRequest(version: (typeof FIRECRACKER_API_VERSIONS)[number]): FirecrackerRequest[] {
  return [
    ...configureRequests(version, spec, paths, [{ tap: 'tap-0b5e8a3c', mac: '06:00:0b:5e:8a:3c' }]),
    ...configureRequests(version, { ...spec, initrd: undefined, nics: [] }, { ...paths, initrd: undefined }, []),
    ...FIRECRACKER_LOG_LEVELS.flatMap((level) => observabilityRequests(version, paths, level)),
    ...observabilityRequests(version, paths),
    instanceStart,
    sendCtrlAltDel,
    flushMetrics,
    pauseVm,
    resumeVm,
    describeInstance,
    snapshotCreate('/s/state.bin', '/s/memory.bin'),
    snapshotLoad('/s/state.bin', '/s/memory.bin'),
    snapshotLoad('/s/state.bin', '/s/memory.bin', [{ tap: 'tap0' }]),
    driveRateLimitUpdate('data-1', { bytes_per_second: 1_000_000, ops_per_second: 100 }),
    driveRateLimitUpdate('rootfs', {}),
  ];
}

describe('Firecracker requests against the API contract', () => {
  for (const version of FIRECRACKER_API_VERSIONS) {
    it(`every request the driver sends is valid for Firecracker ${version}`, () => {
      for (const request of everyRequest(version)) {
        assert.equal(
          firecrackerContract(version).check(request.method, request.path, request.body),
          undefined,
          `${request.method} ${request.path} ${JSON.stringify(request.body)}`,
        );
      }
    });
  }

  it('sends no field a version lacks: emit_id only to 1.17', () => {
    const metrics = (version: '1.16' | '1.17') => observabilityRequests(version, paths).find((request) => request.path === '/metrics')?.body;
    assert.deepEqual(metrics('1.16'), { metrics_path: paths.metricsFile });
    assert.deepEqual(metrics('1.17'), { metrics_path: paths.metricsFile, emit_id: true });
  });

  it('configures in Firecracker order, the root drive first, ids made Firecracker-safe, the command line as given', () => {
    const requests = configureRequests('1.17', spec, paths, [{ tap: 'tap-0b5e8a3c', mac: '06:00:0b:5e:8a:3c' }]);
    assert.deepEqual(
      requests.map((request) => `${request.method} ${request.path}`),
      ['PUT /logger', 'PUT /metrics', 'PUT /machine-config', 'PUT /boot-source', 'PUT /drives/rootfs', 'PUT /drives/data_1', 'PUT /network-interfaces/eth0'],
    );
    assert.equal(requests[3]?.body?.boot_args, 'console=ttyS0 reboot=k panic=1', "boot_args replace Firecracker's defaults: sent as they are");
    assert.deepEqual(requests[5]?.body, {
      drive_id: 'data_1',
      path_on_host: paths.drives.get('data-1'),
      is_root_device: false,
      is_read_only: true,
      rate_limiter: { bandwidth: { size: 10_000_000, refill_time: 1000 }, ops: { size: 0, refill_time: 0 } },
    });
    assert.deepEqual(requests[6]?.body, { iface_id: 'eth0', host_dev_name: 'tap-0b5e8a3c', guest_mac: '06:00:0b:5e:8a:3c' });
    assert.throws(
      () =>
        configureRequests(
          '1.17',
          { ...spec, drives: [...spec.drives, { id: 'data_1', path: '/z' }] },
          { ...paths, drives: new Map([...paths.drives, ['data_1', '/z']]) },
          [],
        ),
      /collide/,
    );
  });

  it('the contract checker itself refuses what Firecracker refuses', () => {
    const contract = firecrackerContract('1.17');
    assert.match(contract.check('PUT', '/machine-config', { vcpu_count: 1, mem_size_mib: 128, turbo: true }) ?? '', /turbo/);
    assert.match(contract.check('PUT', '/machine-config', { vcpu_count: '1', mem_size_mib: 128 }) ?? '', /vcpu_count/);
    assert.ok(contract.check('PUT', '/drives/rootfs', { drive_id: 'other', is_root_device: true, path_on_host: '/x', is_read_only: false }));
  });
});
