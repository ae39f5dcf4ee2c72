import assert from 'node:assert/strict';
import { existsSync, mkdirSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { resolveAgentConfig } from '../../src/agent/config.js';
import { type RunningAgent, startAgent } from '../../src/agent/main.js';
import { readProcessStartTicks } from '../../src/kit/process-identity.js';
import { captureLogger } from '../support/capture-logger.js';
import { assertErrorContract } from '../support/error-contract.js';
import { tempDir } from '../support/temp-dir.js';
import { send } from '../support/test-manager.js';

describe('agent API (standalone)', () => {
  const dir = tempDir('nexus-agent-');
  const runDir = join(dir.path, 'run');
  let agent: RunningAgent;
  let auth: Record<string, string>;

  before(async () => {
    const config = resolveAgentConfig({ bind: '127.0.0.1:0', runDir }, {});
    agent = await startAgent(config, captureLogger('agent').log);
    auth = { authorization: `Bearer ${agent.identity.credential}` };
  });
  after(async () => {
    await agent?.close();
    dir.remove();
  });

  for (const path of ['/agent/v1/health', '/agent/v1/capacity', '/metrics', '/agent/v1/no-such-route']) {
    it(`refuses ${path} without a bearer credential (401)`, async () => {
      assertErrorContract(await send(`${agent.url}${path}`), 401, 'unauthorized');
    });
    it(`refuses ${path} with a wrong bearer credential (401)`, async () => {
      assertErrorContract(await send(`${agent.url}${path}`, { headers: { authorization: 'Bearer nxhc_wrong' } }), 401, 'unauthorized');
    });
  }

  it('refuses a malformed Authorization header (401)', async () => {
    assertErrorContract(await send(`${agent.url}/agent/v1/health`, { headers: { authorization: agent.identity.credential } }), 401, 'unauthorized');
  });

  it('an oversize body -> 413 before anything is done, on VM specs and on the socket proxy alike', async () => {
    const id = '0b9f0e1c-5c1e-4c55-9d6e-3f1b2a7c9d10';
    const raw = JSON.stringify({ pad: 'x'.repeat(1_100_000) });
    for (const path of [`/agent/v1/vms/${id}`, `/agent/v1/vms/${id}/proxy/machine-config`]) {
      const response = await send(`${agent.url}${path}`, { method: 'PUT', raw, headers: { ...auth, 'content-type': 'application/json' } });
      assertErrorContract(response, 413, 'payload_too_large');
    }
    assert.equal(existsSync(join(runDir, 'vms', id)), false, 'no VM folder was made');
  });

  it('keeps its credential in a 0600 file in its state dir', () => {
    const file = join(runDir, 'agent', 'identity.json');
    assert.equal(statSync(file).mode & 0o777, 0o600);
    assert.equal(JSON.parse(readFileSync(file, 'utf8')).credential, agent.identity.credential);
  });

  it('answers health with the credential', async () => {
    const response = await send(`${agent.url}/agent/v1/health`, { headers: auth });
    assert.equal(response.status, 200);
    assert.equal(response.body.status, 'ok');
    assert.equal(response.body.host_id, null);
  });

  it('reports capacity: cpus, memory, run-dir disk, KVM and drivers', async () => {
    const { status, body } = await send(`${agent.url}/agent/v1/capacity`, { headers: auth });
    assert.equal(status, 200);
    assert.ok(body.vcpus >= 1);
    assert.ok(body.memory_mib >= body.memory_available_mib && body.memory_available_mib > 0);
    assert.equal(body.run_dir, runDir);
    assert.ok(body.disk_total_mib >= body.disk_available_mib && body.disk_available_mib > 0);
    assert.equal(typeof body.kvm.usable, 'boolean');
    if (!body.kvm.usable) assert.ok(body.kvm.reason);
    assert.deepEqual(
      body.drivers.map((driver: { name: string }) => driver.name),
      ['qemu', 'firecracker'],
    );
    assert.equal(body.drivers[0].available, true, 'QEMU is installed on test machines (.ci/run installs it)');
  });

  it('counts VMs whose pid file names a live process, and not a dead or reused pid', async () => {
    const vm = (id: string, pid: number, startTicks: number) => {
      mkdirSync(join(runDir, 'vms', id), { recursive: true });
      writeFileSync(join(runDir, 'vms', id, 'pid'), JSON.stringify({ pid, start_ticks: startTicks }));
    };
    const myTicks = (await readProcessStartTicks(process.pid)) ?? -1;
    vm('alive', process.pid, myTicks);
    vm('reused-pid', process.pid, myTicks + 1);
    vm('dead', 2 ** 22 + 1, 1);
    const { body } = await send(`${agent.url}/agent/v1/capacity`, { headers: auth });
    assert.equal(body.vms_running, 1);
  });

  it('exposes Prometheus metrics with the credential', async () => {
    const { status, body } = await send(`${agent.url}/metrics`, { headers: auth });
    assert.equal(status, 200);
    assert.match(body, /nexus_agent_http_requests_total\{method="GET",route="\/agent\/v1\/health",status="200"\}/);
    assert.match(body, /nexus_agent_http_requests_total\{method="GET",route="unmatched",status="401"\}/);
  });
});
