import { Type, type Static } from 'typebox';
import { DriveId, VmmName } from './machine-spec.js';
import { PublishedPorts, VmAddress, VmNetworks, VmPort } from './network-api.js';
import { DNS_LABEL_PATTERN, Int32, ProjectField, StrictObject, Text, TextMap, Timestamp, Uuid } from './schema.js';

/** What a user may ask of a VM. `deleted` is reached through DELETE, not set directly. */
export const DesiredState = Type.Union([
  Type.Literal('running'),
  Type.Literal('stopped'),
  Type.Literal('paused'),
  Type.Literal('hibernated'),
  Type.Literal('deleted'),
]);
export type DesiredState = Static<typeof DesiredState>;

/** What the reconciler last saw. Only it writes this. */
export const ObservedState = Type.Union([
  Type.Literal('requested'),
  Type.Literal('configured'),
  Type.Literal('starting'),
  Type.Literal('running'),
  Type.Literal('paused'),
  Type.Literal('stopping'),
  Type.Literal('stopped'),
  Type.Literal('failed'),
  Type.Literal('deleting'),
  Type.Literal('unknown'),
  /** Its VMM ended with its state and memory saved on its host: it wakes where it was. */
  Type.Literal('hibernated'),
]);
export type ObservedState = Static<typeof ObservedState>;

export const VmName = Text(63, {
  minLength: 1,
  pattern: DNS_LABEL_PATTERN,
  example: 'web-1',
  description: 'Unique per project; DNS-label style',
});

/** A file given by a host path (dev mode) or by the id of an image in the registry. */
const HostPath = Text(4096, { minLength: 1, description: 'A path on the host: dev mode only' });

export const ExtraDrive = StrictObject({
  id: DriveId,
  path: Type.Optional(HostPath),
  image_id: Type.Optional(Uuid),
  read_only: Type.Optional(Type.Boolean({ default: false })),
});

/** At most this many tags per VM: they are labels to find VMs by, not a key-value store. */
export const MAX_VM_TAGS = 50;

export const VmTags = TextMap(Text(63, { minLength: 1, pattern: '^[a-zA-Z0-9_.-]+$', example: 'env' }), Text(255), {
  maxEntries: MAX_VM_TAGS,
  default: {},
  description: `Labels: at most ${MAX_VM_TAGS}; keys 1 to 63 of a-z A-Z 0-9 _ . -, values at most 255 characters`,
});

export const DEFAULT_BOOT_ARGS = 'console=ttyS0 reboot=t panic=1 root=/dev/vda rw';

/**
 * A new VM. Each of kernel and rootfs comes from exactly one of `*_image_id` (an image in the
 * registry; the VM is placed on a host that holds it) or `*_path` (a host path, dev mode only);
 * initrd and extra drives likewise, when given.
 */
export const CreateVmRequest = StrictObject({
  name: VmName,
  project: Type.Optional(ProjectField),
  vcpu: Int32({ minimum: 1, maximum: 32 }),
  mem_mib: Int32({ minimum: 128, maximum: 1024 * 1024 }),
  kernel_image_id: Type.Optional(Uuid),
  kernel_path: Type.Optional(HostPath),
  initrd_image_id: Type.Optional(Uuid),
  initrd_path: Type.Optional(HostPath),
  boot_args: Type.Optional(Text(4096, { description: `Default: the kernel image's boot_args, else '${DEFAULT_BOOT_ARGS}'` })),
  rootfs_image_id: Type.Optional(Uuid),
  rootfs_path: Type.Optional(HostPath),
  extra_drives: Type.Optional(Type.Array(ExtraDrive, { maxItems: 7, default: [] })),
  nic: Type.Optional(
    Type.Boolean({ default: true, description: "false: no NIC at all. Default: one, on the project's default network unless networks say otherwise" }),
  ),
  networks: Type.Optional(VmNetworks),
  ports: Type.Optional(PublishedPorts),
  desired_state: Type.Optional(Type.Union([Type.Literal('running'), Type.Literal('stopped')], { default: 'running' })),
  tags: Type.Optional(VmTags),
  ttl_seconds: Type.Optional(
    Int32({
      minimum: 10,
      maximum: 30 * 24 * 3600,
      description: 'An ephemeral VM: stopped and deleted this long after creation, even while the manager is down',
    }),
  ),
});
export type CreateVmRequest = Static<typeof CreateVmRequest>;

export const VmError = Type.Object(
  {
    reason: Type.String({ description: 'Stable code: vmm_failed, vmm_exited, no_capacity, image_unavailable, …' }),
    message: Type.String({ description: "What went wrong, with the VMM's own message when it gave one" }),
    at: Timestamp,
    suggestion: Type.Optional(Type.String({ description: 'What to do about it' })),
    console_tail: Type.Optional(Type.Array(Type.String(), { description: 'The last lines of the guest console before the error' })),
  },
  { additionalProperties: false },
);

