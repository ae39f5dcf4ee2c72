import { Type, type Static } from 'typebox';
import { HostCapacity } from './agent-api.js';
import { HostImage, MAX_HOST_IMAGES } from './image-api.js';
import { StrictObject, Timestamp, Uuid } from './schema.js';

export const HostStatus = Type.Union([Type.Literal('ready'), Type.Literal('unreachable')]);
export type HostStatus = Static<typeof HostStatus>;

export const Host = Type.Object(
  {
    id: Uuid,
    name: Type.String(),
    address: Type.String({ description: 'Where the manager reaches the agent: host:port' }),
    status: HostStatus,
    capacity: HostCapacity,
    credential_rotated_at: Type.Union([Timestamp, Type.Null()], { description: 'When its credential last rotated in place (null: never)' }),
    last_seen_at: Timestamp,
    created_at: Timestamp,
    updated_at: Timestamp,
  },
  { additionalProperties: false },
);
export type Host = Static<typeof Host>;

export const HostList = Type.Object({ items: Type.Array(Host) }, { additionalProperties: false });
export type HostList = Static<typeof HostList>;

export const HostIdParams = StrictObject({ id: Uuid });

/** Join tokens live at most this long, so a leaked one cannot enroll a host next week. */
export const JOIN_TOKEN_MAX_TTL_SECONDS = 7 * 24 * 3600;
export const JOIN_TOKEN_DEFAULT_TTL_SECONDS = 3600;

export const CreateJoinTokenRequest = StrictObject({
  ttl_seconds: Type.Optional(
    Type.Integer({ minimum: 60, maximum: JOIN_TOKEN_MAX_TTL_SECONDS, default: JOIN_TOKEN_DEFAULT_TTL_SECONDS }),
  ),
});
export type CreateJoinTokenRequest = Static<typeof CreateJoinTokenRequest>;

export const JoinToken = Type.Object(
  {
    token: Type.String({ description: 'Shown once; only its hash is stored' }),
    expires_at: Timestamp,
  },
  { additionalProperties: false },
);
export type JoinToken = Static<typeof JoinToken>;

/** Host names double as labels in logs and placement output: keep them DNS-label-like. */
export const HostName = Type.String({ minLength: 1, maxLength: 63, pattern: '^[a-zA-Z0-9]([a-zA-Z0-9._-]*[a-zA-Z0-9])?$' });
export const HostAddress = Type.String({ minLength: 3, maxLength: 255, pattern: '^[^\\s/]+:[0-9]{1,5}$' });

export const EnrollRequest = StrictObject({
  join_token: Type.String({ minLength: 1, maxLength: 512 }),
  name: HostName,
  address: HostAddress,
  capacity: HostCapacity,
});
export type EnrollRequest = Static<typeof EnrollRequest>;

export const EnrollResponse = Type.Object(
  {
    host_id: Uuid,
    credential: Type.String({ description: 'The per-host bearer credential, shown once' }),
    heartbeat_interval_ms: Type.Integer(),
  },
  { additionalProperties: false },
);
export type EnrollResponse = Static<typeof EnrollResponse>;

export const HeartbeatRequest = StrictObject({
  address: HostAddress,
  capacity: HostCapacity,
  images: Type.Optional(
    Type.Array(HostImage, { maxItems: MAX_HOST_IMAGES, description: 'The image store now; absent: unchanged since the last beat that sent it' }),
  ),
});
export type HeartbeatRequest = Static<typeof HeartbeatRequest>;

export const HeartbeatResponse = Type.Object(
  { heartbeat_interval_ms: Type.Integer({ description: 'When to send the next heartbeat' }) },
  { additionalProperties: false },
);
export type HeartbeatResponse = Static<typeof HeartbeatResponse>;
