import assert from 'node:assert/strict';
import { type ChildProcess, execFileSync, spawn } from 'node:child_process';
import { existsSync, mkdirSync, symlinkSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, describe, it } from 'node:test';
import { resolveAgentConfig } from '../../src/agent/config.js';
import { readLink } from '../../src/agent/host/net/ip-command.js';
import { BridgeNetwork } from '../../src/agent/host/net/bridge-network.js';
import { agentHostSweep, lockRunDir } from '../../src/agent/main.js';
import { tapNameOf } from '../../src/contracts/host-names.js';
import { readProcessStartTicks } from '../../src/kit/process-identity.js';
import { captureLogger } from '../support/capture-logger.js';
import { eventually, isAlive } from '../support/nexus-process.js';
import { testBridgeCidr, testBridgeName, testVmId } from '../support/net-names.js';
import { tempDir } from '../support/temp-dir.js';

/**
 * The agent's host sweep as `nexus dev` runs it when its agent died while stopping: stand-in VMMs
 * (tail, under a QEMU binary's name, following a file, as the process scan recognises a VMM), a
 * pid file, and a real bridge, TAP and NAT table of the test's own.
 */
describe('host sweep (what nexus dev runs when its agent did not clean up)', () => {
  const dir = tempDir('nexus-host-sweep-');
  const bridge = testBridgeName();
  const cidr = testBridgeCidr();
  const runDir = join(dir.path, 'run');
  const config = resolveAgentConfig({ runDir }, { NEXUS_BRIDGE: bridge, NEXUS_BRIDGE_CIDR: cidr, NEXUS_NAT: 'on' });
  const network = new BridgeNetwork({ bridge, cidr: config.bridgeCidr, nat: true, netDir: join(runDir, 'net') }, captureLogger().log);
  const vmId = testVmId();
  const tap = tapNameOf(vmId);
  const vmms: ChildProcess[] = [];
  const fakeQemu = join(dir.path, 'bin', 'qemu-system-x86_64');
  mkdirSync(join(fakeQemu, '..'), { recursive: true });
  symlinkSync(execFileSync('sh', ['-c', 'command -v tail'], { encoding: 'utf8' }).trim(), fakeQemu);

  /** A stand-in VMM following `file` (made first): what the scan sees is its argv. */
  const standIn = (file: string, argPrefix = ''): number => {
    mkdirSync(join(file, '..'), { recursive: true });
    writeFileSync(file, '');
    const vmm = spawn(fakeQemu, ['-f', `${argPrefix}${file}`], { stdio: 'ignore' });
    vmms.push(vmm);
    return vmm.pid ?? 0;
  };

  after(async () => {
    for (const vmm of vmms) if (vmm.pid && isAlive(vmm.pid)) vmm.kill('SIGKILL');
    if (await readLink(tap)) execFileSync('ip', ['link', 'del', 'dev', tap]);
    await network.removeBridge();
    dir.remove();
  });

  it('kills the VMMs of the run dir by pid (and only those), forgets their pid files, removes their TAPs, the NAT and the bridge', async () => {
    const vmDir = join(runDir, 'vms', vmId);
    const recorded = standIn(join(vmDir, 'logs', 'console.log'));
    const stray = standIn(join(vmDir, 'logs', 'serial.log'));
    // Another run dir whose path holds this one's (`…/elsewhere/<run dir>/vms/<id>/`): not ours.
    const elsewhere = standIn(join(dir.path, 'elsewhere', runDir, 'vms', testVmId(), 'logs', 'console.log'));
    await eventually(
      'the stand-ins run',
      async () => (await readProcessStartTicks(recorded)) !== undefined && (await readProcessStartTicks(stray)) !== undefined,
    );
    writeFileSync(join(vmDir, 'pid'), JSON.stringify({ pid: recorded, start_ticks: await readProcessStartTicks(recorded) }));
    await network.ensureNic(vmId);
    const host = await agentHostSweep(config, captureLogger().log);

    const before = await host.leftovers();
    assert.deepEqual([...before.vmms].sort(), [recorded, stray].sort(), 'the VMM its pid file names and the stray its argv shows, not the other run dir’s');
    assert.deepEqual(before.network.sort(), [`TAP ${tap}`, `bridge ${bridge}`, `nftables table nexus_${bridge}`].sort(), 'the network is listed as left');

    assert.equal(await host.sweep(), 2);

    assert.ok(!isAlive(recorded) && !isAlive(stray), 'both VMMs were killed');
    assert.ok(isAlive(elsewhere), 'the VMM of the other run dir still runs');
    assert.equal(existsSync(join(vmDir, 'pid')), false, 'the pid file is forgotten');
    assert.ok(existsSync(join(vmDir, 'logs', 'console.log')), 'the VM folder stays');
    assert.equal(await readLink(tap), undefined, 'its TAP is gone');
    assert.equal(await readLink(bridge), undefined, 'the bridge is gone');
    assert.ok(!execFileSync('nft', ['list', 'tables'], { encoding: 'utf8' }).includes(`nexus_${bridge}`), 'the NAT table is gone');
    assert.deepEqual(await host.leftovers(), { vmms: [], network: [] }, 'nothing is left');
    assert.equal(await host.sweep(), 0, 'again, with nothing left: nothing to kill');
  });

  it('never sweeps while another process (an agent) holds the run dir', async () => {
    const vmDir = join(runDir, 'vms', testVmId());
    const vmm = standIn(join(vmDir, 'logs', 'console.log'));
    await eventually('the stand-in runs', async () => (await readProcessStartTicks(vmm)) !== undefined);
    const agentLock = await lockRunDir(runDir, 'nexus agent, in this test');
    try {
      const host = await agentHostSweep(config, captureLogger().log);
      await assert.rejects(host.sweep(), new RegExp(`locked by process ${process.pid} \\(nexus agent, in this test\\)`));
      assert.ok(isAlive(vmm), 'the agent’s VMM still runs');
    } finally {
      await agentLock.release();
    }
  });
});
