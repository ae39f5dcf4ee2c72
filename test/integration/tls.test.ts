// test-lane: parallel (its own managers, hollow hosts, databases, temp dirs and ports: no host network, guest, cgroup or host-wide scan)
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { connect } from 'node:tls';
import { Agent, request } from 'undici';
import { JsonClient } from '../../src/kit/json-client.js';
import { NexusError } from '../../src/kit/nexus-error.js';
import { type HollowAgent, startHollowAgent } from '../support/hollow-agents.js';
import { eventually, runNexus } from '../support/nexus-process.js';
import { tempDir } from '../support/temp-dir.js';
import { type TestManager, startTestManager } from '../support/test-manager.js';
import { type ThrowawayCa, throwawayCa } from '../support/throwaway-ca.js';

/**
 * Manager <-> agent over TLS with certificates from a throwaway CA: each side serves HTTPS and
 * verifies the other against the CA it was given, and nothing that does not trust the CA gets in.
 */
describe('TLS between manager, agents and clients', () => {
  const dir = tempDir('nexus-tls-');
  let ca: ThrowawayCa;
  let stranger: ThrowawayCa;
  let manager: TestManager;
  let hollow: HollowAgent | undefined;
  const others: HollowAgent[] = [];
  let client: JsonClient;

  /**
   * The manager's own call to the agent of host `name` (dev mode's tail of a file by path): the
   * agent answers 403 for a path outside its VM folders, so reaching it means a 403.
   */
  const managerCallsAgentOf = async (name: string): Promise<unknown> => {
    const host = (await manager.hosts.list()).find((candidate) => candidate.name === name);
    assert.ok(host, `host ${name} is enrolled`);
    return client.call('GET', `/v1/logs/tail?host_id=${host.id}&path=${encodeURIComponent('/etc/hostname')}`).then(
      () => assert.fail(`the agent of ${name} served a file outside its VM folders`),
      (error: unknown) => error,
    );
  };

  before(async () => {
    ca = throwawayCa(dir.path, 'ca');
    stranger = throwawayCa(dir.path, 'stranger');
    const served = ca.issue('manager');
    manager = await startTestManager({ tlsCert: served.cert, tlsKey: served.key, ca: ca.cert });
    client = new JsonClient({ baseUrl: manager.url, bearer: manager.adminToken, ca: readFileSync(ca.cert) });
  });
  after(async () => {
    for (const other of others) await other.agent.close();
    await hollow?.agent.close();
    await client?.close();
    await manager?.dispose();
    dir.remove();
  });

  it('manager and agent serve HTTPS, enroll, heartbeat and run a VM over it, each verifying the other', async () => {
    assert.match(manager.url, /^https:\/\/127\.0\.0\.1:\d+$/);
    const served = ca.issue('agent');
    const joinToken = (await manager.hosts.mintJoinToken(600)).token;
    hollow = await startHollowAgent(manager.url, joinToken, join(dir.path, 'run'), 'tls-host', {}, { tlsCert: served.cert, tlsKey: served.key, ca: ca.cert });
    assert.match(hollow.agent.url, /^https:\/\//);
    await eventually('the host is ready (heartbeats over https)', async () => (await manager.hosts.list()).some((host) => host.status === 'ready'));

    // Running a VM takes manager -> agent calls, verified against the CA.
    const vm = await client.call<{ id: string; state: string }>('POST', '/v1/vms?wait=10', {
      name: 'over-tls',
      vcpu: 1,
      mem_mib: 128,
      kernel_path: hollow.image.kernel,
      rootfs_path: hollow.image.rootfs,
    });
    assert.equal(vm.state, 'running');
    await client.call('DELETE', `/v1/vms/${vm.id}?wait=10`);
  });

  it("the manager refuses an agent whose certificate another CA signed, or that does not name the agent's advertised address", async () => {
    // The agent with a good certificate is reached: its own 403 comes back through the manager.
    const reached = await managerCallsAgentOf('tls-host');
    assert.ok(reached instanceof NexusError, `a NexusError, not ${String(reached)}`);
    assert.equal(reached.code, 'forbidden', `the agent itself answered: ${reached.message}`);

    // Both enroll (each trusts the manager) and heartbeat; only the manager's calls to them are refused.
    const enroll = async (name: string, served: { cert: string; key: string }) => {
      const joinToken = (await manager.hosts.mintJoinToken(600)).token;
      others.push(
        await startHollowAgent(manager.url, joinToken, join(dir.path, `run-${name}`), name, {}, { tlsCert: served.cert, tlsKey: served.key, ca: ca.cert }),
      );
    };
    await enroll('foreign-cert-host', stranger.issue('agent'));
    await enroll('misnamed-cert-host', ca.issue('misnamed', ['DNS:elsewhere.invalid', 'IP:192.0.2.7']));
    const cases = [
      { name: 'foreign-cert-host', why: /UNABLE_TO_VERIFY_LEAF_SIGNATURE|unable to verify the first certificate/ },
      { name: 'misnamed-cert-host', why: /ERR_TLS_CERT_ALTNAME_INVALID|does not match certificate's altnames/ },
    ];
    for (const { name, why } of cases) {
      const refused = await managerCallsAgentOf(name);
      assert.ok(refused instanceof NexusError, `${name}: a NexusError, not ${String(refused)}`);
      assert.equal(refused.code, 'unavailable', `${name}: the manager did not talk to the agent (${refused.code}: ${refused.message})`);
      assert.match(refused.message, why, `${name}: refused for its certificate`);
      assert.match(refused.suggestion ?? '', /not trusted here/, `${name}: the suggestion names the certificate`);
    }
  });

  it('neither server speaks TLS below 1.2', async () => {
    assert.ok(hollow, 'the first test started the agent');
    /** The outcome of a handshake offering only `version` (legacy versions need security level 0 on the client's side). */
    const handshake = (url: string, version: 'TLSv1' | 'TLSv1.1' | 'TLSv1.2') =>
      new Promise<string>((resolve) => {
        const { hostname, port } = new URL(url);
        const socket = connect(
          { host: hostname, port: Number(port), ca: readFileSync(ca.cert), minVersion: version, maxVersion: version, ciphers: 'DEFAULT@SECLEVEL=0' },
          () => {
            resolve(`negotiated ${socket.getProtocol()}`);
            socket.destroy();
          },
        );
        socket.on('error', (error: NodeJS.ErrnoException) => resolve(`refused: ${error.code}`));
      });
    for (const url of [manager.url, hollow.agent.url]) {
      assert.equal(await handshake(url, 'TLSv1.2'), 'negotiated TLSv1.2', `${url} speaks TLS 1.2 to this client`);
      for (const version of ['TLSv1', 'TLSv1.1'] as const) {
        // The server refuses the version itself (alert 70, protocol_version), not some later step.
        assert.equal(await handshake(url, version), 'refused: ERR_SSL_TLSV1_ALERT_PROTOCOL_VERSION', `${url} refuses ${version}`);
      }
    }
  });

  it('a plain-HTTP request to either server gets no answer', async () => {
    assert.ok(hollow, 'the previous test started the agent');
    for (const url of [manager.url, hollow.agent.url]) {
      const plain = url.replace(/^https:/, 'http:');
      await assert.rejects(request(`${plain}/healthz`, { headersTimeout: 5000 }), `${plain} must not answer plain HTTP`);
    }
  });

  it('a client that does not trust the CA is refused, and told to give it', async () => {
    const untrusting = new JsonClient({ baseUrl: manager.url, bearer: manager.adminToken });
    try {
      await assert.rejects(untrusting.call('GET', '/v1/hosts'), (error: unknown) => {
        assert.ok(error instanceof NexusError);
        assert.equal(error.code, 'unavailable');
        assert.match(error.suggestion ?? '', /--ca or NEXUS_CA/);
        return true;
      });
    } finally {
      await untrusting.close();
    }
    // Another CA's trust is no trust either.
    const dispatcher = new Agent({ connect: { ca: readFileSync(stranger.cert) } });
    try {
      await assert.rejects(request(`${manager.url}/healthz`, { dispatcher }), /certificate|self.signed|verify/i);
    } finally {
      await dispatcher.close();
    }
  });

  it('the CLI reaches an https manager with --ca (or NEXUS_CA), and says what is wrong without it', async () => {
    const withCa = await runNexus(['hosts', 'list', '--api', manager.url, '--token', manager.adminToken, '--ca', ca.cert]);
    assert.equal(withCa.code, 0, withCa.output);
    assert.match(withCa.output, /tls-host/);
    const fromEnv = await runNexus(['hosts', 'list', '--api', manager.url], { NEXUS_TOKEN: manager.adminToken, NEXUS_CA: ca.cert });
    assert.equal(fromEnv.code, 0, fromEnv.output);
    const without = await runNexus(['hosts', 'list', '--api', manager.url, '--token', manager.adminToken]);
    assert.equal(without.code, 1);
    assert.match(without.output, /not trusted here/);
    const missing = await runNexus(['hosts', 'list', '--api', manager.url, '--ca', join(dir.path, 'nope.crt')]);
    assert.equal(missing.code, 1);
    assert.match(missing.output, /--ca \(NEXUS_CA\): cannot read .*nope\.crt: ENOENT/);
  });

  it('an agent that does not trust the manager cannot enroll, and says it is the certificate', async () => {
    const joinToken = (await manager.hosts.mintJoinToken(600)).token;
    await assert.rejects(
      startHollowAgent(manager.url, joinToken, join(dir.path, 'run-stranger'), 'stranger-host', {}, { ca: stranger.cert }),
      (error: unknown) => {
        assert.ok(error instanceof NexusError);
        assert.match(error.message, /enrolling with https:/);
        assert.match(error.suggestion ?? '', /not trusted here/);
        return true;
      },
    );
    assert.equal((await manager.hosts.list()).filter((host) => host.name === 'stranger-host').length, 0);
  });

  it('refuses at start a certificate without its key, or a file that is not PEM, naming the setting', async () => {
    const served = ca.issue('half');
    await assert.rejects(startTestManager({ tlsCert: served.cert }), /--tls-cert \(NEXUS_TLS_CERT\) is set but --tls-key \(NEXUS_TLS_KEY\) is not/);
    await assert.rejects(
      startTestManager({}, { NEXUS_TLS_CERT: served.cert, NEXUS_TLS_KEY: served.cert }),
      /--tls-key \(NEXUS_TLS_KEY\): .* holds no PEM private key/,
    );
    const agent = await runNexus(['agent', '--run-dir', join(dir.path, 'run-bad'), '--tls-key', served.key]);
    assert.notEqual(agent.code, 0);
    assert.match(agent.output, /--tls-key \(NEXUS_TLS_KEY\) is set but --tls-cert \(NEXUS_TLS_CERT\) is not/);
  });
});
