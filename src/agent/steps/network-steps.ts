import { macOf, nicDeviceOf, tapNameOf, vmNetnsNameOf } from '../../contracts/host-names.js';
import type { MachineSpec } from '../../contracts/machine-spec.js';
import type { Step } from '../plans/plan.js';
import type { HostNetwork, NetworkNic } from '../ports/host-network.js';

/** The VM's NIC as its host plumbs it, when it is on a network (its MAC, as the driver gives it, from the VM id). */
export function networkNicOf(vmId: string, spec: MachineSpec): NetworkNic | undefined {
  const nic = spec.nics[0];
  return nic?.network && nic.ip
    ? {
        network: nic.network,
        ip: nic.ip,
        mac: nic.mac ?? macOf(vmId),
        ...(nic.guest_ip ? { guestIp: nic.guest_ip } : {}),
        ...(nic.ports?.length ? { ports: nic.ports } : {}),
      }
    : undefined;
}

/** The host device that carries the VM's traffic (its TAP, or its namespace's veth), or null for a VM without a NIC. */
export function hostDeviceOf(vmId: string, spec: MachineSpec): string | null {
  return spec.nics.length > 0 ? nicDeviceOf(vmId, networkNicOf(vmId, spec) !== undefined) : null;
}

/** Every device a VM may have on its host, whichever kind its NIC is: what deleting it removes. */
export function devicesOf(vmId: string): string[] {
  return [tapNameOf(vmId), vmNetnsNameOf(vmId)];
}

/**
 * Plumbs the VM's NIC: its namespace on its network, or its TAP on the flat bridge (or remakes a
 * stale one), the TAP owned by `owner` when the VMM runs as a user of its own. Undone only when it
 * made the device: one that was there stays.
 */
export function makeNic(network: HostNetwork, vmId: string, owner: () => Promise<{ uid: number; gid: number } | undefined>, on?: NetworkNic): Step {
  let made = false;
  const device = nicDeviceOf(vmId, on !== undefined);
  return {
    name: `plumb the NIC (${device})`,
    isNeeded: async () => true,
    do: async () => {
      const existed = (await network.listDevices()).includes(device);
      await network.ensureNic(vmId, await owner(), on);
      made = !existed;
    },
    undo: async () => {
      if (made) await network.removeDevice(device);
    },
  };
}

/** Removes the VM's network devices, of either kind. */
export function deleteNic(network: HostNetwork, vmId: string): Step {
  return {
    name: `remove the NIC of ${vmId}`,
    isNeeded: async () => true,
    do: async () => {
      for (const device of devicesOf(vmId)) await network.removeDevice(device);
    },
  };
}
