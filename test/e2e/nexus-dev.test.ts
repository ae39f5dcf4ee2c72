import assert from 'node:assert/strict';
import { after, describe, it } from 'node:test';
import { mkdirSync, readFileSync, symlinkSync } from 'node:fs';
import { join } from 'node:path';
import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import { TEST_IMAGE_RUN_DIR } from '../support/guest-image.js';
import { testBridgeCidr, testBridgeName } from '../support/net-names.js';
import { freePort } from '../support/ports.js';
import { tempDir } from '../support/temp-dir.js';
import { type NexusProcess, descendantsOf, eventually, isAlive, runNexus, spawnNexus } from '../support/nexus-process.js';

/**
 * A run dir whose image store is the tests' shared, cached one: `nexus dev` builds its `default`
 * image there once, not in every test's fresh dir.
 */
function runDirWithSharedImages(path: string): string {
  const shared = join(TEST_IMAGE_RUN_DIR, 'images');
  mkdirSync(shared, { recursive: true });
  mkdirSync(path, { recursive: true });
  try {
    symlinkSync(shared, join(path, 'images'));
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code !== 'EEXIST') throw error;
  }
  return path;
}

/**
 * The guests' bridge of these tests: their own, not the default fcbr0 a real `nexus dev` uses, and
 * without NAT, so removing the bridge leaves nothing behind.
 */
const bridge = testBridgeName();
const bridgeEnv = { NEXUS_BRIDGE: bridge, NEXUS_BRIDGE_CIDR: testBridgeCidr(), NEXUS_NAT: 'off' };
const removeBridge = () => promisify(execFile)('ip', ['link', 'del', 'dev', bridge]).then(() => undefined, () => undefined);

/**
 * `nexus dev` as an operator runs it: the real binary, manager + local agent, embedded database.
 * Ports, data dir and run dir are the test's own.
 */
