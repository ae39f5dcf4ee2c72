import assert from 'node:assert/strict';
import { type ChildProcess, spawn } from 'node:child_process';
import { once } from 'node:events';
import { copyFile, mkdir, readFile, readdir, stat, truncate } from 'node:fs/promises';
import { createConnection } from 'node:net';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { after, before, describe, it } from 'node:test';
import { stopChild } from '../../src/kit/child-process.js';
import { guestKernelCmdline } from '../../src/images/guest-cmdline.js';
import { type GuestImage, buildGuestImage } from '../../src/images/guest-image-builder.js';
import { ACPID_FAILED_MARKER, BOOT_MARKER, POWEROFF_MARKER } from '../../src/images/guest-init-scripts.js';
import { findImageFileProblem } from '../../src/images/image-manifest.js';
import { hostTscKhz } from '../../src/kit/host-tsc.js';
import { pvhEntryAddress } from '../../src/images/kernel-extract.js';
import { copySparse } from '../../src/kit/sparse-copy.js';
import { TEST_IMAGE_NAME, TEST_IMAGE_RUN_DIR, testGuestImage } from '../support/guest-image.js';
import { eventually } from '../support/nexus-process.js';
import { tempDir } from '../support/temp-dir.js';

const QEMU = process.env.NEXUS_QEMU_BIN || 'qemu-system-x86_64';
/** Generous: one boot takes ~2.5 s alone under TCG, much longer on a busy CI machine. */
const BOOT_TIMEOUT_MS = 60_000;
const TEST_TIMEOUT_MS = 180_000;

interface Guest {
  child: ChildProcess;
  qmpSocket: string;
  console(): Promise<string>;
  /** Resolves with the console text once `pattern` appears in it; fails early if QEMU exits. */
  waitForConsole(what: string, pattern: RegExp, timeoutMs?: number): Promise<string>;
  exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
  stderr(): string;
}

/** Boots the image under QEMU microvm (TCG) from a private copy of its rootfs, as the driver will. */
async function bootGuest(image: GuestImage, dir: string, options: { cmdline: string; nic: boolean }): Promise<Guest> {
  const disk = join(dir, 'disk.ext4');
  await copySparse(image.rootfsPath, disk);
  const consoleLog = join(dir, 'console.log');
  const qmpSocket = join(dir, 'qmp.sock');
  const args = [
    '-M',
    'microvm,x-option-roms=off,isa-serial=on',
    '-accel',
    'tcg',
    '-cpu',
    'max',
    '-m',
    '128',
    '-smp',
    '1',
    '-nodefaults',
    '-no-user-config',
    '-display',
    'none',
    '-no-reboot',
    '-kernel',
    image.kernelPath,
    '-initrd',
    image.initrdPath,
    '-append',
    options.cmdline,
    '-serial',
    `file:${consoleLog}`,
    '-drive',
    `id=root,file=${disk},format=raw,if=none`,
    '-device',
    'virtio-blk-device,drive=root',
    '-qmp',
    `unix:${qmpSocket},server=on,wait=off`,
    ...(options.nic ? ['-netdev', 'user,id=n0', '-device', 'virtio-net-device,netdev=n0'] : []),
  ];
  const child = spawn(QEMU, args, { stdio: ['ignore', 'ignore', 'pipe'] });
  let stderr = '';
  child.stderr?.on('data', (chunk: Buffer) => (stderr += chunk.toString()));
  started.push(child);
  const exited = once(child, 'exit').then(([code, signal]) => ({ code: code as number | null, signal: signal as NodeJS.Signals | null }));
  const readConsole = () => readFile(consoleLog, 'utf8').catch(() => '');
  return {
    child,
    qmpSocket,
    console: readConsole,
    exited,
    stderr: () => stderr,
    waitForConsole: async (what, pattern, timeoutMs = BOOT_TIMEOUT_MS) => {
      let text = '';
      await eventually(
        what,
        async () => {
          text = await readConsole();
          if (pattern.test(text)) return true;
          if (child.exitCode !== null || child.signalCode !== null) {
            throw new Error(`QEMU exited before ${what}:\n${stderr}\n--- console ---\n${text.slice(-3000)}`);
          }
          return false;
        },
        timeoutMs,
      ).catch((error: Error) => {
        throw new Error(`${error.message}\n--- console ---\n${text.slice(-3000)}`);
      });
      return text;
    },
  };
}

