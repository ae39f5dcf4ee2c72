import assert from 'node:assert/strict';
import { appendFileSync, mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { sql } from 'kysely';
import { assertErrorContract } from '../support/error-contract.js';
import { type HollowAgent, startHollowAgent } from '../support/hollow-agents.js';
import { eventually } from '../support/nexus-process.js';
import { type PostgresServer, startPostgres } from '../support/postgres-server.js';
import { type EventStream, openEventStream } from '../support/sse-client.js';
import { tempDir } from '../support/temp-dir.js';
import { type TestManager, send, startTestManager } from '../support/test-manager.js';

const PROJECT = 'streams';
const bearer = (token: string) => ({ authorization: `Bearer ${token}` });

/** Mints a viewer of PROJECT through `managerUrl`; answers its id and secret. */
async function mintViewer(managerUrl: string, extra: Record<string, unknown> = {}): Promise<{ id: string; token: string }> {
  const minted = await send(`${managerUrl}/v1/tokens`, { body: { owner: 'stream-viewer', role: 'viewer', project: PROJECT, ...extra } });
  assert.equal(minted.status, 201, JSON.stringify(minted.body));
  return { id: minted.body.id, token: minted.body.token };
}

/** The stream's last event is `end` with this reason, and then the server closes the connection. */
async function assertEndsWith(stream: EventStream, reason: string, withinMs = 15_000): Promise<void> {
  const seen = await stream.until((event) => event.event === 'end', withinMs);
  assert.deepEqual(JSON.parse(seen.at(-1)?.data ?? '{}'), { reason }, JSON.stringify(seen.slice(-3)));
  assert.equal(await stream.next(5_000), undefined, 'the server closed the stream after its end event');
}

/**
 * Every long-lived answer re-checks its caller about every second and ends, with a last `end`
 * event saying why, once the caller's token is revoked, expired or rotated away. (A token's role
 * and project cannot change: there is no call that changes them, so no stream can lose its role.)
 */
describe('streams end when their caller may no longer read', () => {
  const dir = tempDir('nexus-stream-revocation-');
  let manager: TestManager;
  let hollow: HollowAgent;
  let vmId: string;
  const url = (path: string) => `${manager.url}${path}`;

  before(async () => {
    manager = await startTestManager({ resyncMs: 1000 });
    hollow = await startHollowAgent(manager.url, (await manager.hosts.mintJoinToken(600)).token, join(dir.path, 'run'), 'stream-host');
    await eventually('the host is ready', async () => (await manager.hosts.list()).some((host) => host.status === 'ready'));
    assert.equal((await send(url('/v1/projects'), { body: { name: PROJECT } })).status, 201);
    const vm = await send(url('/v1/vms?wait=10'), {
      body: { name: 'watched', project: PROJECT, vcpu: 1, mem_mib: 128, kernel_path: hollow.image.kernel, rootfs_path: hollow.image.rootfs },
    });
    assert.equal(vm.body.state, 'running', JSON.stringify(vm.body));
    vmId = vm.body.id;
  });
  after(async () => {
    await hollow?.agent.close();
    await manager?.dispose();
    dir.remove();
  });

  /** Appends a line to the hollow VM's console log, which the agent's log stream follows. */
  const writeConsole = (line: string) => {
    const logs = join(hollow.runDir, 'vms', vmId, 'logs');
    mkdirSync(logs, { recursive: true });
    appendFileSync(join(logs, 'console.log'), `${line}\n`);
  };

  it("revoking a viewer's token ends its event stream and its log stream, each with a last event saying so", async () => {
    const viewer = await mintViewer(manager.url);
    const events = await openEventStream(url(`/v1/vms/${vmId}/events/stream`), bearer(viewer.token));
    const logs = await openEventStream(url(`/v1/vms/${vmId}/logs/stream?source=console`), bearer(viewer.token));
    try {
      assert.equal(events.status, 200);
      assert.equal(logs.status, 200);
      await events.until((event) => event.event === 'vm_event', 10_000);
      writeConsole('before the revocation');
      await logs.until((event) => event.data === 'before the revocation', 10_000);

      assert.equal((await send(url(`/v1/tokens/${viewer.id}`), { method: 'DELETE' })).status, 200);
      await assertEndsWith(events, 'token_revoked');
      await assertEndsWith(logs, 'token_revoked');
    } finally {
      events.close();
      logs.close();
    }
  });

  it("a token's stream ends when the token expires", async () => {
    // Long enough that the stream opens before it expires on a loaded machine too.
    const viewer = await mintViewer(manager.url, { expires_at: new Date(Date.now() + 15_000).toISOString() });
    const events = await openEventStream(url(`/v1/vms/${vmId}/events/stream`), bearer(viewer.token));
    try {
      assert.equal(events.status, 200, 'the stream opened before the token expired');
      await assertEndsWith(events, 'token_expired', 40_000);
    } finally {
      events.close();
    }
  });

  it('a stream opened with a secret that is then rotated away (no overlap) ends', async () => {
    const viewer = await mintViewer(manager.url);
    const events = await openEventStream(url(`/v1/vms/${vmId}/events/stream`), bearer(viewer.token));
    try {
      await events.until((event) => event.event === 'vm_event', 10_000);
      assert.equal((await send(url(`/v1/tokens/${viewer.id}/rotate`), { body: { overlap_seconds: 0 } })).status, 200);
      await assertEndsWith(events, 'token_rotated');
    } finally {
      events.close();
    }
  });

  it('a stream whose caller keeps its right goes on (the check does not end streams by itself)', async () => {
    const viewer = await mintViewer(manager.url);
    const events = await openEventStream(url(`/v1/vms/${vmId}/events/stream`), bearer(viewer.token));
    try {
      await events.until((event) => event.event === 'vm_event', 10_000);
      // Several guard rounds later, a new event still arrives on the same stream.
      await new Promise((resolve) => setTimeout(resolve, 2_500));
      assert.equal((await send(url(`/v1/vms/${vmId}/stop`), { method: 'POST' })).status, 200);
      const seen = await events.until((event) => event.event !== 'vm_event' || JSON.parse(event.data).to_state === 'stopped', 20_000);
      assert.equal(seen.at(-1)?.event, 'vm_event', JSON.stringify(seen.slice(-3)));
      assert.equal((await send(url(`/v1/vms/${vmId}/start?wait=20`), { method: 'POST' })).status, 200);
    } finally {
      events.close();
    }
  });
});

/**
 * The other long-lived answers are watched the same way: a `?wait=` (up to 600 s) answers 401 in
 * the error contract once its caller's token lapses, and an audit export in flight is cut off.
 */
describe('waits and exports end when their caller may no longer be served', () => {
  const dir = tempDir('nexus-wait-revocation-');
  let manager: TestManager;
  let hollow: HollowAgent;
  const url = (path: string) => `${manager.url}${path}`;

  before(async () => {
    manager = await startTestManager({ resyncMs: 1000 });
    // Its VMs take 20 s to boot: a wait for one to run outlasts the revocation.
    hollow = await startHollowAgent(manager.url, (await manager.hosts.mintJoinToken(600)).token, join(dir.path, 'run'), 'slow-host', { bootMs: 20_000 });
    await eventually('the host is ready', async () => (await manager.hosts.list()).some((host) => host.status === 'ready'));
    assert.equal((await send(url('/v1/projects'), { body: { name: PROJECT } })).status, 201);
  });
  after(async () => {
    await hollow?.agent.close();
    await manager?.dispose();
    dir.remove();
  });

  it("a create's ?wait= and GET /v1/vms/:id/wait answer 401 once their tokens are revoked, not when the VM runs", async () => {
    const minted = await send(url('/v1/tokens'), { body: { owner: 'waiting-operator', role: 'operator', project: PROJECT } });
    assert.equal(minted.status, 201, JSON.stringify(minted.body));
    const operator = { id: minted.body.id as string, token: minted.body.token as string };
    const viewer = await mintViewer(manager.url);
    const creating = send(url('/v1/vms?wait=600'), {
      headers: bearer(operator.token),
      body: { name: 'slow', project: PROJECT, vcpu: 1, mem_mib: 128, kernel_path: hollow.image.kernel, rootfs_path: hollow.image.rootfs },
    });
    let vmId = '';
    await eventually('the VM is recorded', async () => {
      vmId = (await send(url('/v1/vms?name_prefix=slow'))).body.items[0]?.id ?? '';
      return vmId !== '';
    });
    const waiting = send(url(`/v1/vms/${vmId}/wait?state=running&timeout=600`), { headers: bearer(viewer.token) });
    // Both are waiting on the VM's 20 s boot when their tokens go.
    await new Promise((resolve) => setTimeout(resolve, 1500));
    for (const id of [operator.id, viewer.id]) assert.equal((await send(url(`/v1/tokens/${id}`), { method: 'DELETE' })).status, 200);

    for (const [what, answer] of [
      ['the create', await creating],
      ['the wait', await waiting],
    ] as const) {
      assertErrorContract(answer, 401, 'unauthorized');
      assert.match(answer.body.fault_message, /token_revoked/, what);
    }
    assert.notEqual((await send(url(`/v1/vms/${vmId}`))).body.state, 'running', 'they ended before the VM ran');
    const rows = (await send(url(`/v1/audit?actor=${encodeURIComponent(`token:${operator.id} (waiting-operator)`)}`))).body.items as Array<{
      action: string;
      status: number;
      detail: string;
    }>;
    const row = rows.find((entry) => entry.action === 'vm.create');
    assert.equal(row?.status, 401, `the audit row says how the create answered: ${JSON.stringify(rows)}`);
    assert.match(row?.detail ?? '', /token_revoked/);
  });

  it('an audit export in flight is cut off once its token is revoked', async () => {
    // Far more than the socket buffers hold, so the export is still running when the token goes.
    const rows = 50_000;
    await sql`INSERT INTO audit (actor, action, resource, request_id, result, status, detail)
      SELECT 'filler', 'test.fill', 'none', md5(n::text), 'success', 200, repeat('x', 200) FROM generate_series(1, ${rows}) AS n`.execute(manager.database.db);
    const minted = await send(url('/v1/tokens'), { body: { owner: 'exporter', role: 'admin' } });
    assert.equal(minted.status, 201, JSON.stringify(minted.body));
    const response = await fetch(url('/v1/audit?format=ndjson'), { headers: bearer(minted.body.token) });
    assert.equal(response.status, 200);
    const reader = response.body?.getReader();
    assert.ok(reader, 'a body');
    const decoder = new TextDecoder();
    let text = decoder.decode((await reader.read()).value, { stream: true });
    assert.equal((await send(url(`/v1/tokens/${minted.body.id}`), { method: 'DELETE' })).status, 200);
    await new Promise((resolve) => setTimeout(resolve, 2500));
    let cut = false;
    try {
      for (;;) {
        const { done, value } = await reader.read();
        if (done) break;
        text += decoder.decode(value, { stream: true });
      }
    } catch {
      cut = true;
    }
    const lines = text.split('\n').length - 1;
    assert.ok(cut, `the answer was cut off, not ended as if complete (${lines} lines read)`);
    assert.ok(lines < rows, `the export stopped early (${lines} of ${rows} rows)`);
  });
});

describe('a revocation made through another manager on the same database ends the stream', () => {
  let postgres: PostgresServer;
  const managers: TestManager[] = [];

  before(async () => {
    postgres = await startPostgres();
    const databaseUrl = await postgres.createDatabase();
    const first = await startTestManager({ databaseUrl, resyncMs: 60_000 });
    managers.push(first, await startTestManager({ databaseUrl, resyncMs: 60_000, secretKeyFile: first.secretKeyFile }, {}, first.adminToken));
  });
  after(async () => {
    for (const manager of managers) await manager.dispose();
    await postgres?.stop();
  });

  it('a viewer streaming from one manager is cut off when an admin revokes its token through the other', async () => {
    const [streaming, revoking] = managers as [TestManager, TestManager];
    assert.equal((await send(`${streaming.url}/v1/projects`, { body: { name: PROJECT } })).status, 201);
    // No host: the VM fails to place, which is an event to stream.
    const vm = await send(`${streaming.url}/v1/vms`, {
      body: { name: 'elsewhere', project: PROJECT, vcpu: 1, mem_mib: 128, kernel_path: '/k', rootfs_path: '/r' },
    });
    assert.equal(vm.status, 201, JSON.stringify(vm.body));
    const viewer = await mintViewer(streaming.url);
    const events = await openEventStream(`${streaming.url}/v1/vms/${vm.body.id}/events/stream`, bearer(viewer.token));
    try {
      await events.until((event) => event.event === 'vm_event', 10_000);
      assert.equal((await send(`${revoking.url}/v1/tokens/${viewer.id}`, { method: 'DELETE' })).status, 200);
      await assertEndsWith(events, 'token_revoked');
    } finally {
      events.close();
    }
  });
});
