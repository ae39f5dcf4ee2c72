import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, describe, it } from 'node:test';
import { AgentCredentials } from '../../../src/agent/app/agent-credentials.js';
import { CredentialStore } from '../../../src/agent/host/credential-store.js';
import { captureLogger } from '../../support/capture-logger.js';
import { tempDir } from '../../support/temp-dir.js';

describe('AgentCredentials', () => {
  const dir = tempDir('nexus-credentials-');
  after(() => dir.remove());

  const setUp = (name: string) => {
    let now = 1_000;
    const store = new CredentialStore(join(dir.path, name));
    const credentials = new AgentCredentials(store, 500, captureLogger('credentials').log, () => now);
    return { store, credentials, advance: (ms: number) => (now += ms) };
  };

  it('accepts nothing before an identity is established, then only its credential', () => {
    const { credentials } = setUp('fresh');
    assert.equal(credentials.accepts('nxhc_a'), false);
    credentials.establish({ credential: 'nxhc_a' });
    assert.equal(credentials.accepts('nxhc_a'), true);
    assert.equal(credentials.accepts('nxhc_b'), false);
    assert.equal(credentials.accepts(undefined), false);
  });

  it('a replacement is saved before use; the old credential is accepted for the overlap only, then never again', async () => {
    const { store, credentials, advance } = setUp('rotate');
    credentials.establish({ credential: 'nxhc_old', enrollment: { hostId: 'h', managerUrl: 'http://m' } });
    await credentials.replace('nxhc_new');
    assert.equal(JSON.parse(readFileSync(store.path, 'utf8')).credential, 'nxhc_new');
    assert.deepEqual(credentials.current(), { credential: 'nxhc_new', enrollment: { hostId: 'h', managerUrl: 'http://m' } });
    assert.equal(credentials.accepts('nxhc_new'), true);
    assert.equal(credentials.accepts('nxhc_old'), true, 'within the overlap');
    advance(499);
    assert.equal(credentials.accepts('nxhc_old'), true);
    advance(1);
    assert.equal(credentials.accepts('nxhc_old'), false, 'the overlap is over');
    advance(-400);
    assert.equal(credentials.accepts('nxhc_old'), false, 'forgotten, not merely expired');
  });

  it('giving the credential in force again changes nothing; replacements queue in order', async () => {
    const { credentials } = setUp('queue');
    credentials.establish({ credential: 'nxhc_a' });
    await credentials.replace('nxhc_a');
    assert.equal(credentials.accepts('nxhc_a'), true);
    await Promise.all([credentials.replace('nxhc_b'), credentials.replace('nxhc_c')]);
    assert.equal(credentials.current()?.credential, 'nxhc_c');
    assert.equal(credentials.accepts('nxhc_b'), true, 'the one just replaced, within the overlap');
    assert.equal(credentials.accepts('nxhc_a'), false, 'two replacements ago');
  });
});
