import type { Command } from 'commander';
import type { CreateVmRequest, Vm } from '../../contracts/vm-api.js';
import { NexusError } from '../../kit/nexus-error.js';
import type { ManagerClient } from '../client/manager-client.js';
import { type ClientFlags, runClient, withClientFlags } from '../client-command.js';
import { printJson } from '../output/print.js';

interface Flags extends ClientFlags {
  image: string;
  vcpu: string;
  mem: string;
  network?: string[];
  publish?: string[];
  nic: boolean;
  bootArgs?: string;
  project?: string;
  stopped?: boolean;
  ttl?: string;
  wait?: string;
}

export function registerVmCreate(vm: Command): void {
  withClientFlags(
    vm
      .command('create')
      .description('create a VM from an image (it starts unless --stopped)')
      .argument('<name>', 'unique in its project; DNS-label style')
      .option('--image <name>', 'the image build its kernel, initrd and rootfs come from (`nexus image list`)', 'default')
      .option('--vcpu <n>', 'vCPUs', '1')
      .option('--mem <mib>', 'memory in MiB', '128')
      .option('--network <network[:ip]>', "a NIC on this network (name or id), at this address if given; default: the project's default network", collect)
      .option('--publish <host:guest[/udp]>', "publish a guest port on its host's addresses (repeatable; tcp unless /udp)", collect)
      .option('--no-nic', 'no NIC at all')
      .option('--boot-args <args>', "the whole kernel command line (default: the image's)")
      .option('--project <name>', "default: the token's project")
      .option('--stopped', 'create it stopped')
      .option('--ttl <seconds>', 'delete it this long after creation, manager or not')
      .option('--wait <seconds>', 'answer once it runs (or is configured, with --stopped), at most this long'),
  ).action((name: string, flags: Flags) =>
    runClient(flags, async (client) => {
      const request: CreateVmRequest = {
        name,
        vcpu: wholeNumber(flags.vcpu, '--vcpu'),
        mem_mib: wholeNumber(flags.mem, '--mem'),
        ...(await imageIdsOf(client, flags.image)),
        ...(flags.nic ? {} : { nic: false }),
        ...(flags.network ? { networks: flags.network.map(nicOf) } : {}),
        ...(flags.publish ? { ports: flags.publish.map(portOf) } : {}),
        ...(flags.bootArgs ? { boot_args: flags.bootArgs } : {}),
        ...(flags.project ? { project: flags.project } : {}),
        ...(flags.stopped ? { desired_state: 'stopped' as const } : {}),
        ...(flags.ttl ? { ttl_seconds: wholeNumber(flags.ttl, '--ttl') } : {}),
      };
      const made = await client.createVm(request, flags.wait ? wholeNumber(flags.wait, '--wait') : undefined);
      if (flags.json) return printJson(made);
      process.stdout.write(`Created VM ${made.name} (${made.state}) ${describeAddresses(made)}: ${made.id}\n`);
      for (const port of made.ports) {
        process.stdout.write(`  port ${port.host_port}/${port.protocol} -> ${port.guest_port}${port.reachable_at ? ` at ${port.reachable_at}` : ''}\n`);
      }
    }),
  );
}

/** Where a VM is reachable, for people: `at 10.220.0.2 on default`, or `without a network`. */
export function describeAddresses(vm: Vm): string {
  if (vm.addresses.length === 0) return 'without a network';
  return vm.addresses.map((address) => `at ${address.ip} on ${address.network}`).join(', ');
}

function collect(value: string, previous: string[] = []): string[] {
  return [...previous, value];
}

/** `backend` or `backend:10.220.8.7`. */
function nicOf(text: string): { network: string; ip?: string } {
  const [network, ip, ...rest] = text.split(':');
  if (!network || rest.length > 0)
    throw new NexusError('validation_failed', `--network takes a network and an optional address, like backend:10.220.8.7 (got '${text}')`);
  return ip ? { network, ip } : { network };
}

/** `8080:80` or `5353:53/udp`. */
function portOf(text: string): { host_port: number; guest_port: number; protocol: 'tcp' | 'udp' } {
  const match = /^(\d{1,5}):(\d{1,5})(?:\/(tcp|udp))?$/.exec(text);
  if (!match) throw new NexusError('validation_failed', `--publish takes host:guest with an optional /tcp or /udp, like 8080:80 (got '${text}')`);
  return { host_port: Number(match[1]), guest_port: Number(match[2]), protocol: (match[3] ?? 'tcp') as 'tcp' | 'udp' };
}

function wholeNumber(text: string, flag: string): number {
  const value = Number(text);
  if (!Number.isInteger(value) || value <= 0) throw new NexusError('validation_failed', `${flag} takes a positive whole number (got '${text}')`);
  return value;
}

/** The newest kernel, initrd and rootfs of an image build. */
async function imageIdsOf(client: ManagerClient, name: string): Promise<Pick<CreateVmRequest, 'kernel_image_id' | 'initrd_image_id' | 'rootfs_image_id'>> {
  const { items } = await client.listImages({ name });
  const newest = (kind: string) => items.find((image) => image.kind === kind)?.id;
  const kernel = newest('kernel');
  const rootfs = newest('rootfs');
  if (!kernel || !rootfs) {
    throw new NexusError('not_found', `no image ${name} with a kernel and a rootfs on any host`, {
      suggestion: '`nexus image list` shows the images the hosts hold.',
    });
  }
  const initrd = newest('initrd');
  return { kernel_image_id: kernel, rootfs_image_id: rootfs, ...(initrd ? { initrd_image_id: initrd } : {}) };
}
