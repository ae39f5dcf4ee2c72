// test-lane: parallel (its own managers, hollow hosts, databases, temp dirs and ports: no host network, guest, cgroup or host-wide scan)
import assert from 'node:assert/strict';
import { statSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { MIGRATION_NAMES } from '../../src/manager/adapters/sql/migrator.js';
import { freePort } from '../support/ports.js';
import { runNexus } from '../support/nexus-process.js';
import { tempDir } from '../support/temp-dir.js';
import { type TestManager, startTestManager } from '../support/test-manager.js';

describe('nexus CLI', () => {
  const dir = tempDir('nexus-cli-');
  let manager: TestManager;
  before(async () => {
    manager = await startTestManager();
  });
  after(async () => {
    await manager?.dispose();
    dir.remove();
  });

  it('--help lists every command', async () => {
    const { code, output } = await runNexus(['--help']);
    assert.equal(code, 0);
    for (const command of ['dev', 'manager', 'agent', 'migrate', 'doctor', 'hosts']) assert.match(output, new RegExp(`\\n  ${command}\\b`));
    const hosts = await runNexus(['hosts', '--help']);
    assert.match(hosts.output, /list/);
    assert.match(hosts.output, /join-token/);
  });

  it('migrate applies the migrations once, then finds the schema up to date', async () => {
    const dataDir = join(dir.path, 'migrate');
    const first = await runNexus(['migrate', '--data-dir', dataDir, '--json']);
    assert.equal(first.code, 0, first.output);
    // The answer on standard output; on standard error, that a key to seal secrets was made.
    const answer = first.output
      .split('\n')
      .filter((line) => !line.startsWith('{"level"'))
      .join('\n');
    assert.deepEqual(JSON.parse(answer).applied, MIGRATION_NAMES);
    assert.match(first.output, /made a new key that seals secrets in the database/);
    assert.equal(statSync(join(dataDir, 'secret.key')).mode & 0o777, 0o600);
    assert.ok(MIGRATION_NAMES.length >= 4 && MIGRATION_NAMES[0] === '0001-core');
    const second = await runNexus(['migrate', '--data-dir', dataDir]);
    assert.match(second.output, /the schema is up to date/);
  });

  it('hosts join-token mints a token; --json gives the API answer', async () => {
    const { code, output } = await runNexus(['hosts', 'join-token', '--json', '--api', manager.url], { NEXUS_TOKEN: manager.adminToken });
    assert.equal(code, 0, output);
    assert.match(JSON.parse(output).token, /^nxjt_/);
    const text = await runNexus(['hosts', 'join-token', '--ttl', '120'], { NEXUS_API: manager.url, NEXUS_DATA_DIR: manager.dataDir });
    assert.match(text.output, /^nxjt_\S+\n\nValid once, until /);
  });

  it('hosts join-token refuses a ttl out of range before calling the API', async () => {
    const { code, output } = await runNexus(['hosts', 'join-token', '--ttl', '5', '--api', manager.url]);
    assert.notEqual(code, 0);
    assert.match(output, /a whole number of seconds from 60/);
  });

  it('hosts list says so when there are no hosts, and errors name an unreachable manager', async () => {
    const empty = await runNexus(['hosts', 'list', '--api', manager.url, '--token', manager.adminToken]);
    assert.match(empty.output, /No hosts yet/);
    const port = await freePort();
    const down = await runNexus(['hosts', 'list', '--api', `http://127.0.0.1:${port}`]);
    assert.equal(down.code, 1);
    assert.match(down.output, new RegExp(`nexus: cannot reach http://127.0.0.1:${port}`));
    assert.match(down.output, /hint: /);
    const json = await runNexus(['hosts', 'list', '--json', '--api', `http://127.0.0.1:${port}`]);
    assert.equal(JSON.parse(json.output).error, 'unavailable');
  });

  it('without a token the CLI says so, with a hint; --token, NEXUS_TOKEN and <data-dir>/admin.token each work', async () => {
    const none = await runNexus(['hosts', 'list', '--api', manager.url], { NEXUS_DATA_DIR: join(dir.path, 'no-such-dir') });
    assert.equal(none.code, 1);
    assert.match(none.output, /nexus: an API token is required/);
    assert.match(none.output, /hint: .*admin\.token/);
    const wrong = await runNexus([
      'hosts',
      'list',
      '--api',
      manager.url,
      '--token',
      'nxat_00000000000000000000000000000000_AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA',
    ]);
    assert.match(wrong.output, /not valid/);
    for (const env of [{ NEXUS_TOKEN: manager.adminToken }, { NEXUS_DATA_DIR: manager.dataDir }]) {
      assert.equal((await runNexus(['hosts', 'list', '--api', manager.url], env)).code, 0, JSON.stringify(Object.keys(env)));
    }
  });

  it('manager refuses a bad listen address, naming the setting', async () => {
    const { code, output } = await runNexus(['manager', '--listen', 'nowhere'], { NEXUS_DATA_DIR: join(dir.path, 'bad') });
    assert.equal(code, 1);
    assert.match(output, /NEXUS_LISTEN must be host:port/);
  });

  it('doctor reports node, QEMU and KVM', async () => {
    const { output } = await runNexus(['doctor', '--json']);
    const report = JSON.parse(output);
    assert.equal(report.node.ok, true);
    assert.equal(report.requirements[0].binary, 'qemu-system-x86_64');
    assert.ok(report.requirements[0].path, 'QEMU is installed on test machines');
    assert.equal(typeof report.kvm.usable, 'boolean');
  });

  it('warns at start when production mode runs on the embedded database', async () => {
    const production = await startTestManager({ mode: 'production' });
    try {
      assert.ok(production.logs.some((line) => line.level === 'warn' && /never fsyncs/.test(String(line.msg))));
      assert.ok(!manager.logs.some((line) => /never fsyncs/.test(String(line.msg))), 'dev mode does not warn');
    } finally {
      await production.dispose();
    }
  });
});