describe('nexus dev', () => {
  const dir = tempDir('nexus-dev-');
  const started: NexusProcess[] = [];
  after(async () => {
    await Promise.all(started.map((process) => process.stop()));
    await removeBridge();
    dir.remove();
  });

  async function startDev(): Promise<{ dev: NexusProcess; api: string }> {
    const [apiPort, agentPort] = [await freePort(), await freePort()];
    const dev = spawnNexus(['dev', '--no-install'], {
      NEXUS_LISTEN: `127.0.0.1:${apiPort}`,
      AGENT_BIND: `127.0.0.1:${agentPort}`,
      NEXUS_DATA_DIR: join(dir.path, 'data'),
      FC_RUN_DIR: runDirWithSharedImages(join(dir.path, 'run')),
      ...bridgeEnv,
    });
    started.push(dev);
    const api = `http://127.0.0.1:${apiPort}`;
    await eventually(
      'nexus dev says it is up',
      async () => {
        if (dev.child.exitCode !== null) throw new Error(`nexus dev exited early:\n${dev.output()}`);
        return /Nexus dev is up/.test(dev.output());
      },
      60_000,
    );
    assert.equal((await fetch(`${api}/readyz`)).status, 200);
    return { dev, api };
  }

  async function stopsCleanly(signal: NodeJS.Signals) {
    const { dev, api } = await startDev();
    const { code: listCode, output } = await runNexus(['hosts', 'list', '--json'], { NEXUS_API: api, NEXUS_DATA_DIR: join(dir.path, 'data') });
    assert.equal(listCode, 0, output);
    const hosts = JSON.parse(output);
    assert.equal(hosts.length, 1);
    assert.equal(hosts[0].status, 'ready');

    assert.match(dev.output(), /guest image default (is up to date|built) in /);
    const pid = dev.child.pid ?? 0;
    const children = descendantsOf(pid);
    assert.ok(children.length >= 1, 'the local agent runs as a child process');
    dev.child.kill(signal);
    const { code } = await dev.exited;
    assert.equal(code, 0, dev.output());
    await eventually('every child of nexus dev has exited', () => children.every((child) => !isAlive(child)), 15_000);
  }

  it('brings up manager + agent: readyz 200 and the local host listed ready; SIGINT stops both', async () => {
    await stopsCleanly('SIGINT');
  });

  it('starts again on the same data dir (the agent keeps its identity) and SIGTERM stops both', async () => {
    await stopsCleanly('SIGTERM');
  });

  it('boots a real guest from the default image by id (the quick start), and Ctrl-C stops it, unlike a production agent', async () => {
    const { dev, api } = await startDev();
    let images: Array<{ id: string; kind: string }> = [];
    await eventually(
      'the agent reports the default image',
      async () => {
        const { code, output } = await runNexus(['image', 'list', '--name', 'default', '--json'], { NEXUS_API: api, NEXUS_DATA_DIR: join(dir.path, 'data') });
        assert.equal(code, 0, output);
        images = JSON.parse(output) as typeof images;
        return images.length === 3;
      },
      15_000,
    );
    const ids = Object.fromEntries(images.map((image) => [`${image.kind}_image_id`, image.id]));
    const response = await fetch(`${api}/v1/vms?wait=60`, {
      method: 'POST',
      headers: { 'content-type': 'application/json', authorization: `Bearer ${readFileSync(join(dir.path, 'data', 'admin.token'), 'utf8').trim()}` },
      body: JSON.stringify({ name: 'hello', vcpu: 1, mem_mib: 128, ...ids }),
    });
    const vm = (await response.json()) as { id: string; state: string; console_log: string; kernel_path: string };
    assert.equal(response.status, 201, JSON.stringify(vm));
    assert.equal(vm.state, 'running');
    assert.equal(vm.kernel_path, join(dir.path, 'run', 'images', 'default', 'vmlinux'));
    await eventually('the guest prints its boot marker', () => readFileSync(vm.console_log, 'utf8').includes('NEXUS_BOOT_OK'), 60_000);
    const { pid } = JSON.parse(readFileSync(join(dir.path, 'run', 'vms', vm.id, 'pid'), 'utf8')) as { pid: number };
    assert.ok(isAlive(pid));

    dev.child.kill('SIGINT');
    assert.equal((await dev.exited).code, 0, dev.output());
    assert.ok(!isAlive(pid), 'the VM stopped with nexus dev');
  });

  it('leaves no agent behind even when nexus dev itself is killed with SIGKILL', async () => {
    const { dev } = await startDev();
    const children = descendantsOf(dev.child.pid ?? 0);
    assert.ok(children.length >= 1);
    dev.child.kill('SIGKILL');
    await dev.exited;
    await eventually('the orphaned agent notices and exits', () => children.every((child) => !isAlive(child)), 15_000);
  });
});

describe('nexus dev stopped while starting', () => {
  it('a SIGTERM during start-up still stops everything it started', async () => {
    const dir = tempDir('nexus-dev-early-');
    try {
      const dev = spawnNexus(['dev', '--no-install'], {
        NEXUS_LISTEN: `127.0.0.1:${await freePort()}`,
        AGENT_BIND: `127.0.0.1:${await freePort()}`,
        NEXUS_DATA_DIR: join(dir.path, 'data'),
        FC_RUN_DIR: runDirWithSharedImages(join(dir.path, 'run')),
        ...bridgeEnv,
      });
      const pid = dev.child.pid ?? 0;
      // The agent is spawned once the manager is up; stop dev while the agent is still probing.
      let children: number[] = [];
      await eventually('the agent is spawned', () => (children = descendantsOf(pid)).length > 0, 60_000);
      dev.child.kill('SIGTERM');
      const { code } = await dev.exited;
      assert.equal(code, 0, dev.output());
      await eventually('the agent has exited', () => children.every((child) => !isAlive(child)), 15_000);
    } finally {
      await removeBridge();
      dir.remove();
    }
  });
});