/** Runs QMP commands in order on a fresh connection; events between replies are skipped. */
async function qmp(socketPath: string, commands: string[]): Promise<unknown[]> {
  const socket = createConnection(socketPath);
  await once(socket, 'connect');
  const lines: string[] = [];
  let buffered = '';
  let wake: (() => void) | undefined;
  socket.setEncoding('utf8').on('data', (chunk: string) => {
    buffered += chunk;
    const parts = buffered.split('\n');
    buffered = parts.pop() ?? '';
    lines.push(...parts.filter((line) => line.trim()));
    wake?.();
  });
  const next = async (): Promise<Record<string, unknown>> => {
    while (lines.length === 0) await new Promise<void>((resolve) => (wake = resolve));
    return JSON.parse(lines.shift() as string) as Record<string, unknown>;
  };
  try {
    assert.ok('QMP' in (await next()), 'QMP greeting first');
    const replies: unknown[] = [];
    for (const command of commands) {
      socket.write(`${JSON.stringify({ execute: command })}\n`);
      let reply = await next();
      while ('event' in reply) reply = await next();
      assert.ok('return' in reply, `${command}: ${JSON.stringify(reply)}`);
      replies.push(reply.return);
    }
    return replies;
  } finally {
    socket.destroy();
  }
}

function counters(consoleText: string): number[] {
  return [...consoleText.matchAll(/NEXUS_COUNTER (\d+)/g)].map((match) => Number(match[1]));
}

const started: ChildProcess[] = [];
const dirs: Array<{ remove: () => void }> = [];

