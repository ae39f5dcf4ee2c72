import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { IMAGE_MANIFEST_FORMAT, type ImageManifest, parseImageManifest } from '../../../src/images/image-manifest.js';

const file = (path: string) => ({ path, size_bytes: 1024, sha256: 'a'.repeat(64) });
const MANIFEST: ImageManifest = {
  format: IMAGE_MANIFEST_FORMAT,
  name: 'default',
  created_at: '2026-11-22T03:01:52.317Z',
  cache_key: 'b'.repeat(64),
  kernel_package: 'linux-image-6.1.0-56-amd64=6.1.192-2',
  kernel_release: '6.1.0-56-amd64',
  busybox_package: 'busybox-static=1:1.35.0-4+deb12u1+b1',
  modules: ['virtio_ring'],
  files: { kernel: file('vmlinux'), initrd: file('initrd.img'), rootfs: file('rootfs.ext4') },
  boot_args: 'console=ttyS0',
  boot_marker: 'NEXUS_BOOT_OK',
};

describe('parseImageManifest', () => {
  it('reads back a manifest it wrote', () => {
    assert.deepEqual(parseImageManifest(JSON.stringify(MANIFEST)), MANIFEST);
  });
  it('rejects other formats, missing fields, bad hashes and paths that leave the image dir', () => {
    const broken: unknown[] = [
      { ...MANIFEST, format: 0 },
      { ...MANIFEST, cache_key: undefined },
      { ...MANIFEST, modules: 'virtio_ring' },
      { ...MANIFEST, files: { ...MANIFEST.files, rootfs: undefined } },
      { ...MANIFEST, files: { ...MANIFEST.files, kernel: { ...file('vmlinux'), sha256: 'xyz' } } },
      { ...MANIFEST, files: { ...MANIFEST.files, kernel: file('../../etc/passwd') } },
      { ...MANIFEST, files: { ...MANIFEST.files, kernel: file('/boot/vmlinux') } },
      { ...MANIFEST, files: { ...MANIFEST.files, kernel: file('.hidden') } },
    ];
    for (const value of broken) assert.equal(parseImageManifest(JSON.stringify(value)), undefined, JSON.stringify(value));
    assert.equal(parseImageManifest('{not json'), undefined);
    assert.equal(parseImageManifest('[]'), undefined);
  });
});
