import type { Command } from 'commander';
import { type ClientFlags, runClient, withClientFlags } from '../client-command.js';
import { printFields, printJson } from '../output/print.js';

export function registerVmInspect(vm: Command): void {
  withClientFlags(
    vm.command('inspect').description('show one VM').argument('<vm>', 'its name or id').option('--project <name>', 'the project a name is in'),
  ).action((nameOrId: string, flags: ClientFlags & { project?: string }) =>
    runClient(flags, async (client) => {
      const found = await client.findVm(nameOrId, flags.project);
      if (flags.json) return printJson(found);
      const rows: Array<[string, string]> = [
        ['name', found.name],
        ['id', found.id],
        ['project', found.project],
        ['state', `${found.state} (desired ${found.desired_state})`],
        ['host', found.host_id ?? '-'],
        ['size', `${found.vcpu} vCPU, ${found.mem_mib} MiB`],
        ...found.addresses.map((address): [string, string] => [
          'address',
          `${address.ip}/${address.prefix_length} on ${address.network} via ${address.gateway} (MAC ${address.mac})`,
        ]),
        ...found.ports.map((port): [string, string] => [
          'port',
          `${port.host_port}/${port.protocol} -> ${port.guest_port}${port.reachable_at ? ` (at ${port.reachable_at})` : ' (not placed yet)'}`,
        ]),
        ['boot args', found.boot_args],
        ['driver', found.driver ?? '-'],
        ['console', found.console_log ?? '-'],
        ['expires', found.expires_at ?? '-'],
        ['error', found.last_error ? `${found.last_error.reason}: ${found.last_error.message}` : '-'],
        ['created', found.created_at],
      ];
      printFields(rows);
    }),
  );
}
