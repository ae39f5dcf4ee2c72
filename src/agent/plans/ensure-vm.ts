import type { DriveSpec, MachineSpec, NicSpec } from '../../contracts/machine-spec.js';
import { blockContains, parseIpv4, parseIpv4Block } from '../../kit/ipv4.js';
import { NexusError } from '../../kit/nexus-error.js';
import type { VmLayout } from '../../contracts/vm-layout.js';
import type { HostNetwork } from '../ports/host-network.js';
import type { VmStore } from '../ports/vm-store.js';
import type { VmmDriver } from '../ports/vmm-driver.js';
import { copyPrivateDrive, createVmFolder, storeSpec } from '../steps/folder-steps.js';
import { makeNic, networkNicOf } from '../steps/network-steps.js';
import type { Step } from './plan.js';

/**
 * The spec to store: every path canonical and inside the allowed roots, and each writable drive
 * taken from the image store replaced by the VM's private copy (images are never written by a
 * guest). A private copy that exists already is kept, so a re-ensure does not need the image.
 */
export async function resolveSpec(store: VmStore, vm: VmLayout, requested: MachineSpec, existing: MachineSpec | undefined): Promise<MachineSpec> {
  for (const [index, nic] of requested.nics.entries()) checkNicAddress(index, nic);
  const kernel = await store.allowedFile(vm, 'kernel', requested.kernel.path);
  const initrd = requested.initrd ? await store.allowedFile(vm, 'initrd', requested.initrd.path) : undefined;
  const drives: DriveSpec[] = [];
  for (const drive of requested.drives) {
    const privatePath = store.privateDrivePath(vm, drive.id);
    const rateLimit = drive.rate_limit ?? existing?.drives.find((d) => d.id === drive.id)?.rate_limit;
    const withLimit = (path: string): DriveSpec => ({ ...drive, path, ...(rateLimit ? { rate_limit: rateLimit } : {}) });
    if (!drive.read_only && (await store.exists(privatePath)) && (await store.placeOf(vm, drive.path)) !== 'elsewhere') {
      drives.push(withLimit(privatePath));
      continue;
    }
    const path = await store.allowedFile(vm, `drive ${drive.id}`, drive.path);
    drives.push(withLimit(!drive.read_only && (await store.placeOf(vm, path)) === 'images' ? privatePath : path));
  }
  return {
    ...requested,
    kernel: { ...requested.kernel, path: kernel },
    ...(initrd ? { initrd: { path: initrd } } : {}),
    drives,
    // The TAP and MAC are the agent's to name (from the VM id); the network and address are the manager's.
    nics: requested.nics.map((nic) => (nic.network && nic.ip ? { network: nic.network, ip: nic.ip, ...(nic.ports?.length ? { ports: nic.ports } : {}) } : {})),
  };
}

/**
 * A NIC on a network comes with its address in it; one without either goes on the flat bridge.
 * Only a NIC on a network publishes ports, each host port and protocol once.
 */
function checkNicAddress(index: number, nic: NicSpec): void {
  const ports = nic.ports ?? [];
  const names = ports.map((port) => `${port.host_port}/${port.protocol}`);
  const twice = names.find((name, at) => names.indexOf(name) !== at);
  if (twice) throw new NexusError('bad_request', `nics[${index}]: host port ${twice} is published twice`);
  if (!nic.network && !nic.ip) {
    if (ports.length > 0) throw new NexusError('bad_request', `nics[${index}]: only a NIC on a network publishes ports`);
    return;
  }
  const block = nic.network && parseIpv4Block(nic.network.cidr);
  const address = nic.ip === undefined ? undefined : parseIpv4(nic.ip);
  if (!block || block.hostBitsSet || address === undefined || !blockContains(block, address) || address === block.base + 1) {
    throw new NexusError('bad_request', `nics[${index}]: a NIC on a network needs both, its address a guest address of the network's block`, {
      suggestion: 'The manager assigns them: send network and ip together.',
    });
  }
}

export interface EnsureVmInput {
  vm: VmLayout;
  /** The spec as asked for, and as it is to be stored ({@link resolveSpec}). */
  requested: MachineSpec;
  spec: MachineSpec;
  driver: VmmDriver;
  /** Whether a VMM runs for the VM now: its TAP is then held by it and left alone. */
  running: boolean;
}

/**
 * Prepares the host for a VM: its folder, a private copy of each image-store drive, its TAP, then
 * its spec, last (a VM with a spec is one the agent has; a failure before it leaves nothing).
 */
export function ensureVmPlan(store: VmStore, network: HostNetwork, input: EnsureVmInput): Step[] {
  const { vm, requested, spec, driver } = input;
  const copies = spec.drives.flatMap((drive, index) => {
    const source = requested.drives[index]?.path;
    return source !== undefined && drive.path === store.privateDrivePath(vm, drive.id) ? [copyPrivateDrive(store, source, drive.path)] : [];
  });
  const nic = spec.nics[0];
  const tap = nic && !input.running ? [makeNic(network, vm.id, async () => driver.vmmUser?.(vm), networkNicOf(vm.id, spec))] : [];
  return [createVmFolder(store, vm), ...copies, ...tap, storeSpec(store, vm, { spec, driver: driver.name })];
}
