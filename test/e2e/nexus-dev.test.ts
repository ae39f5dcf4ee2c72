import assert from 'node:assert/strict';
import { after, describe, it } from 'node:test';
import { existsSync, mkdirSync, readFileSync, readdirSync, symlinkSync } from 'node:fs';
import { join } from 'node:path';
import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import { networkTableNameOf, vmNetnsNameOf } from '../../src/contracts/host-names.js';
import { seedEmbeddedDatabase } from '../support/embedded-db-template.js';
import { TEST_IMAGE_RUN_DIR } from '../support/guest-image.js';
import { testBridgeCidr, testBridgeName } from '../support/net-names.js';
import { freePort } from '../support/ports.js';
import { tempDir } from '../support/temp-dir.js';
import { type NexusProcess, type SpawnOptions, descendantsOf, eventually, isAlive, runNexus, spawnNexus } from '../support/nexus-process.js';

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
 * The end of what nexus dev said, for a failure's message: the whole of it (every request the agent
 * logged) can make Node 20's test runner spend minutes parsing the report.
 */
function tailOf(output: string): string {
  return output.length > 6000 ? `…${output.slice(-6000)}` : output;
}

/** The ports a `nexus dev` listens on: the manager's API and the local agent's. */
interface DevPorts {
  apiPort: number;
  agentPort: number;
}

/**
 * Starts `nexus dev` on the given dirs (ports of its own unless `where.ports` names them, the run
 * dir's image store the tests' shared one) and waits until it says it is up and answers readyz.
 */
async function startDevIn(
  where: { dataDir: string; runDir: string; env: NodeJS.ProcessEnv; ports?: DevPorts },
  options: SpawnOptions = {},
): Promise<{ dev: NexusProcess; api: string; ports: DevPorts }> {
  const { apiPort, agentPort } = where.ports ?? { apiPort: await freePort(), agentPort: await freePort() };
  await seedEmbeddedDatabase(where.dataDir);
  const dev = spawnNexus(
    ['dev', '--no-install'],
    {
      NEXUS_LISTEN: `127.0.0.1:${apiPort}`,
      AGENT_BIND: `127.0.0.1:${agentPort}`,
      NEXUS_DATA_DIR: where.dataDir,
      FC_RUN_DIR: runDirWithSharedImages(where.runDir),
      ...where.env,
    },
    options,
  );
  const api = `http://127.0.0.1:${apiPort}`;
  try {
    await eventually(
      'nexus dev says it is up',
      async () => {
        if (dev.child.exitCode !== null) throw new Error(`nexus dev exited early:\n${tailOf(dev.output())}`);
        return /Nexus dev is up/.test(dev.output());
      },
      // Checking the default image is up to date reads Debian's package lists: slow on a busy machine.
      180_000,
    );
    assert.equal((await fetch(`${api}/readyz`)).status, 200);
  } catch (error) {
    await dev.stop();
    throw new Error(`${(error as Error).message}; nexus dev said:\n${tailOf(dev.output())}`, { cause: error });
  }
  return { dev, api, ports: { apiPort, agentPort } };
}

/**
 * The guests' bridge of these tests: their own, not the default fcbr0 a real `nexus dev` uses, and
 * without NAT, so removing the bridge leaves nothing behind.
 */
