import assert from 'node:assert/strict';
import { type ChildProcess, execFileSync, spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, describe, it } from 'node:test';
import { networkBridgeNameOf, networkTableNameOf, tapNameOf } from '../../src/contracts/host-names.js';
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

const ip = (...args: string[]) => execFileSync('ip', args, { encoding: 'utf8' });

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
  const network = new BridgeNetwork({ bridge, cidr, nat: true }, captureLogger().log);
  const foreign: string[] = [];

  after(async () => {
    for (const tap of await network.listTaps()) if ((await readLink(tap))?.master === bridge) await network.deleteTap(tap);
    for (const device of foreign) ip('link', 'del', 'dev', device);
    await network.removeBridge();
  });

  it('creates the bridge with its address and NAT on first use, and a TAP attached to it', async () => {
    const tap = tapNameOf(testVmId());
    await network.ensureTap(tap);
    const bridgeLink = await readLink(bridge);
    assert.equal(bridgeLink?.linkinfo?.info_kind, 'bridge');
    assert.ok(bridgeLink?.addr_info?.some((entry) => entry.local === cidr.address && entry.prefixlen === cidr.prefixLength));
    const tapLink = await readLink(tap);
    assert.equal(tapLink?.linkinfo?.info_kind, 'tun');
    assert.equal(tapLink?.master, bridge);
    assert.match(execFileSync('nft', ['list', 'tables'], { encoding: 'utf8' }), new RegExp(`nexus_${bridge}`));

    // Idempotent: again, and the TAP is recreated, still attached.
    await network.ensureTap(tap);
    assert.equal((await readLink(tap))?.master, bridge);
    assert.ok((await network.listTaps()).includes(tap));

    await network.deleteTap(tap);
    assert.equal(await readLink(tap), undefined);
    await network.deleteTap(tap); // deleting what is gone succeeds
  });

  it('never touches a foreign device that carries a TAP name', async () => {
    const name = tapNameOf(testVmId());
    ip('link', 'add', name, 'type', 'bridge');
    foreign.push(name);
    await assert.rejects(network.ensureTap(name), (error: Error & { code?: string }) => {
      assert.equal(error.code, 'conflict');
      assert.match(error.message, /bridge device named .* was not made by Nexus/);
      return true;
    });
    await assert.rejects(network.deleteTap(name), /not made by Nexus/);
    assert.equal((await readLink(name))?.linkinfo?.info_kind, 'bridge', 'still there, untouched');
  });

  it('refuses names that are not Nexus TAP names', async () => {
    for (const bad of ['eth0', 'tap-xyz', 'tap-3f2a91c4-extra', 'fcbr0']) {
      await assert.rejects(network.ensureTap(bad), (error: Error & { code?: string }) => error.code === 'bad_request');
    }
  });

  it('adds the iptables masquerade rule once, however often it is ensured, and removes it', async () => {
    const subnet = `${cidr.address.split('.').slice(0, 3).join('.')}.0/24`;
    const rules = () =>
      execFileSync('iptables', ['-t', 'nat', '-S', 'POSTROUTING'], { encoding: 'utf8' })
        .split('\n')
        .filter((line) => line.includes(`nexus:${bridge}`));
    // iptables-nft makes the `ip nat` table on first use: if this test made it, this test removes it.
    const natTableBefore = /table ip nat\b/.test(execFileSync('nft', ['list', 'tables'], { encoding: 'utf8' }));
    try {
      await ensureMasquerade('iptables', bridge, subnet);
      await ensureMasquerade('iptables', bridge, subnet);
      assert.equal(rules().length, 1);
      assert.match(rules()[0] ?? '', new RegExp(`-s ${subnet.replaceAll('.', '\\.')} ! -o ${bridge} .*-j MASQUERADE`));
    } finally {
      await removeMasquerade('iptables', bridge, subnet);
    }
    assert.deepEqual(rules(), []);
    if (!natTableBefore) execFileSync('nft', ['delete', 'table', 'ip', 'nat']);
  });

  it('refuses a bridge name taken by a device that is not a bridge', async () => {
    const taken = testBridgeName();
    ip('tuntap', 'add', 'dev', taken, 'mode', 'tap');
    foreign.push(taken);
    const other = new BridgeNetwork({ bridge: taken, cidr, nat: false }, captureLogger().log);
    await assert.rejects(other.ensureBridge(), /exists and is not a bridge \(tun\)/);
  });
});

