import { Type, type Static } from 'typebox';

/** One VMM driver as a host sees it: whether it can run guests here, and why not. */
export const DriverAvailability = Type.Object(
  {
    name: Type.Union([Type.Literal('qemu'), Type.Literal('firecracker')]),
    available: Type.Boolean(),
    version: Type.Optional(Type.String()),
    reason: Type.Optional(Type.String({ description: 'Why the driver is unavailable' })),
  },
  { additionalProperties: false },
);
export type DriverAvailability = Static<typeof DriverAvailability>;

/** What a host can give to guests, as its agent measured it. */
export const HostCapacity = Type.Object(
  {
    vcpus: Type.Integer({ minimum: 0 }),
    memory_mib: Type.Integer({ minimum: 0 }),
    memory_available_mib: Type.Integer({ minimum: 0 }),
    run_dir: Type.String(),
    disk_total_mib: Type.Integer({ minimum: 0 }),
    disk_available_mib: Type.Integer({ minimum: 0 }),
    vms_running: Type.Integer({ minimum: 0 }),
    kvm: Type.Object(
      {
        usable: Type.Boolean({ description: 'True only when a KVM vCPU actually ran a probe guest' }),
        reason: Type.Optional(Type.String()),
      },
      { additionalProperties: false },
    ),
    drivers: Type.Array(DriverAvailability),
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
  { credential: Type.String({ pattern: HOST_CREDENTIAL_PATTERN, description: 'The credential to require from now on' }) },
  { additionalProperties: false },
);
export type ReplaceCredentialRequest = Static<typeof ReplaceCredentialRequest>;
