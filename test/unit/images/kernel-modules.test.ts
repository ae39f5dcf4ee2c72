import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { GUEST_KERNEL_MODULES, matchModuleFiles, moduleTarPatterns } from '../../../src/images/kernel-modules.js';

const TREE = [
  '/x/lib/modules/6.1.0-56-amd64/kernel/drivers/virtio/virtio.ko',
  '/x/lib/modules/6.1.0-56-amd64/kernel/drivers/virtio/virtio_ring.ko.xz',
  '/x/lib/modules/6.1.0-56-amd64/kernel/drivers/net/net_failover.ko',
  '/x/lib/modules/6.1.0-56-amd64/kernel/net/core/failover.ko',
];

describe('matchModuleFiles', () => {
  it('finds each module by exact file name, compressed or not, in the order asked', () => {
    assert.deepEqual(matchModuleFiles(TREE, ['virtio_ring', 'virtio', 'failover', 'net_failover']), [TREE[1], TREE[0], TREE[3], TREE[2]]);
  });
  it('refuses a missing module and an ambiguous one', () => {
    assert.throws(() => matchModuleFiles(TREE, ['ext4']), /has no module ext4/);
    assert.throws(() => matchModuleFiles([...TREE, '/y/virtio.ko'], ['virtio']), /2 files for module virtio/);
  });
});

describe('the guest module list', () => {
  it('loads each module after what it depends on, and includes crc32c_generic and the power button', () => {
    const order = (name: string) => GUEST_KERNEL_MODULES.indexOf(name);
    for (const [dependency, module] of [
      ['virtio_ring', 'virtio'],
      ['virtio', 'virtio_mmio'],
      ['virtio_mmio', 'virtio_blk'],
      ['net_failover', 'virtio_net'],
      ['failover', 'net_failover'],
      ['crc16', 'ext4'],
      ['mbcache', 'ext4'],
      ['jbd2', 'ext4'],
      ['crc32c_generic', 'ext4'],
      ['button', 'evdev'],
    ]) {
      assert.ok(order(dependency as string) >= 0 && order(dependency as string) < order(module as string), `${dependency} before ${module}`);
    }
  });
  it('selects modules from lib/modules or usr/lib/modules with tar patterns', () => {
    assert.deepEqual(moduleTarPatterns(['ext4']), ['./*lib/modules/*/ext4.ko*']);
  });
});
