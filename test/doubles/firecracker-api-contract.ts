/**
 * Firecracker's HTTP API as the project states it: every path and method, each body and answer as
 * JSON Schema, for main (1.17.0-dev) and, by the differences listed below, for v1.16.1. Written
 * from Firecracker's documented API, so the tests need nothing outside the checkout; the swagger
 * comparison (test/unit/doubles/firecracker-contract-swagger.test.ts) keeps it honest when
 * NEXUS_FIRECRACKER_SWAGGER names an official swagger file.
 *
 * Where this deliberately differs from the swagger, it follows what a real binary does:
 * - objects are closed (`additionalProperties: false`): Firecracker's serde refuses unknown fields.
 *   Metrics is the exception and stays open, as Firecracker ignores unknown metrics fields;
 * - PATCH /machine-config takes any subset of the fields (the swagger reuses the PUT body with its
 *   required list);
 * - a body is required unless it is marked optional: Firecracker refuses an empty PUT or PATCH
 *   (the swagger leaves `required` out on some of them);
 * - the MMDS address rule is a `pattern` (the swagger puts the regex in `format`).
 */

export type FirecrackerApiVersion = '1.16' | '1.17';

/** The JSON Schema keywords the contract uses (a subset Ajv validates). */
export interface JsonSchema {
  type?: 'object' | 'array' | 'string' | 'integer' | 'boolean';
  properties?: Record<string, JsonSchema>;
  required?: string[];
  additionalProperties?: boolean | JsonSchema;
  items?: JsonSchema;
  enum?: string[];
  minimum?: number;
  maximum?: number;
  format?: 'int32' | 'int64';
  pattern?: string;
  $ref?: string;
}

export type HttpMethod = 'get' | 'put' | 'patch';

export interface FirecrackerOperation {
  /** The request body; `optional` when Firecracker takes the call without one. */
  body?: { schema: JsonSchema; optional?: boolean };
  /** Status code (or 'default') -> the answer's body schema; null for an answer without a body. */
  responses: Record<string, JsonSchema | null>;
}

export interface FirecrackerApiContract {
  version: FirecrackerApiVersion;
  /** Named schemas, referenced as `#/definitions/<name>`. */
  definitions: Record<string, JsonSchema>;
  /** Path template (ids as `{drive_id}`, named as the body field they must equal) -> method -> operation. */
  operations: Record<string, Partial<Record<HttpMethod, FirecrackerOperation>>>;
}

const ref = (definition: string): JsonSchema => ({ $ref: `#/definitions/${definition}` });
const string: JsonSchema = { type: 'string' };
const boolean: JsonSchema = { type: 'boolean' };
const integer = (bounds: Pick<JsonSchema, 'minimum' | 'maximum' | 'format'> = {}): JsonSchema => ({ type: 'integer', ...bounds });
const int64: JsonSchema = integer({ format: 'int64' });
const oneOf = (...values: string[]): JsonSchema => ({ type: 'string', enum: values });
const arrayOf = (items: JsonSchema): JsonSchema => ({ type: 'array', items });
/** A closed object: what serde's deny_unknown_fields means. */
const object = (properties: Record<string, JsonSchema>, required: string[] = []): JsonSchema => ({
  type: 'object',
  ...(required.length > 0 ? { required } : {}),
  properties,
  additionalProperties: false,
});
const U32_MAX = 4_294_967_295;

/**
 * Third octet 1-254, fourth 0-255: the link-local range (RFC 3927) MMDS may answer on.
 */
const LINK_LOCAL_IPV4 = '^169\\.254\\.(?:25[0-4]|2[0-4][0-9]|1[0-9][0-9]|[1-9][0-9]?)\\.(?:25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9]?[0-9])$';

