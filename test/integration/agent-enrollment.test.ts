import assert from 'node:assert/strict';
import { existsSync, readFileSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { freePort } from '../support/ports.js';
import { tempDir } from '../support/temp-dir.js';
import { type TestManager, send, startTestManager } from '../support/test-manager.js';
import { type NexusProcess, eventually, runNexus, spawnNexus } from '../support/nexus-process.js';
import { assertErrorContract } from '../support/error-contract.js';
import { CAPACITY } from './store-suite.js';

interface AuditRow {
  actor: string;
  action: string;
  resource_id: string | null;
  request_id: string;
  result: string;
  status: number | null;
  before: { status?: string } | null;
  after: { status?: string } | null;
  detail: string | null;
  remote_address: string | null;
}

/** How long a host stays ready after its last heartbeat (the agents beat every second). */
const HEARTBEAT_TIMEOUT_MS = 6000;

describe('agent enrollment (real agent process)', () => {
  let manager: TestManager;
  const dir = tempDir('nexus-enroll-');
  const running: NexusProcess[] = [];
  /** Every agent process started, by the host name it was given. */
  const named: Array<{ name: string; process: NexusProcess }> = [];

  before(async () => {
    // A beat a second, and a host unreachable after six without one: a loaded 2-core machine can
    // delay a beat by seconds, but not by six of them in a row.
    manager = await startTestManager({ heartbeatTimeoutMs: HEARTBEAT_TIMEOUT_MS, heartbeatIntervalMs: 1000 });
  });
  after(async () => {
    await Promise.all(running.map((agent) => agent.stop()));
    await manager?.dispose();
    dir.remove();
  });

  const agent = async (name: string, stateDir: string, env: Record<string, string> = {}) => {
    const port = await freePort();
    // A run dir per state dir, as each host has its own: an agent holds its run dir alone.
    const args = ['agent', '--manager', manager.url, '--bind', `127.0.0.1:${port}`, '--run-dir', `${stateDir}-run`, '--state-dir', stateDir, '--name', name];
    const process = spawnNexus(args, env);
    running.push(process);
    named.push({ name, process });
    return { process, port };
  };
  const host = async (name: string) => (await manager.hosts.list()).find((entry) => entry.name === name);
  const auditRows = async (match: (row: AuditRow) => boolean): Promise<AuditRow[]> =>
    ((await send(`${manager.url}/v1/audit?limit=10000`)).body.items as AuditRow[]).filter(match);
  const mintJoinToken = async (body: Record<string, unknown> = {}): Promise<{ id: string; token: string; replace_host: string | null }> => {
    const minted = await send(`${manager.url}/v1/hosts/join-tokens`, { body });
    assert.equal(minted.status, 201, JSON.stringify(minted.body));
    return minted.body;
  };

  it('enrolls with a join token from the environment, stores its credential 0600, and heartbeats', async () => {
    const token = (await manager.hosts.mintJoinToken(600)).token;
    const stateDir = join(dir.path, 'state-a');
    const { process, port } = await agent('agent-a', stateDir, { NEXUS_JOIN_TOKEN: token });
    await eventually('agent-a is ready', async () => (await host('agent-a'))?.status === 'ready');

    const identityFile = join(stateDir, 'identity.json');
    // The manager records the host as it answers the enrollment; the agent saves what it was given just after.
    await eventually('the agent has saved its identity', () => existsSync(identityFile), 5000);
    assert.equal(statSync(identityFile).mode & 0o777, 0o600);
    const identity = JSON.parse(readFileSync(identityFile, 'utf8'));
    const registered = await host('agent-a');
    assert.equal(identity.host_id, registered?.id);
    assert.equal(registered?.address, `127.0.0.1:${port}`);

    // Heartbeats keep moving last_seen_at.
    const seen = registered?.last_seen_at ?? '';
    await eventually('a later heartbeat', async () => ((await host('agent-a'))?.last_seen_at ?? '') > seen, 20_000);

    // The manager can call the agent with the credential it issued.
    const health = await send(`http://127.0.0.1:${port}/agent/v1/health`, { headers: { authorization: `Bearer ${identity.credential}` } });
    assert.equal(health.body.host_id, registered?.id);
    assert.doesNotMatch(process.output(), new RegExp(token), 'the join token never reaches the logs');
  });

  it('restarts from its stored identity without a join token, keeping its host id', async () => {
    const stateDir = join(dir.path, 'state-a');
    const before = await host('agent-a');
    await running.shift()?.stop();
    await eventually('agent-a is unreachable', async () => (await host('agent-a'))?.status === 'unreachable', HEARTBEAT_TIMEOUT_MS + 30_000);
    await agent('agent-a', stateDir);
    await eventually('agent-a is ready again', async () => (await host('agent-a'))?.status === 'ready');
    assert.equal((await host('agent-a'))?.id, before?.id);

    // Both changes of status are audited: the sweep's (by the manager) and the beat's (by the host, from its address).
    const changes = await auditRows((row) => row.resource_id === before?.id && (row.action === 'host.unreachable' || row.action === 'host.ready'));
    const down = changes.find((row) => row.action === 'host.unreachable');
    assert.ok(down, 'going unreachable is audited');
    assert.equal(down.actor, 'system');
    assert.deepEqual([down.before?.status, down.after?.status], ['ready', 'unreachable']);
    assert.match(down.detail ?? '', new RegExp(`^no heartbeat since .* \\(timeout ${HEARTBEAT_TIMEOUT_MS} ms\\)$`));
    const up = changes.find((row) => row.action === 'host.ready');
    assert.ok(up, 'coming back is audited');
    assert.equal(up.actor, `host:${before?.id}`);
    assert.match(up.remote_address ?? '', /127\.0\.0\.1/);
    assert.deepEqual([up.before?.status, up.after?.status], ['unreachable', 'ready']);
    const ups = changes.filter((row) => row.action === 'host.ready').length;
    assert.ok(ups <= changes.length - ups, `a row per comeback, not per beat (${ups} for ${changes.length - ups} times it went away)`);
  });

  it('refuses to start with a join token that was already used, saying why', async () => {
    const token = (await manager.hosts.mintJoinToken(600)).token;
    const first = await agent('agent-b', join(dir.path, 'state-b'), { NEXUS_JOIN_TOKEN: token });
    await eventually('agent-b is ready', async () => (await host('agent-b'))?.status === 'ready');
    const replay = await agent('agent-c', join(dir.path, 'state-c'), { NEXUS_JOIN_TOKEN: token });
    const { code } = await replay.process.exited;
    assert.equal(code, 1);
    assert.match(replay.process.output(), /join token is unknown, already used or expired/);
    assert.match(replay.process.output(), /hint: Mint a new one/);
    assert.equal(await host('agent-c'), undefined);
    assert.ok(first.process.child.exitCode === null, 'the first agent is unaffected');
  });

  it('refuses to start against a manager it is not enrolled with and no token', async () => {
    const lonely = await agent('agent-d', join(dir.path, 'state-d'));
    const { code } = await lonely.process.exited;
    assert.equal(code, 1);
    assert.match(lonely.process.output(), /not enrolled with/);
  });

  it("refuses (409) to enroll under a ready host's name, leaves that host alone, audits the attempt and keeps the token", async () => {
    const before = await host('agent-b');
    assert.equal(before?.status, 'ready');
    const joinToken = await mintJoinToken();
    assert.equal(joinToken.replace_host, null);
    const takeover = await send(`${manager.url}/v1/hosts/enroll`, {
      anonymous: true,
      body: { join_token: joinToken.token, name: 'agent-b', address: '127.0.0.1:1', capacity: CAPACITY },
    });
    assertErrorContract(takeover, 409, 'conflict');
    assert.match(takeover.body.fault_message, /host agent-b is enrolled and ready .* would lock its agent out/);
    assert.match(takeover.body.suggestion, /nexus hosts join-token --replace agent-b/);
    const after = await host('agent-b');
    assert.equal(after?.address, before?.address, 'the host did not move');
    const seen = after?.last_seen_at ?? '';
    await eventually('agent-b still heartbeats', async () => ((await host('agent-b'))?.last_seen_at ?? '') > seen, 20_000);

    const [row] = await auditRows((entry) => entry.request_id === takeover.body.request_id);
    assert.ok(row, 'the refusal is audited');
    assert.equal(row.action, 'host.enroll');
    assert.equal(row.actor, `join_token:${joinToken.id}`);
    assert.equal(row.resource_id, before?.id, 'naming the host it tried to take');
    assert.equal(row.result, 'failure');
    assert.equal(row.status, 409);
    assert.match(row.detail ?? '', /host agent-b is enrolled and ready/);
    assert.match(row.remote_address ?? '', /127\.0\.0\.1/);

    const elsewhere = await send(`${manager.url}/v1/hosts/enroll`, {
      anonymous: true,
      body: { join_token: joinToken.token, name: 'agent-e', address: '127.0.0.1:2', capacity: CAPACITY },
    });
    assert.equal(elsewhere.status, 201, 'the refused token was not used up');
    const [enrolled] = await auditRows((entry) => entry.request_id === elsewhere.headers.get('x-request-id'));
    assert.equal(enrolled?.action, 'host.enroll');
    assert.equal(enrolled?.result, 'success');
    assert.equal(enrolled?.resource_id, elsewhere.body.host_id);
    assert.equal(enrolled?.actor, `join_token:${joinToken.id}`);
  });

  it('a join token minted (by the CLI) to replace a ready host takes it over: audited, and the old agent is locked out', async () => {
    const before = await host('agent-b');
    assert.equal(before?.status, 'ready');
    const missing = await send(`${manager.url}/v1/hosts/join-tokens`, { body: { replace_host: 'no-such-host' } });
    assertErrorContract(missing, 404, 'not_found');
    assertErrorContract(await send(`${manager.url}/v1/hosts/join-tokens`, { body: { replace_host: 'not a name' } }), 400, 'validation_failed');

    const minted = await runNexus(['hosts', 'join-token', '--replace', 'agent-b', '--json', '--api', manager.url], { NEXUS_TOKEN: manager.adminToken });
    assert.equal(minted.code, 0, minted.output);
    const joinToken = JSON.parse(minted.output) as { id: string; token: string; replace_host: string };
    assert.equal(joinToken.replace_host, 'agent-b');

    const wrongName = await send(`${manager.url}/v1/hosts/enroll`, {
      anonymous: true,
      body: { join_token: joinToken.token, name: 'agent-f', address: '127.0.0.1:3', capacity: CAPACITY },
    });
    assertErrorContract(wrongName, 401, 'join_token_invalid');
    assert.match(wrongName.body.fault_message, /minted to replace host agent-b, not to enroll agent-f/);

    const successor = await agent('agent-b', join(dir.path, 'state-b2'), { NEXUS_JOIN_TOKEN: joinToken.token });
    await eventually('agent-b moved to its successor', async () => (await host('agent-b'))?.address === `127.0.0.1:${successor.port}`).catch((error) => {
      throw new Error(`${(error as Error).message}\n${successor.process.output()}`);
    });
    assert.equal((await host('agent-b'))?.id, before?.id, 'the same host record');
    const [replaced] = await auditRows((entry) => entry.action === 'host.replace' && entry.resource_id === before?.id);
    assert.ok(replaced, 'the replacement is audited');
    assert.equal(replaced.actor, `join_token:${joinToken.id}`);
    assert.equal(replaced.result, 'success');

    // The replaced agent still beats with its old credential: refused, and audited as that host.
    await eventually(
      'the old agent is refused',
      async () => (await auditRows((entry) => entry.action === 'host.heartbeat' && entry.actor === `host:${before?.id}`)).length > 0,
      20_000,
    );
    const [refused] = await auditRows((entry) => entry.action === 'host.heartbeat' && entry.actor === `host:${before?.id}`);
    assert.equal(refused?.result, 'denied');
    assert.equal(refused?.status, 401);
    assert.match(refused?.remote_address ?? '', /127\.0\.0\.1/);
    assert.match(refused?.detail ?? '', /^heartbeat with a wrong credential; more from host:\S+ at \S+ within 60 s are counted in one row$/);
    const old = named.find((entry) => entry.name === 'agent-b')?.process;
    assert.ok(old && old !== successor.process, 'the first agent-b process');
    await eventually('it says it is no longer known', () => /the manager no longer knows this credential/.test(old.output()), 20_000);
  });

  it('refused heartbeats are audited once per source and window, not once each', async () => {
    const unknown = '00000000-0000-4000-8000-00000000beef';
    const beat = () =>
      send(`${manager.url}/v1/hosts/${unknown}/heartbeat`, {
        anonymous: true,
        headers: { authorization: 'Bearer nxhc_guess' },
        body: { address: '127.0.0.1:4', capacity: CAPACITY },
      });
    const answers: Array<Awaited<ReturnType<typeof beat>>> = [];
    for (let n = 0; n < 20; n++) answers.push(await beat());
    for (const answer of answers) assertErrorContract(answer, 401, 'unauthorized');
    const rows = await auditRows((entry) => entry.action === 'host.heartbeat' && entry.actor === 'anonymous');
    // One row for the first refusal; only if the minute's window ended in between, one row counting
    // the refusals before its end and another for the first after it.
    const counted = rows.filter((row) => /^\d+ more refused/.test(row.detail ?? ''));
    assert.equal(rows.length - counted.length, 1 + counted.length, `itemized: the first of each window (${rows.length} rows)`);
    assert.ok(rows.length <= 3, `20 refusals from one address, not a row each (${rows.length})`);
    assert.equal(
      rows.some((row) => row.request_id === answers[0]?.body.request_id),
      true,
      'the first refusal has its own row',
    );
    assert.ok(
      rows.every((row) => row.resource_id === unknown),
      'naming the host id called',
    );
    const first = rows.find((row) => row.request_id === answers[0]?.body.request_id);
    assert.match(first?.detail ?? '', /^heartbeat for an unknown host; /);
    assert.match(first?.remote_address ?? '', /127\.0\.0\.1/);
    assert.equal(first?.status, 401);
    assert.equal(first?.result, 'denied');
  });

  it("refused enrollments (a wrong join token, a ready host's name) are audited once per source and window, not once each", async () => {
    const enroll = (joinToken: string, name: string) =>
      send(`${manager.url}/v1/hosts/enroll`, { anonymous: true, body: { join_token: joinToken, name, address: '127.0.0.1:5', capacity: CAPACITY } });
    const guesses: Array<Awaited<ReturnType<typeof enroll>>> = [];
    for (let n = 0; n < 20; n++) guesses.push(await enroll(`nxjt_guess${n}`, 'guessed-host'));
    for (const answer of guesses) assertErrorContract(answer, 401, 'join_token_invalid');
    const joinToken = await mintJoinToken();
    const takeovers: Array<Awaited<ReturnType<typeof enroll>>> = [];
    assert.equal((await host('agent-a'))?.status, 'ready');
    for (let n = 0; n < 10; n++) takeovers.push(await enroll(joinToken.token, 'agent-a'));
    for (const answer of takeovers) assertErrorContract(answer, 409, 'conflict');

    await eventually(
      'the first of each source is audited',
      async () => (await auditRows((entry) => entry.request_id === takeovers[0]?.body.request_id)).length === 1,
      5000,
    );
    const anonymous = await auditRows((entry) => entry.action === 'host.enroll' && entry.actor === 'anonymous');
    assert.ok(anonymous.length <= 3, `20 refused guesses from one address, not a row each (${anonymous.length})`);
    const first = anonymous.find((row) => row.request_id === guesses[0]?.body.request_id);
    assert.ok(first, 'the first guess has its own row');
    assert.equal(first.result, 'denied');
    assert.equal(first.status, 401);
    assert.match(first.detail ?? '', /^the join token is unknown, already used or expired; more from anonymous at \S+ within 60 s are counted in one row$/);
    const byToken = await auditRows((entry) => entry.actor === `join_token:${joinToken.id}`);
    assert.ok(byToken.length <= 3, `10 refused takeovers with one token, not a row each (${byToken.length})`);
    assert.equal(byToken.find((row) => row.request_id === takeovers[0]?.body.request_id)?.status, 409);
  });

  it('an agent that lost its state dir is refused while its host is ready, and comes back under its name once it is unreachable', async () => {
    const before = await host('agent-a');
    assert.equal(before?.status, 'ready');
    const joinToken = await mintJoinToken();
    const freshState = join(dir.path, 'state-a-lost');
    const early = await agent('agent-a', freshState, { NEXUS_JOIN_TOKEN: joinToken.token });
    const { code } = await early.process.exited;
    assert.equal(code, 1);
    assert.match(early.process.output(), /host agent-a is enrolled and ready/);
    assert.match(early.process.output(), /hint: If this machine is that host and lost its state dir, start the agent again once the host shows unreachable/);

    const original = named.find((entry) => entry.name === 'agent-a' && entry.process !== early.process && entry.process.child.exitCode === null)?.process;
    assert.ok(original, 'the running agent-a');
    await original.stop();
    await eventually('agent-a is unreachable', async () => (await host('agent-a'))?.status === 'unreachable', HEARTBEAT_TIMEOUT_MS + 30_000);
    const back = await agent('agent-a', freshState, { NEXUS_JOIN_TOKEN: joinToken.token });
    await eventually('agent-a is back at its new address', async () => {
      const now = await host('agent-a');
      return now?.status === 'ready' && now.address === `127.0.0.1:${back.port}`;
    });
    assert.equal((await host('agent-a'))?.id, before?.id, 'it keeps its host id');
    const [row] = await auditRows((entry) => entry.action === 'host.reenroll' && entry.resource_id === before?.id);
    assert.equal(row?.actor, `join_token:${joinToken.id}`);
    assert.equal(row?.result, 'success');
  });
});
