/* eslint-disable @typescript-eslint/no-explicit-any -- migrations run before and across schema versions: they cannot be typed by the current Schema. */
import type { Kysely } from 'kysely';
import { runStatements } from './run-statements.js';

/**
 * The core tables. Every row has a UUID id and created_at/updated_at; names are unique per
 * project; every lookup the API makes has an index. Postgres 15 SQL only: PGlite is newer, and
 * what runs on both is what we may use.
 */
export async function up(db: Kysely<any>): Promise<void> {
  await runStatements(
    db,
    `
    CREATE TABLE project (
      id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
      name text NOT NULL UNIQUE,
      created_at timestamptz NOT NULL DEFAULT now(),
      updated_at timestamptz NOT NULL DEFAULT now()
    );
    INSERT INTO project (name) VALUES ('default');

    CREATE TABLE host (
      id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
      name text NOT NULL UNIQUE,
      address text NOT NULL,
      status text NOT NULL CHECK (status IN ('ready', 'unreachable')),
      capacity jsonb NOT NULL,
      -- The per-host bearer credential: the agent presents it to the manager, and the manager to the agent.
      credential text NOT NULL,
      last_seen_at timestamptz NOT NULL,
      created_at timestamptz NOT NULL DEFAULT now(),
      updated_at timestamptz NOT NULL DEFAULT now()
    );
    CREATE INDEX host_status_last_seen ON host (status, last_seen_at);

    CREATE TABLE join_token (
      id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
      token_hash text NOT NULL UNIQUE,
      expires_at timestamptz NOT NULL,
      used_at timestamptz,
      used_by_host_id uuid REFERENCES host (id) ON DELETE SET NULL,
      created_at timestamptz NOT NULL DEFAULT now(),
      updated_at timestamptz NOT NULL DEFAULT now()
    );
    CREATE INDEX join_token_expires_at ON join_token (expires_at);

    CREATE TABLE image (
      id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
      project_id uuid NOT NULL REFERENCES project (id),
      name text NOT NULL,
      kind text NOT NULL CHECK (kind IN ('kernel', 'initrd', 'rootfs')),
      path text NOT NULL,
      format text NOT NULL,
      size_bytes bigint NOT NULL,
      sha256 text NOT NULL,
      created_at timestamptz NOT NULL DEFAULT now(),
      updated_at timestamptz NOT NULL DEFAULT now(),
      UNIQUE (project_id, name)
    );
    CREATE INDEX image_project_kind ON image (project_id, kind);

    CREATE TABLE template (
      id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
      project_id uuid NOT NULL REFERENCES project (id),
      name text NOT NULL,
      spec jsonb NOT NULL,
      created_at timestamptz NOT NULL DEFAULT now(),
      updated_at timestamptz NOT NULL DEFAULT now(),
      UNIQUE (project_id, name)
    );

    CREATE TABLE vm (
      id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
      project_id uuid NOT NULL REFERENCES project (id),
      name text NOT NULL,
      host_id uuid REFERENCES host (id),
      spec jsonb NOT NULL,
      desired_state text NOT NULL CHECK (desired_state IN ('running', 'stopped', 'paused', 'deleted')),
      observed_state text NOT NULL,
      last_error jsonb,
      tags jsonb NOT NULL DEFAULT '{}'::jsonb,
      resource_version bigint NOT NULL DEFAULT 1,
      expires_at timestamptz,
      created_at timestamptz NOT NULL DEFAULT now(),
      updated_at timestamptz NOT NULL DEFAULT now(),
      UNIQUE (project_id, name)
    );
    CREATE INDEX vm_host ON vm (host_id);
    CREATE INDEX vm_observed_state ON vm (observed_state);
    CREATE INDEX vm_expires_at ON vm (expires_at) WHERE expires_at IS NOT NULL;
    CREATE INDEX vm_tags ON vm USING gin (tags);

    CREATE TABLE vm_event (
      id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
      vm_id uuid NOT NULL REFERENCES vm (id) ON DELETE CASCADE,
      level text NOT NULL CHECK (level IN ('info', 'warn', 'error')),
      kind text NOT NULL,
      from_state text,
      to_state text,
      message text NOT NULL,
      data jsonb,
      created_at timestamptz NOT NULL DEFAULT now(),
      updated_at timestamptz NOT NULL DEFAULT now()
    );
    CREATE INDEX vm_event_vm_created ON vm_event (vm_id, created_at);
    CREATE INDEX vm_event_created_level ON vm_event (created_at, level);

    CREATE TABLE snapshot (
      id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
      project_id uuid NOT NULL REFERENCES project (id),
      vm_id uuid REFERENCES vm (id) ON DELETE SET NULL,
      host_id uuid REFERENCES host (id),
      name text NOT NULL,
      status text NOT NULL,
      state_path text,
      memory_path text,
      disk_path text,
      size_bytes bigint,
      created_at timestamptz NOT NULL DEFAULT now(),
      updated_at timestamptz NOT NULL DEFAULT now(),
      UNIQUE (project_id, name)
    );
    CREATE INDEX snapshot_vm ON snapshot (vm_id);

    CREATE TABLE audit (
      id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
      actor text NOT NULL,
      action text NOT NULL,
      resource text NOT NULL,
      resource_id text,
      request_id text NOT NULL,
      result text NOT NULL CHECK (result IN ('pending', 'success', 'failure', 'denied')),
      before jsonb,
      after jsonb,
      detail text,
      created_at timestamptz NOT NULL DEFAULT now(),
      updated_at timestamptz NOT NULL DEFAULT now()
    );
    CREATE INDEX audit_resource_id_created ON audit (resource_id, created_at);
    CREATE INDEX audit_actor_created ON audit (actor, created_at);
    CREATE INDEX audit_created ON audit (created_at);
    CREATE INDEX audit_request ON audit (request_id);

    CREATE TABLE api_token (
      id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
      project_id uuid REFERENCES project (id),
      owner text NOT NULL,
      role text NOT NULL CHECK (role IN ('viewer', 'operator', 'admin')),
      secret_hash text NOT NULL,
      expires_at timestamptz,
      revoked_at timestamptz,
      last_used_at timestamptz,
      created_at timestamptz NOT NULL DEFAULT now(),
      updated_at timestamptz NOT NULL DEFAULT now()
    );
    CREATE INDEX api_token_owner ON api_token (owner);
  `,
  );
}

export async function down(db: Kysely<any>): Promise<void> {
  await runStatements(db, 'DROP TABLE api_token, audit, snapshot, vm_event, vm, template, image, join_token, host, project');
}
