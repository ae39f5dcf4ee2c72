import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import type { MachineSpec } from '../../../src/contracts/machine-spec.js';
import { vmLayout } from '../../../src/contracts/vm-layout.js';
import { effectiveCmdline, qemuArgs } from '../../../src/agent/drivers/qemu/qemu-command.js';

const ID = '3f2a91c4-7b1e-4d2a-9c3b-0123456789ab';
const vm = vmLayout('/srv/fc', ID);
const spec: MachineSpec = {
  vcpu: 2,
  mem_mib: 256,
  kernel: { path: '/srv/fc/images/default/vmlinux', cmdline: 'console=ttyS0 root=/dev/vda rw' },
  initrd: { path: '/srv/fc/images/default/initrd.img' },
  drives: [
    { id: 'data', path: '/srv/fc/vms/x/data,1.img', read_only: true },
    { id: 'rootfs', path: '/srv/fc/vms/x/rootfs.img', is_root: true, rate_limit: { bytes_per_second: 1048576, ops_per_second: 100 } },
  ],
  nics: [{}],
};

function after(args: string[], flag: string): string[] {
  return args.flatMap((arg, i) => (arg === flag ? [args[i + 1] ?? ''] : []));
}

describe('qemuArgs', () => {
  const tcg = qemuArgs(vm, spec, { accel: 'tcg', tscKhz: 2_600_000 });

  it('runs microvm with TCG and a CPU it can emulate when KVM does not work', () => {
    assert.deepEqual(after(tcg, '-M'), ['microvm,x-option-roms=off,isa-serial=on']);
    assert.deepEqual(after(tcg, '-accel'), ['tcg']);
    assert.deepEqual(after(tcg, '-cpu'), ['max']);
    assert.deepEqual(after(tcg, '-m'), ['256M']);
    assert.deepEqual(after(tcg, '-smp'), ['2']);
    assert.ok(tcg.includes('-no-reboot') && tcg.includes('-nodefaults'));
  });

  it('tells a TCG guest the host TSC rate, unless the cmdline already does', () => {
    assert.deepEqual(after(tcg, '-append'), ['console=ttyS0 root=/dev/vda rw tsc_early_khz=2600000 tsc=reliable']);
    assert.equal(effectiveCmdline('x tsc_early_khz=1', { accel: 'tcg', tscKhz: 5 }), 'x tsc_early_khz=1');
    assert.equal(effectiveCmdline('x', { accel: 'kvm', tscKhz: 5 }), 'x');
  });

  it('puts the root drive first (so it is /dev/vda), escapes commas, and marks read-only drives', () => {
    const drives = after(tcg, '-drive');
    assert.equal(drives[0], 'id=rootfs,file=/srv/fc/vms/x/rootfs.img,format=raw,if=none,throttling.bps-total=1048576,throttling.iops-total=100');
    assert.equal(drives[1], 'id=data,file=/srv/fc/vms/x/data,,1.img,format=raw,if=none,readonly=on');
  });

  it('attaches the NIC to the TAP named from the VM id, with the MAC derived from it', () => {
    assert.deepEqual(after(tcg, '-netdev'), ['tap,id=net0,ifname=tap-3f2a91c4,script=no,downscript=no']);
    assert.deepEqual(after(tcg, '-device').at(-1), 'virtio-net-device,netdev=net0,mac=06:3f:2a:91:c4:7b');
  });

  it('puts the console and QMP in the VM folder', () => {
    assert.deepEqual(after(tcg, '-chardev'), [`file,id=console,path=${vm.consoleLog},append=on`]);
    assert.deepEqual(after(tcg, '-serial'), ['chardev:console']);
    assert.deepEqual(after(tcg, '-qmp'), [`unix:${vm.qmpSocket},server=on,wait=off`]);
  });

  it('uses KVM with the host CPU and no RTC when KVM works, and loads a snapshot stream on restore', () => {
    const kvm = qemuArgs(vm, spec, { accel: 'kvm', tscKhz: undefined, incomingFile: "/srv/fc/it's.bin" });
    assert.deepEqual(after(kvm, '-cpu'), ['host']);
    assert.match(after(kvm, '-M')[0] ?? '', /rtc=off/);
    assert.deepEqual(after(kvm, '-incoming'), ["exec:cat '/srv/fc/it'\\''s.bin'"]);
    assert.ok(!kvm.includes('-S'));
  });

  it('starts with the vCPUs stopped for a spawn', () => {
    assert.ok(qemuArgs(vm, spec, { accel: 'tcg', tscKhz: undefined, paused: true }).includes('-S'));
  });
});
