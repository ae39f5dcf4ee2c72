import type { Command } from 'commander';
import { type ClientFlags, runClient, withClientFlags } from '../client-command.js';
import { printJson, printTable } from '../output/print.js';

export function registerNetworkList(network: Command): void {
  withClientFlags(
    network.command('ls').alias('list').description('list the networks the token may see').option('--project <name>', 'only this project'),
  ).action((flags: ClientFlags & { project?: string }) =>
    runClient(flags, async (client) => {
      const { items } = await client.listNetworks(flags.project);
      if (flags.json) return printJson(items);
      printTable(
        items.map((each) => ({
          name: each.name,
          project: each.project,
          cidr: each.cidr,
          gateway: each.gateway,
          egress: each.egress,
          vms: String(each.vm_count),
          id: each.id,
        })),
        'No networks yet. A project gets its default network with its first VM; `nexus network create` makes others.',
      );
    }),
  );
}
