import type { NicNetwork } from '../../contracts/machine-spec.js';
import type { Step } from '../plans/plan.js';
import type { HostNetwork } from '../ports/host-network.js';

/**
 * Makes the VM's TAP on its network's bridge, or the flat bridge (or remakes a stale one), owned
 * by `owner` when the VMM runs as a user of its own. Undone only when it made the TAP: one that
 * was there stays.
 */
export function makeTap(network: HostNetwork, tap: string, owner: () => Promise<{ uid: number; gid: number } | undefined>, on?: NicNetwork): Step {
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
