/**
 * What a VM's network plumbing costs its start, on this host: making and removing its TAP on the
 * flat bridge (the path before networks); its namespace (veth, TAP, routes, rules, DHCP server)
 * while other VMs keep the network's rules on the host (rewritten with its veth); and as the first
 * VM of its network on the host (the network's rules made, then removed with it). p50 and p99 over
 * many VMs each, in milliseconds. Prints; asserts nothing.
 */
import { randomBytes, randomUUID } from 'node:crypto';
import { BridgeNetwork } from '../src/agent/host/net/bridge-network.js';
import { parseIpv4Cidr } from '../src/agent/domain/ipv4.js';
import { macOf, nicDeviceOf } from '../src/contracts/host-names.js';
import type { NicNetwork } from '../src/contracts/machine-spec.js';
import { captureLogger } from '../test/support/capture-logger.js';
import { testBridgeCidr, testBridgeName, testVmId } from '../test/support/net-names.js';
import { tempDir } from '../test/support/temp-dir.js';

const RUNS = Number(process.env.BENCH_RUNS ?? 100);

const percentile = (values: number[], p: number) =>
  [...values].sort((a, b) => a - b)[Math.min(values.length - 1, Math.floor((values.length * p) / 100))] ?? NaN;

const cidr = parseIpv4Cidr(testBridgeCidr());
if (!cidr) throw new Error('no test bridge block');
const netDir = tempDir('nexus-bench-net-');
// As an agent runs it: with a DHCP server per VM on a network.
const network = new BridgeNetwork({ bridge: testBridgeName(), cidr, nat: false, netDir: netDir.path }, captureLogger('bench-network').log);
const third = (randomBytes(1)[0] ?? 0) & 0xfe;
const kept: NicNetwork = { id: randomUUID(), cidr: `10.216.${third}.0/24`, egress: 'allow', dns: [] };

/** Milliseconds to plumb the NIC (as a VM's start does) plus to remove it (as its delete does), `RUNS` times. */
async function timed(on: () => NicNetwork | undefined): Promise<number[]> {
  const times: number[] = [];
  for (let i = 0; i < RUNS; i++) {
    const id = testVmId();
    const onNetwork = on();
    const started = performance.now();
    await network.ensureNic(id, undefined, onNetwork && { network: onNetwork, ip: onNetwork.cidr.replace(/0\/24$/, String(10 + (i % 200))), mac: macOf(id) });
    await network.removeDevice(nicDeviceOf(id, onNetwork !== undefined));
    times.push(performance.now() - started);
  }
  return times;
}

const holder = testVmId();
try {
  const flat = await timed(() => undefined);
  // Another VM of the network keeps its rules on the host: each VM pays for its namespace and the rules' rewrite.
  await network.ensureNic(holder, undefined, { network: kept, ip: kept.cidr.replace(/0\/24$/, '2'), mac: '06:00:00:00:00:02' });
  const onNetwork = await timed(() => kept);
  await network.removeDevice(nicDeviceOf(holder, true));
  // Each VM the first of its network on the host: the network's table made and removed with it.
  const first = await timed(() => ({ id: randomUUID(), cidr: `10.216.${third + 1}.0/24`, egress: 'deny', dns: [] }));
  const line = (label: string, times: number[]) =>
    `${label.padEnd(44)} p50 ${percentile(times, 50).toFixed(1).padStart(6)} ms   p99 ${percentile(times, 99).toFixed(1).padStart(6)} ms`;
  process.stdout.write(`network plumbing per VM (make + remove its NIC), ${RUNS} VMs each:\n`);
  process.stdout.write(`${line('  flat bridge (the path before networks)', flat)}\n`);
  process.stdout.write(`${line('  namespace, network rules kept by another VM', onNetwork)}\n`);
  process.stdout.write(`${line('  first VM of its network on the host', first)}\n`);
} finally {
  await network.removeDevice(nicDeviceOf(holder, true)).catch(() => undefined);
  await network.tearDown([]);
  netDir.remove();
}
