import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { chmodSync, existsSync, mkdirSync, readFileSync, readdirSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { promisify } from 'node:util';
import { resolveAgentConfig } from '../../src/agent/config.js';
import { type RunningAgent, realAgentHost, startAgent } from '../../src/agent/main.js';
import { captureLogger } from '../support/capture-logger.js';
import { FIRECRACKER_DOUBLE, JAILED_ID, JAILER_DOUBLE, doubleImage, doubleVmSpec } from '../support/firecracker-agent.js';
import { testBridgeCidr, testBridgeName, testVmId } from '../support/net-names.js';
import { eventually, isAlive } from '../support/nexus-process.js';
import { send } from '../support/test-manager.js';
import { tempDir } from '../support/temp-dir.js';

const run = promisify(execFile);

/**
 * The production path from the agent's settings to its Firecracker driver, which the other
 * Firecracker tests skip (they build the driver by hand): the binary and jailer named in the
 * environment are probed (`--version`) and the driver built from that probe launches VMs with
 * the configured log level and jailer settings. The API double and the jailer double stand in
 * for the binaries; only KVM, which cannot run guests here, is answered as usable.
 */
describe('the agent builds its Firecracker driver from its settings and probe (doubles)', () => {
  const dir = tempDir('nexus-fc-wiring-');
  const runDir = join(dir.path, 'run');
  // Neither is a default: the driver can only have them from the settings.
  const chrootBase = join(dir.path, 'chroots');
  const firstUid = JAILED_ID + 100;
  const bridge = testBridgeName();
  const id = testVmId();
  let agent: RunningAgent | undefined;
  let call: (method: string, path: string, body?: unknown) => Promise<{ status: number; body: any }>;

  before(async () => {
    // The jailed user must reach its jail root (a real chroot would not look at the parents).
    chmodSync(dir.path, 0o755);
    const image = doubleImage(runDir);
    mkdirSync(join(image.kernel, '..'), { recursive: true });
    writeFileSync(image.kernel, 'kernel');
    writeFileSync(image.rootfs, Buffer.alloc(1 << 20));
    const config = resolveAgentConfig(
      { bind: '127.0.0.1:0', runDir, name: 'fc-wiring' },
      {
        NEXUS_BRIDGE: bridge,
        NEXUS_BRIDGE_CIDR: testBridgeCidr(),
        NEXUS_NAT: 'off',
        NEXUS_FIRECRACKER_BIN: FIRECRACKER_DOUBLE,
        NEXUS_FIRECRACKER_LOG_LEVEL: 'Error',
        NEXUS_JAILER_BIN: JAILER_DOUBLE,
        NEXUS_JAILER_UID_RANGE: `${firstUid}-${firstUid + 1}`,
        NEXUS_JAILER_CHROOT_BASE: chrootBase,
      },
    );
    const { log } = captureLogger('fc-wiring');
    const host = await realAgentHost(config, log, { kvm: async () => ({ usable: true }) });
    agent = await startAgent(config, log, host);
    const credential = agent.identity.credential;
    call = (method, path, body) => send(`${agent?.url}${path}`, { method, body, headers: { authorization: `Bearer ${credential}` } });
  });

  after(async () => {
    if (agent) {
      const deleted = await call('DELETE', `/agent/v1/vms/${id}`).catch((error: unknown) => ({ status: 0, body: String(error) }));
      await agent.close();
      assert.ok(deleted.status === 200 || deleted.status === 404, `cleanup delete: ${deleted.status} ${JSON.stringify(deleted.body)}`);
    }
    await run('ip', ['link', 'del', 'dev', bridge]).catch(() => undefined);
    dir.remove();
  });

  it('reports the probed binary, makes Firecracker the default driver, and launches through the configured jailer at the configured log level', async () => {
    const capacity = await call('GET', '/agent/v1/capacity');
    assert.equal(capacity.status, 200, JSON.stringify(capacity.body));
    const firecracker = capacity.body.drivers.find((driver: { name: string }) => driver.name === 'firecracker');
    assert.deepEqual(firecracker, { name: 'firecracker', available: true, version: 'Firecracker v1.17.0-dev' }, 'the binary and the jailer answered the probe');

    const ensured = await call('PUT', `/agent/v1/vms/${id}`, doubleVmSpec(runDir));
    assert.equal(ensured.status, 200, JSON.stringify(ensured.body));
    assert.equal(ensured.body.driver, 'firecracker', 'a VM that names no driver gets Firecracker where the probe found it');
    const started = await call('POST', `/agent/v1/vms/${id}/actions`, { action: 'start' });
    assert.equal(started.status, 200, JSON.stringify(started.body));
    const pid: number = started.body.vm.pid;

    // The jailer settings: a jail under the configured chroot base, the first uid of the configured range.
    const jails = join(chrootBase, 'firecracker-double');
    const [jail = ''] = existsSync(jails) ? readdirSync(jails) : [];
    assert.ok(jail.startsWith(`${id}-`), `a jail of the VM under the configured chroot base ${chrootBase}`);
    assert.equal(statSync(`/proc/${pid}/root`).ino, statSync(join(jails, jail, 'root')).ino, 'Firecracker runs chrooted in that jail');
    const uids = /^Uid:\s+(\d+)/m.exec(readFileSync(`/proc/${pid}/status`, 'utf8'))?.[1];
    assert.equal(Number(uids), firstUid, 'as the first uid of the configured range');

    // The log level: at Error, Firecracker logs a refusal and none of the requests it served.
    const refused = await call('PUT', `/agent/v1/vms/${id}/proxy/machine-config`, { vcpu_count: 1, mem_size_mib: 128 });
    assert.equal(refused.status, 400, `a pre-boot call after boot is refused: ${JSON.stringify(refused.body)}`);
    const firecrackerLog = join(runDir, 'vms', id, 'logs', 'firecracker.log');
    await eventually('the refusal is logged', () => existsSync(firecrackerLog) && readFileSync(firecrackerLog, 'utf8').includes(':ERROR]'), 10_000);
    const lines = readFileSync(firecrackerLog, 'utf8').split('\n').filter(Boolean);
    assert.deepEqual(
      lines.filter((line) => !line.includes(':ERROR]')),
      [],
      'only errors at level Error: the requests served are not logged',
    );

    assert.equal((await call('DELETE', `/agent/v1/vms/${id}`)).status, 200);
    await eventually('the VMM exited', () => !isAlive(pid), 10_000);
    assert.deepEqual(readdirSync(jails), [], 'its jail is gone');
  });
});
