import assert from 'node:assert/strict';
import { existsSync, readFileSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { freePort } from '../support/ports.js';
import { tempDir } from '../support/temp-dir.js';
import { type TestManager, send, startTestManager } from '../support/test-manager.js';
import { type NexusProcess, eventually, spawnNexus } from '../support/nexus-process.js';

describe('agent enrollment (real agent process)', () => {
  let manager: TestManager;
  const dir = tempDir('nexus-enroll-');
  const running: NexusProcess[] = [];

  before(async () => {
    manager = await startTestManager({ heartbeatTimeoutMs: 1500, heartbeatIntervalMs: 300 });
  });
  after(async () => {
    await Promise.all(running.map((agent) => agent.stop()));
    await manager?.dispose();
    dir.remove();
  });

  const agent = async (name: string, stateDir: string, env: Record<string, string> = {}) => {
    const port = await freePort();
    const args = ['agent', '--manager', manager.url, '--bind', `127.0.0.1:${port}`, '--run-dir', join(dir.path, 'run'), '--state-dir', stateDir, '--name', name];
    const process = spawnNexus(args, env);
    running.push(process);
    return { process, port };
  };
  const host = async (name: string) => (await manager.hosts.list()).find((entry) => entry.name === name);

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
    await eventually('a later heartbeat', async () => ((await host('agent-a'))?.last_seen_at ?? '') > seen, 5000);

    // The manager can call the agent with the credential it issued.
    const health = await send(`http://127.0.0.1:${port}/agent/v1/health`, { headers: { authorization: `Bearer ${identity.credential}` } });
    assert.equal(health.body.host_id, registered?.id);
    assert.doesNotMatch(process.output(), new RegExp(token), 'the join token never reaches the logs');
  });

  it('restarts from its stored identity without a join token, keeping its host id', async () => {
    const stateDir = join(dir.path, 'state-a');
    const before = await host('agent-a');
    await running.shift()?.stop();
    await eventually('agent-a is unreachable', async () => (await host('agent-a'))?.status === 'unreachable', 10_000);
    await agent('agent-a', stateDir);
    await eventually('agent-a is ready again', async () => (await host('agent-a'))?.status === 'ready');
    assert.equal((await host('agent-a'))?.id, before?.id);
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
});
