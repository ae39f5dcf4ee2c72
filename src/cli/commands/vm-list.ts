import type { Command } from 'commander';
import { type ClientFlags, runClient, withClientFlags } from '../client-command.js';
import { ago, printJson, printTable } from '../output/print.js';

export function registerVmList(vm: Command): void {
  withClientFlags(vm.command('ls').alias('list').description('list the VMs the token may see, by name')).action((flags: ClientFlags) =>
    runClient(flags, async (client) => {
      const vms = await client.listVms();
      if (flags.json) return printJson(vms);
      printTable(
        vms.map((each) => ({
          name: each.name,
          state: each.state,
          desired: each.desired_state,
          address: each.addresses.map((address) => address.ip).join(',') || '-',
          network: each.addresses.map((address) => address.network).join(',') || '-',
          vcpu: String(each.vcpu),
          mem: `${each.mem_mib} MiB`,
          project: each.project,
          created: ago(each.created_at),
          id: each.id,
        })),
        'No VMs yet. `nexus vm create <name>` makes one from the default image.',
      );
    }),
  );
}
