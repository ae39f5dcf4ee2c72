import { Type, type Static } from 'typebox';
import { DriveId, MachineSpec, VmmName } from './machine-spec.js';
import { Int32, StrictObject, Text, Uuid } from './schema.js';

export const AgentVmState = Type.Union([
  Type.Literal('configured'),
  Type.Literal('starting'),
  Type.Literal('running'),
  Type.Literal('paused'),
  Type.Literal('stopped'),
  Type.Literal('failed'),
  /** No VMM: its state and memory are saved in its folder, to wake from. */
  Type.Literal('hibernated'),
]);
export type AgentVmState = Static<typeof AgentVmState>;

/** A VM as its agent sees it: the spec it was given, and what the VMM reports now. */
export const AgentVm = Type.Object(
  {
    id: Uuid,
    driver: VmmName,
    state: AgentVmState,
    pid: Type.Union([Type.Integer(), Type.Null()]),
    /** The host device carrying its traffic: the veth to its namespace (nxv-…), or its TAP on the flat bridge (tap-…). */
    tap: Type.Union([Type.String(), Type.Null()]),
    /** False when the VM has a NIC but that device is gone from the host (someone deleted it): its network is cut. */
    tap_present: Type.Union([Type.Boolean(), Type.Null()]),
    api_socket: Type.String({ description: 'QMP socket (QEMU) or API socket (Firecracker)' }),
    console_log: Type.String(),
    vmm_log: Type.String(),
    spec: MachineSpec,
  },
  { additionalProperties: false },
);
export type AgentVm = Static<typeof AgentVm>;

export const VmIdParams = StrictObject({ id: Uuid });
export const VmDriveParams = StrictObject({ id: Uuid, drive_id: DriveId });

export const VmAction = Type.Union([
  Type.Literal('start'),
  Type.Literal('pause'),
  Type.Literal('resume'),
  Type.Literal('stop'),
  Type.Literal('snapshot'),
  Type.Literal('restore'),
  Type.Literal('hibernate'),
  Type.Literal('wake'),
]);
export type VmAction = Static<typeof VmAction>;

export const VmActionRequest = StrictObject({
  action: VmAction,
  /** stop: how long the guest gets to power off before it is forced. */
  timeout_ms: Type.Optional(Int32({ minimum: 0, maximum: 300_000, default: 10_000 })),
  /** restore: which snapshot. */
  snapshot_id: Type.Optional(Text(64, { pattern: '^[a-zA-Z0-9_-]{1,64}$', example: 'snap-1' })),
});
export type VmActionRequest = Static<typeof VmActionRequest>;

export const SnapshotInfo = Type.Object(
  {
    snapshot_id: Type.String(),
    state_file: Type.String(),
    memory_file: Type.Optional(Type.String()),
    size_bytes: Type.Integer(),
    drives: Type.Array(Type.Object({ id: Type.String(), path: Type.String(), size_bytes: Type.Integer() }, { additionalProperties: false })),
  },
  { additionalProperties: false },
);
export type SnapshotInfo = Static<typeof SnapshotInfo>;

export const VmActionResponse = Type.Object({ vm: AgentVm, snapshot: Type.Optional(SnapshotInfo) }, { additionalProperties: false });
export type VmActionResponse = Static<typeof VmActionResponse>;

export const SnapshotParams = StrictObject({ sid: Uuid });

export const TakeSnapshotRequest = StrictObject({
  /** The id the snapshot is kept under on the host (the manager's): taking one again with the same id answers the one taken. */
  snapshot_id: Uuid,
  /** What the VM does once it is captured: runs on (`resume`, the default) or is stopped (`stop`). A VM that was paused stays paused with `resume`. */
  then: Type.Optional(Type.Union([Type.Literal('resume'), Type.Literal('stop')], { default: 'resume' })),
});
export type TakeSnapshotRequest = Static<typeof TakeSnapshotRequest>;

