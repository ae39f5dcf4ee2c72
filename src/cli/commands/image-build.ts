import type { Command } from 'commander';
import { resolveAgentConfig } from '../launcher.js';
import { DEFAULT_IMAGE_NAME, buildGuestImage } from '../../images/guest-image-builder.js';
import { printJson } from '../output/print.js';

interface ImageBuildFlags {
  runDir?: string;
  force?: boolean;
  json?: boolean;
}

/** `nexus image build [name]`: the guest image, built from Debian packages into `<run-dir>/images/<name>/`. */
export function registerImageBuild(image: Command): void {
  image
    .command('build')
    .description('build a guest image (Debian kernel, busybox initramfs, ext4 rootfs) into <run-dir>/images/<name>; reused when up to date')
    .argument('[name]', 'image name', DEFAULT_IMAGE_NAME)
    .option('--run-dir <dir>', "the agent's run dir (env FC_RUN_DIR, default /srv/fc)")
    .option('--force', 'build again even when an up-to-date image is there')
    .option('--json', 'print the manifest as JSON')
    .action(async (name: string, flags: ImageBuildFlags) => {
      const config = resolveAgentConfig({ runDir: flags.runDir }, process.env);
      const built = await buildGuestImage({
        runDir: config.runDir,
        name,
        force: flags.force ?? false,
        onProgress: (line) => process.stderr.write(`nexus: ${line}\n`),
      });
      if (flags.json) return printJson(built.manifest);
      const { files } = built.manifest;
      const mib = (bytes: number) => `${(bytes / 2 ** 20).toFixed(1)} MiB`;
      process.stdout.write(
        [
          `image ${built.manifest.name} ${built.reused ? '(reused)' : '(built)'} in ${built.dir}`,
          `  kernel   ${built.kernelPath}  ${mib(files.kernel.size_bytes)}  ${built.manifest.kernel_package}`,
          `  initrd   ${built.initrdPath}  ${mib(files.initrd.size_bytes)}  ${built.manifest.modules.length} modules`,
          `  rootfs   ${built.rootfsPath}  ${mib(files.rootfs.size_bytes)}  (copy it per VM)`,
          `  cmdline  ${built.manifest.boot_args} tsc_early_khz=<host TSC kHz> tsc=reliable [nexus.ip=<addr/prefix> nexus.gw=<ip>]`,
          '',
        ].join('\n'),
      );
    });
}
