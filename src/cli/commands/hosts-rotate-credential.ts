import type { Command } from 'commander';
import { type ClientFlags, runClient, withClientFlags } from '../client-command.js';
import { printJson } from '../output/print.js';

export function registerHostsRotateCredential(hosts: Command): void {
  withClientFlags(
    hosts
      .command('rotate-credential')
      .description("replace a host's credential in place (its agent must be reachable)")
      .argument('<host-id>', 'the host, as `nexus hosts list --json` shows it'),
  ).action((hostId: string, flags: ClientFlags) =>
    runClient(flags, async (client) => {
      const host = await client.rotateHostCredential(hostId);
      if (flags.json) return printJson(host);
      process.stdout.write(`Rotated the credential of ${host.name} at ${host.credential_rotated_at}; the old one stops working within a minute.\n`);
    }),
  );
}
