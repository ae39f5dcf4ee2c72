import { Type, type Static } from 'typebox';
import { VmmName } from './machine-spec.js';
import { MAX_VM_NICS, VmNetworks } from './network-api.js';
import { VmName, VmTags } from './vm-api.js';
import { DNS_LABEL_PATTERN, ProjectField, StrictObject, Text, Timestamp, Uuid } from './schema.js';

/** Snapshot names: DNS-label style, unique per project. */
const SnapshotName = Text(63, {
  minLength: 1,
  pattern: DNS_LABEL_PATTERN,
  example: 'web-warm',
  description: "Unique per project; DNS-label style. Default: the VM's name and the snapshot id's first 8 characters",
});

export const CreateSnapshotRequest = StrictObject({
  name: Type.Optional(SnapshotName),
  resume: Type.Optional(
    Type.Boolean({
      default: true,
      description: 'true: the VM runs on once captured (a paused one stays paused); false: it is stopped, its desired state stopped',
    }),
  ),
});
export type CreateSnapshotRequest = Static<typeof CreateSnapshotRequest>;

/** `creating` while its host captures it (its files are not whole yet), `ready` once they are. */
export const SnapshotStatus = Type.Union([Type.Literal('creating'), Type.Literal('ready')]);
export type SnapshotStatus = Static<typeof SnapshotStatus>;

export const SnapshotFile = Type.Object(
  {
    kind: Type.Union([Type.Literal('state'), Type.Literal('memory'), Type.Literal('drive')]),
    /** drive: the VM's drive it is a copy of. */
    drive_id: Type.Optional(Type.String()),
    path: Type.String({ description: 'On the snapshot host' }),
    size_bytes: Type.Integer({ description: 'Apparent size (drive copies are sparse)' }),
  },
  { additionalProperties: false },
);
export type SnapshotFile = Static<typeof SnapshotFile>;

export const Snapshot = Type.Object(
  {
    id: Uuid,
    name: Type.String(),
    project: Type.String(),
    vm_id: Uuid,
    vm_name: Type.String({ description: 'The VM it was taken of (which may be gone since: snapshots kept with ?keep_snapshots)' }),
    host_id: Uuid,
    status: SnapshotStatus,
    driver: Type.Union([VmmName, Type.Null()], { description: 'The VMM that wrote it: a VM restored from it runs on the same one' }),
    vcpu: Type.Integer(),
    mem_mib: Type.Integer(),
    size_bytes: Type.Integer({ description: 'State, memory and drive copies together; 0 while creating' }),
    files: Type.Array(SnapshotFile),
    created_at: Timestamp,
    updated_at: Timestamp,
  },
  { additionalProperties: false },
);
export type Snapshot = Static<typeof Snapshot>;

export const SnapshotList = Type.Object({ items: Type.Array(Snapshot) }, { additionalProperties: false });

export const SnapshotListQuery = StrictObject({
  project: Type.Optional(ProjectField),
  vm_id: Type.Optional(Uuid),
});
export type SnapshotListQuery = Static<typeof SnapshotListQuery>;

export const SnapshotIdParams = StrictObject({ id: Uuid });

/** A new VM from a snapshot: restored on the snapshot's host, running, at addresses of its own. */
export const InstantiateSnapshotRequest = StrictObject({
  name: VmName,
  networks: Type.Optional(
    Type.Array(VmNetworks.items, {
      maxItems: MAX_VM_NICS,
      description: "Its NICs, as many as the snapshot's VM had. Default: the same networks, each at a new address.",
    }),
  ),
  tags: Type.Optional(VmTags),
});
export type InstantiateSnapshotRequest = Static<typeof InstantiateSnapshotRequest>;
