import assert from 'node:assert/strict';
import { hostname } from 'node:os';
import { describe, it } from 'node:test';
import { resolveAgentConfig } from '../../../src/agent/config.js';
import type { NexusError } from '../../../src/kit/nexus-error.js';

describe('resolveAgentConfig', () => {
  it('defaults: 127.0.0.1:9090, /srv/fc, state under the run dir, hostname, standalone', () => {
    const config = resolveAgentConfig({}, {});
    assert.deepEqual(config.bind, { host: '127.0.0.1', port: 9090 });
    assert.equal(config.runDir, '/srv/fc');
    assert.equal(config.stateDir, '/srv/fc/agent');
    assert.equal(config.name, hostname());
    assert.equal(config.managerUrl, undefined);
  });
  it('reads AGENT_BIND, FC_RUN_DIR, NEXUS_MANAGER_URL and NEXUS_JOIN_TOKEN', () => {
    const config = resolveAgentConfig({}, { AGENT_BIND: ':9191', FC_RUN_DIR: '/run/nx', NEXUS_MANAGER_URL: 'http://m:8080/', NEXUS_JOIN_TOKEN: 't' });
    assert.deepEqual(config.bind, { host: '0.0.0.0', port: 9191 });
    assert.equal(config.stateDir, '/run/nx/agent');
    assert.equal(config.managerUrl, 'http://m:8080');
    assert.equal(config.joinToken, 't');
  });
  it('refuses a join token without a manager, a bad manager URL and a bad advertise address', () => {
    assert.throws(() => resolveAgentConfig({ joinToken: 't' }, {}), /needs --manager/);
    assert.throws(() => resolveAgentConfig({ managerUrl: 'm:8080' }, {}), /must be an http\(s\) URL/);
    assert.throws(() => resolveAgentConfig({ advertise: 'somewhere' }, {}), /AGENT_ADVERTISE must be host:port/);
    assert.throws(() => resolveAgentConfig({ runDir: `/${'x'.repeat(60)}` }, {}), /too long: VM sockets under it would exceed/);
    assert.throws(() => resolveAgentConfig({}, { NEXUS_BRIDGE_CIDR: '10.0.0.1' }), /NEXUS_BRIDGE_CIDR must be/);
    assert.throws(() => resolveAgentConfig({}, { NEXUS_BRIDGE: 'a-very-long-bridge-name' }), /NEXUS_BRIDGE must be/);
    assert.throws(() => resolveAgentConfig({}, { NEXUS_NAT: 'maybe' }), /NEXUS_NAT must be on or off/);
    assert.throws(() => resolveAgentConfig({}, { NEXUS_FIREWALL: 'pf' }), /NEXUS_FIREWALL must be auto, nftables or iptables/);
  });

  it('reads NEXUS_FIREWALL: auto (the default) leaves the choice to what is installed', () => {
    assert.equal(resolveAgentConfig({}, {}).firewall, undefined, 'default: auto');
    assert.equal(resolveAgentConfig({}, { NEXUS_FIREWALL: 'auto' }).firewall, undefined, 'auto');
    assert.equal(resolveAgentConfig({}, { NEXUS_FIREWALL: 'iptables' }).firewall, 'iptables');
    assert.equal(resolveAgentConfig({}, { NEXUS_FIREWALL: 'nftables' }).firewall, 'nftables');
  });
  it('reads the jailer, proxy and log settings, and refuses what the jailer cannot run', () => {
    const jail = { NEXUS_JAILER_BIN: '/usr/bin/jailer', NEXUS_JAILER_UID_RANGE: '900000-965535' };
    assert.deepEqual(resolveAgentConfig({ runDir: '/srv/fc' }, jail).jailer, {
      binary: '/usr/bin/jailer',
      uidRange: { first: 900_000, last: 965_535 },
      chrootBaseDir: '/srv/fc/jail',
    });
    assert.deepEqual(resolveAgentConfig({}, { ...jail, NEXUS_JAILER_UID_RANGE: '7-7' }).jailer?.uidRange, { first: 7, last: 7 }, 'a range of one id');
    assert.equal(resolveAgentConfig({}, {}).jailer, undefined, 'no jailer unless asked');
    assert.throws(() => resolveAgentConfig({}, { ...jail, NEXUS_FIRECRACKER_BIN: '/opt/fc' }), /file name contains "firecracker"/);
    // The range: required, first-last, never root, first <= last, below (uid_t) -1.
    const refused = (range: string | undefined) => {
      try {
        resolveAgentConfig({}, { NEXUS_JAILER_BIN: '/usr/bin/jailer', ...(range === undefined ? {} : { NEXUS_JAILER_UID_RANGE: range }) });
      } catch (error) {
        return error as NexusError;
      }
      assert.fail(`NEXUS_JAILER_UID_RANGE '${range}' was accepted`);
    };
    for (const range of [undefined, '', '900000', '0-10', '10-5', '1-4294967295', '-5-10', '1e5-2e5', ' 1-10', '1 - 10', '1-10,20-30']) {
      const error = refused(range);
      assert.equal(error.code, 'bad_request', `${range}: ${error.message}`);
      assert.match(error.message, /needs NEXUS_JAILER_UID_RANGE: first-last/, `${range}: ${error.message}`);
      assert.match(error.suggestion ?? '', /NEXUS_JAILER_UID_RANGE=900000-965535/, `${range}: an example range is suggested`);
    }
    assert.equal(resolveAgentConfig({}, { ...jail, NEXUS_JAILER_UID_RANGE: '1-4294967294' }).jailer?.uidRange.last, 4_294_967_294, 'the highest id there is');
    // The shared uid/gid they replace is refused with what replaced it, not silently ignored.
    for (const old of [{ NEXUS_JAILER_UID: '900' }, { NEXUS_JAILER_GID: '901' }, { NEXUS_JAILER_UID: '900', NEXUS_JAILER_GID: '901' }]) {
      try {
        resolveAgentConfig({}, { ...jail, ...old });
        assert.fail(`${JSON.stringify(old)} was accepted`);
      } catch (error) {
        const named = Object.keys(old).join(' and ');
        assert.equal((error as NexusError).code, 'bad_request');
        assert.match((error as NexusError).message, new RegExp(`^${named} no longer apply: .* from NEXUS_JAILER_UID_RANGE`));
        assert.match((error as NexusError).suggestion ?? '', new RegExp(`Unset ${named} and set NEXUS_JAILER_UID_RANGE=first-last`));
      }
    }
    assert.equal(resolveAgentConfig({}, { NEXUS_JAILER_UID: '900' }).jailer, undefined, 'without the jailer they never meant anything');
    assert.equal(resolveAgentConfig({}, { NEXUS_PROXY_TIMEOUT_MS: '2500' }).proxyTimeoutMs, 2500);
    assert.throws(() => resolveAgentConfig({}, { NEXUS_PROXY_TIMEOUT_MS: 'soon' }), /NEXUS_PROXY_TIMEOUT_MS/);
    assert.equal(resolveAgentConfig({}, {}).vmLogMaxBytes, 16 * 1024 * 1024);
    assert.throws(() => resolveAgentConfig({}, { NEXUS_VM_LOG_MAX_BYTES: '100' }), /at least 65536/);
  });

  it("reads the metrics interval and Firecracker's log level, and refuses what they cannot be", () => {
    assert.equal(resolveAgentConfig({}, {}).metricsIntervalMs, 5000);
    assert.equal(resolveAgentConfig({}, { NEXUS_METRICS_INTERVAL_MS: '1000' }).metricsIntervalMs, 1000);
    assert.throws(() => resolveAgentConfig({}, { NEXUS_METRICS_INTERVAL_MS: '50' }), /at least 200/);
    assert.throws(() => resolveAgentConfig({}, { NEXUS_METRICS_INTERVAL_MS: 'often' }), /NEXUS_METRICS_INTERVAL_MS/);
    assert.equal(resolveAgentConfig({}, {}).firecrackerLogLevel, 'Info');
    assert.equal(resolveAgentConfig({}, { NEXUS_FIRECRACKER_LOG_LEVEL: 'debug' }).firecrackerLogLevel, 'Debug');
    assert.throws(() => resolveAgentConfig({}, { NEXUS_FIRECRACKER_LOG_LEVEL: 'loud' }), /one of Error, Warning, Info, Debug, Trace, Off/);
  });
});
