import { chmod, copyFile, mkdir, symlink, writeFile } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { NexusError } from '../kit/nexus-error.js';
import { busyboxAppletPaths } from './busybox-applets.js';
import { POWER_BUTTON_HANDLER, POWER_BUTTON_HANDLER_PATH, ROOTFS_INIT } from './guest-init-scripts.js';
import { runHostTool } from '../kit/host-tool.js';

/** Size of the root filesystem image; sparse, so it costs only what is written (about 2 MiB). */
export const ROOTFS_SIZE_MIB = 16;

/** Empty directories of the root filesystem and their modes (mount points, scratch). */
const ROOTFS_DIRS: ReadonlyArray<[string, number]> = [
  ['dev', 0o755],
  ['proc', 0o555],
  ['sys', 0o555],
  ['run', 0o755],
  ['tmp', 0o1777],
  ['root', 0o700],
  ['home', 0o755],
  ['mnt', 0o755],
  ['var', 0o755],
  ['var/log', 0o755],
  ['var/tmp', 0o1777],
];

/**
 * Device nodes made inside the image with debugfs (mknod needs root; debugfs does not): a kernel
 * that mounts this disk itself, without the initramfs, opens /dev/console for init before init
 * can mount devtmpfs.
 */
const DEVICE_NODES: ReadonlyArray<{ name: string; major: number; minor: number; mode: string }> = [
  { name: 'console', major: 5, minor: 1, mode: '020600' },
  { name: 'null', major: 1, minor: 3, mode: '020666' },
];

export interface RootfsInputs {
  busyboxPath: string;
  /** A scratch directory of the builder's: the tree is laid out in it before mkfs copies it in. */
  workDir: string;
  destPath: string;
  /** Written to /etc/nexus-image, so a VM's disk says which image it came from. */
  imageLabel: string;
  sizeMib?: number;
}

/**
 * Builds the ext4 root filesystem with `mkfs.ext4 -d`: no root, no loop mounts. It holds busybox
 * and its applet links, the Nexus init, the power-button handler and a minimal /etc.
 * Files keep the builder's uid (root when the agent builds); init runs as root either way.
 */
export async function buildRootfs(inputs: RootfsInputs): Promise<void> {
  const root = join(inputs.workDir, 'rootfs-tree');
  await mkdir(root, { recursive: true });
  // mkfs.ext4 -d gives the filesystem's root the staging dir's mode; a mkdtemp dir is 0700.
  await chmod(root, 0o755);
  for (const [dir, mode] of ROOTFS_DIRS) {
    await mkdir(join(root, dir), { recursive: true });
    await chmod(join(root, dir), mode);
  }
  await symlink('../run', join(root, 'var/run'));

  await mkdir(join(root, 'bin'), { recursive: true });
  await copyFile(inputs.busyboxPath, join(root, 'bin/busybox'));
  await chmod(join(root, 'bin/busybox'), 0o755);
  for (const applet of await busyboxAppletPaths(inputs.busyboxPath)) {
    await mkdir(dirname(join(root, applet)), { recursive: true });
    await symlink('/bin/busybox', join(root, applet));
  }

  await writeExecutable(join(root, 'sbin/init'), ROOTFS_INIT);
  await writeExecutable(join(root, POWER_BUTTON_HANDLER_PATH), POWER_BUTTON_HANDLER);
  await writeFile(join(root, 'etc/passwd'), 'root:x:0:0:root:/root:/bin/sh\n');
  await writeFile(join(root, 'etc/group'), 'root:x:0:\n');
  await writeFile(join(root, 'etc/hosts'), '127.0.0.1\tlocalhost\n::1\tlocalhost\n');
  await writeFile(join(root, 'etc/nexus-image'), `${inputs.imageLabel}\n`);

  const sizeMib = inputs.sizeMib ?? ROOTFS_SIZE_MIB;
  await runHostTool('mkfs.ext4', ['-q', '-F', '-m', '0', '-L', 'nexus-root', '-d', root, inputs.destPath, `${sizeMib}M`], {
    doing: 'building the root filesystem',
  });
  await makeDeviceNodes(inputs.destPath, inputs.workDir);
}

async function writeExecutable(path: string, text: string): Promise<void> {
  await mkdir(dirname(path), { recursive: true });
  await writeFile(path, text, { mode: 0o755 });
  await chmod(path, 0o755);
}

async function makeDeviceNodes(imagePath: string, workDir: string): Promise<void> {
  const doing = 'adding device nodes to the root filesystem';
  const commands = join(workDir, 'debugfs-commands');
  const lines = ['cd /dev', ...DEVICE_NODES.flatMap((node) => [`mknod ${node.name} c ${node.major} ${node.minor}`, `sif ${node.name} mode ${node.mode}`])];
  await writeFile(commands, `${lines.join('\n')}\n`);
  await runHostTool('debugfs', ['-w', '-f', commands, imagePath], { doing });
  // debugfs exits 0 even when a request fails: check the result instead.
  const { stdout } = await runHostTool('debugfs', ['-R', 'ls -l /dev', imagePath], { doing });
  const missing = DEVICE_NODES.filter((node) => !new RegExp(`\\s${node.mode.slice(1)}\\s.*\\s${node.name}\\s*$`, 'm').test(stdout));
  if (missing.length > 0) {
    throw new NexusError('unavailable', `${doing}: debugfs did not create ${missing.map((node) => `/dev/${node.name}`).join(', ')}`, {
      suggestion: 'Check that e2fsprogs (debugfs) works here: debugfs -V.',
    });
  }
}
