import { Type, type Static } from 'typebox';
import { Egress, Ipv4Address, MAX_DNS_SERVERS, MAX_VM_PORTS, PortProtocol } from './network-api.js';
import { Int32, Int64, StrictObject, Text, Uuid } from './schema.js';

/** Drive ids name devices in QEMU and Firecracker alike: short, plain. */
export const DriveId = Text(32, { pattern: '^[a-z0-9][a-z0-9_-]{0,31}$', example: 'data', description: 'Device id, e.g. `rootfs`' });

export const RateLimit = StrictObject({
  bytes_per_second: Type.Optional(Int64({ description: '0 or absent: unlimited' })),
  ops_per_second: Type.Optional(Int64({ description: '0 or absent: unlimited' })),
});
export type RateLimit = Static<typeof RateLimit>;

export const DriveSpec = StrictObject({
  id: DriveId,
  path: Text(4096, { minLength: 1, description: 'Raw disk image on the host' }),
  read_only: Type.Optional(Type.Boolean({ default: false })),
  /** The root drive comes first on the bus, so it is /dev/vda in the guest. */
  is_root: Type.Optional(Type.Boolean({ default: false })),
  rate_limit: Type.Optional(RateLimit),
});
export type DriveSpec = Static<typeof DriveSpec>;

/** The network a NIC is on, as its host needs it: to plumb the NIC, route its address, and apply the network's rules. */
export const NicNetwork = StrictObject({
  id: Uuid,
  cidr: Text(18, { pattern: '^[0-9.]{7,15}/[0-9]{1,2}$', example: '10.220.8.0/24', description: 'The block; its first address is the gateway' }),
  egress: Egress,
  dns: Type.Array(Ipv4Address, { maxItems: MAX_DNS_SERVERS }),
});
export type NicNetwork = Static<typeof NicNetwork>;

/** A guest port the host publishes: DNAT from `host_port` on the host's addresses to the NIC's address. */
export const NicPort = StrictObject({
  host_port: Int32({ minimum: 1, maximum: 65535 }),
  guest_port: Int32({ minimum: 1, maximum: 65535 }),
  protocol: PortProtocol,
});
export type NicPort = Static<typeof NicPort>;

export const NicSpec = StrictObject({
  tap: Type.Optional(Text(12, { pattern: '^tap-[0-9a-f]{8}$', example: 'tap-0a1b2c3d', description: 'Default: derived from the VM id' })),
  mac: Type.Optional(Text(17, { pattern: '^[0-9a-f]{2}(:[0-9a-f]{2}){5}$', example: '06:0a:1b:2c:3d:4e', description: 'Default: derived from the VM id' })),
  /** With `ip`: the NIC is on this network at that address (the manager's IPAM). Without: on the host's flat bridge, unaddressed. */
  network: Type.Optional(NicNetwork),
  ip: Type.Optional(Ipv4Address),
  /** Only on a network: published on the host, to `ip`. */
  ports: Type.Optional(Type.Array(NicPort, { maxItems: MAX_VM_PORTS })),
  /**
   * The address the guest itself holds, when it is not `ip`: a VM restored from another VM's
   * snapshot keeps that VM's address in its memory, and its namespace translates. The agent sets
   * it; it lasts until the VM next boots afresh.
   */
  guest_ip: Type.Optional(Ipv4Address),
});
export type NicSpec = Static<typeof NicSpec>;

export const VmmName = Type.Union([Type.Literal('qemu'), Type.Literal('firecracker')]);
export type VmmName = Static<typeof VmmName>;

/**
 * What the manager asks an agent to run: VMM-neutral. The agent's driver turns it into
 * Firecracker API calls or QEMU arguments.
 */
export const MachineSpec = StrictObject({
  vcpu: Int32({ minimum: 1, maximum: 32 }),
  mem_mib: Int32({ minimum: 64, maximum: 1024 * 1024 }),
  kernel: StrictObject({
    path: Text(4096, { minLength: 1 }),
    cmdline: Text(4096, { description: 'The whole kernel command line' }),
  }),
  initrd: Type.Optional(StrictObject({ path: Text(4096, { minLength: 1 }) })),
  drives: Type.Array(DriveSpec, { maxItems: 8, default: [] }),
  nics: Type.Array(NicSpec, { maxItems: 1, default: [] }),
  driver: Type.Optional(VmmName),
  expires_at: Type.Optional(Type.String({ format: 'date-time', description: 'The agent deletes the VM at this time, manager or not' })),
});
export type MachineSpec = Static<typeof MachineSpec>;
