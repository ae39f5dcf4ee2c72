import assert from 'node:assert/strict';
import { type ChildProcess, execFileSync, spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { existsSync, readFileSync, readlinkSync, writeFileSync } from 'node:fs';
import { type AddressInfo, createServer } from 'node:net';
import { join } from 'node:path';
import { after, describe, it } from 'node:test';
import { tapNameOf, vmNetnsNameOf } from '../../src/contracts/host-names.js';
import type { NicNetwork } from '../../src/contracts/machine-spec.js';
import type { NexusError } from '../../src/kit/nexus-error.js';
import { parseIpv4Cidr } from '../../src/agent/domain/ipv4.js';
import { readLink } from '../../src/agent/host/net/ip-command.js';
import { BridgeNetwork } from '../../src/agent/host/net/bridge-network.js';
import { ensureMasquerade, removeMasquerade } from '../../src/agent/host/net/nat.js';
import { captureLogger } from '../support/capture-logger.js';
import { tempDir } from '../support/temp-dir.js';
import { readProcessStartTicks } from '../../src/kit/process-identity.js';
import { DhcpServers } from '../../src/agent/host/net/dhcp-servers.js';
import type { NetworkNic } from '../../src/agent/ports/host-network.js';
import { testBridgeCidr, testBridgeName, testVmId } from '../support/net-names.js';
import { type Backend, firewallView, iptablesTablesGuard } from '../support/firewall-view.js';

const ip = (...args: string[]) => execFileSync('ip', args, { encoding: 'utf8' });
/** A VM id whose TAP has this name. */
const vmIdOf = (tap: string) => `${tap.slice('tap-'.length)}-0000-4000-8000-000000000000`;

/**
 * A process holding the TAP open, as a running VMM does (its carrier comes up): Python opens
 * /dev/net/tun and attaches to the TAP with TUNSETIFF (IFF_TAP | IFF_NO_PI), which Node cannot.
 */
async function holdTap(tap: string): Promise<ChildProcess> {
  const script = [
    'import fcntl, os, struct, sys, time',
    'fd = os.open("/dev/net/tun", os.O_RDWR)',
    'fcntl.ioctl(fd, 0x400454ca, struct.pack("16sH", sys.argv[1].encode(), 0x0002 | 0x1000))',
    'print("held", flush=True)',
    'time.sleep(600)',
  ].join('\n');
  const holder = spawn('python3', ['-c', script, tap], { stdio: ['ignore', 'pipe', 'inherit'] });
  await new Promise<void>((resolve, reject) => {
    holder.stdout?.once('data', () => resolve());
    holder.once('exit', (code) => reject(new Error(`the TAP holder exited (${code})`)));
  });
  return holder;
}

describe('bridge network (real bridge, TAPs and NAT)', () => {
  const bridge = testBridgeName();
  const cidr = parseIpv4Cidr(testBridgeCidr());
  assert.ok(cidr);
  const netDir = tempDir('nexus-net-flat-');
  const network = new BridgeNetwork({ bridge, cidr, nat: true, netDir: netDir.path }, captureLogger().log);
  const foreign: string[] = [];

  after(async () => {
    for (const tap of await network.listDevices()) if ((await readLink(tap))?.master === bridge) await network.removeDevice(tap);
    for (const device of foreign) ip('link', 'del', 'dev', device);
    await network.removeBridge();
    netDir.remove();
  });

  it('creates the bridge with its address and NAT on first use, and a TAP attached to it', async () => {
    const tap = tapNameOf(testVmId());
    await network.ensureNic(vmIdOf(tap));
    const bridgeLink = await readLink(bridge);
    assert.equal(bridgeLink?.linkinfo?.info_kind, 'bridge');
    assert.ok(bridgeLink?.addr_info?.some((entry) => entry.local === cidr.address && entry.prefixlen === cidr.prefixLength));
    const tapLink = await readLink(tap);
    assert.equal(tapLink?.linkinfo?.info_kind, 'tun');
    assert.equal(tapLink?.master, bridge);
    assert.match(execFileSync('nft', ['list', 'tables'], { encoding: 'utf8' }), new RegExp(`nexus_${bridge}`));

    // Idempotent: again, and the TAP is recreated, still attached.
    await network.ensureNic(vmIdOf(tap));
    assert.equal((await readLink(tap))?.master, bridge);
    assert.ok((await network.listDevices()).includes(tap));

    await network.removeDevice(tap);
    assert.equal(await readLink(tap), undefined);
    await network.removeDevice(tap); // deleting what is gone succeeds
  });

  it('never touches a foreign device that carries a TAP name', async () => {
    const name = tapNameOf(testVmId());
    ip('link', 'add', name, 'type', 'bridge');
    foreign.push(name);
    await assert.rejects(network.ensureNic(vmIdOf(name)), (error: Error & { code?: string }) => {
      assert.equal(error.code, 'conflict');
      assert.match(error.message, /bridge device named .* was not made by Nexus/);
      return true;
    });
    await assert.rejects(network.removeDevice(name), /not made by Nexus/);
    assert.equal((await readLink(name))?.linkinfo?.info_kind, 'bridge', 'still there, untouched');
  });

  it('refuses to remove a device whose name is not a Nexus TAP or VM namespace name', async () => {
    for (const bad of ['eth0', 'tap-xyz', 'tap-3f2a91c4-extra', 'fcbr0', 'nxv-xyz']) {
      await assert.rejects(network.removeDevice(bad), (error: Error & { code?: string }) => error.code === 'bad_request', bad);
    }
  });

  it('adds the iptables masquerade rule once, however often it is ensured, and removes it', async () => {
    const subnet = `${cidr.address.split('.').slice(0, 3).join('.')}.0/24`;
    const rules = () =>
      execFileSync('iptables', ['-t', 'nat', '-S', 'POSTROUTING'], { encoding: 'utf8' })
        .split('\n')
        .filter((line) => line.includes(`nexus:${bridge}`));
    // iptables-nft makes the `ip nat` table on first use: if this test made it, this test removes it.
    const tables = iptablesTablesGuard();
    try {
      await ensureMasquerade('iptables', bridge, subnet);
      await ensureMasquerade('iptables', bridge, subnet);
      assert.equal(rules().length, 1);
      assert.match(rules()[0] ?? '', new RegExp(`-s ${subnet.replaceAll('.', '\\.')} ! -o ${bridge} .*-j MASQUERADE`));
    } finally {
      await removeMasquerade('iptables', bridge, subnet);
    }
    assert.deepEqual(rules(), []);
    tables.restore();
  });

  it('refuses a bridge name taken by a device that is not a bridge', async () => {
    const taken = testBridgeName();
    ip('tuntap', 'add', 'dev', taken, 'mode', 'tap');
    foreign.push(taken);
    const other = new BridgeNetwork({ bridge: taken, cidr, nat: false, netDir: netDir.path }, captureLogger().log);
    await assert.rejects(other.ensureBridge(), /exists and is not a bridge \(tun\)/);
  });
});

describe('bridge network tear-down (for an agent whose VMs end with it)', () => {
  const nftTables = () => execFileSync('nft', ['list', 'tables'], { encoding: 'utf8' });
  const netDir = tempDir('nexus-net-flat-');
  after(() => netDir.remove());

  /** A network on a bridge of its own; `cleanUp` removes whatever a failed test left of it. */
  function ownNetwork(options: { natBackend?: 'iptables' } = {}) {
    const bridge = testBridgeName();
    const cidr = parseIpv4Cidr(testBridgeCidr());
    assert.ok(cidr, 'the test cidr parses');
    const network = new BridgeNetwork({ bridge, cidr, nat: true, netDir: netDir.path, ...options }, captureLogger().log);
    const taps = [tapNameOf(testVmId()), tapNameOf(testVmId())];
    const cleanUp = async () => {
      for (const tap of taps) if (await readLink(tap)) ip('link', 'del', 'dev', tap);
      await network.removeBridge();
    };
    return { bridge, cidr, network, taps, cleanUp };
  }

  it('removes the TAPs it is given, then the NAT table and the bridge Nexus made', async () => {
    const { bridge, network, taps, cleanUp } = ownNetwork();
    try {
      for (const tap of taps) await network.ensureNic(vmIdOf(tap));
      assert.ok(nftTables().includes(`nexus_${bridge}`), 'the NAT table is there');

      await network.tearDown(taps);

      for (const tap of taps) assert.equal(await readLink(tap), undefined, `TAP ${tap} is gone`);
      assert.equal(await readLink(bridge), undefined, 'the bridge is gone');
      assert.ok(!nftTables().includes(`nexus_${bridge}`), 'the NAT table is gone');
      await network.tearDown(taps); // again, with nothing left: succeeds
      // And the network comes back on the next use.
      await network.ensureNic(vmIdOf(taps[0] ?? ''));
      assert.equal((await readLink(taps[0] ?? ''))?.master, bridge, 'made again on the next use');
    } finally {
      await cleanUp();
    }
  });

  it('turns IP forwarding back off when it removes the bridge whose NAT turned it on, and leaves it on when it found it on', async () => {
    const forwarding = () => readFileSync('/proc/sys/net/ipv4/ip_forward', 'utf8').trim();
    const setForwarding = (value: string) => writeFileSync('/proc/sys/net/ipv4/ip_forward', `${value}\n`);
    const found = forwarding();
    try {
      for (const before of ['0', '1']) {
        setForwarding(before);
        const { bridge, cidr, network, taps, cleanUp } = ownNetwork();
        try {
          for (const tap of taps) await network.ensureNic(vmIdOf(tap));
          assert.equal(forwarding(), '1', 'NAT needs forwarding on');
          // Another process (the next start, or nexus dev's own check) tears down what this one set up.
          await new BridgeNetwork({ bridge, cidr, nat: true, netDir: netDir.path }, captureLogger().log).tearDown(taps);
          assert.equal(forwarding(), before, `forwarding is as the set-up found it (${before})`);
        } finally {
          await cleanUp();
        }
      }
    } finally {
      setForwarding(found);
    }
  });

  it('removes a Nexus TAP on the bridge it was not given (a VM whose folder is gone), then the NAT and the bridge', async () => {
    const { bridge, network, taps, cleanUp } = ownNetwork();
    const strayVm = tapNameOf(testVmId());
    try {
      await network.ensureNic(vmIdOf(taps[0] ?? ''));
      await network.ensureNic(vmIdOf(strayVm));
      assert.deepEqual(
        (await network.tearDownLeft(taps)).sort(),
        [`TAP ${taps[0]}`, `TAP ${strayVm}`, `bridge ${bridge}`, `nftables table nexus_${bridge}`].sort(),
        'the stray TAP is listed as left with the rest',
      );

      await network.tearDown(taps);

      assert.equal(await readLink(strayVm), undefined, 'the TAP of the VM with no folder is gone');
      assert.equal(await readLink(bridge), undefined, 'the bridge is gone');
      assert.ok(!nftTables().includes(`nexus_${bridge}`), 'the NAT table is gone');
      assert.deepEqual(await network.tearDownLeft(taps), [], 'nothing is left');
    } finally {
      if (await readLink(strayVm)) ip('link', 'del', 'dev', strayVm);
      await cleanUp();
    }
  });

  it("leaves the bridge and its NAT while a device of someone else's is attached, and a Nexus TAP a process holds open", async () => {
    const { bridge, network, taps, cleanUp } = ownNetwork();
    const other = `nxd${randomBytes(3).toString('hex')}`;
    const held = tapNameOf(testVmId());
    let holder: ChildProcess | undefined;
    try {
      for (const tap of taps) await network.ensureNic(vmIdOf(tap));
      ip('tuntap', 'add', 'dev', other, 'mode', 'tap'); // not a Nexus TAP name: someone else's
      ip('link', 'set', 'dev', other, 'master', bridge);
      await network.ensureNic(vmIdOf(held));
      holder = await holdTap(held);

      await network.tearDown(taps);

      for (const tap of taps) assert.equal(await readLink(tap), undefined, `TAP ${tap} is gone`);
      assert.equal((await readLink(other))?.master, bridge, 'the other device is still attached');
      assert.equal((await readLink(held))?.master, bridge, 'the TAP a process holds (a VMM still running) stays');
      assert.ok(nftTables().includes(`nexus_${bridge}`), 'the NAT table stays');
      assert.deepEqual(await network.tearDownLeft(taps), [], 'what stays rightly is not reported as left');
    } finally {
      holder?.kill('SIGKILL');
      if (await readLink(other)) ip('link', 'del', 'dev', other);
      if (await readLink(held)) ip('link', 'del', 'dev', held);
      await cleanUp();
    }
  });

  it('leaves a bridge Nexus did not make when no Nexus TAP was on it, and still removes the NAT it added', async () => {
    const { bridge, network, taps, cleanUp } = ownNetwork();
    try {
      ip('link', 'add', 'name', bridge, 'type', 'bridge');
      await network.ensureBridge();

      await network.tearDown(taps);

      assert.equal((await readLink(bridge))?.linkinfo?.info_kind, 'bridge', 'the operator’s bridge stays');
      assert.ok(!nftTables().includes(`nexus_${bridge}`), 'the NAT table is gone');
    } finally {
      await cleanUp();
    }
  });

  it('removes an unmarked bridge (an older Nexus made it) once only Nexus TAPs were on it', async () => {
    const { bridge, network, taps, cleanUp } = ownNetwork();
    try {
      ip('link', 'add', 'name', bridge, 'type', 'bridge');
      await network.ensureNic(vmIdOf(taps[0] ?? ''));
      assert.equal((await readLink(bridge))?.ifalias, undefined, 'a bridge Nexus found gets no mark');

      await network.tearDown(taps);

      assert.equal(await readLink(bridge), undefined, 'the bridge is gone');
      assert.ok(!nftTables().includes(`nexus_${bridge}`), 'the NAT table is gone');
    } finally {
      await cleanUp();
    }
  });

  it('with iptables, removes the masquerade rule with the bridge', async () => {
    const { bridge, network, taps, cleanUp } = ownNetwork({ natBackend: 'iptables' });
    const rules = () =>
      execFileSync('iptables', ['-t', 'nat', '-S', 'POSTROUTING'], { encoding: 'utf8' })
        .split('\n')
        .filter((line) => line.includes(`nexus:${bridge}`));
    // iptables-nft makes the `ip nat` table on first use: if this test made it, this test removes it.
    const tables = iptablesTablesGuard();
    try {
      await network.ensureNic(vmIdOf(taps[0] ?? ''));
      assert.equal(rules().length, 1, 'the masquerade rule is there');

      await network.tearDown(taps);

      assert.deepEqual(rules(), [], 'the masquerade rule is gone');
      assert.equal(await readLink(bridge), undefined, 'the bridge is gone');
      assert.ok(!nftTables().includes(`nexus_${bridge}`), 'no nftables table was made');
    } finally {
      await cleanUp();
      tables.restore();
    }
  });
});

for (const backend of ['nftables', 'iptables'] as const) {
  describe(`VM namespaces with ${backend} (real namespaces, veths, TAPs, rules and dnsmasq)`, () => vmNamespaceSuite(backend));
}

function vmNamespaceSuite(backend: Backend): void {
  const netDir = tempDir('nexus-net-');
  const bridgeCidr = parseIpv4Cidr(testBridgeCidr()) ?? { address: '10.213.0.1', prefixLength: 24 };
  const network = new BridgeNetwork({ bridge: testBridgeName(), cidr: bridgeCidr, nat: false, natBackend: backend, netDir: netDir.path }, captureLogger().log);
  const dhcp = new DhcpServers(join(netDir.path, 'dhcp'), captureLogger().log);
  const view = firewallView(backend);
  const tables = backend === 'iptables' ? iptablesTablesGuard() : undefined;
  const third = (randomBytes(1)[0] ?? 0) & 0xfe;
  /** A network of this run: an id whose rules' names are this run's too. */
  const nicNetwork = (egress: 'allow' | 'deny' = 'allow', offset = 0): NicNetwork => ({
    id: `${randomBytes(4).toString('hex')}-0000-4000-8000-000000000000`,
    cidr: `10.217.${third + offset}.0/24`,
    egress,
    dns: [],
  });
  /** A NIC of that network at host address `host`, with a MAC of its own. */
  const nicOn = (net: NicNetwork, host: number): NetworkNic => ({
    network: net,
    ip: net.cidr.replace(/0\/24$/, String(host)),
    mac: `06:00:00:00:01:${host.toString(16).padStart(2, '0')}`,
  });
  const dotted = (address: string) => address.replaceAll('.', '\\.');
  const inNetns = (netns: string, ...command: string[]) => execFileSync('ip', ['netns', 'exec', netns, ...command], { encoding: 'utf8' });
  const made: string[] = [];
  const foreign: string[] = [];
  /** A VM id of this run, its namespace removed after the tests whatever happens. */
  const vmId = () => {
    const id = testVmId();
    made.push(vmNetnsNameOf(id));
    return id;
  };

  after(async () => {
    for (const netns of made) await network.removeDevice(netns).catch(() => undefined);
    for (const device of foreign) ip('link', 'del', 'dev', device);
    await network.tearDown([]);
    tables?.restore();
    netDir.remove();
  });

  it('gives a VM a namespace of its own: tap0 with the gateway, a veth routed from the host, its rules and DHCP server', async () => {
    const net = nicNetwork('allow');
    const [first, second] = [vmId(), vmId()];
    const [netnsA, netnsB] = [vmNetnsNameOf(first), vmNetnsNameOf(second)];
    await network.ensureNic(first, undefined, nicOn(net, 10));
    await network.ensureNic(second, undefined, nicOn(net, 11));
    assert.deepEqual(
      (await network.listDevices()).filter((name) => name === netnsA || name === netnsB),
      [netnsA, netnsB].sort(),
      'both are listed',
    );
    const veth = await readLink(netnsA);
    assert.equal(veth?.linkinfo?.info_kind, 'veth', 'the host end of its veth is named like the namespace');
    assert.equal(veth?.ifalias, `nexus vm ${first} on network ${net.id}`, 'marked with its VM and network');
    assert.match(ip('route', 'show', `10.217.${third}.10/32`), new RegExp(`dev ${netnsA}`), "the host routes the VM's address to its veth");
    const inside = inNetns(netnsA, 'ip', '-o', 'addr', 'show', 'dev', 'tap0');
    assert.match(inside, new RegExp(`inet 10\\.217\\.${third}\\.1/32`), 'tap0 inside has the gateway as its address');
    assert.match(inNetns(netnsA, 'ip', 'route'), new RegExp(`10\\.217\\.${third}\\.10 dev tap0`), 'the guest is routed to tap0');
    assert.equal(inNetns(netnsA, 'cat', '/proc/sys/net/ipv4/conf/tap0/proxy_arp').trim(), '1', 'proxy ARP answers for its neighbours');
    assert.equal(inNetns(netnsA, 'cat', '/sys/class/net/tap0/address').trim(), '02:00:00:00:00:01', 'tap0 has the one MAC every tap0 has');
    const guest = dotted(`10.217.${third}.10`);
    assert.match(
      view.netnsRules(netnsA),
      backend === 'nftables' ? new RegExp(`ip saddr ${guest} accept`) : new RegExp(`-A FORWARD -s ${guest}/32 -i tap0 -o veth0 -j ACCEPT`),
      'only its own address leaves',
    );
    const rules = view.networkRules(net.id);
    assert.ok(rules.includes(netnsA) && rules.includes(netnsB), "the network's rules name both veths");
    assert.match(rules, /masquerade/i, 'egress allow: NAT');
    // Its DHCP server: one dnsmasq in its namespace, bound to tap0, with its one static lease.
    const pid = await dhcp.pidOf(netnsA);
    assert.ok(pid !== undefined, 'a DHCP server runs for the VM');
    const command = readFileSync(`/proc/${pid}/cmdline`, 'utf8').split('\0');
    assert.ok(command.includes('--interface=tap0') && command.includes('--port=0') && command.includes('--conf-file=/dev/null'), command.join(' '));
    assert.deepEqual(
      command.filter((arg) => arg.startsWith('--dhcp-host=')),
      [`--dhcp-host=06:00:00:00:01:0a,10.217.${third}.10`],
      'its one static lease',
    );
    assert.equal(readlinkSync(`/proc/${pid}/ns/net`), inNetns(netnsA, 'readlink', '/proc/self/ns/net').trim(), 'it runs in the namespace');

    await network.removeDevice(netnsA);
    assert.equal(await readLink(netnsA), undefined, 'the veth is gone');
    assert.equal(existsSync(`/run/netns/${netnsA}`), false, 'the namespace is gone');
    assert.equal(await readProcessStartTicks(pid ?? 0), undefined, 'its DHCP server ended');
    assert.equal(existsSync(join(netDir.path, 'dhcp', netnsA)), false, 'and its files');
    assert.equal(existsSync(join(netDir.path, 'vms', netnsA)), false, 'and its record');
    assert.equal(ip('route', 'show', `10.217.${third}.10/32`).trim(), '', 'its route went with the veth');
    const left = view.networkRules(net.id);
    assert.ok(!left.includes(netnsA) && left.includes(netnsB), "it is out of the network's rules, the other VM still in");
    await network.removeDevice(netnsB);
    assert.doesNotMatch(view.present(), new RegExp(view.networkName(net.id)), "the network's rules go with its last VM here");
    await network.removeDevice(netnsB); // removing what is gone succeeds
  });

  it("writes the network's rules whole at each VM: egress deny drops what leaves and has no NAT", async () => {
    const net = nicNetwork('allow', 1);
    const [first, second] = [vmId(), vmId()];
    await network.ensureNic(first, undefined, nicOn(net, 10));
    await network.ensureNic(second, undefined, nicOn({ ...net, egress: 'deny' }, 11));
    const rules = view.networkRules(net.id);
    assert.doesNotMatch(rules, /masquerade/i, 'no NAT under deny');
    if (backend === 'nftables') {
      assert.match(rules, /ct state established,related accept/);
      assert.equal(rules.match(/type filter hook forward/g)?.length, 1, 'one forward chain: rewritten, not appended');
    } else {
      const from = `${view.networkName(net.id)}FROM`;
      assert.match(rules, new RegExp(`-A ${from} -m conntrack --ctstate RELATED,ESTABLISHED -j RETURN`), 'replies may leave');
      assert.equal(rules.match(new RegExp(`-A ${from} -j DROP`, 'g'))?.length, 1, 'all else leaving is dropped, once: rewritten, not appended');
      assert.equal(rules.match(new RegExp(`-A FORWARD -j ${view.networkName(net.id)}FWD`, 'g'))?.length, 1, 'one jump from FORWARD');
      assert.equal(rules.match(new RegExp(`-A INPUT -j ${view.networkName(net.id)}IN`, 'g'))?.length, 1, 'one jump from INPUT');
    }
    await network.removeDevice(vmNetnsNameOf(first));
    await network.removeDevice(vmNetnsNameOf(second));
    assert.equal(view.networkRules(net.id), '', 'nothing of the network is left, jumps included');
  });

  if (backend === 'iptables')
    it("puts the network's jumps back ahead of a rule someone else put first (Docker's restart), once each", async () => {
      const net = nicNetwork('deny', 1);
      const [first, second] = [vmId(), vmId()];
      const foreignRule = ['FORWARD', '-m', 'comment', '--comment', `nexus-test-${net.id.slice(0, 8)}`, '-j', 'ACCEPT'];
      await network.ensureNic(first, undefined, nicOn(net, 16));
      execFileSync('iptables', ['-w', '-I', ...foreignRule.slice(0, 1), '1', ...foreignRule.slice(1)]);
      try {
        await network.ensureNic(second, undefined, nicOn(net, 17));
        const forward = execFileSync('iptables', ['-w', '-S', 'FORWARD'], { encoding: 'utf8' }).split('\n');
        const jump = `-A FORWARD -j ${view.networkName(net.id)}FWD`;
        assert.equal(forward.filter((line) => line === jump).length, 1, 'one jump');
        assert.ok(forward.indexOf(jump) < forward.findIndex((line) => line.includes(`nexus-test-${net.id.slice(0, 8)}`)), forward.join('\n'));
      } finally {
        execFileSync('iptables', ['-w', '-D', ...foreignRule]);
        await network.removeDevice(vmNetnsNameOf(first));
        await network.removeDevice(vmNetnsNameOf(second));
      }
    });

  it("translates between a clone's frozen address and its own inside its namespace", async () => {
    const net = nicNetwork('allow', 1);
    const clone = vmId();
    const netns = vmNetnsNameOf(clone);
    await network.ensureNic(clone, undefined, { ...nicOn(net, 12), guestIp: net.cidr.replace(/0\/24$/, '10') });
    const rules = view.netnsRules(netns);
    const [own, frozen] = [dotted(`10.217.${third + 1}.12`), dotted(`10.217.${third + 1}.10`)];
    const [dnat, snat] =
      backend === 'nftables'
        ? [new RegExp(`ip daddr ${own} dnat ip to ${frozen}`), new RegExp(`ip saddr ${frozen} snat ip to ${own}`)]
        : [new RegExp(`-d ${own}/32 -i veth0 -j DNAT --to-destination ${frozen}`), new RegExp(`-s ${frozen}/32 -o veth0 -j SNAT --to-source ${own}`)];
    assert.match(rules, dnat, 'in: its own address to the frozen one');
    assert.match(rules, snat, 'out: the frozen address to its own');
    assert.match(ip('route', 'show', `10.217.${third + 1}.12/32`), new RegExp(`dev ${netns}`), 'the host routes its own address');
    const pid = await dhcp.pidOf(netns);
    assert.ok(readFileSync(`/proc/${pid}/cmdline`, 'utf8').includes(`10.217.${third + 1}.10`), 'DHCP hands out the address the guest knows');
    await network.removeDevice(netns);
  });

  it("publishes a VM's ports on the host with rules of its own, removed with its namespace", async () => {
    const net = nicNetwork('deny', 1);
    const id = vmId();
    const netns = vmNetnsNameOf(id);
    const address = dotted(net.cidr.replace(/0\/24$/, '13'));
    await network.ensureNic(id, undefined, { ...nicOn(net, 13), ports: [{ host_port: 18080, guest_port: 80, protocol: 'tcp' }] });
    const rules = view.publishRules(id);
    if (backend === 'nftables') {
      assert.equal(rules.match(new RegExp(`tcp dport 18080 dnat ip to ${address}:80`, 'g'))?.length, 2, 'DNAT from outside and from the host');
      assert.match(rules, new RegExp(`oifname "${netns}" ip saddr 127\\.0\\.0\\.0/8 masquerade`), 'loopback clients masqueraded');
    } else {
      const chain = view.publishName(id);
      assert.match(rules, new RegExp(`-A ${chain}DNAT -p tcp -m tcp --dport 18080 -j DNAT --to-destination ${address}:80`), 'DNAT to the guest');
      for (const from of ['PREROUTING', 'OUTPUT']) {
        assert.match(rules, new RegExp(`-A ${from} -m addrtype --dst-type LOCAL -j ${chain}DNAT`), `from outside and from the host (${from})`);
      }
      assert.match(rules, new RegExp(`-A ${chain}MASQ -s 127\\.0\\.0\\.0/8 -o ${netns} -j MASQUERADE`), 'loopback clients masqueraded');
    }
    assert.equal(readFileSync(`/proc/sys/net/ipv4/conf/${netns}/route_localnet`, 'utf8').trim(), '1', 'route_localnet on its veth');
    await network.removeDevice(netns);
    assert.equal(view.publishRules(id), '', 'its ports go with it, jumps included');
  });

  it('refuses to publish a host port a process of the host listens on, and makes nothing', async () => {
    const listener = createServer();
    await new Promise<void>((resolve) => listener.listen(0, '127.0.0.1', resolve));
    const port = (listener.address() as AddressInfo).port;
    const net = nicNetwork('allow', 1);
    const id = vmId();
    try {
      await assert.rejects(
        network.ensureNic(id, undefined, { ...nicOn(net, 14), ports: [{ host_port: port, guest_port: 80, protocol: 'tcp' }] }),
        (error: NexusError) => error.code === 'conflict' && error.message.includes(`host port ${port}/tcp is in use on this host`),
      );
      assert.equal(existsSync(`/run/netns/${vmNetnsNameOf(id)}`), false, 'no namespace was made');
      assert.doesNotMatch(view.present(), new RegExp(view.publishName(id)), 'no rules were written');
      await network.ensureNic(id, undefined, { ...nicOn(net, 14), ports: [{ host_port: port, guest_port: 80, protocol: 'udp' }] });
      assert.match(view.present(), new RegExp(view.publishName(id)), 'the same port over UDP is free');
    } finally {
      await new Promise((resolve) => listener.close(resolve));
      await network.removeDevice(vmNetnsNameOf(id));
    }
  });

  it("refuses a device with a VM namespace's name that Nexus did not make, and leaves it", async () => {
    const net = nicNetwork('allow', 1);
    const id = vmId();
    const name = vmNetnsNameOf(id);
    ip('link', 'add', name, 'type', 'bridge');
    foreign.push(name);
    await assert.rejects(
      network.ensureNic(id, undefined, nicOn(net, 10)),
      (error: NexusError) => error.code === 'conflict' && /not made by Nexus/.test(error.message),
    );
    assert.equal((await readLink(name))?.linkinfo?.info_kind, 'bridge', 'the foreign device is untouched');
    assert.equal(existsSync(`/run/netns/${name}`), false, 'no namespace was made');
    assert.doesNotMatch(view.present(), new RegExp(view.networkName(net.id)), 'no rules were written');
  });

  it('undoes a half-made namespace: nothing of it is left when a step fails', async () => {
    const net = nicNetwork('allow', 1);
    const id = vmId();
    const netns = vmNetnsNameOf(id);
    // A DNS server dnsmasq refuses fails the DHCP step, after the namespace is plumbed.
    await assert.rejects(network.ensureNic(id, undefined, nicOn({ ...net, dns: ['not-an-address'] }, 10)), /dnsmasq/);
    assert.equal(await readLink(netns), undefined, 'no veth is left');
    assert.equal(existsSync(`/run/netns/${netns}`), false, 'no namespace is left');
    assert.equal(ip('route', 'show', `10.217.${third + 1}.10/32`).trim(), '', 'no route is left');
    assert.equal(existsSync(join(netDir.path, 'dhcp', netns)), false, 'no DHCP files are left');
    assert.equal(existsSync(join(netDir.path, 'vms', netns)), false, 'no record is left');
    assert.doesNotMatch(view.present(), new RegExp(view.networkName(net.id)), 'no rules were written');
  });

  it("lists only its own VMs: another agent's namespaces on the host are neither listed nor removed", async () => {
    const otherDir = tempDir('nexus-net-other-');
    const other = new BridgeNetwork(
      { bridge: testBridgeName(), cidr: bridgeCidr, nat: false, natBackend: backend, netDir: otherDir.path },
      captureLogger().log,
    );
    const net = nicNetwork('allow', 1);
    const [mine, theirs] = [vmId(), vmId()];
    try {
      await network.ensureNic(mine, undefined, nicOn(net, 15));
      await other.ensureNic(theirs, undefined, nicOn(net, 16));
      assert.ok((await network.listDevices()).includes(vmNetnsNameOf(mine)), 'its own VM is listed');
      assert.ok(!(await network.listDevices()).includes(vmNetnsNameOf(theirs)), "the other agent's VM is not");
      assert.deepEqual(
        (await other.listDevices()).filter((name) => name === vmNetnsNameOf(mine) || name === vmNetnsNameOf(theirs)),
        [vmNetnsNameOf(theirs)],
        'nor the other way round',
      );
      await other.tearDown([vmNetnsNameOf(theirs)]);
      assert.ok(await network.isConnected(vmNetnsNameOf(mine)), "the other agent's tear-down left this one's VM");
      assert.ok(view.networkRules(net.id).includes(vmNetnsNameOf(mine)), 'and the network rules it is in');
    } finally {
      await other.removeDevice(vmNetnsNameOf(theirs)).catch(() => undefined);
      await network.removeDevice(vmNetnsNameOf(mine));
      otherDir.remove();
    }
  });

  it('a tear-down removes the namespaces given, network rules with no VM here, ports of a VM gone, and a DHCP server without its namespace', async () => {
    const net = nicNetwork('deny', 1);
    const id = vmId();
    const netns = vmNetnsNameOf(id);
    await network.ensureNic(id, undefined, nicOn(net, 10));
    const orphan = nicNetwork('allow', 1);
    const goneVm = vmId();
    const leftovers = [view.leaveNetwork(orphan.id), view.leavePublished(goneVm)];
    const mine = (things: string[]) => things.filter((thing) => [net.id, orphan.id, id, goneVm].some((each) => thing.includes(each.slice(0, 8))));
    assert.deepEqual(mine(await network.tearDownLeft([netns])), [`namespace ${netns}`, ...leftovers]);
    await network.tearDown([netns]);
    assert.deepEqual(mine(await network.tearDownLeft([netns])), [], 'nothing is left');
    assert.equal(existsSync(`/run/netns/${netns}`), false);
    assert.doesNotMatch(view.present(), new RegExp(`${view.networkName(net.id)}|${view.networkName(orphan.id)}|${view.publishName(goneVm)}`));
  });
}
