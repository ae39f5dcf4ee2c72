import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { IMAGE_MANIFEST_FILE, IMAGE_MANIFEST_FORMAT, type ImageManifest, describeImageFile } from '../../src/images/image-manifest.js';

/**
 * A complete image build in an image store, with a valid manifest, made of small files whose
 * content depends on `seed` (equal seeds: equal content, as the same build on two hosts). It
 * boots nothing: for hollow hosts and the registry's tests.
 */
export async function writeFakeImageBuild(imagesDir: string, name: string, seed: string): Promise<ImageManifest> {
  const dir = join(imagesDir, name);
  mkdirSync(dir, { recursive: true });
  const files = { kernel: 'vmlinux', initrd: 'initrd.img', rootfs: 'rootfs.ext4' } as const;
  for (const [role, file] of Object.entries(files)) writeFileSync(join(dir, file), `${role} of ${seed}\n`.repeat(64));
  const manifest: ImageManifest = {
    format: IMAGE_MANIFEST_FORMAT,
    name,
    created_at: new Date().toISOString(),
    cache_key: seed.padEnd(64, '0').slice(0, 64),
    kernel_package: `linux-image-fake=${seed}`,
    kernel_release: '6.1.0-fake',
    busybox_package: 'busybox-static=fake',
    modules: [],
    files: {
      kernel: await describeImageFile(dir, files.kernel),
      initrd: await describeImageFile(dir, files.initrd),
      rootfs: await describeImageFile(dir, files.rootfs),
    },
    boot_args: `console=ttyS0 root=/dev/vda rw build=${seed}`,
    boot_marker: 'NEXUS_BOOT_OK',
  };
  writeFileSync(join(dir, IMAGE_MANIFEST_FILE), JSON.stringify(manifest));
  return manifest;
}