describe('bridge network tear-down (for an agent whose VMs end with it)', () => {
  const nftTables = () => execFileSync('nft', ['list', 'tables'], { encoding: 'utf8' });

  /** A network on a bridge of its own; `cleanUp` removes whatever a failed test left of it. */
  function ownNetwork(options: { natBackend?: 'iptables' } = {}) {
    const bridge = testBridgeName();
    const cidr = parseIpv4Cidr(testBridgeCidr());
    assert.ok(cidr, 'the test cidr parses');
    const network = new BridgeNetwork({ bridge, cidr, nat: true, ...options }, captureLogger().log);
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
      for (const tap of taps) await network.ensureTap(tap);
      assert.ok(nftTables().includes(`nexus_${bridge}`), 'the NAT table is there');

      await network.tearDown(taps);

      for (const tap of taps) assert.equal(await readLink(tap), undefined, `TAP ${tap} is gone`);
      assert.equal(await readLink(bridge), undefined, 'the bridge is gone');
      assert.ok(!nftTables().includes(`nexus_${bridge}`), 'the NAT table is gone');
      await network.tearDown(taps); // again, with nothing left: succeeds
      // And the network comes back on the next use.
      await network.ensureTap(taps[0] ?? '');
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
          for (const tap of taps) await network.ensureTap(tap);
          assert.equal(forwarding(), '1', 'NAT needs forwarding on');
          // Another process (the next start, or nexus dev's own check) tears down what this one set up.
          await new BridgeNetwork({ bridge, cidr, nat: true }, captureLogger().log).tearDown(taps);
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
      await network.ensureTap(taps[0] ?? '');
      await network.ensureTap(strayVm);
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
      for (const tap of taps) await network.ensureTap(tap);
      ip('tuntap', 'add', 'dev', other, 'mode', 'tap'); // not a Nexus TAP name: someone else's
      ip('link', 'set', 'dev', other, 'master', bridge);
      await network.ensureTap(held);
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
      await network.ensureTap(taps[0] ?? '');
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
    const natTableBefore = /table ip nat\b/.test(nftTables());
    try {
      await network.ensureTap(taps[0] ?? '');
      assert.equal(rules().length, 1, 'the masquerade rule is there');

      await network.tearDown(taps);

      assert.deepEqual(rules(), [], 'the masquerade rule is gone');
      assert.equal(await readLink(bridge), undefined, 'the bridge is gone');
      assert.ok(!nftTables().includes(`nexus_${bridge}`), 'no nftables table was made');
    } finally {
      await cleanUp();
      if (!natTableBefore && /table ip nat\b/.test(nftTables())) execFileSync('nft', ['delete', 'table', 'ip', 'nat']);
    }
  });
});

