import { readFile, stat } from 'node:fs/promises';
import { join } from 'node:path';
import { sha256OfFile } from './file-sha256.js';

/** The file in an image dir that describes it; written last, so a dir with one is complete. */
export const IMAGE_MANIFEST_FILE = 'manifest.json';
/** Bumped when the manifest's shape changes; older manifests are not trusted. */
export const IMAGE_MANIFEST_FORMAT = 1;

/** One file of an image. `path` is relative to the image dir (a plain file name), so the dir can move. */
export interface ImageFile {
  path: string;
  size_bytes: number;
  sha256: string;
}

/** The roles of an image's files. */
export type ImageFileRole = 'kernel' | 'initrd' | 'rootfs';

/** `<run-dir>/images/<name>/manifest.json`: what an image is made of and how to boot it. */
export interface ImageManifest {
  format: typeof IMAGE_MANIFEST_FORMAT;
  name: string;
  /** ISO 8601 time of the build. */
  created_at: string;
  /** SHA256 over everything the image is built from (see `imageCacheKey`); equal keys mean an equal image. */
  cache_key: string;
  /** The kernel package, `name=version` (vmlinux and modules come from it). */
  kernel_package: string;
  /** The kernel's release (`uname -r`), e.g. 6.1.0-56-amd64. */
  kernel_release: string;
  /** The busybox package, `name=version`. */
  busybox_package: string;
  /** The modules the initramfs loads, in order. */
  modules: string[];
  /** kernel: the uncompressed PVH ELF vmlinux; initrd: gzip newc initramfs; rootfs: ext4 image (copy it per VM). */
  files: Record<ImageFileRole, ImageFile>;
  /** The kernel command line to boot with, before host-specific (tsc_early_khz) and per-VM (nexus.ip) parameters. */
  boot_args: string;
  /** The console line the guest prints when it is ready. */
  boot_marker: string;
}

const ROLES: readonly ImageFileRole[] = ['kernel', 'initrd', 'rootfs'];

/** A manifest from its JSON text, or undefined when it is not one this version understands. */
export function parseImageManifest(text: string): ImageManifest | undefined {
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch {
    return undefined;
  }
  if (!isRecord(value) || value.format !== IMAGE_MANIFEST_FORMAT) return undefined;
  const strings = ['name', 'created_at', 'cache_key', 'kernel_package', 'kernel_release', 'busybox_package', 'boot_args', 'boot_marker'];
  if (!strings.every((key) => typeof value[key] === 'string')) return undefined;
  if (!Array.isArray(value.modules) || !value.modules.every((module) => typeof module === 'string')) return undefined;
  const files = value.files;
  if (!isRecord(files) || !ROLES.every((role) => isImageFile(files[role]))) return undefined;
  return value as unknown as ImageManifest;
}

/** The manifest in an image dir, or undefined when there is none or it is unreadable. */
export async function readImageManifest(imageDir: string): Promise<ImageManifest | undefined> {
  let text: string;
  try {
    text = await readFile(join(imageDir, IMAGE_MANIFEST_FILE), 'utf8');
  } catch {
    return undefined;
  }
  return parseImageManifest(text);
}

/** The absolute path of one of an image's files. */
export function imageFilePath(imageDir: string, file: ImageFile): string {
  return join(imageDir, file.path);
}

/**
 * What is wrong with an image's files, or undefined when each exists with the manifest's size
 * (and, with `checkSha256`, its hash: slower, reads about 80 MiB).
 */
export async function findImageFileProblem(imageDir: string, manifest: ImageManifest, checkSha256 = false): Promise<string | undefined> {
  for (const role of ROLES) {
    const file = manifest.files[role];
    const path = imageFilePath(imageDir, file);
    let sizeBytes: number;
    try {
      sizeBytes = (await stat(path)).size;
    } catch {
      return `${role} ${path} is missing`;
    }
    if (sizeBytes !== file.size_bytes) return `${role} ${path} has ${sizeBytes} bytes, the manifest says ${file.size_bytes}`;
    if (checkSha256 && (await sha256OfFile(path)) !== file.sha256) return `${role} ${path} does not match its sha256`;
  }
  return undefined;
}

/** Describes a finished file of an image for its manifest. */
export async function describeImageFile(imageDir: string, fileName: string): Promise<ImageFile> {
  const path = join(imageDir, fileName);
  return { path: fileName, size_bytes: (await stat(path)).size, sha256: await sha256OfFile(path) };
}

function isImageFile(value: unknown): value is ImageFile {
  return (
    isRecord(value) &&
    typeof value.path === 'string' &&
    /^[A-Za-z0-9._-]+$/.test(value.path) &&
    !value.path.startsWith('.') &&
    typeof value.size_bytes === 'number' &&
    typeof value.sha256 === 'string' &&
    /^[0-9a-f]{64}$/.test(value.sha256)
  );
}

function isRecord(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}
