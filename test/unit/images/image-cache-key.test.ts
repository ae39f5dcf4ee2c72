import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { type ImageBuildInputs, imageCacheKey } from '../../../src/images/image-cache-key.js';

const INPUTS: ImageBuildInputs = {
  builderRevision: 1,
  kernelPackage: 'linux-image-6.1.0-56-amd64=6.1.192-2',
  busyboxPackage: 'busybox-static=1:1.35.0-4+deb12u1+b1',
  modules: ['virtio_ring', 'virtio'],
  initramfsInit: '#!/bin/sh\n',
  rootfsInit: '#!/bin/sh\necho hi\n',
  powerButtonHandler: '#!/bin/sh\npoweroff -f\n',
  rootfsSizeMib: 16,
  bootArgs: 'console=ttyS0',
};

describe('imageCacheKey', () => {
  it('is a SHA256 that does not depend on the order of the fields', () => {
    const reversed = Object.fromEntries(Object.entries(INPUTS).reverse()) as unknown as ImageBuildInputs;
    assert.match(imageCacheKey(INPUTS), /^[0-9a-f]{64}$/);
    assert.equal(imageCacheKey(reversed), imageCacheKey(INPUTS));
  });
  it('changes when any input changes, including the module order', () => {
    const changed: Array<Partial<ImageBuildInputs>> = [
      { builderRevision: 2 },
      { kernelPackage: 'linux-image-6.1.0-57-amd64=6.1.200-1' },
      { busyboxPackage: 'busybox-static=1:1.36.1-1' },
      { modules: ['virtio', 'virtio_ring'] },
      { initramfsInit: '#!/bin/sh\n\n' },
      { rootfsInit: '#!/bin/sh\necho ho\n' },
      { powerButtonHandler: '#!/bin/sh\n' },
      { rootfsSizeMib: 32 },
      { bootArgs: 'console=ttyS0 quiet' },
    ];
    const keys = new Set([imageCacheKey(INPUTS), ...changed.map((change) => imageCacheKey({ ...INPUTS, ...change }))]);
    assert.equal(keys.size, changed.length + 1);
  });
});