/** The schemas of main (1.17.0-dev), by subject. */
const DEFINITIONS: Record<string, JsonSchema> = {
  // The instance
  InstanceInfo: object({ app_name: string, id: string, state: oneOf('Not started', 'Running', 'Paused'), vmm_version: string }, [
    'app_name',
    'id',
    'state',
    'vmm_version',
  ]),
  FirecrackerVersion: object({ firecracker_version: string }, ['firecracker_version']),
  InstanceActionInfo: object({ action_type: oneOf('FlushMetrics', 'InstanceStart', 'SendCtrlAltDel') }, ['action_type']),
  Vm: object({ state: oneOf('Paused', 'Resumed') }, ['state']),
  Error: object({ fault_message: string }),

  // Machine, boot, CPU
  MachineConfiguration: object(
    {
      cpu_template: ref('CpuTemplate'),
      smt: boolean,
      mem_size_mib: integer(),
      track_dirty_pages: boolean,
      vcpu_count: integer({ minimum: 1, maximum: 32 }),
      huge_pages: oneOf('None', 'Transparent', '2M'),
    },
    ['mem_size_mib', 'vcpu_count'],
  ),
  CpuTemplate: oneOf('C3', 'T2', 'T2S', 'T2CL', 'T2A', 'V1N1', 'None'),
  BootSource: object({ boot_args: string, initrd_path: string, kernel_image_path: string }, ['kernel_image_path']),
  CpuConfig: object({
    kvm_capabilities: arrayOf(string),
    cpuid_modifiers: arrayOf(ref('CpuidLeafModifier')),
    msr_modifiers: arrayOf(ref('MsrModifier')),
    reg_modifiers: arrayOf(ref('ArmRegisterModifier')),
    vcpu_features: arrayOf(ref('VcpuFeatures')),
  }),
  CpuidLeafModifier: object({ leaf: string, subleaf: string, flags: integer({ format: 'int32' }), modifiers: arrayOf(ref('CpuidRegisterModifier')) }, [
    'leaf',
    'subleaf',
    'flags',
    'modifiers',
  ]),
  CpuidRegisterModifier: object({ register: oneOf('eax', 'ebx', 'ecx', 'edx'), bitmap: string }, ['register', 'bitmap']),
  MsrModifier: object({ addr: string, bitmap: string }, ['addr', 'bitmap']),
  ArmRegisterModifier: object({ addr: string, bitmap: string }, ['addr', 'bitmap']),
  VcpuFeatures: object({ index: integer({ format: 'int32' }), bitmap: string }, ['index', 'bitmap']),

  // Block, pmem, network devices
  Drive: object(
    {
      drive_id: string,
      partuuid: string,
      is_root_device: boolean,
      cache_type: oneOf('Unsafe', 'Writeback'),
      is_read_only: boolean,
      path_on_host: string,
      rate_limiter: ref('RateLimiter'),
      io_engine: oneOf('Sync', 'Async'),
      socket: string,
    },
    ['drive_id', 'is_root_device'],
  ),
  PartialDrive: object({ drive_id: string, path_on_host: string, rate_limiter: ref('RateLimiter') }, ['drive_id']),
  Pmem: object({ id: string, path_on_host: string, root_device: boolean, read_only: boolean, rate_limiter: ref('RateLimiter') }, ['id', 'path_on_host']),
  PartialPmem: object({ id: string, rate_limiter: ref('RateLimiter') }, ['id']),
  NetworkInterface: object(
    {
      guest_mac: string,
      host_dev_name: string,
      iface_id: string,
      mtu: integer({ minimum: 68, maximum: 65_535 }),
      rx_rate_limiter: ref('RateLimiter'),
      tx_rate_limiter: ref('RateLimiter'),
    },
    ['host_dev_name', 'iface_id'],
  ),
  PartialNetworkInterface: object({ iface_id: string, rx_rate_limiter: ref('RateLimiter'), tx_rate_limiter: ref('RateLimiter') }, ['iface_id']),

  // Rate limiting: a bucket of bytes and one of operations; serial takes a bare bucket.
  RateLimiter: object({ bandwidth: ref('TokenBucket'), ops: ref('TokenBucket') }),
  TokenBucket: object(
    {
      one_time_burst: integer({ format: 'int64', minimum: 0 }),
      refill_time: integer({ format: 'int64', minimum: 0 }),
      size: integer({ format: 'int64', minimum: 0 }),
    },
    ['refill_time', 'size'],
  ),

  // Other devices
  Vsock: object({ guest_cid: integer({ minimum: 3 }), uds_path: string, vsock_id: string }, ['guest_cid', 'uds_path']),
  EntropyDevice: object({ rate_limiter: ref('RateLimiter') }),
  SerialDevice: object({ serial_out_path: string, rate_limiter: ref('TokenBucket') }),

  // Balloon
  Balloon: object(
    { amount_mib: integer(), deflate_on_oom: boolean, stats_polling_interval_s: integer(), free_page_hinting: boolean, free_page_reporting: boolean },
    ['amount_mib', 'deflate_on_oom'],
  ),
  BalloonUpdate: object({ amount_mib: integer() }, ['amount_mib']),
  BalloonStatsUpdate: object({ stats_polling_interval_s: integer() }, ['stats_polling_interval_s']),
  BalloonStats: object(
    {
      target_pages: integer(),
      actual_pages: integer(),
      target_mib: integer(),
      actual_mib: integer(),
      ...Object.fromEntries(
        [
          'swap_in',
          'swap_out',
          'major_faults',
          'minor_faults',
          'free_memory',
          'total_memory',
          'available_memory',
          'disk_caches',
          'hugetlb_allocations',
          'hugetlb_failures',
          'oom_kill',
          'alloc_stall',
          'async_scan',
          'direct_scan',
          'async_reclaim',
          'direct_reclaim',
        ].map((counter) => [counter, int64]),
      ),
    },
    ['target_pages', 'actual_pages', 'target_mib', 'actual_mib'],
  ),
  BalloonStartCmd: object({ acknowledge_on_stop: boolean }),
  BalloonHintingStatus: object({ host_cmd: integer(), guest_cmd: integer() }, ['host_cmd']),

  // Memory hotplug (virtio-mem): sizes in MiB, u32 in main's API.
  MemoryHotplugConfig: object({
    total_size_mib: integer({ maximum: U32_MAX }),
    slot_size_mib: integer({ minimum: 128, maximum: U32_MAX }),
    block_size_mib: integer({ minimum: 2, maximum: U32_MAX }),
  }),
  MemoryHotplugSizeUpdate: object({ requested_size_mib: integer({ minimum: 0, maximum: U32_MAX }) }),
  MemoryHotplugStatus: object({
    total_size_mib: integer(),
    slot_size_mib: integer(),
    block_size_mib: integer(),
    plugged_size_mib: integer(),
    requested_size_mib: integer(),
  }),

  // Logger and metrics. Metrics stays open: Firecracker ignores fields it does not know there.
  Logger: object({
    level: oneOf('Error', 'Warning', 'Info', 'Debug', 'Trace', 'Off'),
    log_path: string,
    show_level: boolean,
    show_log_origin: boolean,
    module: string,
  }),
  Metrics: {
    type: 'object',
    required: ['metrics_path'],
    properties: { metrics_path: string, emit_id: boolean, properties: { type: 'object', additionalProperties: string } },
  },

  // MMDS
  MmdsConfig: object(
    { version: oneOf('V1', 'V2'), network_interfaces: arrayOf(string), ipv4_address: { type: 'string', pattern: LINK_LOCAL_IPV4 }, imds_compat: boolean },
    ['network_interfaces'],
  ),
  MmdsContentsObject: { type: 'object', additionalProperties: true },

  // Snapshots
  SnapshotCreateParams: object({ mem_file_path: string, snapshot_path: string, snapshot_type: oneOf('Full', 'Diff') }, ['mem_file_path', 'snapshot_path']),
  SnapshotLoadParams: object(
    {
      enable_diff_snapshots: boolean,
      track_dirty_pages: boolean,
      mem_file_path: string,
      mem_backend: ref('MemoryBackend'),
      snapshot_path: string,
      resume_vm: boolean,
      network_overrides: arrayOf(ref('NetworkOverride')),
      vsock_override: ref('VsockOverride'),
      clock_realtime: boolean,
      huge_pages: oneOf('Snapshot', 'None', 'Transparent', '2M'),
    },
    ['snapshot_path'],
  ),
  MemoryBackend: object({ backend_type: oneOf('File', 'Uffd'), backend_path: string }, ['backend_type', 'backend_path']),
  NetworkOverride: object({ iface_id: string, host_dev_name: string }, ['iface_id', 'host_dev_name']),
  VsockOverride: object({ uds_path: string }, ['uds_path']),

  // Everything at once (GET /vm/config)
  FullVmConfiguration: object({
    balloon: ref('Balloon'),
    drives: arrayOf(ref('Drive')),
    'boot-source': ref('BootSource'),
    'cpu-config': ref('CpuConfig'),
    logger: ref('Logger'),
    'machine-config': ref('MachineConfiguration'),
    metrics: ref('Metrics'),
    'memory-hotplug': ref('MemoryHotplugConfig'),
    'mmds-config': ref('MmdsConfig'),
    'network-interfaces': arrayOf(ref('NetworkInterface')),
    pmem: arrayOf(ref('Pmem')),
    vsock: ref('Vsock'),
    entropy: ref('EntropyDevice'),
  }),
};

