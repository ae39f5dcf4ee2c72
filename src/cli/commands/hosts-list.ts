import type { Command } from 'commander';
import { type ClientFlags, runClient, withClientFlags } from '../client-command.js';
import { ago, printJson, printTable } from '../output/print.js';

export function registerHostsList(hosts: Command): void {
  withClientFlags(hosts.command('list').description('list hosts and whether they are ready')).action((flags: ClientFlags) =>
    runClient(flags, async (client) => {
      const { items } = await client.listHosts();
      if (flags.json) return printJson(items);
      printTable(
        items.map((host) => ({
          name: host.name,
          status: host.status,
          address: host.address,
          vcpus: String(host.capacity.vcpus),
          memory: `${host.capacity.memory_available_mib}/${host.capacity.memory_mib} MiB`,
          kvm: host.capacity.kvm.usable ? 'yes' : 'no',
          drivers:
            host.capacity.drivers
              .filter((driver) => driver.available)
              .map((driver) => driver.name)
              .join(',') || '-',
          'last seen': ago(host.last_seen_at),
          id: host.id,
        })),
        'No hosts yet. Mint a join token with `nexus hosts join-token` and start an agent with it.',
      );
    }),
  );
}
