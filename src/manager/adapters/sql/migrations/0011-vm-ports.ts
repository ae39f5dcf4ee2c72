/* eslint-disable @typescript-eslint/no-explicit-any -- migrations run before and across schema versions: they cannot be typed by the current Schema. */
import type { Kysely } from 'kysely';
import { runStatements } from './run-statements.js';

/**
 * The host ports VMs publish, reserved on the host they are placed on. A port is taken once per
 * host and protocol by constraint, so two placements at once can never give one port to two VMs;
 * a row goes with its VM's row, which the reconciler deletes only once the agent has removed the
 * VM (its port rules with it). What a VM publishes is in its spec; this is only the reservation.
 */
export async function up(db: Kysely<any>): Promise<void> {
  await runStatements(
    db,
    `
    CREATE TABLE vm_port (
      vm_id uuid NOT NULL REFERENCES vm (id) ON DELETE CASCADE,
      host_id uuid NOT NULL,
      protocol text NOT NULL CHECK (protocol IN ('tcp', 'udp')),
      host_port integer NOT NULL CHECK (host_port BETWEEN 1 AND 65535),
      created_at timestamptz NOT NULL DEFAULT now(),
      updated_at timestamptz NOT NULL DEFAULT now(),
      PRIMARY KEY (vm_id, protocol, host_port),
      CONSTRAINT vm_port_host_unique UNIQUE (host_id, protocol, host_port)
    )
  `,
  );
}

export async function down(db: Kysely<any>): Promise<void> {
  await runStatements(db, 'DROP TABLE vm_port');
}
