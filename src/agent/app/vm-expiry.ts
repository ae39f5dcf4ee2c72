import type { VmContext } from './vm-context.js';
import type { VmService } from './vm-service.js';

/** Ephemeral VMs end on time even while the manager is down: the agent deletes them itself. */
export class VmExpiry {
  constructor(
    private readonly ctx: VmContext,
    private readonly vms: Pick<VmService, 'delete'>,
  ) {}

  /** Deletes every VM whose spec's `expires_at` has passed by `now`; answers the ids deleted. */
  async expireDue(now: Date): Promise<string[]> {
    const { store } = this.ctx.ports;
    const expired: string[] = [];
    for (const id of await store.ids()) {
      const stored = await store.read(store.layout(id)).catch(() => undefined);
      const expiresAt = stored?.spec.expires_at;
      if (!expiresAt || Date.parse(expiresAt) > now.getTime()) continue;
      await this.vms.delete(id, 3000);
      this.ctx.log.info({ vm_id: id, expires_at: expiresAt }, 'VM expired: deleted by the agent');
      expired.push(id);
    }
    return expired;
  }
}
