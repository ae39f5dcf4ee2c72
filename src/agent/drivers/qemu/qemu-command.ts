import type { MachineSpec } from '../../../contracts/machine-spec.js';
import { macOf, tapNameOf, tapPlacementOf } from '../../../contracts/host-names.js';
import type { VmLayout } from '../../../contracts/vm-layout.js';

export interface QemuLaunchOptions {
  /** KVM when a vCPU really runs on this host, else TCG emulation. */
  accel: 'kvm' | 'tcg';
  /**
   * The host TSC rate. Under TCG the guest must be told it (`tsc_early_khz`), or its PIT
   * calibration fails on emulation jitter and a quarter of boots hang for ever.
   */
  tscKhz: number | undefined;
  /** Restore: load this migration stream instead of booting. */
  incomingFile?: string;
  /** Start with the vCPUs stopped (`-S`): the process is up, the guest has not run. */
  paused?: boolean;
}

/** QEMU parses `a=b,c=d`: a comma inside a value is written twice. */
function value(text: string): string {
  return text.replaceAll(',', ',,');
}

/** The kernel command line, with the TSC hint added under TCG unless the caller set one. */
export function effectiveCmdline(cmdline: string, options: Pick<QemuLaunchOptions, 'accel' | 'tscKhz'>): string {
  if (options.accel !== 'tcg' || options.tscKhz === undefined || /\btsc_early_khz=/.test(cmdline)) return cmdline;
  return `${cmdline} tsc_early_khz=${options.tscKhz} tsc=reliable`.trim();
}

/**
 * The argv for `qemu-system-x86_64 -M microvm` running this spec. ACPI stays on (the default):
 * it describes the virtio-mmio devices to the guest and delivers the power button.
 */
export function qemuArgs(vm: VmLayout, spec: MachineSpec, options: QemuLaunchOptions): string[] {
  const machine = options.accel === 'kvm' ? 'microvm,x-option-roms=off,isa-serial=on,rtc=off' : 'microvm,x-option-roms=off,isa-serial=on';
  const args = [
    '-name',
    value(vm.id),
    '-M',
    machine,
    '-accel',
    options.accel,
    '-cpu',
    options.accel === 'kvm' ? 'host' : 'max',
    '-m',
    `${spec.mem_mib}M`,
    '-smp',
    String(spec.vcpu),
    '-nodefaults',
    '-no-user-config',
    '-display',
    'none',
    '-no-reboot',
    '-kernel',
    spec.kernel.path,
    '-append',
    effectiveCmdline(spec.kernel.cmdline, options),
    // Appended (not truncated and rewritten from offset 0), so the agent can cap the log's size.
    '-chardev',
    `file,id=console,path=${value(vm.consoleLog)},append=on`,
    '-serial',
    'chardev:console',
    '-qmp',
    `unix:${value(vm.qmpSocket)},server=on,wait=off`,
  ];
  if (spec.initrd) args.push('-initrd', spec.initrd.path);
  // The root drive first, so the guest sees it as /dev/vda.
  const drives = [...spec.drives].sort((a, b) => Number(b.is_root ?? false) - Number(a.is_root ?? false));
  for (const drive of drives) {
    const readOnly = drive.read_only ? ',readonly=on' : '';
    const limit = drive.rate_limit;
    const throttle =
      (limit?.bytes_per_second ? `,throttling.bps-total=${limit.bytes_per_second}` : '') +
      (limit?.ops_per_second ? `,throttling.iops-total=${limit.ops_per_second}` : '');
    args.push('-drive', `id=${drive.id},file=${value(drive.path)},format=raw,if=none${readOnly}${throttle}`);
    args.push('-device', `virtio-blk-device,drive=${drive.id},id=${drive.id}`);
  }
  spec.nics.forEach((nic, index) => {
    // A NIC on a network: `tap0` in the VM's namespace, where the driver starts QEMU.
    const tap = nic.network ? tapPlacementOf(vm.id, true).tap : (nic.tap ?? tapNameOf(vm.id));
    args.push('-netdev', `tap,id=net${index},ifname=${tap},script=no,downscript=no`);
    args.push('-device', `virtio-net-device,netdev=net${index},mac=${nic.mac ?? macOf(vm.id)}`);
  });
  if (options.paused) args.push('-S');
  if (options.incomingFile) args.push('-incoming', `exec:cat ${shellQuote(options.incomingFile)}`);
  return args;
}

/** A path as one /bin/sh word: QEMU runs `exec:` migration URIs through the shell. */
export function shellQuote(path: string): string {
  return `'${path.replaceAll("'", "'\\''")}'`;
}
