import type { Command } from 'commander';
import { type ClientFlags, runClient, withClientFlags } from '../client-command.js';
import { printJson } from '../output/print.js';

export function registerNetworkRemove(network: Command): void {
  withClientFlags(
    network
      .command('rm')
      .alias('remove')
      .description('delete a network no VM has an address in')
      .argument('<network>', 'its name or id')
      .option('--project <name>', 'the project a name is in'),
  ).action((nameOrId: string, flags: ClientFlags & { project?: string }) =>
    runClient(flags, async (client) => {
      const found = await client.findNetwork(nameOrId, flags.project);
      await client.deleteNetwork(found.id);
      if (flags.json) return printJson({ id: found.id, deleted: true });
      process.stdout.write(`Deleted network ${found.name} (${found.cidr}).\n`);
    }),
  );
}
