import { Type, type Static } from 'typebox';
import { Int32, StrictObject, Text, Timestamp, Uuid } from './schema.js';
import { Secret } from './secret-answer.js';

/** viewer: read its project; operator: also change its project's VMs; admin: everything. */
export const Role = Type.Union([Type.Literal('viewer'), Type.Literal('operator'), Type.Literal('admin')]);
export type Role = Static<typeof Role>;

export const ProjectName = Text(63, { minLength: 1, pattern: '^[a-z0-9]([a-z0-9-]*[a-z0-9])?$', example: 'team-a', description: 'DNS-label style' });

export const CreateTokenRequest = StrictObject({
  owner: Text(128, { minLength: 1, pattern: '^[A-Za-z0-9@._:-]+$', example: 'ci@example.com', description: 'Who holds it: a person, a CI job, a service' }),
  role: Role,
  project: Type.Optional(ProjectName),
  expires_at: Type.Optional(Type.String({ format: 'date-time' })),
});
export type CreateTokenRequest = Static<typeof CreateTokenRequest>;

export const Token = Type.Object(
  {
    id: Uuid,
    owner: Type.String(),
    role: Role,
    project: Type.Union([Type.String(), Type.Null()], { description: 'Null: every project (admin tokens)' }),
    expires_at: Type.Union([Timestamp, Type.Null()]),
    revoked_at: Type.Union([Timestamp, Type.Null()]),
    last_used_at: Type.Union([Timestamp, Type.Null()]),
    created_at: Timestamp,
  },
  { additionalProperties: false },
);
export type Token = Static<typeof Token>;

export const TokenWithSecret = Type.Object(
  { ...Token.properties, token: Secret('The bearer secret; only a salted slow hash is kept') },
  { additionalProperties: false },
);
export type TokenWithSecret = Static<typeof TokenWithSecret>;

export const TokenList = Type.Object({ items: Type.Array(Token) }, { additionalProperties: false });
export const TokenIdParams = StrictObject({ id: Uuid });

export const RotateTokenRequest = StrictObject({
  overlap_seconds: Type.Optional(Int32({ minimum: 0, maximum: 7 * 24 * 3600, default: 0, description: 'How long the old secret keeps working' })),
});
export type RotateTokenRequest = Static<typeof RotateTokenRequest>;

/** Quotas are `integer` columns. */
const Quota = Type.Union([Int32({ minimum: 0 }), Type.Null()], { description: 'Null: no limit' });
export const ProjectQuotas = StrictObject({
  max_vms: Type.Optional(Quota),
  max_vcpus: Type.Optional(Quota),
  max_memory_mib: Type.Optional(Quota),
});
export type ProjectQuotas = Static<typeof ProjectQuotas>;

export const Project = Type.Object(
  {
    name: Type.String(),
    max_vms: Type.Union([Type.Integer(), Type.Null()]),
    max_vcpus: Type.Union([Type.Integer(), Type.Null()]),
    max_memory_mib: Type.Union([Type.Integer(), Type.Null()]),
    created_at: Timestamp,
  },
  { additionalProperties: false },
);
export type Project = Static<typeof Project>;

export const CreateProjectRequest = StrictObject({ name: ProjectName, ...ProjectQuotas.properties });
export type CreateProjectRequest = Static<typeof CreateProjectRequest>;
export const ProjectList = Type.Object({ items: Type.Array(Project) }, { additionalProperties: false });
export const ProjectNameParams = StrictObject({ name: ProjectName });

export const AuditResult = Type.Union([Type.Literal('pending'), Type.Literal('success'), Type.Literal('failure'), Type.Literal('denied')]);

export const AuditEntry = Type.Object(
  {
    id: Uuid,
    actor: Type.String({ description: 'token:<id> (<owner>), host:<id>, join_token:<id>, system (the manager itself), or anonymous' }),
    action: Type.String({ description: 'e.g. vm.create, vm.stop, token.revoke' }),
    resource: Type.String(),
    resource_id: Type.Union([Type.String(), Type.Null()]),
    request_id: Type.String(),
    result: AuditResult,
    status: Type.Union([Type.Integer(), Type.Null()], { description: 'The HTTP status answered' }),
    before: Type.Unknown(),
    after: Type.Unknown(),
    detail: Type.Union([Type.String(), Type.Null()]),
    remote_address: Type.Union([Type.String(), Type.Null()], { description: "The caller's address; null for the manager's own actions" }),
    created_at: Timestamp,
    updated_at: Timestamp,
  },
  { additionalProperties: false },
);
export type AuditEntry = Static<typeof AuditEntry>;

export const AuditQuery = StrictObject({
  vm_id: Type.Optional(Uuid),
  actor: Type.Optional(Text(200)),
  since: Type.Optional(Type.String({ format: 'date-time' })),
  until: Type.Optional(Type.String({ format: 'date-time' })),
  // No schema default: a limit given with format=ndjson must be seen to be refused.
  limit: Type.Optional(Int32({ minimum: 1, maximum: 10_000, description: 'Entries per page, 1000 if not given (format=json only)' })),
  cursor: Type.Optional(
    Text(200, {
      pattern: '^[A-Za-z0-9_-]+$',
      example: 'MjAyNi0wMS0wMVQwMDowMDowMC4wMDAwMDBafDAwMDAwMDAwLTAwMDAtNDAwMC04MDAwLTAwMDAwMDAwMDAwMA',
      description: 'next_cursor of the previous page (format=json only)',
    }),
  ),
  format: Type.Optional(
    Type.Union([Type.Literal('json'), Type.Literal('ndjson')], {
      default: 'json',
      description: 'json: a page, newest first; ndjson: an export of every entry the filters match, oldest first, one per line',
    }),
  ),
});
export type AuditQuery = Static<typeof AuditQuery>;
export const AuditList = Type.Object(
  { items: Type.Array(AuditEntry), next_cursor: Type.Union([Type.String(), Type.Null()], { description: 'Null on the last page' }) },
  { additionalProperties: false },
);
