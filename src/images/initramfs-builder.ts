import { readFile, writeFile } from 'node:fs/promises';
import { promisify } from 'node:util';
import { gzip } from 'node:zlib';
import { busyboxAppletPaths, directoriesFor } from './busybox-applets.js';
import { type CpioEntry, newcArchive } from './cpio-newc.js';
import { INITRAMFS_MODULE_DIR, initramfsInit } from './guest-init-scripts.js';
import type { StagedModule } from './kernel-modules.js';

const gzipAsync = promisify(gzip);

/** Directories the initramfs's init mounts on or switches to. */
const MOUNT_POINTS = ['dev', 'newroot', 'proc', 'sys'];

export interface InitramfsInputs {
  /** A static busybox binary. */
  busyboxPath: string;
  /** The modules to load, in load order. */
  modules: readonly StagedModule[];
  /** Where the gzip-compressed newc archive is written. */
  destPath: string;
}

/**
 * Builds the initramfs: busybox and its applet links, the modules, /dev/console (so init has a
 * console before devtmpfs is mounted), and an /init that loads the modules and switches to the
 * root disk. The same inputs give the same bytes.
 */
export async function buildInitramfs(inputs: InitramfsInputs): Promise<void> {
  const applets = await busyboxAppletPaths(inputs.busyboxPath);
  const modulePaths = inputs.modules.map((module) => `${INITRAMFS_MODULE_DIR}/${module.name}.ko`);
  const dirs = directoriesFor([...applets, ...modulePaths, 'bin/busybox'], MOUNT_POINTS);
  const entries: CpioEntry[] = [
    ...dirs.map((path): CpioEntry => ({ kind: 'dir', path })),
    { kind: 'char', path: 'dev/console', major: 5, minor: 1 },
    { kind: 'file', path: 'bin/busybox', data: await readFile(inputs.busyboxPath), mode: 0o755 },
    ...applets.map((path): CpioEntry => ({ kind: 'symlink', path, target: '/bin/busybox' })),
  ];
  for (const [i, module] of inputs.modules.entries()) {
    entries.push({ kind: 'file', path: modulePaths[i] as string, data: await readFile(module.path) });
  }
  entries.push({ kind: 'file', path: 'init', data: Buffer.from(initramfsInit(inputs.modules.map((module) => module.name))), mode: 0o755 });
  await writeFile(inputs.destPath, await gzipAsync(newcArchive(entries)));
}
