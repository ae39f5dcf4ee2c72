import { Type, type Static } from 'typebox';
import { StrictObject, Timestamp, Uuid } from './schema.js';

/** viewer: read its project; operator: also change its project's VMs; admin: everything. */
export const Role = Type.Union([Type.Literal('viewer'), Type.Literal('operator'), Type.Literal('admin')]);
export type Role = Static<typeof Role>;

export const ProjectName = Type.String({ minLength: 1, maxLength: 63, pattern: '^[a-z0-9]([a-z0-9-]*[a-z0-9])?$', description: 'DNS-label style' });

export const CreateTokenRequest = StrictObject({
  owner: Type.String({ minLength: 1, maxLength: 128, pattern: '^[A-Za-z0-9@._:-]+$', description: 'Who holds it: a person, a CI job, a service' }),
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
  { ...Token.properties, token: Type.String({ description: 'The bearer secret, shown once; only a salted slow hash is kept' }) },
  { additionalProperties: false },
);
export type TokenWithSecret = Static<typeof TokenWithSecret>;

export const TokenList = Type.Object({ items: Type.Array(Token) }, { additionalProperties: false });
export const TokenIdParams = StrictObject({ id: Uuid });

export const RotateTokenRequest = StrictObject({
  overlap_seconds: Type.Optional(
    Type.Integer({ minimum: 0, maximum: 7 * 24 * 3600, default: 0, description: 'How long the old secret keeps working' }),
  ),
});
export type RotateTokenRequest = Static<typeof RotateTokenRequest>;

const Quota = Type.Union([Type.Integer({ minimum: 0 }), Type.Null()], { description: 'Null: no limit' });
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
    actor: Type.String({ description: 'token:<id> (<owner>), host:<id>, or anonymous' }),
    action: Type.String({ description: 'e.g. vm.create, vm.stop, token.revoke' }),
    resource: Type.String(),
    resource_id: Type.Union([Type.String(), Type.Null()]),
    request_id: Type.String(),
    result: AuditResult,
    status: Type.Union([Type.Integer(), Type.Null()], { description: 'The HTTP status answered' }),
    before: Type.Unknown(),
    after: Type.Unknown(),
    detail: Type.Union([Type.String(), Type.Null()]),
    created_at: Timestamp,
    updated_at: Timestamp,
  },
  { additionalProperties: false },
);
export type AuditEntry = Static<typeof AuditEntry>;

export const AuditQuery = StrictObject({
  vm_id: Type.Optional(Uuid),
  actor: Type.Optional(Type.String({ maxLength: 200 })),
  since: Type.Optional(Type.String({ format: 'date-time' })),
  until: Type.Optional(Type.String({ format: 'date-time' })),
  limit: Type.Optional(Type.Integer({ minimum: 1, maximum: 10_000, default: 1000 })),
  format: Type.Optional(Type.Union([Type.Literal('json'), Type.Literal('ndjson')], { default: 'json', description: 'ndjson: one entry per line, for export' })),
});
export type AuditQuery = Static<typeof AuditQuery>;
export const AuditList = Type.Object({ items: Type.Array(AuditEntry) }, { additionalProperties: false });
