import type { Command } from 'commander';
import { type ClientFlags, runClient, withClientFlags } from '../client-command.js';
import { printJson } from '../output/print.js';

type Flags = ClientFlags & { project?: string; wait?: string; keepSnapshots?: boolean };

/** `nexus vm start|stop|rm <vm>`: records the change; with --wait, answers once it is done. */
export function registerVmLifecycle(vm: Command): void {
  for (const [verb, description] of [
    ['start', 'start a VM'],
    ['stop', 'stop a VM (its guest is asked to power off first)'],
    ['rm', 'delete a VM: stopped, then removed from its host with its address freed'],
    ['hibernate', 'hibernate a VM: its memory saved on its host and its VMM ended, to wake where it was'],
    ['wake', 'wake a hibernated VM: restored in place, going on from where it was'],
  ] as const) {
    const command = vm
      .command(verb)
      .description(description)
      .argument('<vm>', 'its name or id')
      .option('--project <name>', 'the project a name is in')
      .option('--wait <seconds>', 'answer once it is done, at most this long');
    if (verb === 'rm') command.option('--keep-snapshots', "keep the VM's snapshots (deleted with it otherwise)");
    withClientFlags(command).action((nameOrId: string, flags: Flags) =>
      runClient(flags, async (client) => {
        const found = await client.findVm(nameOrId, flags.project);
        const wait = flags.wait === undefined ? undefined : Number(flags.wait);
        if (verb === 'rm') await client.deleteVm(found.id, wait, flags.keepSnapshots ?? false);
        else await client.vmAction(found.id, verb, wait);
        if (flags.json) return printJson({ id: found.id, action: verb === 'rm' ? 'delete' : verb, ok: true });
        const done = {
          start: wait ? 'running' : 'starting',
          stop: wait ? 'stopped' : 'stopping',
          rm: wait ? 'deleted' : 'being deleted',
          hibernate: wait ? 'hibernated' : 'hibernating',
          wake: wait ? 'running' : 'waking',
        }[verb];
        process.stdout.write(`VM ${found.name} is ${done}.\n`);
      }),
    );
  }
}
