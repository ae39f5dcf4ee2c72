import type { VmmName } from '../../contracts/machine-spec.js';
import type { SnapshotFile, SnapshotStatus } from '../../contracts/snapshot-api.js';
import type { StoredVmSpec } from './vm-repo.js';

/** What a VM restored from a snapshot is made of: its VM as it was when taken. */
export interface SnapshotSource {
  spec: StoredVmSpec;
  /** Where the VM's images were on its host (image id -> path). */
  placedPaths: Record<string, string>;
  /** Its NICs: the network and the address the guest's memory holds. */
  nics: Array<{ networkId: string; ip: string }>;
}

export interface SnapshotRecord {
  id: string;
  projectId: string;
  project: string;
  name: string;
  vmId: string;
  vmName: string;
  hostId: string;
  status: SnapshotStatus;
  driver: VmmName | null;
  vcpu: number;
  memMib: number;
  sizeBytes: number;
  files: SnapshotFile[];
  source: SnapshotSource;
  createdAt: Date;
  updatedAt: Date;
}

export interface NewSnapshot {
  /** The manager's: its host keeps the files under it. */
  id: string;
  project: string;
  name: string;
  vmId: string;
  vmName: string;
  hostId: string;
  vcpu: number;
  memMib: number;
  source: SnapshotSource;
}

/** What its host answered once it took the snapshot. */
export interface TakenSnapshot {
  driver: VmmName;
  sizeBytes: number;
  files: SnapshotFile[];
}

/** Snapshots' rows. A row comes before its host's files and goes before them: files without a row are leftovers. */
export interface SnapshotRepo {
  /** Inserts it, `creating`; a name taken in the project is a `conflict`, an unknown project `not_found`. */
  create(snapshot: NewSnapshot): Promise<SnapshotRecord>;
  get(id: string): Promise<SnapshotRecord | undefined>;
  /** Of `projects` (undefined: every project), of one VM when `vmId` is given; newest first. */
  list(filter: { projects?: string[]; vmId?: string }): Promise<SnapshotRecord[]>;
  /** Marks it `ready` with what its host took; undefined when the row is gone (deleted while it was taken). */
  markReady(id: string, taken: TakenSnapshot): Promise<SnapshotRecord | undefined>;
  /** Deletes the row; answers whether there was one. */
  delete(id: string): Promise<boolean>;
  /** Deletes every row of the VM's snapshots, answering which (their files are the caller's to remove). */
  deleteOfVm(vmId: string): Promise<Array<{ id: string; hostId: string }>>;
  /** Every snapshot id, of any status: the orphan collector's list of what hosts may keep. */
  ids(): Promise<string[]>;
}