/** A snapshot kept on the host, `<run-dir>/snapshots/<id>/`: the VMM's state and a copy of each writable drive, taken at one instant. */
export const HostSnapshot = Type.Object(
  {
    id: Uuid,
    vm_id: Uuid,
    driver: VmmName,
    created_at: Type.String({ format: 'date-time' }),
    /** Everything it holds on disk: state, memory and drive copies (apparent sizes). */
    size_bytes: Type.Integer(),
    state_file: Type.String(),
    state_size_bytes: Type.Integer(),
    memory_file: Type.Optional(Type.String()),
    memory_size_bytes: Type.Optional(Type.Integer()),
    drives: Type.Array(Type.Object({ id: Type.String(), path: Type.String(), size_bytes: Type.Integer() }, { additionalProperties: false })),
    /** The VM's spec when it was taken: what a VM restored from it must be. */
    spec: MachineSpec,
  },
  { additionalProperties: false },
);
export type HostSnapshot = Static<typeof HostSnapshot>;

export const InstantiateSnapshotRequest = StrictObject({
  /** The new VM's id (the manager's); asking again with it answers the VM made. */
  vm_id: Uuid,
  /** The new VM as the manager would ensure it: the snapshot's machine, on its own network address. */
  spec: MachineSpec,
});
export type InstantiateSnapshotRequest = Static<typeof InstantiateSnapshotRequest>;

export const TakeSnapshotResponse = Type.Object({ snapshot: HostSnapshot, vm: AgentVm }, { additionalProperties: false });
export type TakeSnapshotResponse = Static<typeof TakeSnapshotResponse>;

/** Host resources that belong to no VM this agent knows: leftovers for garbage collection. */
export const Orphans = Type.Object(
  {
    /** `<run-dir>/vms/<x>` folders without a readable spec, and jails (under the jailer's chroot base) of VMs with no folder. */
    dirs: Type.Array(Type.String()),
    /** Nexus-named TAP devices whose VM has no folder. */
    taps: Type.Array(Type.String()),
    /** VMM processes running from `<run-dir>/vms/<id>` that are not the VM's recorded process. */
    processes: Type.Array(Type.Object({ pid: Type.Integer(), vm_id: Type.String(), command: Type.String() }, { additionalProperties: false })),
    /** API/QMP sockets left in VM folders whose VMM is not running. */
    sockets: Type.Array(Type.String()),
  },
  { additionalProperties: false },
);
export type Orphans = Static<typeof Orphans>;

export const Inventory = Type.Object(
  {
    vms: Type.Array(AgentVm),
    /** The ids of the snapshots kept on this host (`<run-dir>/snapshots/<id>/`), complete or not. */
    snapshots: Type.Array(Uuid),
    orphans: Orphans,
  },
  { additionalProperties: false },
);
export type Inventory = Static<typeof Inventory>;

/** What the manager asks the agent to collect; the agent removes only what is still an orphan. */
export const CollectOrphansRequest = StrictObject({
  dirs: Type.Array(Text(4096), { maxItems: 1000, default: [] }),
  taps: Type.Array(Text(15, { description: 'A Linux interface name' }), { maxItems: 1000, default: [] }),
  processes: Type.Array(Int32({ minimum: 1 }), { maxItems: 1000, default: [] }),
  sockets: Type.Array(Text(4096), { maxItems: 1000, default: [] }),
  /** Snapshots kept on the host that have no row in the manager's database. */
  snapshots: Type.Array(Uuid, { maxItems: 1000, default: [] }),
});
export type CollectOrphansRequest = Static<typeof CollectOrphansRequest>;

export const CollectOrphansResponse = Type.Object(
  {
    removed: Type.Object(
      {
        dirs: Type.Array(Type.String()),
        taps: Type.Array(Type.String()),
        processes: Type.Array(Type.Integer()),
        sockets: Type.Array(Type.String()),
        snapshots: Type.Array(Type.String()),
      },
      { additionalProperties: false },
    ),
  },
  { additionalProperties: false },
);
export type CollectOrphansResponse = Static<typeof CollectOrphansResponse>;
