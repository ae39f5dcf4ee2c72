import { randomBytes } from 'node:crypto';
import { mkdir, readdir, rename, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { NexusError } from '../kit/nexus-error.js';
import {
  type DebianPackage,
  extractDebianPackage,
  fetchDebianPackage,
  packageSpec,
  pruneDebianCache,
  kernelDependency,
  resolveDebianPackages,
} from './debian-packages.js';
import { GUEST_BOOT_ARGS } from './guest-cmdline.js';
import { BOOT_MARKER, POWER_BUTTON_HANDLER, ROOTFS_INIT, initramfsInit } from './guest-init-scripts.js';
import { imageCacheKey } from './image-cache-key.js';
import { lockImageBuild } from './image-build-lock.js';
import {
  IMAGE_MANIFEST_FILE,
  IMAGE_MANIFEST_FORMAT,
  type ImageManifest,
  describeImageFile,
  findImageFileProblem,
  imageFilePath,
  readImageManifest,
} from './image-manifest.js';
import { buildInitramfs } from './initramfs-builder.js';
import { extractVmlinux } from './kernel-extract.js';
import { GUEST_KERNEL_MODULES, moduleTarPatterns, stageKernelModules } from './kernel-modules.js';
import { ROOTFS_SIZE_MIB, buildRootfs } from './rootfs-builder.js';

/** The image `nexus dev` and `nexus image build` make when no name is given. */
export const DEFAULT_IMAGE_NAME = 'default';
/**
 * Bumped whenever the builder assembles an image differently in a way the init texts, module list
 * and package versions do not show (the cpio layout, mkfs options): it is part of the cache key.
 */
export const IMAGE_BUILDER_REVISION = 1;

const KERNEL_META_PACKAGE = 'linux-image-amd64';
const BUSYBOX_PACKAGE = 'busybox-static';
const KERNEL_FILE = 'vmlinux';
const INITRD_FILE = 'initrd.img';
const ROOTFS_FILE = 'rootfs.ext4';
/** A cold build takes seconds; a builder still holding the lock after this long is stuck. */
const DEFAULT_LOCK_WAIT_MS = 10 * 60_000;

export interface GuestImageBuildOptions {
  /** The agent's run dir; the image goes to `<run-dir>/images/<name>/`, downloads to `<run-dir>/images/.cache/`. */
  runDir: string;
  /** Default {@link DEFAULT_IMAGE_NAME}. Lower-case letters, digits, `.`, `_`, `-`. */
  name?: string;
  /** Build even when an up-to-date image is there. */
  force?: boolean;
  /** One line per stage, for people ("downloading …", "building rootfs"). */
  onProgress?: (line: string) => void;
  /** How long to wait for another process building the same image. Default 10 min. */
  lockWaitMs?: number;
}

/** A finished image on disk. */
export interface GuestImage {
  /** `<run-dir>/images/<name>`. */
  dir: string;
  manifest: ImageManifest;
  /** True when an up-to-date image was already there and nothing was built. */
  reused: boolean;
  /** Absolute paths of the files (the manifest's are relative to `dir`). */
  kernelPath: string;
  initrdPath: string;
  /** The image's root filesystem: never boot it directly; give each VM a copy (`copySparse`). */
  rootfsPath: string;
}

/** `<run-dir>/images`. */
export function guestImagesDir(runDir: string): string {
  return join(runDir, 'images');
}

/** `<run-dir>/images/<name>`. */
export function guestImageDir(runDir: string, name: string): string {
  return join(guestImagesDir(runDir), checkImageName(name));
}

/** The name if it can be a directory name under images/ (no path tricks, no hidden names), else a bad_request. */
export function checkImageName(name: string): string {
  if (!/^[a-z0-9][a-z0-9._-]{0,62}$/.test(name)) {
    throw new NexusError('bad_request', `'${name}' is not a valid image name`, {
      suggestion: 'Use 1 to 63 lower-case letters, digits, ".", "_" or "-", starting with a letter or digit.',
    });
  }
  return name;
}

/**
 * Makes the guest test image from Debian packages alone (apt-get download + dpkg-deb; no root
 * mounts, no network besides the package mirror): Debian's kernel as a PVH-bootable vmlinux, an
 * initramfs with busybox and the modules that kernel needs, and an ext4 root filesystem whose
 * init prints the boot marker, configures eth0 from `nexus.ip=`/`nexus.gw=`, powers off on the
 * ACPI power button and counts on the console.
 *
 * Cached by content: the image is keyed on the package versions and the builder's own inputs
 * (see `imageCacheKey`), and an image with the same key and intact files is reused. The image
 * is built in a scratch dir beside its destination and renamed into place whole, so a crash
 * never leaves a half image under the final name.
 */
export async function buildGuestImage(options: GuestImageBuildOptions): Promise<GuestImage> {
  const name = checkImageName(options.name ?? DEFAULT_IMAGE_NAME);
  const say = options.onProgress ?? (() => {});
  if (process.arch !== 'x64') {
    throw new NexusError('unavailable', `guest images are built for x86_64 hosts (this one is ${process.arch})`, {
      suggestion: 'Build the image on an x86_64 Debian host.',
    });
  }
  const imagesDir = guestImagesDir(options.runDir);
  const dir = guestImageDir(options.runDir, name);

  say('resolving Debian packages');
  const { kernel, busybox } = await resolvePackages();
  const cacheKey = imageCacheKey({
    builderRevision: IMAGE_BUILDER_REVISION,
    kernelPackage: packageSpec(kernel),
    busyboxPackage: packageSpec(busybox),
    modules: GUEST_KERNEL_MODULES,
    initramfsInit: initramfsInit(GUEST_KERNEL_MODULES),
    rootfsInit: ROOTFS_INIT,
    powerButtonHandler: POWER_BUTTON_HANDLER,
    rootfsSizeMib: ROOTFS_SIZE_MIB,
    bootArgs: GUEST_BOOT_ARGS,
  });

  if (!options.force) {
    const existing = await reusable(dir, cacheKey);
    if (existing) {
      say(`image ${name} is up to date (${kernel.name} ${kernel.version}); reusing ${dir}`);
      return existing;
    }
  }

  await mkdir(imagesDir, { recursive: true });
  const lock = await lockImageBuild(imagesDir, name, options.lockWaitMs ?? DEFAULT_LOCK_WAIT_MS, say);
  try {
    // Another process may have built it while we waited for the lock.
    if (!options.force) {
      const existing = await reusable(dir, cacheKey);
      if (existing) {
        say(`image ${name} was just built by another process; reusing ${dir}`);
        return existing;
      }
    }
    await removeLeftovers(imagesDir, name);
    const startedMs = Date.now();
    const buildDir = join(imagesDir, `.build-${name}-${randomBytes(4).toString('hex')}`);
    try {
      const manifest = await assemble({ name, cacheKey, kernel, busybox, buildDir, cacheDir: join(imagesDir, '.cache'), say });
      await replaceDir(join(buildDir, 'image'), dir, join(imagesDir, `.old-${name}-${randomBytes(4).toString('hex')}`));
      say(`image ${name} built in ${((Date.now() - startedMs) / 1000).toFixed(1)} s: ${dir}`);
      return imageAt(dir, manifest, false);
    } finally {
      await rm(buildDir, { recursive: true, force: true });
    }
  } finally {
    await lock.release();
  }
}

interface AssembleInputs {
  name: string;
  cacheKey: string;
  kernel: DebianPackage;
  busybox: DebianPackage;
  buildDir: string;
  cacheDir: string;
  say: (line: string) => void;
}

/** Builds every file of the image into `<buildDir>/image/`, manifest last, and returns the manifest. */
async function assemble(inputs: AssembleInputs): Promise<ImageManifest> {
  const { buildDir, say } = inputs;
  const work = join(buildDir, 'work');
  const out = join(buildDir, 'image');
  await mkdir(work, { recursive: true });
  await mkdir(out, { recursive: true });

  const kernelDeb = await fetchDebianPackage(inputs.kernel, inputs.cacheDir, say);
  const busyboxDeb = await fetchDebianPackage(inputs.busybox, inputs.cacheDir, say);
  await pruneDebianCache(inputs.cacheDir, [kernelDeb, busyboxDeb]);

  say(`unpacking ${inputs.kernel.name} (kernel and ${GUEST_KERNEL_MODULES.length} modules)`);
  const kernelTree = join(work, 'kernel');
  await extractDebianPackage(kernelDeb, kernelTree, ['./boot/vmlinuz-*', ...moduleTarPatterns(GUEST_KERNEL_MODULES)]);
  const busyboxTree = join(work, 'busybox');
  await extractDebianPackage(busyboxDeb, busyboxTree, ['./bin/busybox']);
  const busyboxPath = join(busyboxTree, 'bin/busybox');

  say('extracting vmlinux');
  const kernelRelease = await kernelReleaseIn(join(kernelTree, 'boot'));
  await extractVmlinux(join(kernelTree, 'boot', `vmlinuz-${kernelRelease}`), join(out, KERNEL_FILE));

  say('building initramfs');
  const modules = await stageKernelModules(kernelTree, join(work, 'modules'), GUEST_KERNEL_MODULES);
  await buildInitramfs({ busyboxPath, modules, destPath: join(out, INITRD_FILE) });

  say('building rootfs');
  await buildRootfs({
    busyboxPath,
    workDir: work,
    destPath: join(out, ROOTFS_FILE),
    imageLabel: `${inputs.name} ${inputs.cacheKey}`,
    sizeMib: ROOTFS_SIZE_MIB,
  });
  await rm(work, { recursive: true, force: true });

  const manifest: ImageManifest = {
    format: IMAGE_MANIFEST_FORMAT,
    name: inputs.name,
    created_at: new Date().toISOString(),
    cache_key: inputs.cacheKey,
    kernel_package: packageSpec(inputs.kernel),
    kernel_release: kernelRelease,
    busybox_package: packageSpec(inputs.busybox),
    modules: [...GUEST_KERNEL_MODULES],
    files: {
      kernel: await describeImageFile(out, KERNEL_FILE),
      initrd: await describeImageFile(out, INITRD_FILE),
      rootfs: await describeImageFile(out, ROOTFS_FILE),
    },
    boot_args: GUEST_BOOT_ARGS,
    boot_marker: BOOT_MARKER,
  };
  await writeFile(join(out, IMAGE_MANIFEST_FILE), `${JSON.stringify(manifest, null, 2)}\n`);
  return manifest;
}

/** The candidate versions of the kernel package `linux-image-amd64` points at, and of busybox. */
async function resolvePackages(): Promise<{ kernel: DebianPackage; busybox: DebianPackage }> {
  const [meta, busybox] = await resolveDebianPackages([KERNEL_META_PACKAGE, BUSYBOX_PACKAGE]);
  const kernelName = kernelDependency(meta?.depends);
  if (!kernelName || !busybox) {
    throw new NexusError('unavailable', `${KERNEL_META_PACKAGE} depends on no linux-image package (Depends: ${meta?.depends ?? 'none'})`, {
      suggestion: 'As root: apt-get update, so apt knows the current Debian kernel.',
    });
  }
  const [kernel] = await resolveDebianPackages([kernelName]);
  if (!kernel) throw new Error(`apt-cache returned nothing for ${kernelName}`);
  return { kernel, busybox };
}

/** The image at `dir` if its manifest has `cacheKey` and its files are all there with their sizes. */
async function reusable(dir: string, cacheKey: string): Promise<GuestImage | undefined> {
  const manifest = await readImageManifest(dir);
  if (!manifest || manifest.cache_key !== cacheKey) return undefined;
  if (await findImageFileProblem(dir, manifest)) return undefined;
  return imageAt(dir, manifest, true);
}

function imageAt(dir: string, manifest: ImageManifest, reused: boolean): GuestImage {
  return {
    dir,
    manifest,
    reused,
    kernelPath: imageFilePath(dir, manifest.files.kernel),
    initrdPath: imageFilePath(dir, manifest.files.initrd),
    rootfsPath: imageFilePath(dir, manifest.files.rootfs),
  };
}

async function kernelReleaseIn(bootDir: string): Promise<string> {
  const releases = (await readdir(bootDir)).filter((file) => file.startsWith('vmlinuz-')).map((file) => file.slice('vmlinuz-'.length));
  if (releases.length !== 1 || !releases[0]) {
    throw new NexusError('unavailable', `the kernel package holds ${releases.length} kernels (${releases.join(', ') || 'none'}); expected one`, {
      suggestion: `Check what apt-cache depends ${KERNEL_META_PACKAGE} points at.`,
    });
  }
  return releases[0];
}

/**
 * Puts the finished `source` dir at `dest` with renames only: the old image (if any) is moved
 * aside first and deleted after, so `dest` is always absent or complete.
 */
async function replaceDir(source: string, dest: string, aside: string): Promise<void> {
  let movedAside = false;
  try {
    await rename(dest, aside);
    movedAside = true;
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code !== 'ENOENT') throw error;
  }
  await rename(source, dest);
  if (movedAside) await rm(aside, { recursive: true, force: true });
}

/** Scratch and set-aside dirs of this image left by a builder that crashed (we hold the lock, so none is live). */
async function removeLeftovers(imagesDir: string, name: string): Promise<void> {
  // Exactly our name and a random suffix: `.build-a-` is also the start of image `a-b`'s dirs.
  const ours = new RegExp(`^\\.(build|old)-${name.replaceAll('.', '\\.')}-[0-9a-f]{8}$`);
  for (const entry of await readdir(imagesDir)) {
    if (ours.test(entry)) {
      await rm(join(imagesDir, entry), { recursive: true, force: true });
    }
  }
}