const ERROR = ref('Error');

/** A GET answering `answer`; `refusals` lists the error statuses besides `default`. */
function read(answer: JsonSchema, refusals: number[] = []): FirecrackerOperation {
  return { responses: { 200: answer, ...Object.fromEntries(refusals.map((status) => [status, ERROR])), default: ERROR } };
}

/** A PUT or PATCH: 204 without a body, 400 when refused (unless `refusable` is false), `default` else. */
function change(body: JsonSchema | undefined, options: { optional?: boolean; refusable?: boolean } = {}): FirecrackerOperation {
  const responses = { 204: null, ...(options.refusable === false ? {} : { 400: ERROR }), default: ERROR };
  return body ? { body: { schema: body, ...(options.optional ? { optional: true } : {}) }, responses } : { responses };
}

/** Every path and method Firecracker serves (the hot-unplug DELETEs of PCI builds are not in its API description). */
const OPERATIONS: FirecrackerApiContract['operations'] = {
  '/': { get: read(ref('InstanceInfo')) },
  '/version': { get: read(ref('FirecrackerVersion')) },
  '/vm/config': { get: read(ref('FullVmConfiguration')) },
  '/actions': { put: change(ref('InstanceActionInfo')) },
  '/vm': { patch: change(ref('Vm')) },
  '/machine-config': { get: read(ref('MachineConfiguration')), put: change(ref('MachineConfiguration')), patch: change(ref('MachineConfigurationUpdate')) },
  '/boot-source': { put: change(ref('BootSource')) },
  '/cpu-config': { put: change(ref('CpuConfig')) },
  '/drives/{drive_id}': { put: change(ref('Drive')), patch: change(ref('PartialDrive')) },
  '/pmem/{id}': { put: change(ref('Pmem')), patch: change(ref('PartialPmem')) },
  '/network-interfaces/{iface_id}': { put: change(ref('NetworkInterface')), patch: change(ref('PartialNetworkInterface')) },
  '/vsock': { put: change(ref('Vsock')) },
  '/entropy': { put: change(ref('EntropyDevice'), { refusable: false }) },
  '/serial': { put: change(ref('SerialDevice'), { refusable: false }) },
  '/balloon': { get: read(ref('Balloon'), [400]), put: change(ref('Balloon')), patch: change(ref('BalloonUpdate')) },
  '/balloon/statistics': { get: read(ref('BalloonStats'), [400]), patch: change(ref('BalloonStatsUpdate')) },
  '/balloon/hinting/start': { patch: change(ref('BalloonStartCmd'), { optional: true }) },
  '/balloon/hinting/status': { get: read(ref('BalloonHintingStatus'), [400]) },
  '/balloon/hinting/stop': { patch: change(undefined) },
  '/hotplug/memory': {
    get: read(ref('MemoryHotplugStatus')),
    put: change(ref('MemoryHotplugConfig'), { refusable: false }),
    patch: change(ref('MemoryHotplugSizeUpdate'), { refusable: false }),
  },
  '/logger': { put: change(ref('Logger')) },
  '/metrics': { put: change(ref('Metrics')) },
  // The data store is free-form JSON; Firecracker's code never answers the listed 404.
  '/mmds': {
    get: read({ type: 'object', additionalProperties: true }, [404]),
    put: change(ref('MmdsContentsObject')),
    patch: change(ref('MmdsContentsObject')),
  },
  '/mmds/config': { put: change(ref('MmdsConfig')) },
  '/snapshot/create': { put: change(ref('SnapshotCreateParams')) },
  '/snapshot/load': { put: change(ref('SnapshotLoadParams')) },
};

