import { Type, type Static } from 'typebox';
import { DNS_LABEL_PATTERN, Int32, ProjectField, StrictObject, Text, Timestamp, Uuid } from './schema.js';

const DOTTED_QUAD = '(25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9]?[0-9])(\\.(25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9]?[0-9])){3}';

/** An IPv4 address as four decimal parts. */
export const Ipv4Address = Text(15, { pattern: `^${DOTTED_QUAD}$`, example: '10.220.0.2' });

/** Network names: DNS-label style, like VMs' and projects'. */
const NetworkName = Text(63, {
  minLength: 1,
  pattern: DNS_LABEL_PATTERN,
  example: 'backend',
  description: 'Unique per project; DNS-label style',
});

/** What may leave a network: `allow` everything (NAT through its host), `deny` all but replies to traffic that came in. */
export const Egress = Type.Union([Type.Literal('allow'), Type.Literal('deny')]);
export type Egress = Static<typeof Egress>;

/** At most this many DNS servers per network: what a guest's resolv.conf honours. */
export const MAX_DNS_SERVERS = 3;
const DnsServers = Type.Array(Ipv4Address, { maxItems: MAX_DNS_SERVERS, description: 'Handed to guests at boot and by DHCP; empty: none' });

export const CreateNetworkRequest = StrictObject({
  name: NetworkName,
  project: Type.Optional(ProjectField),
  cidr: Text(18, {
    minLength: 9,
    pattern: `^${DOTTED_QUAD}/[0-9]{1,2}$`,
    example: '10.220.8.0/24',
    description: 'The network block, /16 to /30; no two networks of the fleet may overlap. Its first address is the gateway.',
  }),
  egress: Type.Optional(Egress),
  dns: Type.Optional(DnsServers),
});
export type CreateNetworkRequest = Static<typeof CreateNetworkRequest>;

/** What may change on a network: not its block, which its VMs' addresses are in. */
export const UpdateNetworkRequest = StrictObject({
  egress: Type.Optional(Egress),
  dns: Type.Optional(DnsServers),
});
export type UpdateNetworkRequest = Static<typeof UpdateNetworkRequest>;

export const Network = Type.Object(
  {
    id: Uuid,
    name: Type.String(),
    project: Type.String(),
    cidr: Type.String({ description: 'e.g. 10.220.8.0/24' }),
    gateway: Type.String({ description: "The block's first address: the guests' default route, on their host" }),
    egress: Egress,
    dns: Type.Array(Type.String()),
    vm_count: Type.Integer({ description: 'VMs with an address in it' }),
    resource_version: Type.Integer(),
    created_at: Timestamp,
    updated_at: Timestamp,
  },
  { additionalProperties: false },
);
export type Network = Static<typeof Network>;

export const NetworkList = Type.Object({ items: Type.Array(Network) }, { additionalProperties: false });
export type NetworkList = Static<typeof NetworkList>;
export const NetworkListQuery = StrictObject({
  project: Type.Optional(ProjectField),
});
export type NetworkListQuery = Static<typeof NetworkListQuery>;
export const NetworkIdParams = StrictObject({ id: Uuid });

/** At most this many NICs per VM. */
export const MAX_VM_NICS = 1;

/** One NIC of a new VM: the network it is on (name in the VM's project, or id) and, optionally, the address it asks for. */
export const VmNetworkRequest = StrictObject({
  network: Text(63, { minLength: 1, description: "The network's name in the VM's project, or its id" }),
  ip: Type.Optional(Ipv4Address),
});
export type VmNetworkRequest = Static<typeof VmNetworkRequest>;

/** Where a VM is reachable: one NIC's address, recorded by the manager's IPAM. */
export const VmAddress = Type.Object(
  {
    network_id: Uuid,
    network: Type.String({ description: "The network's name" }),
    ip: Type.String(),
    prefix_length: Type.Integer(),
    gateway: Type.String(),
    mac: Type.String(),
  },
  { additionalProperties: false },
);
export type VmAddress = Static<typeof VmAddress>;

export const VmNetworks = Type.Array(VmNetworkRequest, {
  maxItems: MAX_VM_NICS,
  description: "The VM's NICs, each on a network with an address from it. Default: one NIC on the project's default network (none with nic: false).",
});

/** At most this many published ports per VM. */
export const MAX_VM_PORTS = 16;

/** Host ports below this one are privileged: only an admin may publish them. */
export const FIRST_UNPRIVILEGED_PORT = 1024;

export const PortProtocol = Type.Union([Type.Literal('tcp'), Type.Literal('udp')]);

/** A guest port published on its host: traffic to `host_port` on the host's addresses reaches `guest_port` on the guest. */
export const PublishedPort = StrictObject({
  host_port: Int32({ minimum: 1, maximum: 65535, description: `On the VM's host; below ${FIRST_UNPRIVILEGED_PORT} only for admins` }),
  guest_port: Int32({ minimum: 1, maximum: 65535 }),
  protocol: Type.Optional(Type.Union([Type.Literal('tcp'), Type.Literal('udp')], { default: 'tcp', description: 'Default: tcp' })),
});
export type PublishedPort = Static<typeof PublishedPort>;

export const PublishedPorts = Type.Array(PublishedPort, {
  maxItems: MAX_VM_PORTS,
  description: `Guest ports published on the VM's host (DNAT to its address): at most ${MAX_VM_PORTS}, each host port and protocol once. Needs a NIC.`,
});

/** A published port as the VM answer shows it: where it is reachable. */
export const VmPort = Type.Object(
  {
    host_port: Type.Integer(),
    guest_port: Type.Integer(),
    protocol: PortProtocol,
    reachable_at: Type.Union([Type.String(), Type.Null()], { description: '`<host address>:<host_port>` once the VM is placed; null before' }),
  },
  { additionalProperties: false },
);
export type VmPort = Static<typeof VmPort>;
