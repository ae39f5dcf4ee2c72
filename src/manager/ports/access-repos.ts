import type { ProjectQuota } from '../domain/access-policy.js';

export interface TokenRecord {
  id: string;
  /** The project's name; null for a token over every project (admin). */
  project: string | null;
  owner: string;
  role: 'viewer' | 'operator' | 'admin';
  secretHash: string;
  previousSecretHash: string | null;
  previousValidUntil: Date | null;
  expiresAt: Date | null;
  revokedAt: Date | null;
  lastUsedAt: Date | null;
  createdAt: Date;
}

export interface NewToken {
  project: string | null;
  owner: string;
  role: TokenRecord['role'];
  secretHash: string;
  expiresAt: Date | null;
}

/** API tokens: only hashes of their secrets are kept. */
export interface TokenRepo {
  count(): Promise<number>;
  /** Throws not_found when the project does not exist. */
  create(token: NewToken): Promise<TokenRecord>;
  get(id: string): Promise<TokenRecord | undefined>;
  list(): Promise<TokenRecord[]>;
  /** A new secret; the old one keeps working until `previousValidUntil` (null: not at all). */
  rotate(id: string, secretHash: string, previousValidUntil: Date | null): Promise<TokenRecord | undefined>;
  revoke(id: string, now: Date): Promise<TokenRecord | undefined>;
  touch(id: string, now: Date): Promise<void>;
}

export interface ProjectRecord extends ProjectQuota {
  name: string;
  createdAt: Date;
}

/** Projects: namespaces for VMs, with quotas. */
export interface ProjectRepo {
  list(): Promise<ProjectRecord[]>;
  get(name: string): Promise<ProjectRecord | undefined>;
  /** Throws conflict when the name is taken. */
  create(name: string, quota: ProjectQuota): Promise<ProjectRecord>;
  setQuota(name: string, quota: Partial<ProjectQuota>): Promise<ProjectRecord | undefined>;
}

export interface AuditStart {
  actor: string;
  action: string;
  resource: string;
  resourceId: string | null;
  /** The request that did it; `none` for the manager's own actions. */
  requestId: string;
  before: unknown;
  /** The caller's address; null for the manager's own actions. */
  remoteAddress: string | null;
}

export interface AuditFinish {
  result: 'success' | 'failure' | 'denied';
  status: number;
  resourceId: string | null;
  after: unknown;
  detail: string | null;
}

export interface AuditRecord extends AuditStart, Omit<AuditFinish, 'result' | 'status'> {
  id: string;
  result: 'pending' | AuditFinish['result'];
  /** Null while pending. */
  status: number | null;
  createdAt: Date;
  updatedAt: Date;
  /** Where the row sits in the log's order, for paging. */
  position: AuditPosition;
}

/**
 * A row's place in the log: its time to the microsecond (ISO 8601, UTC; a Date keeps only
 * milliseconds, and rows written within one would be skipped or repeated) and its id, for ties.
 */
export interface AuditPosition {
  at: string;
  id: string;
}

export interface AuditFilter {
  resourceId?: string;
  actor?: string;
  since?: Date;
  until?: Date;
  /** `newest`: newest first, only rows before `from`; `oldest`: oldest first, only rows after it. */
  order: 'newest' | 'oldest';
  from?: AuditPosition;
  limit: number;
}

/**
 * A row written whole, for what happens outside a mutating API call: refused heartbeats, host
 * status changes. `status` is the HTTP status when a call was answered, else null.
 */
export interface AuditEvent extends AuditStart, Omit<AuditFinish, 'status'> {
  status: number | null;
}

/** The audit log: written on entry (pending) and on exit; never changed through the API. */
export interface AuditRepo {
  begin(entry: AuditStart): Promise<string>;
  finish(id: string, outcome: AuditFinish): Promise<void>;
  record(event: AuditEvent): Promise<void>;
  query(filter: AuditFilter): Promise<AuditRecord[]>;
}