export const Vm = Type.Object(
  {
    id: Uuid,
    name: Type.String(),
    project: Type.String(),
    host_id: Type.Union([Uuid, Type.Null()]),
    desired_state: DesiredState,
    state: ObservedState,
    vcpu: Type.Integer(),
    mem_mib: Type.Integer(),
    kernel_image_id: Type.Union([Uuid, Type.Null()]),
    kernel_path: Type.Union([Type.String(), Type.Null()], { description: 'Null until placed, for a kernel given by image id' }),
    initrd_image_id: Type.Union([Uuid, Type.Null()]),
    initrd_path: Type.Union([Type.String(), Type.Null()]),
    boot_args: Type.String(),
    rootfs_image_id: Type.Union([Uuid, Type.Null()]),
    rootfs_path: Type.Union([Type.String(), Type.Null()]),
    nic: Type.Boolean(),
    tap: Type.Union([Type.String(), Type.Null()], {
      description:
        "The host device carrying its traffic: the host end of the veth to its network namespace (nxv-…), or its TAP on the host's flat bridge (tap-…)",
    }),
    addresses: Type.Array(VmAddress, { description: "Its NICs' addresses, assigned by the manager from their networks" }),
    ports: Type.Array(VmPort, { description: 'Its published ports, and where each is reachable' }),
    driver: Type.Union([VmmName, Type.Null()], { description: 'The VMM its host runs it with; null until the agent has said' }),
    api_socket: Type.Union([Type.String(), Type.Null()], { description: "The VMM's control socket on the host (QMP or Firecracker API)" }),
    console_log: Type.Union([Type.String(), Type.Null()]),
    last_error: Type.Union([VmError, Type.Null()]),
    snapshot_id: Type.Union([Uuid, Type.Null()], { description: 'The snapshot it was made from (POST /v1/snapshots/:id/instantiate); null for a booted VM' }),
    tags: Type.Record(Type.String(), Type.String()),
    expires_at: Type.Union([Timestamp, Type.Null()]),
    resource_version: Type.Integer(),
    created_at: Timestamp,
    updated_at: Timestamp,
  },
  { additionalProperties: false },
);
export type Vm = Static<typeof Vm>;

export const VmListQuery = StrictObject({
  state: Type.Optional(ObservedState),
  host: Type.Optional(Uuid),
  name_prefix: Type.Optional(Text(63)),
  limit: Type.Optional(Int32({ minimum: 1, maximum: 500, default: 100 })),
  cursor: Type.Optional(Text(200, { description: 'next_cursor of the previous page' })),
});
export type VmListQuery = Static<typeof VmListQuery>;

export const VmList = Type.Object({ items: Type.Array(Vm), next_cursor: Type.Union([Type.String(), Type.Null()]) }, { additionalProperties: false });

export const EventLevel = Type.Union([Type.Literal('info'), Type.Literal('warn'), Type.Literal('error')]);

export const VmEvent = Type.Object(
  {
    id: Uuid,
    level: EventLevel,
    kind: Type.String(),
    from_state: Type.Union([Type.String(), Type.Null()]),
    to_state: Type.Union([Type.String(), Type.Null()]),
    message: Type.String(),
    created_at: Timestamp,
  },
  { additionalProperties: false },
);
export type VmEvent = Static<typeof VmEvent>;

export const VmEventList = Type.Object({ items: Type.Array(VmEvent) }, { additionalProperties: false });

export const FleetEvent = Type.Object({ ...VmEvent.properties, vm_id: Uuid }, { additionalProperties: false });
export type FleetEvent = Static<typeof FleetEvent>;
export const FleetEventList = Type.Object({ items: Type.Array(FleetEvent) }, { additionalProperties: false });

export const EventsQuery = StrictObject({
  since: Type.Optional(Type.String({ format: 'date-time', description: 'Events after this time; default an hour ago' })),
  level: Type.Optional(Type.Union([EventLevel], { default: 'info', description: 'The lowest level: warn gives warn and error' })),
  limit: Type.Optional(Int32({ minimum: 1, maximum: 5000, default: 500 })),
});
export type EventsQuery = Static<typeof EventsQuery>;

export const VmLifecycleAction = Type.Union([
  Type.Literal('start'),
  Type.Literal('stop'),
  Type.Literal('pause'),
  Type.Literal('resume'),
  Type.Literal('hibernate'),
  Type.Literal('wake'),
]);
export type VmLifecycleAction = Static<typeof VmLifecycleAction>;

export const VmActionParams = StrictObject({ id: Uuid, action: VmLifecycleAction });
export const OkResponse = Type.Object({ ok: Type.Literal(true) }, { additionalProperties: false });

/**
 * `?wait=` of a write (create, action, delete, a VM made from a snapshot): how long to wait, after
 * recording the change, for the VM to settle where it asked (not GET /v1/vms/:id/wait's query: StateWaitQuery).
 */
export const SettleWaitQuery = StrictObject({
  wait: Type.Optional(Type.Number({ minimum: 0, maximum: 600, description: 'Seconds to wait for the observed state the call asked for' })),
});

/** GET /v1/vms/:id/wait: the observed state to wait for, and how long (not the `?wait=` of a write: SettleWaitQuery). */
export const StateWaitQuery = StrictObject({
  state: ObservedState,
  timeout: Type.Optional(Type.Number({ minimum: 0, maximum: 600, default: 30, description: 'Seconds' })),
});

export const BulkActionRequest = StrictObject({
  ids: Type.Array(Uuid, { minItems: 1, maxItems: 500, uniqueItems: true }),
  action: Type.Union([VmLifecycleAction, Type.Literal('delete')]),
});
export type BulkActionRequest = Static<typeof BulkActionRequest>;

export const BulkActionResponse = Type.Object(
  {
    results: Type.Array(
      Type.Object(
        {
          id: Uuid,
          ok: Type.Boolean(),
          error: Type.Optional(Type.String()),
          fault_message: Type.Optional(Type.String()),
        },
        { additionalProperties: false },
      ),
    ),
  },
  { additionalProperties: false },
);
