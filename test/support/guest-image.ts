import { type GuestImage, buildGuestImage } from '../../src/images/guest-image-builder.js';

/**
 * The run dir the test image is built in, shared by every test file and kept between runs (it
 * is a cache, like apt's): the first file of a run builds (~10 s cold), the others reuse it.
 * NEXUS_TEST_IMAGE_DIR moves it, e.g. into a CI cache.
 */
export const TEST_IMAGE_RUN_DIR = process.env.NEXUS_TEST_IMAGE_DIR || '/tmp/nexus-test-images';
export const TEST_IMAGE_NAME = 'test';

let image: Promise<GuestImage> | undefined;

/**
 * The guest test image (Debian kernel, busybox initramfs, ext4 rootfs; see `buildGuestImage`),
 * built once and reused across test files and runs while its inputs are unchanged. Never boot
 * `rootfsPath` itself: give each VM its own copy with `copySparse`.
 */
export function testGuestImage(): Promise<GuestImage> {
  image ??= buildGuestImage({
    runDir: TEST_IMAGE_RUN_DIR,
    name: TEST_IMAGE_NAME,
    onProgress: (line) => process.stderr.write(`# guest image: ${line}\n`),
  });
  return image;
}
