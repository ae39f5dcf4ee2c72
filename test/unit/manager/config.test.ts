import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { resolveManagerConfig } from '../../../src/manager/config.js';

describe('resolveManagerConfig', () => {
  it('defaults: loopback 8080, ./.nexus made absolute, embedded DB, 15 s timeout, 5 s beats', () => {
    const config = resolveManagerConfig({}, {});
    assert.deepEqual(config.listen, { host: '127.0.0.1', port: 8080 });
    assert.equal(config.dataDir, `${process.cwd()}/.nexus`);
    assert.equal(config.databaseUrl, undefined);
    assert.equal(config.mode, 'production');
    assert.equal(config.heartbeatTimeoutMs, 15_000);
    assert.equal(config.heartbeatIntervalMs, 5_000);
  });
  it('reads the environment, and options win over it', () => {
    const env = { NEXUS_LISTEN: '0.0.0.0:9000', NEXUS_DATA_DIR: '/var/lib/nexus', DATABASE_URL: 'postgres://db/nexus', NEXUS_HEARTBEAT_TIMEOUT_MS: '3000' };
    const config = resolveManagerConfig({ listen: '127.0.0.1:1' }, env);
    assert.deepEqual(config.listen, { host: '127.0.0.1', port: 1 });
    assert.equal(config.dataDir, '/var/lib/nexus');
    assert.equal(config.databaseUrl, 'postgres://db/nexus');
    assert.equal(config.heartbeatIntervalMs, 1000, 'a third of a short timeout');
  });
  it('keeps the secret key in the data dir unless NEXUS_SECRET_KEY_FILE names one (made absolute)', () => {
    assert.equal(resolveManagerConfig({}, { NEXUS_DATA_DIR: '/var/lib/nexus' }).secretKeyFile, '/var/lib/nexus/secret.key');
    assert.equal(resolveManagerConfig({}, { NEXUS_SECRET_KEY_FILE: 'keys/nexus.key' }).secretKeyFile, `${process.cwd()}/keys/nexus.key`);
    assert.equal(resolveManagerConfig({ secretKeyFile: '/etc/nexus/secret.key' }, { NEXUS_SECRET_KEY_FILE: '/x' }).secretKeyFile, '/etc/nexus/secret.key');
  });
  it('limits requests per client address to 6000 a minute, unless NEXUS_RATE_LIMIT_ADDRESS (a positive whole number) or the option says otherwise', () => {
    assert.equal(resolveManagerConfig({}, {}).requestsPerAddressPerMinute, 6000);
    assert.equal(resolveManagerConfig({}, { NEXUS_RATE_LIMIT_ADDRESS: '120' }).requestsPerAddressPerMinute, 120);
    assert.equal(resolveManagerConfig({ requestsPerAddressPerMinute: 7 }, { NEXUS_RATE_LIMIT_ADDRESS: '120' }).requestsPerAddressPerMinute, 7);
    for (const wrong of ['0', '-5', '1.5', 'lots']) {
      assert.throws(() => resolveManagerConfig({}, { NEXUS_RATE_LIMIT_ADDRESS: wrong }), /NEXUS_RATE_LIMIT_ADDRESS must be a positive whole number/);
    }
  });
  it('refuses what cannot work, with the setting named', () => {
    assert.throws(() => resolveManagerConfig({}, { DATABASE_URL: 'mysql://x' }), /DATABASE_URL must be a postgres/);
    assert.throws(() => resolveManagerConfig({}, { NEXUS_HEARTBEAT_TIMEOUT_MS: 'soon' }), /NEXUS_HEARTBEAT_TIMEOUT_MS must be a positive whole number/);
    assert.throws(() => resolveManagerConfig({ heartbeatTimeoutMs: 1000, heartbeatIntervalMs: 1000 }, {}), /must be shorter than the timeout/);
    assert.throws(() => resolveManagerConfig({ listen: 'nope' }, {}), /NEXUS_LISTEN/);
  });
});
