import assert from 'node:assert/strict';
import { readFileSync, symlinkSync, mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { after, describe, it } from 'node:test';
import { probeKvm } from '../../src/agent/host/kvm-probe.js';
import { probeFirecracker } from '../../src/agent/host/driver-probe.js';
import { type AgentHarness, startAgentProcess } from '../support/agent-harness.js';
import { testGuestImage } from '../support/guest-image.js';
import { eventually, isAlive } from '../support/nexus-process.js';
import { testBridgeCidr, testBridgeName, testVmId } from '../support/net-names.js';
import { tempDir } from '../support/temp-dir.js';

/**
 * The real Firecracker binary, when this machine has one: `NEXUS_FIRECRACKER_BIN` set and KVM
 * able to run guests. Otherwise the test is reported skipped, with the reason; it never passes
 * without having run.
 */
const binary = process.env.NEXUS_FIRECRACKER_BIN;
const skip = binary
  ? await probeFirecracker(binary, await probeKvm(process.env.NEXUS_QEMU_BIN || 'qemu-system-x86_64')).then((found) =>
      found.available ? false : `Firecracker at ${binary} cannot run here: ${found.reason ?? 'unavailable'}`,
    )
  : 'NEXUS_FIRECRACKER_BIN is not set: no real Firecracker binary to run (the driver is covered against the API double and the contract)';

describe('real Firecracker', () => {
  const dir = tempDir('nexus-fc-real-');
  const bridge = testBridgeName();
  let agent: AgentHarness | undefined;
  after(async () => {
    await agent?.process.stop();
    const { execFile } = await import('node:child_process');
    await new Promise((resolve) => execFile('ip', ['link', 'del', 'dev', bridge], resolve));
    dir.remove();
  });

  it('boots the test image, pauses, resumes and stops', { skip }, async () => {
    const image = await testGuestImage();
    const runDir = join(dir.path, 'run');
    mkdirSync(runDir, { recursive: true });
    symlinkSync(join(image.dir, '..'), join(runDir, 'images'));
    agent = await startAgentProcess(runDir, {
      NEXUS_BRIDGE: bridge,
      NEXUS_BRIDGE_CIDR: testBridgeCidr(),
      NEXUS_NAT: 'off',
      NEXUS_FIRECRACKER_BIN: binary ?? '',
    });
    const id = testVmId();
    const images = join(runDir, 'images', 'test');
    const ensured = await agent.call('PUT', `/agent/v1/vms/${id}`, {
      vcpu: 1,
      mem_mib: 128,
      driver: 'firecracker',
      kernel: { path: join(images, 'vmlinux'), cmdline: 'console=ttyS0 reboot=k panic=1' },
      initrd: { path: join(images, 'initrd.img') },
      drives: [{ id: 'rootfs', path: join(images, 'rootfs.ext4'), is_root: true }],
      nics: [{}],
    });
    assert.equal(ensured.status, 200, JSON.stringify(ensured.body));
    const started = await agent.call('POST', `/agent/v1/vms/${id}/actions`, { action: 'start' });
    assert.equal(started.body.vm.state, 'running', JSON.stringify(started.body));
    await eventually('the guest boots', () => readFileSync(join(runDir, 'vms', id, 'logs', 'console.log'), 'utf8').includes('NEXUS_BOOT_OK'), 60_000);
    assert.equal((await agent.call('POST', `/agent/v1/vms/${id}/actions`, { action: 'pause' })).body.vm.state, 'paused');
    assert.equal((await agent.call('POST', `/agent/v1/vms/${id}/actions`, { action: 'resume' })).body.vm.state, 'running');
    const stopped = await agent.call('POST', `/agent/v1/vms/${id}/actions`, { action: 'stop', timeout_ms: 10_000 });
    assert.equal(stopped.body.vm.state, 'stopped');
    assert.ok(!isAlive(started.body.vm.pid));
    assert.equal((await agent.call('DELETE', `/agent/v1/vms/${id}`)).status, 200);
  });
});
