import { type Command, Option } from 'commander';
import { ImageKind } from '../../contracts/image-api.js';
import { type ClientFlags, runClient, withClientFlags } from '../client-command.js';
import { ago, printJson, printTable } from '../output/print.js';

const KINDS = ImageKind.anyOf.map((literal) => literal.const);

export function registerImageList(image: Command): void {
  withClientFlags(
    image
      .command('list')
      .description('list the images the hosts hold: their ids go in kernel_image_id, initrd_image_id and rootfs_image_id')
      .addOption(new Option('--kind <kind>', 'only one kind').choices(KINDS))
      .option('--name <name>', 'only the images of this build'),
  ).action((flags: ClientFlags & { kind?: ImageKind; name?: string }) =>
    runClient(flags, async (client) => {
      const { items } = await client.listImages({ kind: flags.kind, name: flags.name });
      if (flags.json) return printJson(items);
      printTable(
        items.map((image) => ({
          name: image.name,
          kind: image.kind,
          size: `${(image.size_bytes / 2 ** 20).toFixed(1)} MiB`,
          hosts: String(image.host_ids.length),
          sha256: image.sha256.slice(0, 12),
          seen: ago(image.updated_at),
          id: image.id,
        })),
        'No images yet. Build one on a host with `nexus image build`; its agent reports it with its next heartbeat.',
      );
    }),
  );
}
