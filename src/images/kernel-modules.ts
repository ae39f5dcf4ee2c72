import { createReadStream, createWriteStream } from 'node:fs';
import { copyFile, mkdir, readdir } from 'node:fs/promises';
import { basename, join } from 'node:path';
import { pipeline } from 'node:stream/promises';
import { createGunzip } from 'node:zlib';
import { NexusError } from '../kit/nexus-error.js';
import { spawnHostTool, waitForHostTool } from '../kit/host-tool.js';

/**
 * The modules a guest needs from Debian's kernel, in load order: each one's dependencies come
 * before it (Debian's .deb has no modules.dep, and busybox insmod resolves nothing). virtio and
 * ext4 are modules there; crc32c_generic is required because mkfs.ext4 enables metadata_csum;
 * button and evdev make the ACPI power button an input device that acpid can read.
 *
 * Must stay true: the order is the dependency order for the kernel package in use.
 */
export const GUEST_KERNEL_MODULES: readonly string[] = [
  'virtio_ring',
  'virtio',
  'virtio_mmio',
  'virtio_blk',
  'failover',
  'net_failover',
  'virtio_net',
  'virtio_console',
  'crc16',
  'mbcache',
  'jbd2',
  'crc32c_generic',
  'ext4',
  'button',
  'evdev',
];

/** Compressions Debian kernels have used for modules; busybox insmod needs them uncompressed. */
const MODULE_SUFFIXES = ['.ko', '.ko.xz', '.ko.zst', '.ko.gz'] as const;

/**
 * tar patterns that select the modules from a kernel package's data tarball, under
 * `./lib/modules/` or (after the /usr merge) `./usr/lib/modules/`, whatever the compression.
 */
export function moduleTarPatterns(modules: readonly string[]): string[] {
  return modules.map((module) => `./*lib/modules/*/${module}.ko*`);
}

/**
 * The file that provides each module, by exact file name, in the order of `modules`. A module
 * found zero times or twice is an error: loading the wrong one would fail only at boot.
 */
export function matchModuleFiles(files: readonly string[], modules: readonly string[]): string[] {
  return modules.map((module) => {
    const candidates = files.filter((file) => MODULE_SUFFIXES.some((suffix) => basename(file) === `${module}${suffix}`));
    if (candidates.length !== 1) {
      throw new NexusError(
        'unavailable',
        candidates.length === 0
          ? `the kernel package has no module ${module}`
          : `the kernel package has ${candidates.length} files for module ${module}: ${candidates.join(', ')}`,
        { suggestion: 'The guest module list fits Debian 12 amd64 kernels; another kernel needs its own list.' },
      );
    }
    return candidates[0] as string;
  });
}

/** One module ready for insmod: its name and the uncompressed .ko. */
export interface StagedModule {
  name: string;
  path: string;
}

/**
 * Finds the modules in an extracted kernel package and writes each, uncompressed, to
 * `<destDir>/<name>.ko`, in load order.
 */
export async function stageKernelModules(extractedRoot: string, destDir: string, modules: readonly string[] = GUEST_KERNEL_MODULES): Promise<StagedModule[]> {
  await mkdir(destDir, { recursive: true });
  const files = (await readdir(extractedRoot, { recursive: true })).map((file) => join(extractedRoot, file)).filter((file) => file.includes('.ko'));
  const sources = matchModuleFiles(files, modules);
  const staged: StagedModule[] = [];
  for (const [i, name] of modules.entries()) {
    const source = sources[i] as string;
    const path = join(destDir, `${name}.ko`);
    await decompressModule(source, path);
    staged.push({ name, path });
  }
  return staged;
}

async function decompressModule(source: string, dest: string): Promise<void> {
  if (source.endsWith('.ko')) return copyFile(source, dest);
  if (source.endsWith('.gz')) return pipeline(createReadStream(source), createGunzip(), createWriteStream(dest));
  const tool = source.endsWith('.xz') ? 'xz' : 'zstd';
  const args = ['-dc', source];
  const child = spawnHostTool(tool, args, { stdout: 'pipe' });
  const stdout = child.stdout;
  if (!stdout) throw new Error(`${tool} was started without a stdout pipe`);
  await Promise.all([pipeline(stdout, createWriteStream(dest)), waitForHostTool(child, tool, args, `decompressing ${basename(source)}`)]);
}
