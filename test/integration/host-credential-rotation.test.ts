import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { SqlHostRepo } from '../../src/manager/adapters/sql/sql-host-repo.js';
import { SEALED_PURPOSE } from '../../src/manager/adapters/sql/sealed-purposes.js';
import { loadSecretBox } from '../../src/manager/adapters/secret-key-file.js';
import { captureLogger } from '../support/capture-logger.js';
import { assertErrorContract } from '../support/error-contract.js';
import { mintSecret } from '../../src/kit/secret.js';
import { SecretBox } from '../../src/kit/secret-box.js';
import { type HollowAgent, startHollowAgent } from '../support/hollow-agents.js';
import { eventually, runNexus } from '../support/nexus-process.js';
import { tempDir } from '../support/temp-dir.js';
import { type TestManager, send, startTestManager } from '../support/test-manager.js';

/** Host credentials rotate in place: the agent takes the new one, the old one stops working. */
describe('host credential rotation', () => {
  const dir = tempDir('nexus-rotate-');
  const runDir = join(dir.path, 'run');
  const overlapMs = 500;
  let manager: TestManager;
  let hollow: HollowAgent | undefined;
  let hostId: string;

  const startAgent = async (): Promise<HollowAgent> => {
    // A used join token is fine: an enrolled agent restarts from its stored identity.
    const agent = await startHollowAgent(manager.url, joinToken, runDir, 'rotating', {}, { credentialOverlapMs: overlapMs });
    // It listens on a new port: wait for the heartbeat that tells the manager.
    const address = new URL(agent.agent.url).host;
    await eventually('the host is ready at its new address', async () => {
      const host = await manager.hosts.get(hostId);
      return host.status === 'ready' && host.address === address;
    });
    return agent;
  };
  let joinToken: string;
  const agentCall = (agent: HollowAgent, credential: string, path = '/agent/v1/health', init: { method?: string; body?: unknown } = {}) =>
    send(`${agent.agent.url}${path}`, { ...init, headers: { authorization: `Bearer ${credential}` } });
  const heartbeatWith = async (credential: string) => {
    const host = await manager.hosts.get(hostId);
    return send(`${manager.url}/v1/hosts/${hostId}/heartbeat`, {
      headers: { authorization: `Bearer ${credential}` },
      body: { address: host.address, capacity: host.capacity },
    });
  };
  const runsAVm = async (agent: HollowAgent, name: string) => {
    const created = await send(`${manager.url}/v1/vms?wait=10`, {
      body: { name, vcpu: 1, mem_mib: 128, kernel_path: agent.image.kernel, rootfs_path: agent.image.rootfs },
    });
    assert.equal(created.status, 201, JSON.stringify(created.body));
    assert.equal(created.body.state, 'running');
    assert.equal((await send(`${manager.url}/v1/vms/${created.body.id}?wait=10`, { method: 'DELETE' })).status, 200);
  };
  const rotate = (id = hostId) => send(`${manager.url}/v1/hosts/${id}/rotate-credential`, { method: 'POST' });

  before(async () => {
    manager = await startTestManager({ resyncMs: 2000 });
    joinToken = (await manager.hosts.mintJoinToken(600)).token;
    hollow = await startHollowAgent(manager.url, joinToken, runDir, 'rotating', {}, { credentialOverlapMs: overlapMs });
    hostId = hollow.agent.identity.enrollment?.hostId ?? '';
    await eventually('the host is ready', async () => (await manager.hosts.get(hostId)).status === 'ready');
  });
  after(async () => {
    await hollow?.agent.close();
    await manager?.dispose();
    dir.remove();
  });

  it('replaces the credential on both sides; the old one stops working after the overlap; heartbeats and VM calls go on', async () => {
    assert.ok(hollow);
    const old = hollow.agent.identity.credential;
    const rotated = await rotate();
    assert.equal(rotated.status, 200, JSON.stringify(rotated.body));
    assert.equal(rotated.body.id, hostId);
    assert.ok(Date.parse(rotated.body.credential_rotated_at) > 0);

    const fresh = hollow.agent.identity.credential;
    assert.notEqual(fresh, old);
    assert.match(fresh, /^nxhc_/);
    assert.equal(JSON.parse(readFileSync(join(runDir, 'agent', 'identity.json'), 'utf8')).credential, fresh, 'saved before use');

    await sleep(overlapMs + 100);
    assert.equal((await agentCall(hollow, old)).status, 401, 'the agent refuses the old credential after the overlap');
    assert.equal((await agentCall(hollow, fresh)).status, 200);
    assert.equal((await heartbeatWith(old)).status, 401, 'the manager refuses the old credential at once');

    const seen = (await manager.hosts.get(hostId)).last_seen_at;
    await eventually('a heartbeat with the new credential', async () => (await manager.hosts.get(hostId)).last_seen_at > seen, 8000);
    await runsAVm(hollow, 'after-rotation');
  });

  it('an agent restarted after a rotation comes back with the new credential', async () => {
    assert.ok(hollow);
    const credential = hollow.agent.identity.credential;
    await hollow.agent.close();
    hollow = await startAgent();
    assert.equal(hollow.agent.identity.credential, credential);
    await runsAVm(hollow, 'after-restart');
  });

  it('an agent out of reach leaves the rotation pending: 503, nothing changes, a retry completes it', async () => {
    assert.ok(hollow);
    const credential = hollow.agent.identity.credential;
    const rotatedAt = (await manager.hosts.get(hostId)).credential_rotated_at;
    await hollow.agent.close();
    hollow = undefined;

    const refused = await rotate();
    assert.equal(refused.status, 503, JSON.stringify(refused.body));
    assert.equal(refused.body.error, 'unavailable');
    assert.match(refused.body.fault_message, /could not hand host rotating its new credential/);
    assert.match(refused.body.suggestion, /current credential still works/);
    assert.equal((await manager.hosts.get(hostId)).credential_rotated_at, rotatedAt);

    hollow = await startAgent();
    assert.equal(hollow.agent.identity.credential, credential, 'the agent kept its credential');
    assert.equal((await rotate()).status, 200);
    assert.notEqual(hollow.agent.identity.credential, credential);
    await runsAVm(hollow, 'after-retry');
  });

  it('a rotation whose manager died after handing over the credential completes with the next heartbeat', async () => {
    assert.ok(hollow);
    const old = hollow.agent.identity.credential;
    const rotatedAt = (await manager.hosts.get(hostId)).credential_rotated_at;
    // The first two steps of a rotation, then nothing: as if the manager died before the third.
    const secrets = await loadSecretBox(manager.secretKeyFile, captureLogger().log, { mayCreate: false });
    const begun = await new SqlHostRepo(manager.database.db, secrets).beginCredentialRotation(hostId, mintSecret('nxhc'));
    assert.ok(begun);
    const next = secrets.open(begun.sealed, SEALED_PURPOSE.hostCredential);
    assert.equal((await agentCall(hollow, old, '/agent/v1/credential', { method: 'PUT', body: { credential: next } })).status, 200);
    assert.equal(hollow.agent.identity.credential, next);

    await eventually('the heartbeat completes the rotation', async () => (await manager.hosts.get(hostId)).credential_rotated_at !== rotatedAt, 8000);
    await sleep(overlapMs + 100);
    await runsAVm(hollow, 'after-heartbeat-completion');
    assert.equal((await heartbeatWith(old)).status, 401);
  });

  it('bad input: an unknown host is a 404; a credential not of the minted shape is refused by the agent with 400', async () => {
    const unknown = await rotate('00000000-0000-4000-8000-000000000000');
    assert.equal(unknown.status, 404);
    assert.equal(unknown.body.error, 'not_found');
    assert.equal((await rotate('not-a-uuid')).status, 400);
    assert.ok(hollow);
    const credential = hollow.agent.identity.credential;
    for (const bad of ['short', 'nxhc_short', `nxat_${'a'.repeat(43)}`, `nxhc_${'a'.repeat(42)}!`, 42]) {
      const answer = await agentCall(hollow, credential, '/agent/v1/credential', { method: 'PUT', body: { credential: bad } });
      assert.equal(answer.status, 400, `${String(bad)}: ${JSON.stringify(answer.body)}`);
      assert.equal(answer.body.error, 'validation_failed');
    }
    assert.equal((await agentCall(hollow, credential, '/agent/v1/credential', { method: 'PUT', body: {} })).status, 400);
    assert.equal(hollow.agent.identity.credential, credential, 'nothing changed');
    const stranger = await agentCall(hollow, mintSecret('nxhc'), '/agent/v1/credential', { method: 'PUT', body: { credential: mintSecret('nxhc') } });
    assert.equal(stranger.status, 401, 'only the holder of the credential may replace it');
  });

  it("a host whose stored credential does not open fails only the calls to that host (502 host_credential_unreadable), never the fleet's", async () => {
    assert.ok(hollow);
    const intact = await startHollowAgent(manager.url, (await manager.hosts.mintJoinToken(600)).token, join(dir.path, 'run-intact'), 'intact');
    const intactId = intact.agent.identity.enrollment?.hostId ?? '';
    const vms: string[] = [];
    // As if sealed with another key (or damaged): it no longer opens with the manager's.
    const row = await manager.database.db.selectFrom('host').select('credential_sealed').where('id', '=', hostId).executeTakeFirstOrThrow();
    await manager.database.db
      .updateTable('host')
      .set({ credential_sealed: new SecretBox(randomBytes(32)).seal(mintSecret('nxhc'), SEALED_PURPOSE.hostCredential) })
      .where('id', '=', hostId)
      .execute();
    try {
      await eventually('the second host is ready', async () => (await manager.hosts.get(intactId)).status === 'ready');
      const hosts = await send(`${manager.url}/v1/hosts`);
      assert.equal(hosts.status, 200, JSON.stringify(hosts.body));
      assert.deepEqual(hosts.body.items.map((host: { name: string }) => host.name).sort(), ['intact', 'rotating']);

      // Both hosts are empty, so the first VM goes to 'intact' (by name), the next to 'rotating' (less loaded).
      const body = (name: string) => ({ name, vcpu: 1, mem_mib: 128, kernel_path: intact.image.kernel, rootfs_path: intact.image.rootfs });
      const running = await send(`${manager.url}/v1/vms?wait=10`, { body: body('on-intact') });
      assert.equal(running.status, 201, JSON.stringify(running.body));
      vms.push(running.body.id);
      assert.deepEqual([running.body.host_id, running.body.state], [intactId, 'running'], 'VM create, placement and the reconciler go on for the other host');
      const stuck = await send(`${manager.url}/v1/vms`, { body: body('on-rotating') });
      assert.equal(stuck.status, 201, JSON.stringify(stuck.body));
      vms.push(stuck.body.id);
      await eventually(
        'the second VM is placed on the host with the unreadable credential',
        async () => (await send(`${manager.url}/v1/vms/${stuck.body.id}`)).body.host_id === hostId,
      );
      const logs = await send(`${manager.url}/v1/vms/${stuck.body.id}/logs`);
      assertErrorContract(logs, 502, 'host_credential_unreadable');
      assert.match(logs.body.fault_message, /the stored credential of host rotating does not open with this manager's key/);
      assert.match(logs.body.suggestion, /NEXUS_SECRET_KEY_FILE/);
      assert.match(logs.body.suggestion, /nexus hosts join-token --replace rotating/);
      assert.equal((await send(`${manager.url}/v1/vms/${running.body.id}/logs`)).status, 200, "the other host's calls go on");
      assertErrorContract(await rotate(), 502, 'host_credential_unreadable');
    } finally {
      await manager.database.db.updateTable('host').set({ credential_sealed: row.credential_sealed }).where('id', '=', hostId).execute();
      for (const id of vms) assert.equal((await send(`${manager.url}/v1/vms/${id}?wait=10`, { method: 'DELETE' })).status, 200);
      await intact.agent.close();
    }
  });

  it('nexus hosts rotate-credential does the same from the CLI, and names an unknown host', async () => {
    assert.ok(hollow);
    const before = hollow.agent.identity.credential;
    const env = { NEXUS_API: manager.url, NEXUS_TOKEN: manager.adminToken };
    const done = await runNexus(['hosts', 'rotate-credential', hostId], env);
    assert.equal(done.code, 0, done.output);
    assert.match(done.output, /^Rotated the credential of rotating at \S+; the old one stops working within a minute\.\n$/);
    assert.notEqual(hollow.agent.identity.credential, before);
    const unknown = await runNexus(['hosts', 'rotate-credential', '00000000-0000-4000-8000-000000000000'], env);
    assert.equal(unknown.code, 1);
    assert.match(unknown.output, /no host 00000000-0000-4000-8000-000000000000/);
  });
});