describe('network bridges (real bridges, TAPs and nftables tables)', () => {
  const dhcpDir = tempDir('nexus-net-dhcp-');
  const network = new BridgeNetwork(
    { bridge: testBridgeName(), cidr: parseIpv4Cidr(testBridgeCidr()) ?? { address: '10.213.0.1', prefixLength: 24 }, nat: false, dhcpDir: dhcpDir.path },
    captureLogger().log,
  );
  const third = (randomBytes(1)[0] ?? 0) & 0xfe;
  /** A network of this run: an id whose bridge and table names are this run's too. */
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
  const tables = () => execFileSync('nft', ['list', 'tables'], { encoding: 'utf8' });
  const table = (net: NicNetwork) => execFileSync('nft', ['list', 'table', 'inet', networkTableNameOf(net.id)], { encoding: 'utf8' });
  const foreign: string[] = [];

  after(async () => {
    for (const tap of await network.listTaps()) if (/^nxb-/.test((await readLink(tap))?.master ?? '')) await network.deleteTap(tap);
    for (const device of foreign) ip('link', 'del', 'dev', device);
    await network.tearDown([]);
    dhcpDir.remove();
  });

  it("makes a network's bridge with its gateway and its rules with the first TAP, and removes them with the last", async () => {
    const net = nicNetwork('allow');
    const bridge = networkBridgeNameOf(net.id);
    const [first, second] = [tapNameOf(testVmId()), tapNameOf(testVmId())];
    await network.ensureTap(first, undefined, nicOn(net, 10));
    await network.ensureTap(second, undefined, nicOn(net, 11));
    const device = await readLink(bridge);
    assert.equal(device?.linkinfo?.info_kind, 'bridge');
    assert.equal(device?.ifalias?.startsWith(`nexus network ${net.id}`), true, 'marked with its network id');
    assert.ok(
      device?.addr_info?.some((entry) => entry.local === `10.217.${third}.1` && entry.prefixlen === 24),
      'the gateway is its address',
    );
    for (const tap of [first, second]) assert.equal((await readLink(tap))?.master, bridge, `${tap} is on the network's bridge`);
    assert.match(table(net), /masquerade/, 'egress allow: NAT');
    assert.deepEqual(await network.listTaps(), [first, second].sort(), 'TAPs on network bridges are listed');
    // The network's DHCP server: one dnsmasq, bound to the bridge, with both static leases.
    const dhcp = new DhcpServers(dhcpDir.path, captureLogger().log);
    const pid = await dhcp.pidOf(net.id);
    assert.ok(pid !== undefined, 'a DHCP server runs for the network');
    const command = readFileSync(`/proc/${pid}/cmdline`, 'utf8').split('\0');
    assert.ok(command.includes(`--interface=${bridge}`) && command.includes('--port=0') && command.includes('--conf-file=/dev/null'), command.join(' '));
    const leases = (args: string[]) => args.filter((arg) => arg.startsWith('--dhcp-host='));
    assert.deepEqual(
      leases(command),
      [`--dhcp-host=06:00:00:00:01:0a,10.217.${third}.10`, `--dhcp-host=06:00:00:00:01:0b,10.217.${third}.11`],
      'a static lease per NIC',
    );
    await network.deleteTap(first);
    assert.ok(await readLink(bridge), 'the bridge stays while a TAP is on it');
    const after = await dhcp.pidOf(net.id);
    assert.ok(after !== undefined, 'a server serves the rest');
    assert.deepEqual(
      leases(readFileSync(`/proc/${after}/cmdline`, 'utf8').split('\0')),
      [`--dhcp-host=06:00:00:00:01:0b,10.217.${third}.11`],
      "the first NIC's lease is gone",
    );
    await network.deleteTap(second);
    assert.equal(await readLink(bridge), undefined, 'the bridge goes with the last TAP');
    // Ended: gone, or a zombie left for init to reap (this container's init may take its time).
    assert.equal(await readProcessStartTicks(after ?? 0), undefined, 'its DHCP server with it');
    assert.equal(existsSync(join(dhcpDir.path, net.id)), false, 'and its files');
    assert.doesNotMatch(tables(), new RegExp(networkTableNameOf(net.id)), 'and its rules with it');
  });

  it('writes the rules whole again at each TAP: egress deny drops what leaves and has no NAT', async () => {
    const net = nicNetwork('allow', 1);
    const [first, second] = [tapNameOf(testVmId()), tapNameOf(testVmId())];
    await network.ensureTap(first, undefined, nicOn(net, 10));
    await network.ensureTap(second, undefined, nicOn({ ...net, egress: 'deny' }, 11));
    const rules = table(net);
    assert.doesNotMatch(rules, /masquerade/, 'no NAT under deny');
    assert.match(rules, /ct state established,related accept/);
    assert.equal(rules.match(/type filter hook forward/g)?.length, 1, 'one forward chain: rewritten, not appended');
    await network.deleteTap(first);
    await network.deleteTap(second);
  });

  it("refuses a device with a network bridge's name that Nexus did not make for that network, and leaves it", async () => {
    const net = nicNetwork('allow', 1);
    const bridge = networkBridgeNameOf(net.id);
    ip('link', 'add', bridge, 'type', 'bridge');
    foreign.push(bridge);
    const tap = tapNameOf(testVmId());
    await assert.rejects(
      network.ensureTap(tap, undefined, nicOn(net, 10)),
      (error: NexusError) => error.code === 'conflict' && /not made by Nexus/.test(error.message),
    );
    assert.equal((await readLink(bridge))?.linkinfo?.info_kind, 'bridge', 'the foreign bridge (no Nexus mark) is untouched');
    assert.equal(await readLink(tap), undefined, 'no TAP was made');
    assert.doesNotMatch(tables(), new RegExp(networkTableNameOf(net.id)), 'no rules were written');
  });

  it('a tear-down removes an empty network bridge and a table whose bridge is gone (what a crash leaves)', async () => {
    const net = nicNetwork('deny', 1);
    const tap = tapNameOf(testVmId());
    await network.ensureTap(tap, undefined, nicOn(net, 10));
    ip('link', 'del', 'dev', tap);
    assert.ok(await readLink(networkBridgeNameOf(net.id)), 'an empty bridge is left');
    const orphanTable = nicNetwork('allow', 1);
    execFileSync('nft', ['add', 'table', 'inet', networkTableNameOf(orphanTable.id)]);
    assert.deepEqual(
      (await network.tearDownLeft([])).filter((thing) => thing.includes(net.id.slice(0, 8)) || thing.includes(orphanTable.id.slice(0, 8))),
      [`bridge ${networkBridgeNameOf(net.id)}`, `nftables table ${networkTableNameOf(orphanTable.id)}`],
    );
    await network.tearDown([]);
    assert.equal(await readLink(networkBridgeNameOf(net.id)), undefined);
    assert.doesNotMatch(tables(), new RegExp(`${networkTableNameOf(net.id)}|${networkTableNameOf(orphanTable.id)}`));
  });
});
