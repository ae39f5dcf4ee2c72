import type { MachineSpec, VmmName } from '../../contracts/machine-spec.js';
import type { VmMetricsRecord } from '../../contracts/observe-api.js';
import type { HostSnapshot } from '../../contracts/agent-vm-api.js';
import type { SnapshotLayout, VmLayout } from '../../contracts/vm-layout.js';

/** What a VM's `spec.json` holds: its spec (canonical paths, private drive copies) and the driver it runs on. */
export interface StoredVm {
  spec: MachineSpec;
  driver: VmmName;
}

/** Where a path lies (judged canonical): in the image store, in the VM's own drives folder, or elsewhere. */
export type PathPlace = 'images' | 'vm-drives' | 'elsewhere';

/** What is at a socket path the proxy was asked for, judged against the folders its own socket lives in. */
export type SocketLookup =
  /** It is not (and would not resolve to) a path in those folders. */
  | { kind: 'outside' }
  /** Nothing is there. */
  | { kind: 'missing' }
  /** Something is there, at `path` (canonical); `isSocket` says whether it is a socket. */
  | { kind: 'found'; path: string; isSocket: boolean };

/**
 * A host's VM folders, `<run-dir>/vms/<id>/`, from which the agent rebuilds its whole view of a VM:
 * the stored spec, whether a VMM was ever launched, the private drive copies, the snapshots, the
 * metrics records. It also guards paths: every file a VM is given must be a file under the image
 * store or the VM's own drives folder, judged after symlinks are resolved. The agent's use cases,
 * plans and steps reach the disk only through it.
 */
export interface VmStore {
  /** The VM's folder layout. A malformed id is a 400: an id becomes a path component. */
  layout(id: string): VmLayout;
  /** The VM folders here that hold a spec, by id (sorted); and every other entry (full paths), leftovers for the collector. */
  listing(): Promise<{ vms: string[]; strays: string[] }>;
  /** The ids of every folder named like a VM, with a spec or not (sorted). */
  ids(): Promise<string[]>;
  hasFolder(vm: VmLayout): Promise<boolean>;
  /** Makes the VM's folder (mode 0750); nothing if it exists. */
  createFolder(vm: VmLayout): Promise<void>;
  /** Removes the VM's folder and everything in it; nothing if it is gone. */
  removeFolder(vm: VmLayout): Promise<void>;

  read(vm: VmLayout): Promise<StoredVm | undefined>;
  /** Replaces the stored spec atomically (readers see the old one or the new one). */
  write(vm: VmLayout, stored: StoredVm): Promise<void>;
  /** Whether a VMM was ever launched for the VM: before that a VM without a process is `configured`, after it `stopped`. */
  isLaunched(vm: VmLayout): Promise<boolean>;
  markLaunched(vm: VmLayout, at: Date): Promise<void>;
  /** Empties the guest console log, for a fresh boot. */
  clearConsole(vm: VmLayout): Promise<void>;

  /** Where the VM's private copy of drive `driveId` lives. */
  privateDrivePath(vm: VmLayout, driveId: string): string;
  /** A snapshot kept on the host, by id (a malformed id is a 400). */
  snapshotLayout(id: string): SnapshotLayout;
  /** Makes the snapshot's folder, and `<run-dir>/snapshots/`, open to root alone (0700: guest memory and disks go in it). */
  createSnapshotFolder(snapshot: SnapshotLayout): Promise<void>;
  /** The ids of the snapshot folders on the host, complete or not (sorted). */
  snapshotIds(): Promise<string[]>;
  /** A complete snapshot's record; undefined when there is none (or only a partial folder). */
  readSnapshot(snapshot: SnapshotLayout): Promise<HostSnapshot | undefined>;
  /** Where a snapshot keeps its copy of drive `driveId`. */
  snapshotDrivePath(snapshotDir: string, driveId: string): string;
  /** Copies a disk (its source resolved, its holes kept) to `target`, which appears only once complete and must not exist yet. */
  copyDisk(source: string, target: string): Promise<void>;
  exists(path: string): Promise<boolean>;
  sizeOf(path: string): Promise<number>;
  /** The disk space a file takes (its allocated blocks: what a copy that keeps its holes takes too). */
  allocatedBytes(path: string): Promise<number>;
  /** Free bytes, to an unprivileged writer, on the disk holding `path` (or its nearest folder that exists). */
  freeSpace(path: string): Promise<number>;
  /** Renames a file within the VM folders. */
  move(from: string, to: string): Promise<void>;
  /** Removes a file or folder (recursively); nothing if it is gone. */
  remove(path: string): Promise<void>;
  /** Writes a JSON record atomically. */
  writeRecord(path: string, value: unknown): Promise<void>;

  /** The canonical path of a file the VM may be given (`what` names it in errors): 403 outside the roots, 400 missing or not a file. */
  allowedFile(vm: VmLayout, what: string, path: string): Promise<string>;
  /** Where `path` lies, judged canonical (a path that does not exist by its nearest existing ancestor). */
  placeOf(vm: VmLayout, path: string): Promise<PathPlace>;
  /** A file under the VM folders, canonical, for the log tail by path: anything else is a 403, a relative path a 400. */
  vmFolderFile(path: string): Promise<string>;
  /** What `wanted` is, judged against the folders the VM's own socket `own` is in (its sock/ folder, or its jail). */
  socketBeside(own: string, wanted: string): Promise<SocketLookup>;

  appendMetrics(vm: VmLayout, record: VmMetricsRecord): Promise<void>;
  /** The VM's metrics records of the last `seconds` before `now`, oldest first. */
  recentMetrics(vm: VmLayout, seconds: number, now: Date): Promise<VmMetricsRecord[]>;
}
