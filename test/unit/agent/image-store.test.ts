import assert from 'node:assert/strict';
import { mkdirSync, truncateSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, describe, it } from 'node:test';
import { ImageStore } from '../../../src/agent/host/image-store.js';
import { captureLogger } from '../../support/capture-logger.js';
import { writeFakeImageBuild } from '../../support/fake-image-build.js';
import { tempDir } from '../../support/temp-dir.js';

describe('ImageStore', () => {
  const dir = tempDir('nexus-image-store-');
  after(() => dir.remove());

  it('reports each file of every complete build, and skips raw files, broken builds and bad manifests', async () => {
    const images = join(dir.path, 'images');
    const good = await writeFakeImageBuild(images, 'good', 'g');
    await writeFakeImageBuild(images, 'broken', 'b');
    truncateSync(join(images, 'broken', 'rootfs.ext4'), 10);
    mkdirSync(join(images, 'raw'));
    writeFileSync(join(images, 'raw', 'vmlinux'), 'a kernel without a manifest');
    mkdirSync(join(images, 'garbled'));
    writeFileSync(join(images, 'garbled', 'manifest.json'), '{ "format": 1');
    const { log, lines } = captureLogger('image-store');
    const store = new ImageStore(images, log);

    const listed = await store.list();
    assert.deepEqual(
      listed.map((image) => [image.name, image.kind, image.format, image.path, image.sha256]),
      [
        ['good', 'kernel', 'vmlinux', join(images, 'good', 'vmlinux'), good.files.kernel.sha256],
        ['good', 'initrd', 'cpio.gz', join(images, 'good', 'initrd.img'), good.files.initrd.sha256],
        ['good', 'rootfs', 'ext4', join(images, 'good', 'rootfs.ext4'), good.files.rootfs.sha256],
      ],
    );
    assert.equal(listed[0]?.boot_args, good.boot_args);
    assert.equal(listed[1]?.boot_args, undefined);
    await store.list();
    const warnings = lines.filter((line) => line.msg === 'an image in the store is not usable');
    assert.equal(warnings.length, 1, 'the broken build is logged once, not every heartbeat');
    assert.match(String(warnings[0]?.problem), /broken: rootfs .* has 10 bytes/);
  });

  it('an image store that does not exist yet holds nothing', async () => {
    assert.deepEqual(await new ImageStore(join(dir.path, 'absent'), captureLogger('x').log).list(), []);
  });
});
