import type { Command } from 'commander';
import { type ClientFlags, runClient, withClientFlags } from '../client-command.js';
import { printJson } from '../output/print.js';

interface Flags extends ClientFlags {
  cidr: string;
  egress?: 'allow' | 'deny';
  dns?: string;
  project?: string;
}

export function registerNetworkCreate(network: Command): void {
  withClientFlags(
    network
      .command('create')
      .description('create a network: a block VMs get addresses from, isolated from other networks')
      .argument('<name>', 'unique in its project; DNS-label style')
      .requiredOption('--cidr <block>', 'its block, /16 to /30, overlapping no other network (e.g. 10.220.8.0/24)')
      .option('--egress <allow|deny>', 'allow: traffic may leave (NAT); deny: only replies leave', 'allow')
      .option('--dns <servers>', 'DNS servers handed to guests, comma-separated')
      .option('--project <name>', "default: the token's project"),
  ).action((name: string, flags: Flags) =>
    runClient(flags, async (client) => {
      const made = await client.createNetwork({
        name,
        cidr: flags.cidr,
        ...(flags.egress ? { egress: flags.egress } : {}),
        ...(flags.dns ? { dns: flags.dns.split(',').map((server) => server.trim()) } : {}),
        ...(flags.project ? { project: flags.project } : {}),
      });
      if (flags.json) return printJson(made);
      process.stdout.write(
        `Created network ${made.name} (${made.cidr}, gateway ${made.gateway}, egress ${made.egress}) in project ${made.project}: ${made.id}\n`,
      );
    }),
  );
}
