// test-lane: parallel (its own managers, hollow hosts, databases, temp dirs and ports: no host network, guest, cgroup or host-wide scan)
import assert from 'node:assert/strict';
import { statSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { MIGRATION_NAMES } from '../../src/manager/adapters/sql/migrator.js';
import { freePort } from '../support/ports.js';
import { writeFakeImageBuild } from '../support/fake-image-build.js';
import { type HollowAgent, startHollowAgent } from '../support/hollow-agents.js';
import { eventually, runNexus } from '../support/nexus-process.js';
import { tempDir } from '../support/temp-dir.js';
import { type TestManager, send, startTestManager } from '../support/test-manager.js';

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
    for (const command of ['dev', 'manager', 'agent', 'migrate', 'doctor', 'hosts', 'image', 'network', 'snapshot'])
      assert.match(output, new RegExp(`\\n  ${command}\\b`));
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

  it('network create, ls, inspect and rm: tables for people, the API answer with --json, refusals as message and hint', async () => {
    const env = { NEXUS_API: manager.url, NEXUS_TOKEN: manager.adminToken };
    const created = await runNexus(
      ['network', 'create', 'cli-net', '--cidr', '10.40.0.0/24', '--egress', 'deny', '--dns', '10.40.0.53, 9.9.9.9', '--json'],
      env,
    );
    assert.equal(created.code, 0, created.output);
    const network = JSON.parse(created.output);
    assert.deepEqual(
      [network.name, network.cidr, network.gateway, network.egress, network.dns],
      ['cli-net', '10.40.0.0/24', '10.40.0.1', 'deny', ['10.40.0.53', '9.9.9.9']],
    );
    const listed = await runNexus(['network', 'ls'], env);
    assert.equal(listed.code, 0, listed.output);
    assert.match(listed.output, /^NAME\s+PROJECT\s+CIDR\s+GATEWAY\s+EGRESS\s+VMS\s+ID\n/);
    assert.match(listed.output, new RegExp(`cli-net\\s+default\\s+10\\.40\\.0\\.0/24\\s+10\\.40\\.0\\.1\\s+deny\\s+0\\s+${network.id}`));
    const inspected = await runNexus(['network', 'inspect', 'cli-net'], env);
    assert.match(inspected.output, /^name {5}cli-net\n/);
    assert.match(inspected.output, /dns {6}10\.40\.0\.53, 9\.9\.9\.9/);
    const overlap = await runNexus(['network', 'create', 'cli-other', '--cidr', '10.40.0.0/25'], env);
    assert.equal(overlap.code, 1);
    assert.match(overlap.output, /nexus: cidr 10\.40\.0\.0\/25 overlaps network cli-net \(10\.40\.0\.0\/24\)\n {2}hint: Choose a block/);
    assert.doesNotMatch(overlap.output, /at .+\.(js|ts):\d+/, 'no stack');
    const removed = await runNexus(['network', 'rm', 'cli-net'], env);
    assert.equal(removed.code, 0, removed.output);
    assert.match(removed.output, /Deleted network cli-net \(10\.40\.0\.0\/24\)/);
    const gone = await runNexus(['network', 'inspect', 'cli-net', '--json'], env);
    assert.equal(gone.code, 1);
    assert.equal(JSON.parse(gone.output.trim().split('\n').at(-1) ?? '{}').error, 'not_found');
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

describe('nexus vm, on a hollow host', () => {
  const dir = tempDir('nexus-cli-vm-');
  let manager: TestManager;
  let hollow: HollowAgent;
  let env: Record<string, string>;
  before(async () => {
    manager = await startTestManager({ resyncMs: 500, heartbeatIntervalMs: 200 });
    const runDir = join(dir.path, 'run');
    await writeFakeImageBuild(join(runDir, 'images'), 'default', 'cli');
    hollow = await startHollowAgent(manager.url, (await manager.hosts.mintJoinToken(600)).token, runDir, 'hollow-cli');
    await eventually(
      'the host reports its image',
      async () => (await manager.hosts.list()).some((host) => host.status === 'ready') && (await imagesOf(manager)) === 3,
    );
    env = { NEXUS_API: manager.url, NEXUS_TOKEN: manager.adminToken };
  });
  after(async () => {
    await hollow?.agent.close();
    await manager?.dispose();
    dir.remove();
  });

  it('create (on a network, at an address), ls, inspect, stop and rm, with --json; refusals as message and hint', async () => {
    assert.equal((await runNexus(['network', 'create', 'cli-vms', '--cidr', '10.41.0.0/24'], env)).code, 0);
    const created = await runNexus(
      ['vm', 'create', 'web', '--network', 'cli-vms:10.41.0.9', '--publish', '18090:80', '--publish', '18053:53/udp', '--wait', '30', '--json'],
      env,
    );
    assert.equal(created.code, 0, created.output);
    const vm = JSON.parse(created.output);
    assert.equal(vm.state, 'running');
    assert.deepEqual([vm.addresses[0].network, vm.addresses[0].ip], ['cli-vms', '10.41.0.9']);
    assert.deepEqual(
      vm.ports.map((port: { host_port: number; guest_port: number; protocol: string }) => `${port.host_port}:${port.guest_port}/${port.protocol}`),
      ['18090:80/tcp', '18053:53/udp'],
      '--publish host:guest[/udp]',
    );
    const listed = await runNexus(['vm', 'ls'], env);
    assert.match(listed.output, /^NAME\s+STATE\s+DESIRED\s+ADDRESS\s+NETWORK\s+VCPU\s+MEM\s+PROJECT\s+CREATED\s+ID\n/);
    assert.match(listed.output, new RegExp(`\\nweb\\s+running\\s+running\\s+10\\.41\\.0\\.9\\s+cli-vms\\s+1\\s+128 MiB\\s+default\\s+\\S+ ago\\s+${vm.id}\\n`));
    const inspected = await runNexus(['vm', 'inspect', 'web'], env);
    assert.match(inspected.output, /\naddress {4}10\.41\.0\.9\/24 on cli-vms via 10\.41\.0\.1 \(MAC 06(:[0-9a-f]{2}){5}\)\n/);
    assert.match(inspected.output, /\nport {7}18090\/tcp -> 80 \(at [^)]+:18090\)\n/);
    assert.match((await runNexus(['vm', 'stop', 'web', '--wait', '30'], env)).output, /VM web is stopped\./);
    const nowhere = await runNexus(['vm', 'create', 'lost', '--network', 'nowhere'], env);
    assert.equal(nowhere.code, 1);
    assert.match(nowhere.output, /nexus: networks\[0\]: no network nowhere in project default\n {2}hint: GET \/v1\/networks/);
    const malformed = await runNexus(['vm', 'create', 'lost', '--network', 'a:b:c'], env);
    assert.match(malformed.output, /--network takes a network and an optional address/);
    assert.match((await runNexus(['vm', 'create', 'lost', '--publish', '80'], env)).output, /--publish takes host:guest/);
    assert.match((await runNexus(['vm', 'rm', 'web', '--wait', '30'], env)).output, /VM web is deleted\./);
    assert.deepEqual(JSON.parse((await runNexus(['vm', 'ls', '--json'], env)).output), []);
  });

  it('snapshot create, ls, inspect and rm; vm rm --keep-snapshots; refusals as message and hint', async () => {
    assert.equal((await runNexus(['vm', 'create', 'snappy', '--no-nic', '--wait', '30'], env)).code, 0);
    const taken = await runNexus(['snapshot', 'create', 'snappy', '--name', 'first', '--json'], env);
    assert.equal(taken.code, 0, taken.output);
    const first = JSON.parse(taken.output);
    assert.deepEqual([first.name, first.vm_name, first.status], ['first', 'snappy', 'ready']);
    assert.match((await runNexus(['vm', 'hibernate', 'snappy', '--wait', '30'], env)).output, /VM snappy is hibernated\./);
    assert.match((await runNexus(['vm', 'wake', 'snappy', '--wait', '30'], env)).output, /VM snappy is running\./);
    const stopped = await runNexus(['snapshot', 'create', 'snappy', '--name', 'last', '--stop'], env);
    assert.match(stopped.output, /^Snapshot last of VM snappy taken \(\d+(\.\d)? (B|KiB|MiB)\); the VM is stopped: [0-9a-f-]{36}\n$/);
    const refused = await runNexus(['snapshot', 'create', 'snappy'], env);
    assert.equal(refused.code, 1, 'a stopped VM is not snapshotted');
    assert.match(refused.output, /nexus: VM snappy is \w+: only a running or paused VM is snapshotted\n {2}hint: Start it first/);

    const listed = await runNexus(['snapshot', 'ls'], env);
    assert.match(listed.output, /^NAME\s+PROJECT\s+VM\s+STATUS\s+SIZE\s+CREATED\s+ID\n/);
    assert.match(listed.output, new RegExp(`\\nfirst\\s+default\\s+snappy\\s+ready\\s+\\d+(\\.\\d)? (B|KiB|MiB)\\s+\\S+ ago\\s+${first.id}\\n`));
    assert.match((await runNexus(['snapshot', 'inspect', 'first'], env)).output, /\nstate +\S+\/snapshots\/[0-9a-f-]{36}\/state\.bin \(/);
    const cloned = await runNexus(['snapshot', 'instantiate', 'first', '--name', 'snappy-2', '--json'], env);
    assert.equal(cloned.code, 0, cloned.output);
    const clone = JSON.parse(cloned.output);
    assert.deepEqual([clone.name, clone.state, clone.snapshot_id], ['snappy-2', 'running', first.id], 'restored from it, running');
    assert.match((await runNexus(['snapshot', 'instantiate', 'first', '--name', 'snappy-2'], env)).output, /nexus: a VM named snappy-2 already exists/);
    assert.match((await runNexus(['vm', 'rm', 'snappy-2', '--wait', '30'], env)).output, /VM snappy-2 is deleted\./);
    assert.match((await runNexus(['vm', 'rm', 'snappy', '--keep-snapshots', '--wait', '30'], env)).output, /VM snappy is deleted\./);
    assert.deepEqual(
      JSON.parse((await runNexus(['snapshot', 'ls', '--json'], env)).output).map((each: { name: string }) => each.name),
      ['last', 'first'],
      'kept past their VM',
    );
    assert.match((await runNexus(['snapshot', 'rm', 'first'], env)).output, /Deleted snapshot first\./);
    assert.equal((await runNexus(['snapshot', 'rm', first.id], env)).code, 1, 'a deleted one is not found');
    assert.equal((await runNexus(['snapshot', 'rm', 'last'], env)).code, 0);
    assert.deepEqual(JSON.parse((await runNexus(['snapshot', 'ls', '--json'], env)).output), []);
  });
});

async function imagesOf(manager: TestManager): Promise<number> {
  return (await send(`${manager.url}/v1/images`)).body.items.length;
}
