/* eslint-disable @typescript-eslint/no-explicit-any -- migrations run before and across schema versions: they cannot be typed by the current Schema. */
import type { Kysely } from 'kysely';
import { runStatements } from './run-statements.js';

/**
 * Networks, and the address each VM NIC has in one. An address is unique in its network by
 * constraint, so no two managers and no retried create can hand it out twice; a NIC row goes with
 * its VM's row, which the reconciler deletes only once the agent has removed the VM (its TAP, routes
 * and rules with it), so an address is free again only when nothing on a host still carries it.
 * A network with NICs cannot be deleted (RESTRICT): the API names the VMs instead.
 */
export async function up(db: Kysely<any>): Promise<void> {
  await runStatements(
    db,
    `
    CREATE TABLE network (
      id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
      project_id uuid NOT NULL REFERENCES project (id),
      name text NOT NULL,
      cidr cidr NOT NULL CHECK (family(cidr) = 4 AND masklen(cidr) BETWEEN 16 AND 30),
      egress text NOT NULL DEFAULT 'allow' CHECK (egress IN ('allow', 'deny')),
      dns jsonb NOT NULL DEFAULT '[]'::jsonb,
      resource_version bigint NOT NULL DEFAULT 1,
      created_at timestamptz NOT NULL DEFAULT now(),
      updated_at timestamptz NOT NULL DEFAULT now(),
      UNIQUE (project_id, name)
    );

    CREATE TABLE vm_nic (
      vm_id uuid NOT NULL REFERENCES vm (id) ON DELETE CASCADE,
      nic_index integer NOT NULL CHECK (nic_index >= 0),
      network_id uuid NOT NULL REFERENCES network (id) ON DELETE RESTRICT,
      ip inet NOT NULL CHECK (family(ip) = 4 AND masklen(ip) = 32),
      created_at timestamptz NOT NULL DEFAULT now(),
      updated_at timestamptz NOT NULL DEFAULT now(),
      PRIMARY KEY (vm_id, nic_index),
      CONSTRAINT vm_nic_address_unique UNIQUE (network_id, ip)
    )
  `,
  );
}

export async function down(db: Kysely<any>): Promise<void> {
  await runStatements(db, 'DROP TABLE vm_nic, network');
}
