import { Type, type Static } from 'typebox';
import { Int32, Int64, Text } from './schema.js';

/** The longest note (a version line, why a driver or KVM is unusable) a capacity report carries; agents clip longer ones. */
export const CAPACITY_NOTE_MAX_LENGTH = 1024;

/** One VMM driver as a host sees it: whether it can run guests here, and why not. */
export const DriverAvailability = Type.Object(
  {
    name: Type.Union([Type.Literal('qemu'), Type.Literal('firecracker')]),
    available: Type.Boolean(),
    version: Type.Optional(Text(CAPACITY_NOTE_MAX_LENGTH)),
    reason: Type.Optional(Text(CAPACITY_NOTE_MAX_LENGTH, { description: 'Why the driver is unavailable' })),
  },
  { additionalProperties: false },
);
export type DriverAvailability = Static<typeof DriverAvailability>;

/** What a host can give to guests, as its agent measured it (and reports with enrollment and heartbeats). */
export const HostCapacity = Type.Object(
  {
    vcpus: Int32(),
    memory_mib: Int64(),
    memory_available_mib: Int64(),
    run_dir: Text(4096),
    disk_total_mib: Int64(),
    disk_available_mib: Int64(),
    vms_running: Int32(),
    kvm: Type.Object(
      {
        usable: Type.Boolean({ description: 'True only when a KVM vCPU actually ran a probe guest' }),
        reason: Type.Optional(Text(CAPACITY_NOTE_MAX_LENGTH)),
      },
      { additionalProperties: false },
    ),
    drivers: Type.Array(DriverAvailability, { maxItems: 8 }),
  },
  { additionalProperties: false },
);
export type HostCapacity = Static<typeof HostCapacity>;

export const AgentHealth = Type.Object(
  {
    status: Type.Literal('ok'),
    version: Type.String(),
    uptime_seconds: Type.Number(),
    host_id: Type.Union([Type.String(), Type.Null()], { description: 'Set once the agent has enrolled' }),
  },
  { additionalProperties: false },
);
export type AgentHealth = Static<typeof AgentHealth>;

export const AGENT_API_PREFIX = '/agent/v1';

/** The shape of a host credential the manager mints: `nxhc_` and 256 random bits, base64url. */
export const HOST_CREDENTIAL_PATTERN = '^nxhc_[A-Za-z0-9_-]{43}$';

export const ReplaceCredentialRequest = Type.Object(
  {
    credential: Text(48, {
      pattern: HOST_CREDENTIAL_PATTERN,
      example: 'nxhc_AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA',
      description: 'The credential to require from now on',
    }),
  },
  { additionalProperties: false },
);
export type ReplaceCredentialRequest = Static<typeof ReplaceCredentialRequest>;
