import type { ColumnType, Generated } from 'kysely';
import type { HostCapacity } from '../../../contracts/agent-api.js';

/** A timestamp column: read as a Date, written as a Date or left to its default. */
type Timestamp = ColumnType<Date, Date | undefined, Date>;
type CreatedAt = ColumnType<Date, never, never>;

export interface HostTable {
  id: Generated<string>;
  name: string;
  address: string;
  status: 'ready' | 'unreachable';
  capacity: ColumnType<HostCapacity, string, string>;
  credential: string;
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
  created_at: CreatedAt;
  updated_at: Timestamp;
}

export interface ProjectTable {
  id: Generated<string>;
  name: string;
  created_at: CreatedAt;
  updated_at: Timestamp;
}

/** The tables the manager's code reads and writes through Kysely (migrations create them all). */
export interface Schema {
  host: HostTable;
  join_token: JoinTokenTable;
  project: ProjectTable;
}
