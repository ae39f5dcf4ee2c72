/**
 * Boot time of a real guest through Nexus (agent API `start` -> boot marker on the console)
 * against the same QEMU command run by hand, median of 5 each, and the ratio: the overhead Nexus
 * adds. Both boot the test image under the same accelerator, without a NIC. Prints; asserts nothing.
 */
import { spawn } from 'node:child_process';
import { existsSync, mkdirSync, readFileSync, symlinkSync } from 'node:fs';
import { join } from 'node:path';
import { vmLayout } from '../src/contracts/vm-layout.js';
import { qemuArgs } from '../src/agent/drivers/qemu/qemu-command.js';
import { hostTscKhz } from '../src/kit/host-tsc.js';
import { copySparse } from '../src/kit/sparse-copy.js';
import { startAgentProcess } from '../test/support/agent-harness.js';
import { testGuestImage } from '../test/support/guest-image.js';
import { testBridgeName, testVmId } from '../test/support/net-names.js';
import { tempDir } from '../test/support/temp-dir.js';

const RUNS = Number(process.env.BENCH_RUNS ?? 5);
const MARKER = 'NEXUS_BOOT_OK';

async function untilMarker(consoleLog: string, startedAt: number, timeoutMs = 120_000): Promise<number> {
  for (;;) {
    if (existsSync(consoleLog) && readFileSync(consoleLog, 'utf8').includes(MARKER)) return Date.now() - startedAt;
    if (Date.now() - startedAt > timeoutMs) throw new Error(`no boot marker in ${consoleLog}`);
    await new Promise((resolve) => setTimeout(resolve, 5));
  }
}

const median = (values: number[]) => [...values].sort((a, b) => a - b)[Math.floor(values.length / 2)] ?? NaN;

const dir = tempDir('nexus-bench-boot-');
const runDir = join(dir.path, 'run');
mkdirSync(runDir, { recursive: true });
const image = await testGuestImage();
symlinkSync(join(image.dir, '..'), join(runDir, 'images'));
const agent = await startAgentProcess(runDir, { NEXUS_BRIDGE: testBridgeName(), NEXUS_NAT: 'off' });
const accel = (await agent.call('GET', '/agent/v1/capacity')).body.kvm.usable ? 'kvm' : 'tcg';
const spec = {
  vcpu: 1,
  mem_mib: 128,
  kernel: { path: join(runDir, 'images', image.manifest.name, 'vmlinux'), cmdline: image.manifest.boot_args },
  initrd: { path: join(runDir, 'images', image.manifest.name, 'initrd.img') },
  drives: [{ id: 'rootfs', path: join(runDir, 'images', image.manifest.name, 'rootfs.ext4'), is_root: true }],
  nics: [],
};

try {
  const throughNexus: number[] = [];
  const byHand: number[] = [];
  for (let i = 0; i < RUNS; i++) {
    const id = testVmId();
    await agent.call('PUT', `/agent/v1/vms/${id}`, spec);
    const startedAt = Date.now();
    await agent.call('POST', `/agent/v1/vms/${id}/actions`, { action: 'start' });
    throughNexus.push(await untilMarker(join(runDir, 'vms', id, 'logs', 'console.log'), startedAt));
    await agent.call('DELETE', `/agent/v1/vms/${id}`);

    // The same command the driver runs, spawned directly.
    const handId = testVmId();
    const layout = vmLayout(join(dir.path, 'by-hand'), handId);
    mkdirSync(join(layout.dir, 'sock'), { recursive: true });
    mkdirSync(layout.logsDir, { recursive: true });
    const rootfs = join(layout.dir, 'rootfs.img');
    await copySparse(image.rootfsPath, rootfs);
    const args = qemuArgs(layout, { ...spec, drives: [{ id: 'rootfs', path: rootfs, is_root: true }] }, { accel, tscKhz: await hostTscKhz() });
    const handStart = Date.now();
    const qemu = spawn('qemu-system-x86_64', args, { stdio: 'ignore' });
    byHand.push(await untilMarker(layout.consoleLog, handStart));
    qemu.kill('SIGKILL');
    await new Promise((resolve) => qemu.once('exit', resolve));
  }
  const nexus = median(throughNexus);
  const hand = median(byHand);
  console.log(`\nguest boot to marker (${accel.toUpperCase()}, 1 vCPU, 128 MiB, no NIC), median of ${RUNS}\n`);
  console.log(`  through Nexus (agent start -> marker)  ${nexus} ms   [${throughNexus.join(', ')}]`);
  console.log(`  same qemu command by hand              ${hand} ms   [${byHand.join(', ')}]`);
  console.log(`  ratio Nexus / by hand                  ${(nexus / hand).toFixed(2)}x (${nexus - hand} ms added)\n`);
} finally {
  await agent.process.stop();
  dir.remove();
}
