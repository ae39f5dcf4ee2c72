import type { Database } from '../adapters/sql/database.js';
import type { AccessService } from '../app/access-service.js';
import type { AuditLog } from '../app/audit-log.js';
import type { HostRegistry } from '../app/host-registry.js';
import type { ImageRegistry } from '../app/image-registry.js';
import type { RefusalAudit } from '../app/refusal-audit.js';
import type { VmManager } from '../app/vm-manager.js';
import type { NetworkManager } from '../app/network-manager.js';
import type { SnapshotManager } from '../app/snapshot-manager.js';
import type { VmObserver } from '../app/vm-observer.js';
import type { AuditRepo } from '../ports/access-repos.js';
import type { IdempotencyRepo } from '../ports/idempotency-repo.js';

/** What the routes call. Routes hold no logic of their own beyond mapping HTTP to these. */
export interface ManagerServices {
  database: Pick<Database, 'ping'>;
  hosts: HostRegistry;
  images: ImageRegistry;
  vms: VmManager;
  networks: NetworkManager;
  snapshots: SnapshotManager;
  access: AccessService;
  audit: AuditRepo;
  auditLog: AuditLog;
  /** Where refusals anyone can repeat are audited, counted per source (see RefusalAudit). */
  refusals: Pick<RefusalAudit, 'note'>;
  idempotency: IdempotencyRepo;
  observer: VmObserver;
}
