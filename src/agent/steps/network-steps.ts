import { macOf } from '../../contracts/host-names.js';
import type { MachineSpec } from '../../contracts/machine-spec.js';
import type { Step } from '../plans/plan.js';
import type { HostNetwork, NetworkNic } from '../ports/host-network.js';

/** The VM's NIC as its host plumbs it, when it is on a network (its MAC, as the driver gives it, from the VM id). */
export function networkNicOf(vmId: string, spec: MachineSpec): NetworkNic | undefined {
  const nic = spec.nics[0];
  return nic?.network && nic.ip ? { network: nic.network, ip: nic.ip, mac: nic.mac ?? macOf(vmId) } : undefined;
}

/**
 * Makes the VM's TAP on its network's bridge, or the flat bridge (or remakes a stale one), owned
 * by `owner` when the VMM runs as a user of its own. Undone only when it made the TAP: one that
 * was there stays.
 */
export function makeTap(network: HostNetwork, tap: string, owner: () => Promise<{ uid: number; gid: number } | undefined>, on?: NetworkNic): Step {
  let made = false;
  return {
    name: `make TAP ${tap}`,
    isNeeded: async () => true,
    do: async () => {
      const existed = (await network.listTaps()).includes(tap);
      await network.ensureTap(tap, await owner(), on);
      made = !existed;
    },
    undo: async () => {
      if (made) await network.deleteTap(tap);
    },
  };
}

export function deleteTap(network: HostNetwork, tap: string): Step {
  return { name: `delete TAP ${tap}`, isNeeded: async () => true, do: () => network.deleteTap(tap) };
}
