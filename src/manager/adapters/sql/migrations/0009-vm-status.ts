/* eslint-disable @typescript-eslint/no-explicit-any -- migrations run before and across schema versions: they cannot be typed by the current Schema. */
import type { Kysely } from 'kysely';
import { runStatements } from './run-statements.js';

/**
 * What the reconciler learns about a VM moves out of the user's spec into status columns of its
 * own: the driver the agent runs it with (was `spec.driver`) and the files the agent says it has
 * (the manager used to compute those paths itself), where its images are on its host
 * (placement used to write those paths into the spec), and its start history, which only lived in
 * the leading manager's memory, so a restart or a new leader forgot a VM it had given up on and
 * started it again. Rows placed before keep their host paths in the spec, which still serve.
 */
export async function up(db: Kysely<any>): Promise<void> {
  await runStatements(
    db,
    `
    ALTER TABLE vm ADD COLUMN driver text NULL CHECK (driver IN ('qemu', 'firecracker'));
    ALTER TABLE vm ADD COLUMN api_socket text NULL;
    ALTER TABLE vm ADD COLUMN console_log text NULL;
    ALTER TABLE vm ADD COLUMN placed_paths jsonb NOT NULL DEFAULT '{}'::jsonb;
    ALTER TABLE vm ADD COLUMN start_failures integer NOT NULL DEFAULT 0 CHECK (start_failures >= 0);
    ALTER TABLE vm ADD COLUMN started_at timestamptz NULL;
    UPDATE vm SET driver = spec->>'driver', spec = spec - 'driver' WHERE spec ? 'driver'
  `,
  );
}

/** Back to 0008: the driver into the spec again, and each placed image path into the spec beside its id, as placement wrote it then. */
export async function down(db: Kysely<any>): Promise<void> {
  await runStatements(
    db,
    `
    UPDATE vm SET spec = jsonb_set(spec, '{driver}', to_jsonb(driver)) WHERE driver IS NOT NULL;
    UPDATE vm SET spec = jsonb_set(jsonb_set(jsonb_set(spec,
        '{kernel_path}', COALESCE(to_jsonb(placed_paths->>(spec->>'kernel_image_id')), spec->'kernel_path', 'null'::jsonb)),
        '{initrd_path}', COALESCE(to_jsonb(placed_paths->>(spec->>'initrd_image_id')), spec->'initrd_path', 'null'::jsonb)),
        '{rootfs_path}', COALESCE(to_jsonb(placed_paths->>(spec->>'rootfs_image_id')), spec->'rootfs_path', 'null'::jsonb))
      WHERE placed_paths <> '{}'::jsonb;
    UPDATE vm SET spec = jsonb_set(spec, '{extra_drives}', COALESCE((
        SELECT jsonb_agg(CASE WHEN placed_paths ? (drive->>'image_id') THEN jsonb_set(drive, '{path}', to_jsonb(placed_paths->>(drive->>'image_id'))) ELSE drive END ORDER BY position)
        FROM jsonb_array_elements(spec->'extra_drives') WITH ORDINALITY AS drives(drive, position)), '[]'::jsonb))
      WHERE placed_paths <> '{}'::jsonb AND jsonb_typeof(spec->'extra_drives') = 'array';
    ALTER TABLE vm DROP COLUMN started_at;
    ALTER TABLE vm DROP COLUMN start_failures;
    ALTER TABLE vm DROP COLUMN placed_paths;
    ALTER TABLE vm DROP COLUMN console_log;
    ALTER TABLE vm DROP COLUMN api_socket;
    ALTER TABLE vm DROP COLUMN driver
  `,
  );
}
