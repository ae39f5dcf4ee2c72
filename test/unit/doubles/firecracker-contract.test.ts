import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { firecrackerApiContract, withoutMainOnlyInputs } from '../../doubles/firecracker-api-contract.js';
import { firecrackerContract } from '../../doubles/firecracker-contract.js';

const v117 = firecrackerContract('1.17');
const v116 = firecrackerContract('1.16');
const rootfs = { drive_id: 'rootfs', is_root_device: true, path_on_host: 'rootfs.ext4', is_read_only: false };

describe('Firecracker contract', () => {
  it('is loaded once per version', () => {
    assert.equal(firecrackerContract('1.17'), v117);
    assert.notEqual(v116, v117);
  });

  it('passes a valid body, including nested rate limiters', () => {
    assert.equal(v117.check('PUT', '/drives/rootfs', { ...rootfs, rate_limiter: { bandwidth: { size: 1024, refill_time: 100 } } }), undefined);
    assert.equal(v117.check('PUT', '/machine-config', { vcpu_count: 2, mem_size_mib: 256, smt: false }), undefined);
    assert.equal(v117.check('PATCH', '/vm', { state: 'Paused' }), undefined);
    assert.equal(v117.check('PUT', '/snapshot/load', { snapshot_path: 's', mem_backend: { backend_type: 'File', backend_path: 'm' } }), undefined);
  });

  it('refuses unknown fields, also nested ones', () => {
    assert.match(v117.check('PUT', '/drives/rootfs', { ...rootfs, bucket_size: 1 }) ?? '', /unknown field `bucket_size`/);
    assert.match(
      v117.check('PUT', '/drives/rootfs', { ...rootfs, rate_limiter: { ops: { size: 1, refill_time: 1, rate: 2 } } }) ?? '',
      /unknown field `rate` at \/rate_limiter\/ops/,
    );
  });

  it('refuses wrong types, enums and bounds', () => {
    assert.match(v117.check('PUT', '/machine-config', { vcpu_count: '2', mem_size_mib: 256 }) ?? '', /invalid type at \/vcpu_count: expected integer/);
    assert.match(v117.check('PUT', '/machine-config', { vcpu_count: 33, mem_size_mib: 256 }) ?? '', /vcpu_count/);
    assert.match(v117.check('PUT', '/actions', { action_type: 'Reboot' }) ?? '', /unknown variant at \/action_type/);
    assert.match(v117.check('PUT', '/vsock', { guest_cid: 2, uds_path: 'v.sock' }) ?? '', /guest_cid/);
    assert.match(v117.check('PUT', '/network-interfaces/eth0', { iface_id: 'eth0', host_dev_name: 'tap0', mtu: 67 }) ?? '', /mtu/);
  });

  it('refuses missing required fields', () => {
    assert.match(v117.check('PUT', '/machine-config', { vcpu_count: 2 }) ?? '', /missing field `mem_size_mib`/);
    assert.match(v117.check('PUT', '/boot-source', { boot_args: 'console=ttyS0' }) ?? '', /missing field `kernel_image_path`/);
  });

  it('takes a partial PATCH /machine-config, as the code does (the swagger reuses the PUT body)', () => {
    assert.equal(v117.check('PATCH', '/machine-config', { vcpu_count: 2 }), undefined);
    assert.match(v117.check('PATCH', '/machine-config', { vcpus: 2 }) ?? '', /unknown field/);
  });

  it('lets the Metrics body carry unknown fields, as Firecracker ignores them', () => {
    assert.equal(v117.check('PUT', '/metrics', { metrics_path: 'm.fifo', future_field: 1 }), undefined);
    assert.match(v117.check('PUT', '/metrics', {}) ?? '', /missing field `metrics_path`/);
    assert.match(v117.check('PUT', '/metrics', { metrics_path: 'm.fifo', emit_id: 'yes' }) ?? '', /emit_id/);
  });

  it('checks paths: templated ids, unknown paths and methods, path id against body id', () => {
    assert.match(v117.check('PUT', '/vm', { state: 'Paused' }) ?? '', /^Invalid request method and\/or path: PUT vm/);
    assert.match(v117.check('GET', '/drives/rootfs', undefined) ?? '', /^Invalid request method and\/or path/);
    assert.match(v117.check('PUT', '/drives/root-fs', { ...rootfs, drive_id: 'root-fs' }) ?? '', /alphanumeric characters and underscores/);
    assert.match(v117.check('PUT', '/drives/', { ...rootfs, drive_id: '' }) ?? '', /alphanumeric characters and underscores/);
    assert.equal(v117.check('PUT', '/drives/other', rootfs), 'The id from the path does not match the id from the body!');
    assert.equal(v117.check('PUT', '/pmem/p0', { id: 'p1', path_on_host: 'p' }), 'The id from the path does not match the id from the body!');
  });

  it('knows which calls need a body and which must not have one', () => {
    assert.equal(v117.check('GET', '/', undefined), undefined);
    assert.equal(v117.check('GET', '/', {}), 'GET request cannot have a body.');
    assert.equal(v117.check('PUT', '/machine-config', undefined), 'Empty PUT request.');
    assert.equal(v117.check('PATCH', '/vm', undefined), 'Empty PATCH request.');
    assert.equal(v117.check('PATCH', '/balloon/hinting/start', undefined), undefined);
  });

  it('wants exactly one of mem_backend and mem_file_path on /snapshot/load', () => {
    assert.match(v117.check('PUT', '/snapshot/load', { snapshot_path: 's' }) ?? '', /either `mem_backend` or `mem_file_path` is required/);
    const both = { snapshot_path: 's', mem_file_path: 'm', mem_backend: { backend_type: 'File', backend_path: 'm' } };
    assert.match(v117.check('PUT', '/snapshot/load', both) ?? '', /exclusively/);
  });

  it('differs between 1.16 and 1.17 exactly where the swagger header says', () => {
    const load = { snapshot_path: 's', mem_file_path: 'm', huge_pages: 'None' };
    assert.equal(v117.check('PUT', '/snapshot/load', load), undefined);
    assert.match(v116.check('PUT', '/snapshot/load', load) ?? '', /unknown field `huge_pages`/);

    const transparent = { vcpu_count: 1, mem_size_mib: 128, huge_pages: 'Transparent' };
    assert.equal(v117.check('PUT', '/machine-config', transparent), undefined);
    assert.match(v116.check('PUT', '/machine-config', transparent) ?? '', /unknown variant at \/huge_pages/);
    assert.equal(v116.check('PUT', '/machine-config', { ...transparent, huge_pages: '2M' }), undefined);

    // v1.16.1 has no emit_id: as Metrics ignores unknown fields, any value is accepted and dropped.
    assert.equal(v116.check('PUT', '/metrics', { metrics_path: 'm', emit_id: 'yes', properties: { a: 1 } }), undefined);
    assert.match(v117.check('PUT', '/metrics', { metrics_path: 'm', properties: { a: 1 } }) ?? '', /properties\/a/);

    const huge = { requested_size_mib: 2 ** 32 };
    assert.match(v117.check('PATCH', '/hotplug/memory', huge) ?? '', /requested_size_mib/);
    assert.equal(v116.check('PATCH', '/hotplug/memory', huge), undefined);
  });

  it('refuses to take out a 1.16 difference that is not there, so a stale list is noticed', () => {
    const field = firecrackerApiContract('1.17').definitions;
    delete field.Metrics!.properties!.emit_id;
    assert.throws(() => withoutMainOnlyInputs(field), /Metrics\.emit_id names a field that is not there/);
    const value = firecrackerApiContract('1.17').definitions;
    value.MachineConfiguration!.properties!.huge_pages!.enum = ['None', '2M'];
    assert.throws(() => withoutMainOnlyInputs(value), /enum value \(Transparent\)/);
    const bound = firecrackerApiContract('1.17').definitions;
    delete bound.MemoryHotplugSizeUpdate!.properties!.requested_size_mib!.maximum;
    assert.throws(() => withoutMainOnlyInputs(bound), /requested_size_mib names a maximum/);
    assert.equal(
      v117.check('PATCH', '/hotplug/memory', { requested_size_mib: 2 ** 32 })?.includes('requested_size_mib'),
      true,
      'a changed copy leaves the checker as it was',
    );
  });

  it('checks responses against the swagger', () => {
    const info = { app_name: 'Firecracker', id: 'vm1', state: 'Not started', vmm_version: '1.17.0-dev' };
    assert.equal(v117.checkResponse('GET', '/', 200, info), undefined);
    assert.match(v117.checkResponse('GET', '/', 200, { ...info, state: 'Stopped' }) ?? '', /state/);
    assert.match(v117.checkResponse('GET', '/', 200, { ...info, uptime: 1 }) ?? '', /unknown field `uptime`/);
    assert.equal(v117.checkResponse('GET', '/version', 200, { firecracker_version: '1.17.0-dev' }), undefined);
    assert.equal(v117.checkResponse('PUT', '/actions', 204, undefined), undefined);
    assert.match(v117.checkResponse('PUT', '/actions', 204, {}) ?? '', /has no body/);
    assert.equal(v117.checkResponse('PUT', '/actions', 400, { fault_message: 'no' }), undefined);
  });
});
