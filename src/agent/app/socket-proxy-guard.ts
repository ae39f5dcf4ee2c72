import { NexusError } from '../../kit/nexus-error.js';
import type { VmContext } from './vm-context.js';

/**
 * Which VMM API socket the agent's proxy may relay to for a VM: only the VM's own (Firecracker's),
 * reached through its own folder or jail, while the VM runs.
 */
export class SocketProxyGuard {
  constructor(private readonly ctx: VmContext) {}

  /**
   * Runs `relay` against the VMM API socket the proxy may use for this VM, holding the VM's lock,
   * so a proxied call never lands between two steps of the agent's own (a snapshot's pause check
   * and its create). `requested` (default: the VM's own socket) must canonicalize (`..` and
   * symlinks resolved) into the folder of the VM's own socket. A VM whose driver has no such API
   * is a 409; a VM not running, too.
   */
  proxy<T>(id: string, requested: string | undefined, relay: (socket: string) => Promise<T>): Promise<T> {
    return this.ctx.withVm(id, async (vm) => {
      const stored = await this.ctx.requireStored(vm);
      const driver = this.ctx.driverFor(stored.driver);
      if (!driver.apiSocket) {
        throw new NexusError('conflict', `VM ${id} runs on ${driver.name}, which has no API socket to proxy`, {
          suggestion: 'The proxy serves Firecracker VMs; drive this one through the agent API (actions, drives).',
        });
      }
      const own = await driver.apiSocket(vm);
      const wanted = requested ?? own;
      const refuse = () => new NexusError('forbidden', `${wanted} is not the API socket of VM ${id}`, { suggestion: `Omit sock=, or give ${own}.` });
      if (!wanted.startsWith('/')) throw refuse();
      const found = await this.ctx.ports.store.socketBeside(own, wanted);
      if (found.kind === 'outside') throw refuse();
      if (!(await this.ctx.liveProcess(vm)) || found.kind === 'missing') {
        throw new NexusError('conflict', `VM ${id} is not running: no VMM answers on ${wanted}`, { suggestion: 'Start it first.' });
      }
      // A socket, not something put in its place (a jailed VMM owns the folder its socket is in).
      if (!found.isSocket) throw refuse();
      return relay(found.path);
    });
  }
}