/** Something of main's API that v1.16.1 lacks: a field, one value of a field's enum, or a field's bound. */
export interface MainOnlyInput {
  definition: string;
  property: string;
  enumValue?: string;
  keyword?: 'maximum';
}

/** Main's additions since v1.16.1 (its changelog and swagger): taken out, main's API is v1.16.1's. */
export const MAIN_ONLY_INPUTS: readonly MainOnlyInput[] = [
  { definition: 'MachineConfiguration', property: 'huge_pages', enumValue: 'Transparent' },
  { definition: 'Metrics', property: 'emit_id' },
  { definition: 'Metrics', property: 'properties' },
  { definition: 'SnapshotLoadParams', property: 'huge_pages' },
  { definition: 'MemoryHotplugConfig', property: 'total_size_mib', keyword: 'maximum' },
  { definition: 'MemoryHotplugConfig', property: 'slot_size_mib', keyword: 'maximum' },
  { definition: 'MemoryHotplugConfig', property: 'block_size_mib', keyword: 'maximum' },
  { definition: 'MemoryHotplugSizeUpdate', property: 'requested_size_mib', keyword: 'maximum' },
];

/**
 * A copy of `definitions` without main's additions. Throws when one is not there to take out, so
 * a stale list is noticed (the swagger comparison runs this on the official file too).
 */