describe('guest test image', () => {
  let image: GuestImage;
  let tscKhz: number | undefined;

  before(
    async () => {
      image = await testGuestImage();
      tscKhz = await hostTscKhz();
    },
    { timeout: 600_000 },
  );

  after(async () => {
    await Promise.all(started.map((child) => stopChild(child, 5_000)));
    for (const dir of dirs) dir.remove();
  });

  function scratch(prefix: string): string {
    const dir = tempDir(prefix);
    dirs.push(dir);
    return dir.path;
  }

  it('is a PVH vmlinux, a gzip initramfs and an ext4 rootfs, as the manifest says (sizes and sha256)', async () => {
    assert.equal(image.dir, join(TEST_IMAGE_RUN_DIR, 'images', TEST_IMAGE_NAME));
    assert.equal(await findImageFileProblem(image.dir, image.manifest, true), undefined);
    assert.ok(pvhEntryAddress(await readFile(image.kernelPath)) !== undefined, 'vmlinux has a PVH entry note');
    const initrd = await readFile(image.initrdPath);
    assert.deepEqual([initrd[0], initrd[1]], [0x1f, 0x8b], 'initrd is gzip');
    const superblock = Buffer.alloc(2);
    const rootfs = await readFile(image.rootfsPath);
    rootfs.copy(superblock, 0, 1024 + 0x38, 1024 + 0x3a);
    assert.equal(superblock.readUInt16LE(0), 0xef53, 'rootfs has the ext4 magic');
    assert.match(image.manifest.kernel_package, /^linux-image-\d+\.\d+\.\d+-\d+-amd64=/);
    assert.equal(image.manifest.boot_marker, BOOT_MARKER);
  });

  it('a second build reuses the image: same files, same manifest', { timeout: TEST_TIMEOUT_MS }, async () => {
    const lines: string[] = [];
    const again = await buildGuestImage({ runDir: TEST_IMAGE_RUN_DIR, name: TEST_IMAGE_NAME, onProgress: (line) => lines.push(line) });
    assert.equal(again.reused, true);
    assert.deepEqual(again.manifest, image.manifest);
    assert.ok(
      lines.some((line) => /reusing/.test(line)),
      lines.join('\n'),
    );
  });

  it('boots under QEMU microvm: marker, no network without nexus.ip, a counter that goes up', { timeout: TEST_TIMEOUT_MS }, async () => {
    const guest = await bootGuest(image, scratch('nexus-guest-boot-'), { cmdline: guestKernelCmdline({ tscKhz }), nic: false });
    await guest.waitForConsole('the guest prints its boot marker', new RegExp(BOOT_MARKER));
    const text = await guest.waitForConsole('the guest counts to 2', /NEXUS_COUNTER 2\b/, 30_000);
    assert.match(text, /NEXUS_NET none/);
    const seen = counters(text);
    assert.ok(seen.length >= 2, text);
    for (let i = 1; i < seen.length; i++) assert.equal(seen[i], (seen[i - 1] as number) + 1, `counters ${seen.join(',')}`);
    assert.ok(text.indexOf(BOOT_MARKER) < text.indexOf('NEXUS_COUNTER 1'));
    await stopChild(guest.child, 5_000);
  });

  it('configures eth0 from nexus.ip/nexus.gw, and powers off on QMP system_powerdown', { timeout: TEST_TIMEOUT_MS }, async () => {
    const cmdline = guestKernelCmdline({ tscKhz, ipCidr: '10.99.0.2/24', gatewayIp: '10.99.0.1', hostname: 'guest-test' });
    const guest = await bootGuest(image, scratch('nexus-guest-net-'), { cmdline, nic: true });
    const text = await guest.waitForConsole('the guest prints its boot marker', new RegExp(BOOT_MARKER));
    assert.match(text, /NEXUS_NET eth0 10\.99\.0\.2\/24 via 10\.99\.0\.1/);
    assert.doesNotMatch(text, new RegExp(ACPID_FAILED_MARKER));

    await qmp(guest.qmpSocket, ['qmp_capabilities', 'system_powerdown']);
    const timer = setTimeout(() => guest.child.kill('SIGKILL'), 30_000);
    const { code, signal } = await guest.exited;
    clearTimeout(timer);
    const after = await guest.console();
    assert.deepEqual(
      { code, signal },
      { code: 0, signal: null },
      `QEMU should exit by itself once the guest powers off\n${guest.stderr()}\n--- console ---\n${after.slice(-3000)}`,
    );
    assert.match(after, new RegExp(POWEROFF_MARKER));
  });

  it('copyRootfsForVm makes a sparse private copy and will not overwrite a VM disk', async () => {
    const dir = scratch('nexus-guest-copy-');
    const disk = join(dir, 'vm.ext4');
    await copySparse(image.rootfsPath, disk);
    const copied = await stat(disk);
    assert.equal(copied.size, image.manifest.files.rootfs.size_bytes);
    assert.ok(copied.blocks * 512 < copied.size / 2, `the copy is sparse (${copied.blocks * 512} of ${copied.size} bytes allocated)`);
    await assert.rejects(copySparse(image.rootfsPath, disk), (error: { code?: string }) => error.code === 'conflict');
    await copySparse(image.rootfsPath, disk, { overwrite: true });
    assert.deepEqual(await readdir(dir), ['vm.ext4'], 'no partial copy left behind');
  });

  it('rebuilds a damaged image in place, reproducibly, and leaves no scratch dirs', { timeout: TEST_TIMEOUT_MS }, async () => {
    const runDir = scratch('nexus-image-rebuild-');
    const imageDir = join(runDir, 'images', TEST_IMAGE_NAME);
    const cacheDir = join(runDir, 'images', '.cache');
    await mkdir(imageDir, { recursive: true });
    await mkdir(cacheDir, { recursive: true });
    for (const file of await readdir(image.dir)) await copyFile(join(image.dir, file), join(imageDir, file));
    // The shared download cache, copied so this test cannot disturb it (and needs no download).
    const sharedCache = join(TEST_IMAGE_RUN_DIR, 'images', '.cache');
    for (const file of (await readdir(sharedCache)).filter((name) => name.endsWith('.deb'))) await copyFile(join(sharedCache, file), join(cacheDir, file));
    await truncate(join(imageDir, image.manifest.files.rootfs.path), 4096);

    const rebuilt = await buildGuestImage({ runDir, name: TEST_IMAGE_NAME });
    assert.equal(rebuilt.reused, false);
    assert.equal(rebuilt.manifest.cache_key, image.manifest.cache_key);
    assert.equal(await findImageFileProblem(rebuilt.dir, rebuilt.manifest, true), undefined);
    // vmlinux and the initramfs are byte-for-byte reproducible; mkfs gives each rootfs a new UUID.
    assert.equal(rebuilt.manifest.files.kernel.sha256, image.manifest.files.kernel.sha256);
    assert.equal(rebuilt.manifest.files.initrd.sha256, image.manifest.files.initrd.sha256);
    assert.deepEqual((await readdir(join(runDir, 'images'))).sort(), ['.cache', '.locks', TEST_IMAGE_NAME]);
  });

  it('`image build --json` prints the manifest of the reused image', { timeout: TEST_TIMEOUT_MS }, async () => {
    // The command as main.ts will register it, from the build the test runner made (dist/).
    const command = fileURLToPath(new URL('../../dist/cli/commands/image-build.js', import.meta.url));
    const script = [
      "import { Command } from 'commander';",
      `import { registerImageBuild } from ${JSON.stringify(command)};`,
      "const program = new Command('nexus');",
      "registerImageBuild(program.command('image'));",
      "await program.parseAsync(process.argv.slice(1), { from: 'user' });",
    ].join('\n');
    const child = spawn(process.execPath, ['--input-type=module', '-e', script, 'image', 'build', TEST_IMAGE_NAME, '--run-dir', TEST_IMAGE_RUN_DIR, '--json'], {
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    started.push(child);
    let stdout = '';
    let stderr = '';
    child.stdout?.on('data', (chunk: Buffer) => (stdout += chunk.toString()));
    child.stderr?.on('data', (chunk: Buffer) => (stderr += chunk.toString()));
    const [code] = await once(child, 'exit');
    assert.equal(code, 0, stderr);
    assert.deepEqual(JSON.parse(stdout), image.manifest);
    assert.match(stderr, /nexus: image test is up to date/);
  });
});
