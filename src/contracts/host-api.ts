import { Type, type Static } from 'typebox';
import { HostCapacity } from './agent-api.js';
import { HostImage, MAX_HOST_IMAGES } from './image-api.js';
import { Int32, StrictObject, Text, Timestamp, UNSTORABLE_CHARACTERS, Uuid } from './schema.js';
import { Secret } from './secret-answer.js';

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

/** Host names double as labels in logs and placement output: keep them DNS-label-like. */
const HOST_NAME_RULES = { minLength: 1, pattern: '^[a-zA-Z0-9]([a-zA-Z0-9._-]*[a-zA-Z0-9])?$', example: 'host-1' };
export const HostName = Text(63, HOST_NAME_RULES);
export const HostAddress = Text(255, { minLength: 3, pattern: `^[^\\s/${UNSTORABLE_CHARACTERS}]+:[0-9]{1,5}$`, example: '10.0.0.2:7070' });

export const CreateJoinTokenRequest = StrictObject({
  ttl_seconds: Type.Optional(Int32({ minimum: 60, maximum: JOIN_TOKEN_MAX_TTL_SECONDS, default: JOIN_TOKEN_DEFAULT_TTL_SECONDS })),
  replace_host: Type.Optional(
    Text(63, {
      ...HOST_NAME_RULES,
      description:
        'The name of an existing host this token may replace while it is ready (its agent is locked out). Without it, enrolling under the name of a ready host is refused (409)',
    }),
  ),
});
export type CreateJoinTokenRequest = Static<typeof CreateJoinTokenRequest>;

export const JoinToken = Type.Object(
  {
    id: Uuid,
    token: Secret('The join token; only its hash is stored'),
    expires_at: Timestamp,
    replace_host: Type.Union([Type.String(), Type.Null()], {
      description: 'The host it may replace while ready; null: it enrolls a new or unreachable host only',
    }),
  },
  { additionalProperties: false },
);
export type JoinToken = Static<typeof JoinToken>;

export const EnrollRequest = StrictObject({
  join_token: Text(512, { minLength: 1 }),
  name: HostName,
  address: HostAddress,
  capacity: HostCapacity,
});
export type EnrollRequest = Static<typeof EnrollRequest>;

export const EnrollResponse = Type.Object(
  {
    host_id: Uuid,
    credential: Secret('The per-host bearer credential; the manager keeps it sealed, and its hash'),
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
