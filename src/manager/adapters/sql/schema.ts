import type { ColumnType, Generated } from 'kysely';
import type { HostCapacity } from '../../../contracts/agent-api.js';
import type { ImageKind } from '../../../contracts/image-api.js';
import type { Egress } from '../../../contracts/network-api.js';
import type { VmmName } from '../../../contracts/machine-spec.js';
import type { DesiredState, ObservedState } from '../../../contracts/vm-api.js';
import type { StoredVmError, StoredVmSpec } from '../../ports/vm-repo.js';

/** A timestamp column: read as a Date, written as a Date or left to its default. */
type Timestamp = ColumnType<Date, Date | undefined, Date>;
type CreatedAt = ColumnType<Date, never, never>;

export interface HostTable {
  id: Generated<string>;
  name: string;
  address: string;
  status: 'ready' | 'unreachable';
  capacity: ColumnType<HostCapacity, string, string>;
  /** SHA-256 (hex) of the credential: what the agent's heartbeats are checked against. */
  credential_hash: string;
  /** The credential sealed under the manager's key (SecretBox): the copy it presents to the agent. */
  credential_sealed: string;
  /** The same two for the credential a rotation in progress has handed (or is handing) the agent. */
  next_credential_hash: ColumnType<string | null, string | null | undefined, string | null>;
  next_credential_sealed: ColumnType<string | null, string | null | undefined, string | null>;
  credential_rotated_at: ColumnType<Date | null, Date | null | undefined, Date | null>;
  last_seen_at: Timestamp;
  created_at: CreatedAt;
  updated_at: Timestamp;
}

export interface JoinTokenTable {
  id: Generated<string>;
  token_hash: string;
  expires_at: Date;
  used_at: ColumnType<Date | null, never, Date>;
  used_by_host_id: ColumnType<string | null, never, string>;
  /** The ready host this token may replace (by name); null: it may not replace a ready host. */
  replace_host: ColumnType<string | null, string | null | undefined, never>;
  created_at: CreatedAt;
  updated_at: Timestamp;
}

export interface ProjectTable {
  id: Generated<string>;
  name: string;
  max_vms: number | null;
  max_vcpus: number | null;
  max_memory_mib: number | null;
  created_at: CreatedAt;
  updated_at: Timestamp;
}

export interface ApiTokenTable {
  id: Generated<string>;
  project_id: string | null;
  owner: string;
  role: 'viewer' | 'operator' | 'admin';
  secret_hash: string;
  previous_secret_hash: string | null;
  previous_valid_until: Date | null;
  expires_at: Date | null;
  revoked_at: Date | null;
  last_used_at: Date | null;
  created_at: CreatedAt;
  updated_at: Timestamp;
}

export interface AuditTable {
  id: Generated<string>;
  actor: string;
  action: string;
  resource: string;
  resource_id: string | null;
  request_id: string;
  result: 'pending' | 'success' | 'failure' | 'denied';
  status: number | null;
  before: ColumnType<unknown, string | null, string | null>;
  after: ColumnType<unknown, string | null, string | null>;
  detail: string | null;
  /** The caller's address; null for the manager's own actions. */
  remote_address: ColumnType<string | null, string | null | undefined, never>;
  created_at: CreatedAt;
  updated_at: Timestamp;
}

/** One row: a value sealed with the key the database's secrets are sealed with. */
export interface SecretKeyCheckTable {
  id: number;
  sealed: string;
  created_at: CreatedAt;
  updated_at: Timestamp;
}

export interface VmTable {
  id: Generated<string>;
  project_id: string;
  name: string;
  host_id: string | null;
  spec: ColumnType<StoredVmSpec, string, string>;
  desired_state: DesiredState;
  observed_state: ObservedState;
  driver: ColumnType<VmmName | null, VmmName | null | undefined, VmmName | null>;
  api_socket: ColumnType<string | null, string | null | undefined, string | null>;
  console_log: ColumnType<string | null, string | null | undefined, string | null>;
  placed_paths: ColumnType<Record<string, string>, string | undefined, string>;
  start_failures: ColumnType<number, number | undefined, number>;
  started_at: ColumnType<Date | null, Date | null | undefined, Date | null>;
  last_error: ColumnType<StoredVmError | null, string | null, string | null>;
  tags: ColumnType<Record<string, string>, string, string>;
  resource_version: ColumnType<number, number | undefined, number>;
  expires_at: Date | null;
  created_at: CreatedAt;
  updated_at: Timestamp;
}

export interface VmEventTable {
  id: Generated<string>;
  vm_id: string;
  level: 'info' | 'warn' | 'error';
  kind: string;
  from_state: string | null;
  to_state: string | null;
  message: string;
  data: ColumnType<unknown, string | null, string | null>;
  created_at: CreatedAt;
  updated_at: Timestamp;
}

/** The tables the manager's code reads and writes through Kysely (migrations create them all). */
export interface Schema {
  host: HostTable;
  join_token: JoinTokenTable;
  project: ProjectTable;
  vm: VmTable;
  vm_event: VmEventTable;
  idempotency_key: IdempotencyKeyTable;
  image: ImageTable;
  host_image: HostImageTable;
  api_token: ApiTokenTable;
  audit: AuditTable;
  secret_key_check: SecretKeyCheckTable;
  network: NetworkTable;
  vm_nic: VmNicTable;
  vm_port: VmPortTable;
  snapshot: SnapshotTable;
}

export interface SnapshotTable {
  id: string;
  project_id: string;
  name: string;
  vm_id: string;
  vm_name: string;
  host_id: string;
  status: 'creating' | 'ready';
  driver: VmmName | null;
  vcpu: number;
  mem_mib: number;
  /** A `bigint`: node-postgres reads it as a string. */
  size_bytes: ColumnType<number | string, number | undefined, number>;
  files: ColumnType<unknown, string | undefined, string>;
  source: ColumnType<unknown, string, string>;
  created_at: CreatedAt;
  updated_at: Timestamp;
}

export interface NetworkTable {
  id: Generated<string>;
  project_id: string;
  name: string;
  /** A `cidr` column: select it as text (`cidr::text`). */
  cidr: string;
  egress: Egress;
  dns: ColumnType<string[], string | undefined, string>;
  resource_version: ColumnType<number, number | undefined, number>;
  created_at: CreatedAt;
  updated_at: Timestamp;
}

/** One NIC of a VM and its address in its network; goes with the VM's row. */
export interface VmPortTable {
  vm_id: string;
  host_id: string;
  protocol: 'tcp' | 'udp';
  host_port: number;
  created_at: CreatedAt;
  updated_at: Timestamp;
}

export interface VmNicTable {
  vm_id: string;
  nic_index: number;
  network_id: string;
  /** An `inet` column: select it as text with `host(ip)`. */
  ip: string;
  created_at: CreatedAt;
  updated_at: Timestamp;
}

export interface IdempotencyKeyTable {
  key: string;
  request_hash: string;
  status_code: number | null;
  response: ColumnType<unknown, string | null, string | null>;
  created_at: CreatedAt;
  updated_at: Timestamp;
}

export interface ImageTable {
  id: Generated<string>;
  project_id: string;
  name: string;
  kind: ImageKind;
  format: string;
  size_bytes: number;
  sha256: string;
  boot_args: string | null;
  created_at: CreatedAt;
  updated_at: Timestamp;
}

export interface HostImageTable {
  host_id: string;
  image_id: string;
  path: string;
  created_at: CreatedAt;
  updated_at: Timestamp;
}
