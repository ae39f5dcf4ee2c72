import type { ProjectQuota, ProjectUsage } from '../domain/access-policy.js';

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
  /** What the project's VMs (those not being deleted) take now. */
  usage(name: string): Promise<ProjectUsage>;
}

export interface AuditStart {
  actor: string;
  action: string;
  resource: string;
  resourceId: string | null;
  requestId: string;
  before: unknown;
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
}

export interface AuditFilter {
  resourceId?: string;
  actor?: string;
  since?: Date;
  until?: Date;
  limit: number;
}

/** The audit log: written on entry (pending) and on exit; never changed through the API. */
export interface AuditRepo {
  begin(entry: AuditStart): Promise<string>;
  finish(id: string, outcome: AuditFinish): Promise<void>;
  query(filter: AuditFilter): Promise<AuditRecord[]>;
}
