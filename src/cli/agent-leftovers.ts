import type { HostLeftovers } from './launcher.js';
import { NexusError } from '../kit/nexus-error.js';

/** The host of a local agent, as `nexus dev` checks and sweeps it once the agent has exited. */
export interface LocalAgentHost {
  leftovers(): Promise<HostLeftovers>;
  /** Kills the VMMs left, removes their network; holds the run dir's lock meanwhile. */
  sweep(): Promise<number>;
}

/**
 * What `nexus dev` does once its agent has exited (only an agent that got ready: the run dir was
 * then its own): checks what is left of it on the host, VMM processes and network alike, and
 * sweeps whatever the agent left (it failed, was killed, or claimed a clean stop it did not make),
 * then checks again. Throws, naming what remains, when the sweep could not remove it all, so
 * `nexus dev` never says its VMs are stopped and their network removed when they are not.
 */
export async function sweepAgentLeftovers(host: LocalAgentHost, exit: { clean: boolean; reason: string }, say: (line: string) => void): Promise<void> {
  let left = await host.leftovers();
  if (!exit.clean || isLeft(left)) {
    say(`nexus: ${exit.reason}${isLeft(left) ? `, leaving ${describeLeft(left)}` : ''}; ending the VMs it left and removing their network`);
    await host.sweep();
    left = await host.leftovers();
  }
  if (isLeft(left)) {
    throw new NexusError('unavailable', `nexus dev could not remove all its agent ran: ${describeLeft(left)} remain`, {
      suggestion:
        'Kill those VMMs by pid and remove the rest by hand (`ip link del dev <name>`, `nft delete table ip <table>`); the VM folders stay either way.',
    });
  }
}

function isLeft(left: HostLeftovers): boolean {
  return left.vmms.length > 0 || left.network.length > 0;
}

function describeLeft(left: HostLeftovers): string {
  const vmms = left.vmms.length > 0 ? [`${left.vmms.length} VMM${left.vmms.length === 1 ? '' : 's'} (pid ${left.vmms.join(', ')})`] : [];
  return [...vmms, ...left.network].join(', ');
}
