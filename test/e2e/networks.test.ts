import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { existsSync, mkdirSync, readFileSync, symlinkSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { promisify } from 'node:util';
import { tapNameOf, vmNetnsNameOf } from '../../src/contracts/host-names.js';
import { readLink } from '../../src/agent/host/net/ip-command.js';
import { type AgentHarness, startAgentProcess } from '../support/agent-harness.js';
import { guestVm } from '../support/guest-host.js';
import { endGuests } from '../support/guest-teardown.js';
import { type Backend, firewallView, iptablesTablesGuard } from '../support/firewall-view.js';
import { testGuestImage } from '../support/guest-image.js';
import { eventually } from '../support/nexus-process.js';
import { testBridgeCidr, testBridgeName } from '../support/net-names.js';
import { tempDir } from '../support/temp-dir.js';
import { type TestManager, send, startTestManager } from '../support/test-manager.js';

const run = promisify(execFile);

/**
 * Networks with real guests: each VM boots at the address IPAM gave it; VMs of one network reach
 * each other, VMs of another cannot; egress allow reaches an "outside" address (a namespace this
 * test makes), egress deny does not. Guests report what they reach with `nexus.ping=`. The rules
 * are proven under both backends; what does not depend on them (DHCP, churn), under nftables only.
 */
for (const backend of ['nftables', 'iptables'] as const) {
  describe(`networks with real guests (${backend})`, () => networksSuite(backend));
}

function networksSuite(backend: Backend): void {
  const view = firewallView(backend);
  const tables = backend === 'iptables' ? iptablesTablesGuard() : undefined;
  /** The tests that do not depend on the backend (DHCP, churn) are made under nftables only. */
  const everyTest = backend === 'nftables';
  const dir = tempDir('nexus-networks-');
  const runDir = join(dir.path, 'run');
  const bridge = testBridgeName();
  const hex = randomBytes(3).toString('hex');
  // Blocks of this run only: 10.215.x.0/24 for the networks, 198.18.y.0/30 (a benchmarking range) outside.
  const third = (randomBytes(1)[0] ?? 0) & 0xfc;
  const blocks = { a: `10.215.${third}.0/24`, b: `10.215.${third + 1}.0/24`, closed: `10.215.${third + 2}.0/24`, churn: `10.215.${third + 3}.0/24` };
  const ipIn = (block: string, host: number) => block.replace(/\.0\/24$/, `.${host}`);
  const outside = { ns: `nxt-${hex}`, hostEnd: `nxo-${hex}`, nsEnd: `nxi-${hex}`, hostIp: `198.18.${third}.1`, nsIp: `198.18.${third}.2` };
  let manager: TestManager;
  let agent: AgentHarness;
  let images: string;
  const agentEnv = { NEXUS_BRIDGE: bridge, NEXUS_BRIDGE_CIDR: testBridgeCidr(), NEXUS_NAT: 'off', NEXUS_FIREWALL: backend };
  const url = (path: string) => `${manager.url}${path}`;

  before(async () => {
    const image = await testGuestImage();
    mkdirSync(runDir, { recursive: true });
    symlinkSync(join(image.dir, '..'), join(runDir, 'images'));
    images = join(runDir, 'images', image.manifest.name);
    // Tiny guests, most of them never booted: the churn test has ten at once beside the others, and makes 200 writes.
    manager = await startTestManager(
      { resyncMs: 1000, heartbeatTimeoutMs: 10_000, heartbeatIntervalMs: 1000, writesPerMinute: 1000 },
      { NEXUS_VCPU_OVERCOMMIT: '32' },
    );
    const token = (await manager.hosts.mintJoinToken(600)).token;
    agent = await startAgentProcess(runDir, { ...agentEnv, NEXUS_JOIN_TOKEN: token }, manager.url);
    await eventually('the host is ready', async () => (await manager.hosts.list()).some((host) => host.status === 'ready'));
    // The outside: a namespace behind a veth pair, reachable from the host by a route of its own.
    await run('ip', ['netns', 'add', outside.ns]);
    await run('ip', ['link', 'add', outside.hostEnd, 'type', 'veth', 'peer', 'name', outside.nsEnd, 'netns', outside.ns]);
    await run('ip', ['addr', 'add', `${outside.hostIp}/30`, 'dev', outside.hostEnd]);
    await run('ip', ['link', 'set', outside.hostEnd, 'up']);
    await run('ip', ['-n', outside.ns, 'addr', 'add', `${outside.nsIp}/30`, 'dev', outside.nsEnd]);
    await run('ip', ['-n', outside.ns, 'link', 'set', outside.nsEnd, 'up']);
    await run('ip', ['-n', outside.ns, 'link', 'set', 'lo', 'up']);
    await run('ip', ['-n', outside.ns, 'route', 'add', 'default', 'via', outside.hostIp]);
    for (const [name, cidr, egress] of [
      ['net-a', blocks.a, 'allow'],
      ['net-b', blocks.b, 'allow'],
      ['closed', blocks.closed, 'deny'],
    ]) {
      const made = await send(url('/v1/networks'), { body: { name, cidr, egress } });
      assert.equal(made.status, 201, JSON.stringify(made.body));
    }
  });

  after(async () => {
    await endGuests(manager?.url, agent, runDir, agentEnv);
    await manager?.dispose();
    await run('ip', ['netns', 'del', outside.ns]).catch(() => undefined);
    await run('ip', ['link', 'del', 'dev', outside.hostEnd]).catch(() => undefined);
    await run('ip', ['link', 'del', 'dev', bridge]).catch(() => undefined);
    tables?.restore();
    dir.remove();
  });

  const create = async (name: string, network: string, ip: string, pings: string[]) => {
    const created = await send(url('/v1/vms'), {
      body: guestVm(images, name, {
        boot_args: `console=ttyS0 reboot=t panic=1 root=/dev/vda rw nexus.ping=${pings.join(',')}`,
        networks: [{ network, ip }],
      }),
    });
    assert.equal(created.status, 201, JSON.stringify(created.body));
    return created.body as { id: string; addresses: Array<{ ip: string; network_id: string }> };
  };
  const consoleOf = (id: string) => {
    const path = join(runDir, 'vms', id, 'logs', 'console.log');
    return existsSync(path) ? readFileSync(path, 'utf8') : '';
  };
  /** The last state the guest reported for `ip` (`up`, `down`), if any yet. */
  const reachOf = (id: string, ip: string) => [...consoleOf(id).matchAll(new RegExp(`NEXUS_PING ${ip.replaceAll('.', '\\.')} (up|down)`, 'g'))].at(-1)?.[1];
  const countOf = (id: string) => Number([...consoleOf(id).matchAll(/NEXUS_COUNTER (\d+)/g)].at(-1)?.[1] ?? 0);

  it('VMs of one network reach each other at their addresses; a VM of another network reaches neither; egress follows the network', async () => {
    const a1 = ipIn(blocks.a, 10);
    const a2 = ipIn(blocks.a, 11);
    const b1 = ipIn(blocks.b, 10);
    const c1 = ipIn(blocks.closed, 10);
    const gatewayOfClosed = ipIn(blocks.closed, 1);
    const vmA1 = await create('a1', 'net-a', a1, [a2]);
    const vmA2 = await create('a2', 'net-a', a2, [a1, b1, outside.nsIp]);
    const vmB1 = await create('b1', 'net-b', b1, [a1, a2]);
    const vmC1 = await create('c1', 'closed', c1, [gatewayOfClosed, outside.nsIp]);
    assert.deepEqual(
      [vmA1, vmA2, vmB1, vmC1].map((vm) => vm.addresses[0]?.ip),
      [a1, a2, b1, c1],
      'each VM at the address it asked for',
    );
    await eventually('the guests booted', () => [vmA1, vmA2, vmB1, vmC1].every((vm) => consoleOf(vm.id).includes('NEXUS_BOOT_OK')), 180_000);
    for (const [vm, ip] of [
      [vmA1, a1],
      [vmB1, b1],
    ] as const) {
      assert.match(consoleOf(vm.id), new RegExp(`NEXUS_NET eth0 ${ip.replaceAll('.', '\\.')}/24 via`), 'the guest configured the address IPAM gave');
    }
    assert.equal((await readLink(vmNetnsNameOf(vmA1.id)))?.linkinfo?.info_kind, 'veth', 'the VM is in a namespace of its own, joined to the host by a veth');
    assert.equal(await readLink(tapNameOf(vmA1.id)), undefined, 'and has no TAP on the host');

    await eventually('a1 and a2 reach each other', () => reachOf(vmA2.id, a1) === 'up' && reachOf(vmA1.id, a2) === 'up', 60_000);
    await eventually('a2 reaches the outside: egress allowed', () => reachOf(vmA2.id, outside.nsIp) === 'up', 60_000);
    await eventually('c1 reaches its gateway: its network works', () => reachOf(vmC1.id, gatewayOfClosed) === 'up', 60_000);
    // Give the isolated probes time to succeed if they could: ten more rounds of pings, each way.
    const rounds = { a2: countOf(vmA2.id), b1: countOf(vmB1.id), c1: countOf(vmC1.id) };
    await eventually(
      'ten more rounds',
      () => countOf(vmA2.id) > rounds.a2 + 10 && countOf(vmB1.id) > rounds.b1 + 10 && countOf(vmC1.id) > rounds.c1 + 10,
      120_000,
    );
    assert.equal(reachOf(vmA2.id, b1), 'down', 'a2 cannot reach b1 on another network');
    assert.equal(reachOf(vmB1.id, a1), 'down', 'b1 cannot reach a1');
    assert.equal(reachOf(vmB1.id, a2), 'down', 'b1 cannot reach a2');
    assert.doesNotMatch(consoleOf(vmB1.id), /NEXUS_PING \S+ up/, 'b1 never reached across, not even once');
    assert.equal(reachOf(vmC1.id, outside.nsIp), 'down', 'c1 cannot leave its network: egress denied');
    assert.doesNotMatch(consoleOf(vmC1.id), new RegExp(`NEXUS_PING ${outside.nsIp.replaceAll('.', '\\.')} up`), 'not even once');
    const fromHost = await run('busybox', ['ping', '-c', '1', '-W', '2', a1]).then(
      () => 'up',
      () => 'down',
    );
    assert.equal(fromHost, 'up', 'the host reaches a guest at its address');
  });

  if (everyTest)
    it("a guest that asks by DHCP gets the address IPAM recorded, from the network's DHCP server on its host", async () => {
      const created = await send(url('/v1/vms'), {
        body: guestVm(images, 'dhcp-guest', {
          // nexus.net=dhcp: init ignores the nexus.ip= the manager adds and runs udhcpc instead.
          boot_args: 'console=ttyS0 reboot=t panic=1 root=/dev/vda rw nexus.net=dhcp',
          networks: [{ network: 'net-a' }],
        }),
      });
      assert.equal(created.status, 201, JSON.stringify(created.body));
      const { id, addresses } = created.body as { id: string; addresses: Array<{ ip: string; gateway: string }> };
      const [address] = addresses;
      assert.ok(address, 'IPAM gave it an address');
      await eventually('the guest configured eth0 by DHCP', () => /NEXUS_NET(_FAILED)? eth0 .*dhcp/.test(consoleOf(id)), 120_000);
      assert.match(
        consoleOf(id),
        new RegExp(`NEXUS_NET eth0 ${address.ip.replaceAll('.', '\\.')}/24 via ${address.gateway.replaceAll('.', '\\.')} \\(dhcp\\)`),
      );
    });

  it('the host reaches a service a guest publishes on a host port, on a network whose egress is denied', async () => {
    const hostPort = 20_000 + (randomBytes(2).readUInt16BE(0) % 10_000);
    const created = await send(url('/v1/vms'), {
      body: guestVm(images, 'published', {
        // nexus.httpd=80: busybox httpd serves `nexus <hostname>` on port 80.
        boot_args: 'console=ttyS0 reboot=t panic=1 root=/dev/vda rw nexus.httpd=80',
        networks: [{ network: 'closed' }],
        ports: [{ host_port: hostPort, guest_port: 80 }],
      }),
    });
    assert.equal(created.status, 201, JSON.stringify(created.body));
    const { id } = created.body as { id: string };
    await eventually('the guest serves on port 80', () => /NEXUS_HTTPD(_FAILED)? 80/.test(consoleOf(id)), 120_000);
    assert.match(consoleOf(id), /NEXUS_HTTPD 80/);
    const shown = (await send(url(`/v1/vms/${id}`))).body as { ports: Array<{ reachable_at: string | null }> };
    assert.match(shown.ports[0]?.reachable_at ?? '', new RegExp(`:${hostPort}$`), 'the VM answer says where the port is');
    let page = '';
    await eventually(
      'the published port answers on the host',
      async () => {
        page = await fetch(`http://127.0.0.1:${hostPort}/`, { signal: AbortSignal.timeout(2000) }).then(
          (response) => response.text(),
          () => '',
        );
        return page.length > 0;
      },
      30_000,
    );
    assert.equal(page.trim(), 'nexus published', "the guest's page, through the host port");
    assert.equal((await send(url(`/v1/vms/${id}?wait=60`), { method: 'DELETE' })).status, 200);
    assert.equal(view.publishRules(id), '', 'its port rules went with it');
    const after = await fetch(`http://127.0.0.1:${hostPort}/`, { signal: AbortSignal.timeout(2000) }).then(
      () => 'answered',
      () => 'refused',
    );
    assert.equal(after, 'refused', 'nothing answers on the port any more');
  });

  if (everyTest)
    it('100 creates and deletes on one network leave nothing behind and free every address; an agent killed among them converges', async () => {
      const network = await send(url('/v1/networks'), { body: { name: 'churn', cidr: blocks.churn } });
      assert.equal(network.status, 201, JSON.stringify(network.body));
      const body = (name: string) =>
        guestVm(images, name, {
          // Configured, not booted: the agent plumbs a VM's namespace as it ensures it.
          desired_state: 'stopped',
          networks: [{ network: 'churn' }],
        });
      const ids: string[] = [];
      for (let round = 0; round < 10; round++) {
        const killed = round === 5;
        const created = await Promise.all(
          Array.from({ length: 10 }, (_, index) => send(url(`/v1/vms${killed ? '' : '?wait=60'}`), { body: body(`churn-${round}-${index}`) })),
        );
        for (const each of created) assert.equal(each.status, 201, JSON.stringify(each.body));
        const vms = created.map((each) => each.body as { id: string; addresses: Array<{ ip: string }> });
        ids.push(...vms.map((vm) => vm.id));
        if (killed) {
          // The agent dies among the creates: half-made namespaces and all, it must converge.
          await new Promise((resolve) => setTimeout(resolve, 300));
          agent.process.child.kill('SIGKILL');
          await agent.process.exited;
          agent = await startAgentProcess(runDir, agentEnv, manager.url);
          await eventually(
            'every VM of the round is configured after the agent came back',
            async () => {
              const states = await Promise.all(vms.map(async (vm) => (await send(url(`/v1/vms/${vm.id}`))).body.state as string));
              return states.every((state) => state === 'configured');
            },
            90_000,
          );
        }
        const addresses = vms.map((vm) => vm.addresses[0]?.ip);
        assert.equal(new Set(addresses).size, 10, `round ${round}: ten VMs, ten addresses (${addresses.join(', ')})`);
        for (const vm of vms) {
          assert.equal((await readLink(vmNetnsNameOf(vm.id)))?.linkinfo?.info_kind, 'veth', `round ${round}: ${vm.id} is plumbed`);
        }
        const deleted = await Promise.all(vms.map((vm) => send(url(`/v1/vms/${vm.id}?wait=60`), { method: 'DELETE' })));
        for (const each of deleted) assert.equal(each.status, 200, JSON.stringify(each.body));
      }
      const namespaces = (await run('ip', ['netns', 'list'])).stdout;
      const links = (await run('ip', ['-o', 'link', 'show'])).stdout;
      const processes = (await run('ps', ['-eo', 'args'])).stdout;
      for (const id of ids) {
        const name = vmNetnsNameOf(id);
        assert.doesNotMatch(namespaces, new RegExp(name), `no namespace of ${id}`);
        assert.doesNotMatch(links, new RegExp(name), `no veth of ${id}`);
        assert.doesNotMatch(processes, new RegExp(`net/dhcp/${name}/`), `no DHCP server of ${id}`);
        assert.equal(existsSync(join(runDir, 'net', 'dhcp', name)), false, `no DHCP files of ${id}`);
      }
      const churn = network.body as { id: string };
      assert.equal(view.networkRules(churn.id), '', 'no rules of the network');
      assert.equal((await send(url(`/v1/networks/${churn.id}`))).body.vm_count, 0, 'every address is free again');
      const next = await send(url('/v1/vms'), { body: body('churn-after') });
      assert.equal(next.body.addresses[0]?.ip, ipIn(blocks.churn, 2), 'the next VM gets the lowest address again');
      assert.equal((await send(url(`/v1/vms/${next.body.id}?wait=60`), { method: 'DELETE' })).status, 200);
    });

  it("deleting the VMs removes their namespaces, veths and DHCP servers, and each network's rules once its last VM is gone", async () => {
    const vms = (await send(url('/v1/vms'))).body.items as Array<{ id: string; addresses: Array<{ network_id: string }> }>;
    const networks = [...new Set(vms.map((vm) => vm.addresses[0]?.network_id ?? ''))];
    assert.ok(networks.length > 0, 'the VMs of the first test are there');
    for (const id of networks) assert.notEqual(view.networkRules(id), '', `network ${id} has rules while its VMs are there`);
    for (const vm of vms) assert.equal((await send(url(`/v1/vms/${vm.id}?wait=60`), { method: 'DELETE' })).status, 200);
    for (const vm of vms) {
      assert.equal(await readLink(vmNetnsNameOf(vm.id)), undefined, `veth of ${vm.id} gone`);
      assert.equal(existsSync(`/run/netns/${vmNetnsNameOf(vm.id)}`), false, `namespace of ${vm.id} gone`);
    }
    for (const id of networks) assert.equal(view.networkRules(id), '', `the rules of ${id} went with its last VM`);
    for (const network of (await send(url('/v1/networks'))).body.items as Array<{ id: string; vm_count: number }>) {
      assert.equal(network.vm_count, 0, 'every address is free again');
      assert.equal((await send(url(`/v1/networks/${network.id}`), { method: 'DELETE' })).status, 200);
    }
  });
}
