/* eslint-disable @typescript-eslint/no-explicit-any -- migrations run before and across schema versions: they cannot be typed by the current Schema. */
import type { Kysely } from 'kysely';
import { runStatements } from './run-statements.js';

/**
 * The image registry. An image is identified by its content (kind + sha256), so the same file on
 * many hosts is one image, and an id always means the same bytes; its name is the build it came
 * from, shared by that build's versions. Where each host keeps its copy is in host_image, which
 * the host's heartbeats keep current. 0001's image table (a path per image, one name per image)
 * was never written, so it is replaced rather than altered.
 */
export async function up(db: Kysely<any>): Promise<void> {
  await runStatements(
    db,
    `
    DROP TABLE image;

    CREATE TABLE image (
      id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
      project_id uuid NOT NULL REFERENCES project (id),
      name text NOT NULL,
      kind text NOT NULL CHECK (kind IN ('kernel', 'initrd', 'rootfs')),
      format text NOT NULL,
      size_bytes bigint NOT NULL,
      sha256 text NOT NULL,
      boot_args text,
      created_at timestamptz NOT NULL DEFAULT now(),
      updated_at timestamptz NOT NULL DEFAULT now(),
      UNIQUE (project_id, kind, sha256)
    );
    CREATE INDEX image_project_name ON image (project_id, name);

    CREATE TABLE host_image (
      host_id uuid NOT NULL REFERENCES host (id) ON DELETE CASCADE,
      image_id uuid NOT NULL REFERENCES image (id) ON DELETE CASCADE,
      path text NOT NULL,
      created_at timestamptz NOT NULL DEFAULT now(),
      updated_at timestamptz NOT NULL DEFAULT now(),
      PRIMARY KEY (host_id, image_id)
    );
    CREATE INDEX host_image_image ON host_image (image_id);
  `,
  );
}

export async function down(db: Kysely<any>): Promise<void> {
  await runStatements(
    db,
    `
    DROP TABLE host_image, image;

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
  `,
  );
}