export function withoutMainOnlyInputs(definitions: Record<string, JsonSchema>): Record<string, JsonSchema> {
  const copy = structuredClone(definitions);
  for (const input of MAIN_ONLY_INPUTS) {
    const where = `${input.definition}.${input.property}`;
    const properties = copy[input.definition]?.properties;
    const field = properties?.[input.property];
    if (!properties || !field) throw new Error(`the 1.16 difference ${where} names a field that is not there`);
    if (input.enumValue !== undefined) {
      if (!field.enum?.includes(input.enumValue)) throw new Error(`the 1.16 difference ${where} names an enum value (${input.enumValue}) that is not there`);
      field.enum = field.enum.filter((value) => value !== input.enumValue);
    } else if (input.keyword !== undefined) {
      if (field[input.keyword] === undefined) throw new Error(`the 1.16 difference ${where} names a ${input.keyword} that is not there`);
      delete field[input.keyword];
    } else {
      delete properties[input.property];
    }
  }
  return copy;
}

/**
 * PATCH /machine-config's body: the PUT body with nothing required, as Firecracker takes any
 * subset (the swagger gives the PUT body, required fields included).
 */
export function machineConfigurationUpdate(machineConfiguration: JsonSchema): JsonSchema {
  const partial = structuredClone(machineConfiguration);
  delete partial.required;
  return partial;
}

/** The API of one version; a fresh copy, so a caller may not change another's. */
export function firecrackerApiContract(version: FirecrackerApiVersion): FirecrackerApiContract {
  const definitions = version === '1.16' ? withoutMainOnlyInputs(DEFINITIONS) : structuredClone(DEFINITIONS);
  definitions.MachineConfigurationUpdate = machineConfigurationUpdate(definitions.MachineConfiguration!);
  return { version, definitions, operations: structuredClone(OPERATIONS) };
}