const bridge = testBridgeName();
const bridgeEnv = { NEXUS_BRIDGE: bridge, NEXUS_BRIDGE_CIDR: testBridgeCidr(), NEXUS_NAT: 'off' };
const removeBridge = () =>
  promisify(execFile)('ip', ['link', 'del', 'dev', bridge]).then(
    () => undefined,
    () => undefined,
  );

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

  async function startDev(ports?: DevPorts): Promise<{ dev: NexusProcess; api: string; ports: DevPorts }> {
    const running = await startDevIn({ dataDir: join(dir.path, 'data'), runDir: join(dir.path, 'run'), env: bridgeEnv, ports });
    started.push(running.dev);
    return running;
  }

  /** The local agent's identity as it keeps it in the data dir: its credential, host id and manager. */
  const identityFile = join(dir.path, 'data', 'agent', 'identity.json');
  const storedIdentity = () => JSON.parse(readFileSync(identityFile, 'utf8')) as { credential: string; host_id: string; manager_url: string };

  /** Starts nexus dev, checks its one host is ready, stops it with `signal`; answers that host's id and the ports used. */
  async function stopsCleanly(signal: NodeJS.Signals, ports?: DevPorts): Promise<{ hostId: string; ports: DevPorts }> {
    const { dev, api, ports: used } = await startDev(ports);
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
    return { hostId: hosts[0].id as string, ports: used };
  }

  let first: { hostId: string; ports: DevPorts; identity: ReturnType<typeof storedIdentity> } | undefined;

  it('brings up manager + agent: readyz 200 and the local host listed ready; SIGINT stops both', async () => {
    const stopped = await stopsCleanly('SIGINT');
    first = { ...stopped, identity: storedIdentity() };
    assert.equal(first.identity.host_id, stopped.hostId, 'the agent keeps the id of the host it enrolled as');
  });

  it('starts again on the same data dir (the agent keeps its identity) and SIGTERM stops both', async () => {
    assert.ok(first, 'the previous test ran nexus dev on this data dir');
    // The same command line again, ports included: the manager's address is part of the identity.
    const again = await stopsCleanly('SIGTERM', first.ports);
    assert.equal(again.hostId, first.hostId, 'the same host, not a new one');
    assert.deepEqual(storedIdentity(), first.identity, 'the same identity: no new enrollment, no new credential');
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

/**
 * The VMs each stop test runs, all created at once. The case is nine (eight at once); four
 * is the fewest it asks for. Under TCG every booting guest keeps a core busy, and this machine has
 * two, shared with other runs: more would slow everything running meanwhile, and the test past a
 * couple of minutes, without reaching a path four do not (the bound on parallel stops is tested
 * with hollow VMs in test/unit/agent/vm-service-stop-all.test.ts).
 */
const VMS_AT_ONCE = 4;

/**
 * Pids of the VMM processes whose command line names a path in `runDir`'s VM folders (an argument
 * that starts with it, or holds it after `=`, `,` or `:`), from /proc.
 */
function vmmPidsIn(runDir: string): number[] {
  const marker = `${runDir}/vms/`;
  const names = (arg: string) => arg.startsWith(marker) || ['=', ',', ':'].some((separator) => arg.includes(`${separator}${marker}`));
  const found: number[] = [];
  for (const name of readdirSync('/proc')) {
    if (!/^\d+$/.test(name)) continue;
    try {
      const argv = readFileSync(`/proc/${name}/cmdline`, 'utf8').split('\0');
      if (/qemu-system-|firecracker/.test(argv[0] ?? '') && argv.some(names)) found.push(Number(name));
    } catch {
      // exited while we looked
    }
  }
  return found;
}

const run = promisify(execFile);
const deviceExists = (name: string) =>
  run('ip', ['link', 'show', 'dev', name]).then(
    () => true,
    () => false,
  );
const nftTables = async () => (await run('nft', ['list', 'tables'])).stdout;

describe('nexus dev stopped with VMs running', () => {
  /**
   * Starts `nexus dev` on a bridge and subnet of this test's own, creates VMS_AT_ONCE VMs at once
   * from the default image, stops dev with `stop` while they run (their guests booting or booted:
   * waiting for every boot marker takes minutes on a busy machine, and a guest that has not booted
   * yet ignores the power button, the slower path to stop), and checks that it exits only once no
   * VMM, TAP, bridge or NAT table of it is left, keeping the VM folders.
   * NAT, when on, masquerades only this subnet's traffic; the guests talk to nothing but the host.
   * `stop` gets the VMMs' pids too. Cleanup runs whatever failed, and removes what a failed run
   * left (by pid, and by the names of this test's own TAPs, bridge and NAT table).
   */
  async function stopsEverything(options: { nat: boolean; ownProcessGroup: boolean; stop: (dev: NexusProcess, pids: number[]) => Promise<void> | void }) {
    const dir = tempDir('nexus-dev-vms-');
    const runDir = join(dir.path, 'run');
    const dataDir = join(dir.path, 'data');
    const ownBridge = testBridgeName();
    const natTable = `nexus_${ownBridge}`;
    const taps = new Set<string>();
    let dev: NexusProcess | undefined;
    let failure: unknown;
    try {
      const env = { NEXUS_BRIDGE: ownBridge, NEXUS_BRIDGE_CIDR: testBridgeCidr(), NEXUS_NAT: options.nat ? 'on' : 'off' };
      const started = await startDevIn({ dataDir, runDir, env }, { ownProcessGroup: options.ownProcessGroup });
      dev = started.dev;
      const api = started.api;
      const token = readFileSync(join(dataDir, 'admin.token'), 'utf8').trim();
      let images: Array<{ id: string; kind: string }> = [];
      await eventually(
        'the agent reports the default image',
        async () => {
          const { code, output } = await runNexus(['image', 'list', '--name', 'default', '--json'], { NEXUS_API: api, NEXUS_DATA_DIR: dataDir });
          assert.equal(code, 0, output);
          images = JSON.parse(output) as typeof images;
          return images.length === 3;
        },
        15_000,
      );
      const ids = Object.fromEntries(images.map((image) => [`${image.kind}_image_id`, image.id]));
      // Every create is waited for, and each VM's TAP recorded as soon as its id is known, so
      // cleanup finds them all even when one create fails.
      const created = await Promise.allSettled(
        Array.from({ length: VMS_AT_ONCE }, async (_, index) => {
          const response = await fetch(`${api}/v1/vms?wait=240`, {
            method: 'POST',
            headers: { 'content-type': 'application/json', authorization: `Bearer ${token}` },
            body: JSON.stringify({ name: `vm-${index}`, vcpu: 1, mem_mib: 128, ...ids }),
          });
          const vm = (await response.json()) as { id: string; state: string; console_log: string; addresses: Array<{ network_id: string }> };
          if (typeof vm.id === 'string') taps.add(vmNetnsNameOf(vm.id));
          assert.equal(response.status, 201, JSON.stringify(vm));
          assert.equal(vm.state, 'running', JSON.stringify(vm));
          return vm;
        }),
      );
      const vms = created.map((result) => {
        if (result.status === 'rejected') throw result.reason;
        return result.value;
      });
      const pids = vms.map((vm) => (JSON.parse(readFileSync(join(runDir, 'vms', vm.id, 'pid'), 'utf8')) as { pid: number }).pid);
      assert.ok(pids.every(isAlive), `every VMM runs: ${pids.join(', ')}`);
      assert.deepEqual(vmmPidsIn(runDir).sort(), [...pids].sort(), 'the scan finds the VMMs the VMs reported');
      for (const tap of taps) assert.ok((await deviceExists(tap)) && existsSync(`/run/netns/${tap}`), `namespace ${tap} and its veth are up while its VM runs`);
      // Their NICs are on the project's default network: its rules (NAT included) are there while they run.
      const networkIds = [...new Set(vms.map((vm) => vm.addresses[0]?.network_id ?? ''))];
      assert.equal(networkIds.length, 1, 'the VMs share the default network');
      const networkTable = networkTableNameOf(networkIds[0] ?? '');
      assert.ok((await nftTables()).includes(networkTable), `the network's table ${networkTable} is there while VMs run`);
      assert.equal(await deviceExists(ownBridge), false, `the flat bridge ${ownBridge} is not made: no NIC is on it`);

      await options.stop(dev, pids);
      const { code } = await dev.exited;
      assert.equal(code, 0, tailOf(dev.output()));
      // Checked at once, not eventually: nexus dev exits only once all of it is gone.
      assert.deepEqual(pids.filter(isAlive), [], 'no VMM the VMs reported runs');
      assert.deepEqual(vmmPidsIn(runDir), [], 'no VMM process names the run dir');
      for (const tap of taps) assert.ok(!(await deviceExists(tap)) && !existsSync(`/run/netns/${tap}`), `namespace ${tap} and its veth are gone`);
      assert.equal((await nftTables()).includes(networkTable), false, `the network's table ${networkTable} (its NAT with it) is gone`);
      assert.equal(await deviceExists(ownBridge), false, `the flat bridge ${ownBridge} is not there`);
      assert.equal((await nftTables()).includes(natTable), false, `the flat bridge's NAT table ${natTable} is not there`);
      for (const vm of vms) {
        const folder = join(runDir, 'vms', vm.id);
        assert.ok(existsSync(join(folder, 'spec.json')), `the folder of VM ${vm.id} stays`);
        assert.ok(
          readdirSync(join(folder, 'drives')).some((file) => file.endsWith('.img')),
          `the disk of VM ${vm.id} stays`,
        );
      }
      assert.ok(dev.output().includes(`stopping ${VMS_AT_ONCE} VMs`), `nexus dev says what it waits for:\n${tailOf(dev.output())}`);
    } catch (error) {
      failure = error;
    } finally {
      // Every step runs whatever the others did; what failed is reported once all have run.
      const cleanupFailures: string[] = [];
      const attempt = async (what: string, step: () => Promise<unknown> | unknown) => {
        try {
          await step();
        } catch (error) {
          cleanupFailures.push(`${what}: ${(error as Error).message}`);
        }
      };
      await attempt('stopping nexus dev', () => dev?.stop());
      // What a failed run left, by pid and by name: never anything that is not this test's.
      await attempt('killing the leftover VMMs', async () => {
        for (const pid of vmmPidsIn(runDir)) {
          try {
            process.kill(pid, 'SIGKILL');
          } catch {
            // exited since the scan
          }
        }
        await eventually('the leftover VMMs have exited', () => vmmPidsIn(runDir).length === 0, 10_000);
      });
      await attempt('listing the VM folders', () => {
        for (const id of existsSync(join(runDir, 'vms')) ? readdirSync(join(runDir, 'vms')) : []) if (/^[0-9a-f-]{36}$/.test(id)) taps.add(vmNetnsNameOf(id));
      });
      for (const tap of taps) await run('ip', ['link', 'del', 'dev', tap]).catch(() => undefined);
      for (const tap of taps) await run('ip', ['netns', 'del', tap]).catch(() => undefined);
      await run('ip', ['link', 'del', 'dev', ownBridge]).catch(() => undefined);
      await run('nft', ['delete', 'table', 'ip', natTable]).catch(() => undefined);
      await attempt('removing the test dir', () => dir.remove());
      if (failure === undefined && cleanupFailures.length > 0) failure = new Error(`cleanup failed: ${cleanupFailures.join('; ')}`);
      else if (cleanupFailures.length > 0) (failure as Error).message += `\n(and cleanup failed: ${cleanupFailures.join('; ')})`;
    }
    if (failure !== undefined) throw failure;
  }

  it(`SIGTERM with ${VMS_AT_ONCE} VMs running: exits once every VMM, TAP and the bridge are gone; the VM folders stay`, async () => {
    await stopsEverything({
      nat: false,
      ownProcessGroup: false,
      stop: (dev) => {
        dev.child.kill('SIGTERM');
      },
    });
  });

  it(`Ctrl-C twice (SIGINT to the process group, as a terminal sends it) with ${VMS_AT_ONCE} VMs and NAT on: forced, it still leaves nothing, NAT table included`, async () => {
    let output = '';
    await stopsEverything({
      nat: true,
      ownProcessGroup: true,
      stop: async (dev, pids) => {
        // VMMs that cannot answer (stopped by SIGSTOP): no guest powers off, and each graceful stop
        // waits out its QMP timeouts, so the second Ctrl-C surely lands while they are under way.
        for (const pid of pids) process.kill(pid, 'SIGSTOP');
        const group = -(dev.child.pid ?? 0);
        process.kill(group, 'SIGINT');
        // The agent's own line: it has taken the first request and is stopping the VMs.
        await eventually('the agent is stopping the VMs', () => /"msg":"stopping \d+ VMs"/.test(dev.output()), 60_000);
        // The second Ctrl-C: kill the VMs rather than wait for their guests.
        process.kill(group, 'SIGINT');
        await dev.exited;
        output = dev.output();
      },
    });
    assert.match(output, /nexus: killing the VMs still running instead of waiting for their guests/, 'nexus dev took the second Ctrl-C');
    assert.match(output, /"msg":"forced: killing the VMMs still running instead of waiting for their guests"/, 'the agent took the forced path');
  });
});
