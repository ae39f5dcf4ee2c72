import type { Command } from 'commander';
import type { Snapshot } from '../../contracts/snapshot-api.js';
import { type ClientFlags, runClient, withClientFlags } from '../client-command.js';
import { ago, bytes, printFields, printJson, printTable } from '../output/print.js';

type Flags = ClientFlags & { project?: string };

/** `nexus snapshot create|ls|inspect|instantiate|rm`: snapshots of VMs, kept on their hosts. */
export function registerSnapshotCommands(snapshot: Command): void {
  withClientFlags(
    snapshot
      .command('create')
      .description('snapshot a running or paused VM: memory, device state and a copy of its writable disks, of one instant')
      .argument('<vm>', 'its name or id')
      .option('--name <name>', "unique in the project (default: the VM's name and the snapshot id's first 8 characters)")
      .option('--stop', 'stop the VM once it is captured (it runs on otherwise)')
      .option('--project <name>', 'the project a VM name is in'),
  ).action((vmNameOrId: string, flags: Flags & { name?: string; stop?: boolean }) =>
    runClient(flags, async (client) => {
      const vm = await client.findVm(vmNameOrId, flags.project);
      const made = await client.createSnapshot(vm.id, { ...(flags.name ? { name: flags.name } : {}), ...(flags.stop ? { resume: false } : {}) });
      if (flags.json) return printJson(made);
      process.stdout.write(
        `Snapshot ${made.name} of VM ${vm.name} taken (${bytes(made.size_bytes)}); the VM ${flags.stop ? 'is stopped' : 'runs on'}: ${made.id}\n`,
      );
    }),
  );

  withClientFlags(
    snapshot
      .command('ls')
      .alias('list')
      .description('list the snapshots the token may see, newest first')
      .option('--vm <vm>', "only this VM's (its name or id)")
      .option('--project <name>', 'only this project'),
  ).action((flags: Flags & { vm?: string }) =>
    runClient(flags, async (client) => {
      const vmId = flags.vm === undefined ? undefined : (await client.findVm(flags.vm, flags.project)).id;
      const { items } = await client.listSnapshots({ project: flags.project, vmId });
      if (flags.json) return printJson(items);
      printTable(
        items.map((each) => ({
          name: each.name,
          project: each.project,
          vm: each.vm_name,
          status: each.status,
          size: bytes(each.size_bytes),
          created: ago(each.created_at),
          id: each.id,
        })),
        'No snapshots yet. `nexus snapshot create <vm>` takes one.',
      );
    }),
  );

  withClientFlags(
    snapshot
      .command('inspect')
      .description('show one snapshot and its files')
      .argument('<snapshot>', 'its name or id')
      .option('--project <name>', 'the project a name is in'),
  ).action((nameOrId: string, flags: Flags) =>
    runClient(flags, async (client) => {
      const found = await client.findSnapshot(nameOrId, flags.project);
      if (flags.json) return printJson(found);
      printFields(fieldsOf(found));
    }),
  );

  withClientFlags(
    snapshot
      .command('instantiate')
      .description("make a new VM from a snapshot: restored on the snapshot's host, going on from where its VM was, at an address of its own")
      .argument('<snapshot>', 'its name or id')
      .requiredOption('--name <name>', 'the new VM’s name')
      .option('--project <name>', 'the project a snapshot name is in')
      .option('--wait <seconds>', 'answer once the VM runs, at most this long', '60'),
  ).action((nameOrId: string, flags: Flags & { name: string; wait: string }) =>
    runClient(flags, async (client) => {
      const found = await client.findSnapshot(nameOrId, flags.project);
      const vm = await client.instantiateSnapshot(found.id, { name: flags.name }, Number(flags.wait) || undefined);
      if (flags.json) return printJson(vm);
      const address = vm.addresses[0] ? ` at ${vm.addresses[0].ip}` : '';
      process.stdout.write(`VM ${vm.name} made from snapshot ${found.name} is ${vm.state}${address}: ${vm.id}\n`);
    }),
  );

  withClientFlags(
    snapshot
      .command('rm')
      .alias('remove')
      .description('delete a snapshot and its files on its host')
      .argument('<snapshot>', 'its name or id')
      .option('--project <name>', 'the project a name is in'),
  ).action((nameOrId: string, flags: Flags) =>
    runClient(flags, async (client) => {
      const found = await client.findSnapshot(nameOrId, flags.project);
      await client.deleteSnapshot(found.id);
      if (flags.json) return printJson({ id: found.id, deleted: true });
      process.stdout.write(`Deleted snapshot ${found.name}.\n`);
    }),
  );
}

function fieldsOf(snapshot: Snapshot): Array<[string, string]> {
  return [
    ['name', snapshot.name],
    ['id', snapshot.id],
    ['project', snapshot.project],
    ['vm', `${snapshot.vm_name} (${snapshot.vm_id})`],
    ['host', snapshot.host_id],
    ['status', snapshot.status],
    ['driver', snapshot.driver ?? '-'],
    ['machine', `${snapshot.vcpu} vCPU, ${snapshot.mem_mib} MiB`],
    ['size', bytes(snapshot.size_bytes)],
    ...snapshot.files.map((file): [string, string] => [
      file.kind === 'drive' ? `drive ${file.drive_id ?? ''}` : file.kind,
      `${file.path} (${bytes(file.size_bytes)})`,
    ]),
    ['created', snapshot.created_at],
  ];
}
