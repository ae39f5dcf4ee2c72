/* eslint-disable @typescript-eslint/no-explicit-any -- migrations run before and across schema versions: they cannot be typed by the current Schema. */
import type { Kysely } from 'kysely';
import { runStatements } from './run-statements.js';

/**
 * Snapshots, replacing the table 0001 reserved (no release ever wrote to it: it had no API). One row per snapshot a host keeps (`<run-dir>/snapshots/<id>/`). The row comes first,
 * `creating`, and its host's folder after; a folder without a row is a leftover the orphan
 * collector removes. `vm_id` names the VM it was taken of without a foreign key: a snapshot may
 * outlive its VM. `source` is what a VM restored from it is made of (the VM's spec, where its
 * images were on the host, its NICs).
 */
export async function up(db: Kysely<any>): Promise<void> {
  await runStatements(
    db,
    `
    DROP TABLE snapshot;

    CREATE TABLE snapshot (
      id uuid PRIMARY KEY,
      project_id uuid NOT NULL REFERENCES project (id),
      name text NOT NULL,
      vm_id uuid NOT NULL,
      vm_name text NOT NULL,
      host_id uuid NOT NULL,
      status text NOT NULL DEFAULT 'creating' CHECK (status IN ('creating', 'ready')),
      driver text,
      vcpu integer NOT NULL,
      mem_mib integer NOT NULL,
      size_bytes bigint NOT NULL DEFAULT 0,
      files jsonb NOT NULL DEFAULT '[]'::jsonb,
      source jsonb NOT NULL,
      created_at timestamptz NOT NULL DEFAULT now(),
      updated_at timestamptz NOT NULL DEFAULT now(),
      UNIQUE (project_id, name)
    );

    CREATE INDEX snapshot_vm ON snapshot (vm_id);
    CREATE INDEX snapshot_host ON snapshot (host_id)
  `,
  );
}

/** Back to the table 0001 reserved, empty. */
export async function down(db: Kysely<any>): Promise<void> {
  await runStatements(
    db,
    `
    DROP TABLE snapshot;

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
    CREATE INDEX snapshot_vm ON snapshot (vm_id)
  `,
  );
}
