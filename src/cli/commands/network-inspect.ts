import type { Command } from 'commander';
import { type ClientFlags, runClient, withClientFlags } from '../client-command.js';
import { printFields, printJson } from '../output/print.js';

export function registerNetworkInspect(network: Command): void {
  withClientFlags(
    network.command('inspect').description('show one network').argument('<network>', 'its name or id').option('--project <name>', 'the project a name is in'),
  ).action((nameOrId: string, flags: ClientFlags & { project?: string }) =>
    runClient(flags, async (client) => {
      const found = await client.findNetwork(nameOrId, flags.project);
      if (flags.json) return printJson(found);
      const rows: Array<[string, string]> = [
        ['name', found.name],
        ['id', found.id],
        ['project', found.project],
        ['cidr', found.cidr],
        ['gateway', found.gateway],
        ['egress', found.egress],
        ['dns', found.dns.join(', ') || '-'],
        ['vms', String(found.vm_count)],
        ['created', found.created_at],
      ];
      printFields(rows);
    }),
  );
}
