/**
 * A Firecracker API double: a separate process, started with the real binary's flags, that serves
 * the API on a unix socket, enforces the API contract (firecracker-api-contract.ts) and
 * Firecracker's phase rules, and fakes a guest on stdout. Driver tests spawn it through the
 * `firecracker-double` shim where a host has no KVM. It runs no guest: files named in bodies are
 * checked for existence, TAPs for presence in its network namespace, and snapshots are small JSON files
 * plus a sparse memory file of the guest's size. Only ever started by tests.
 */
import { closeSync, existsSync, fsyncSync, ftruncateSync, openSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import { type FirecrackerApiVersion, firecrackerContract } from './firecracker-contract.js';
import { DoubleLogger, DoubleMetrics, toStdout } from './firecracker-double-logs.js';

type Body = Record<string, any>;

const VMM_VERSION: Record<FirecrackerApiVersion, string> = { '1.16': '1.16.1', '1.17': '1.17.0-dev' };
const SNAPSHOT_VERSION: Record<FirecrackerApiVersion, string> = { '1.16': '10.0.0', '1.17': '11.0.0' };
const NOT_AFTER = 'The requested operation is not supported after starting the microVM.';
const NOT_BEFORE = 'The requested operation is not supported before starting the microVM.';
const LOAD_AFTER_CONFIG = 'Loading a microVM snapshot not allowed after configuring boot-specific resources.';
/** Guest serial lines after boot, so log-tail code has something to follow; bounded so a leak stays small. */
const HEARTBEAT_LINES = 600;
const MIB = 1024 * 1024;

/** A 400 with this fault_message; `fatal` ends the process after the answer (a failed snapshot load). */
class Fault extends Error {
  constructor(
    message: string,
    readonly fatal = false,
  ) {
    super(message);
  }
}

// --- command line, as Firecracker parses it: `--flag value`, anything else is exit 153 ---

const VALUED = new Set(['api-sock', 'id', 'config-file', 'level', 'log-path', 'metrics-path', 'api-version']);

function badArguments(message: string): never {
  process.stderr.write(`Arguments parsing error: ${message}\n`);
  process.exit(153);
}

function parseArgs(argv: string[]): Map<string, string> {
  const given = new Map<string, string>();
  for (let index = 0; index < argv.length; index++) {
    const arg = argv[index]!;
    const name = arg.startsWith('--') ? arg.slice(2) : '';
    if (name === 'no-api') given.set(name, '');
    else if (VALUED.has(name)) {
      const value = argv[++index];
      if (value === undefined) badArguments(`The argument '--${name}' requires a value, but none was supplied`);
      given.set(name, value);
    } else badArguments(`Found argument '${arg}' which wasn't expected, or isn't valid in this context.`);
  }
  if (given.has('no-api') && !given.has('config-file')) badArguments("Missing argument: config-file (required by '--no-api').");
  const version = given.get('api-version') ?? '1.17';
  if (version !== '1.16' && version !== '1.17') badArguments(`Invalid --api-version '${version}': expected 1.16 or 1.17.`);
  return given;
}

const args = parseArgs(process.argv.slice(2));
const version = (args.get('api-version') ?? '1.17') as FirecrackerApiVersion;
const contract = firecrackerContract(version);
const instanceId = args.get('id') ?? 'anonymous-instance';
if (!/^[A-Za-z0-9-]{1,64}$/.test(instanceId)) {
  // Firecracker validates the id with an expect(): a panic, which aborts.
  process.stderr.write(`thread 'main' panicked: Invalid instance ID: ${instanceId}\n`);
  process.abort();
}

// --- state of the one microVM this process may run ---

let vmState: 'Not started' | 'Running' | 'Paused' = 'Not started';
let bootSource: Body | undefined;
let machine: Body = { vcpu_count: 1, mem_size_mib: 128, smt: false, track_dirty_pages: false, huge_pages: 'None' };
const drives = new Map<string, Body>();
const nets = new Map<string, Body>();
/** Other pre-boot devices, by their key in GET /vm/config. */
const devices: Body = {};
/** Set by any resource that makes a later snapshot load refuse (notes, section 5). */
let bootResourcesConfigured = false;
let resetPending = false;
/** Whether the guest writes to ttyS0: only when its command line says so, as a real kernel does. */
let guestSerial = false;

const logger = new DoubleLogger(instanceId);
const log = logger.log.bind(logger);
let metrics: DoubleMetrics | undefined;

function configureMetrics(body: Body): void {
  if (metrics) throw new Fault('Reinitialization of metrics not allowed.');
  // emit_id and properties exist only on main; v1.16.1 parses and drops them.
  const extras =
    version === '1.17' ? { ...(body.emit_id === true ? { id: instanceId } : {}), ...(body.properties ? { properties: body.properties } : {}) } : {};
  metrics = new DoubleMetrics(body.metrics_path, extras);
}

const flushMetrics = () => metrics?.flush(drives.keys(), nets.keys());

// --- checks that stand in for opening files and TAPs ---

function requireFile(path: string, what: string): void {
  if (!existsSync(path) || !statSync(path).isFile()) throw new Fault(`${what} ${path} cannot be opened: No such file or directory (os error 2)`);
}

/** The TAP must exist in this process's network namespace (a VM's own, where the driver starts it): /proc/self/net/dev lists that one's devices. */
function requireTap(name: string): void {
  const devices = readFileSync('/proc/self/net/dev', 'utf8')
    .split('\n')
    .map((line) => line.split(':')[0]?.trim());
  if (!devices.includes(name)) {
    throw new Fault(
      `Could not create the network device: Open tap device failed: Error while creating ifreq structure: No such device (os error 19). Invalid TUN/TAP Backend provided by ${name}.`,
    );
  }
}

function requireBootFiles(): void {
  if (!bootSource) throw new Fault('Cannot start microvm without kernel configuration.');
  requireFile(bootSource.kernel_image_path, 'The kernel file');
  if (bootSource.initrd_path) requireFile(bootSource.initrd_path, 'The initrd file');
  for (const drive of drives.values()) if (drive.path_on_host) requireFile(drive.path_on_host, `The block device file of drive ${drive.drive_id}`);
  for (const net of nets.values()) requireTap(net.host_dev_name);
}

// --- the fake guest ---

function startGuest(freshBoot: boolean): void {
  setTimeout(() => {
    if (freshBoot && guestSerial) {
      toStdout(`[    0.000000] Linux version 6.1.0-firecracker-double (nexus test double)\n`);
      toStdout(`[    0.000000] Command line: ${bootSource?.boot_args ?? ''}\n`);
      toStdout(`[    0.010000] Memory: ${machine.mem_size_mib}MiB, ${machine.vcpu_count} vCPU(s)\n`);
      for (const drive of drives.values()) toStdout(`[    0.020000] virtio_blk virtio0: [${drive.drive_id}] ${drive.is_root_device ? 'root ' : ''}disk\n`);
      toStdout('[    0.100000] Run /sbin/init as init process\nNEXUS_BOOT_OK\n');
    }
  }, 10);
  let lines = 0;
  const heartbeat = setInterval(() => {
    if (vmState !== 'Running') return;
    if (guestSerial) toStdout(`[${String(lines + 1).padStart(5)}.000000] nexus-double: guest alive\n`);
    if (++lines >= HEARTBEAT_LINES) clearInterval(heartbeat);
  }, 1000);
  // A microVM runs until it is killed or resets; this also keeps a --no-api process alive.
  setInterval(flushMetrics, 60_000);
}

/** What the guest does on Ctrl-Alt-Del with `reboot=k`: an i8042 reset, so Firecracker exits 0. */
function resetGuest(): void {
  if (guestSerial) toStdout('[  100.000000] reboot: Restarting system\n');
  log('info', 'fc_vcpu 0', 'Received KBD_RESET. Vmm is stopping.');
  setTimeout(() => process.exit(0), 100);
}

// --- snapshots ---

function createSnapshot(body: Body): void {
  if (vmState !== 'Paused') throw new Fault('Create snapshot error: Cannot save the microVM state: the microVM must be paused.');
  const config = vmConfig();
  delete config['boot-source'];
  writeFileSync(
    body.snapshot_path,
    JSON.stringify({ format: 'firecracker-double-snapshot', format_version: SNAPSHOT_VERSION[version], id: instanceId, serial_console: guestSerial, config }),
  );
  const sizeBytes = machine.mem_size_mib * MIB;
  // A diff onto a memory file of the right size merges in place; anything else starts over (sparse).
  const memory = body.mem_file_path;
  const merge = body.snapshot_type === 'Diff' && existsSync(memory) && statSync(memory).size === sizeBytes;
  const fd = openSync(memory, merge ? 'r+' : 'w');
  ftruncateSync(fd, sizeBytes);
  fsyncSync(fd);
  closeSync(fd);
}

function loadSnapshot(body: Body): void {
  if (bootResourcesConfigured) throw new Fault(LOAD_AFTER_CONFIG);
  // From here a failure answers 400 and ends the process, as a real failed load does.
  const fail = (why: string): never => {
    throw new Fault(`Load snapshot error: Failed to restore from snapshot: ${why}`, true);
  };
  let saved: Body;
  try {
    saved = JSON.parse(readFileSync(body.snapshot_path, 'utf8'));
  } catch (error) {
    return fail(`cannot read the state file ${body.snapshot_path}: ${(error as Error).message}`);
  }
  if (saved?.format !== 'firecracker-double-snapshot' || typeof saved.config !== 'object') fail(`${body.snapshot_path} is not a snapshot state file`);
  const [major, minor] = String(saved.format_version).split('.').map(Number);
  const [ourMajor, ourMinor] = SNAPSHOT_VERSION[version].split('.').map(Number);
  if (major !== ourMajor || minor! > ourMinor!)
    fail(`unsupported snapshot format version ${saved.format_version} (this binary reads ${SNAPSHOT_VERSION[version]})`);
  const backend = body.mem_backend ?? { backend_type: 'File', backend_path: body.mem_file_path };
  if (backend.backend_type !== 'File') fail('the Firecracker double serves only the File memory backend');
  const config = saved.config as Body;
  const sizeBytes = config['machine-config'].mem_size_mib * MIB;
  if (!existsSync(backend.backend_path) || statSync(backend.backend_path).size < sizeBytes)
    fail(`memory file ${backend.backend_path} is missing or smaller than ${sizeBytes} bytes`);
  for (const override of body.network_overrides ?? []) {
    const net = (config['network-interfaces'] ?? []).find((entry: Body) => entry.iface_id === override.iface_id);
    if (!net) fail(`network override for unknown interface ${override.iface_id}`);
    net.host_dev_name = override.host_dev_name;
  }
  if (body.vsock_override) {
    if (!config.vsock) fail('vsock override without a vsock device in the snapshot');
    config.vsock.uds_path = body.vsock_override.uds_path;
  }
  try {
    for (const drive of config.drives ?? []) if (drive.path_on_host) requireFile(drive.path_on_host, `The block device file of drive ${drive.drive_id}`);
    for (const net of config['network-interfaces'] ?? []) requireTap(net.host_dev_name);
  } catch (error) {
    fail((error as Error).message);
  }
  // After a restore boot-source, smt and cpu_template are empty (GET /vm/config shows it).
  machine = { ...config['machine-config'], track_dirty_pages: body.track_dirty_pages ?? body.enable_diff_snapshots ?? false };
  delete machine.smt;
  delete machine.cpu_template;
  for (const drive of config.drives ?? []) drives.set(drive.drive_id, drive);
  for (const net of config['network-interfaces'] ?? []) nets.set(net.iface_id, net);
  for (const [key, value] of Object.entries(config)) if (!['machine-config', 'drives', 'network-interfaces'].includes(key)) devices[key] = value;
  guestSerial = saved.serial_console === true;
  vmState = body.resume_vm ? 'Running' : 'Paused';
  startGuest(false);
}

// --- the API ---

function vmConfig(): Body {
  const config: Body = { 'machine-config': machine, drives: [...drives.values()], 'network-interfaces': [...nets.values()], ...devices };
  if (bootSource) config['boot-source'] = bootSource;
  return config;
}

/** Pre-boot PUTs the double only records (shown in GET /vm/config); `boot` marks boot-specific ones. */
const RECORDED: Record<string, { key: string; boot: boolean }> = {
  vsock: { key: 'vsock', boot: true },
  balloon: { key: 'balloon', boot: true },
  entropy: { key: 'entropy', boot: true },
  'mmds/config': { key: 'mmds-config', boot: true },
  'hotplug/memory': { key: 'memory-hotplug', boot: true },
  'cpu-config': { key: 'cpu-config', boot: false },
  serial: { key: '', boot: false },
};
const ID_RESOURCES = new Set(['drives', 'network-interfaces', 'pmem']);
const PRE_BOOT = new Set([
  ...Object.keys(RECORDED).map((resource) => `PUT ${resource}`),
  ...['machine-config', 'boot-source', 'drives', 'network-interfaces', 'pmem', 'logger', 'metrics', 'snapshot/load'].map((resource) => `PUT ${resource}`),
  'PATCH machine-config',
]);
const POST_BOOT = new Set([
  'PATCH drives',
  'PATCH network-interfaces',
  'PATCH pmem',
  'PATCH vm',
  'PUT snapshot/create',
  'PATCH balloon',
  'PATCH hotplug/memory',
]);

/** Runs one API call: its answer body for a 200, undefined for a 204; throws Fault for a 400. */
function execute(method: string, path: string, body: Body | undefined): Body | undefined {
  const violation = contract.check(method, path, body);
  if (violation) throw new Fault(violation);
  const [head = '', ...rest] = path.split('?')[0]!.slice(1).split('/');
  const resource = ID_RESOURCES.has(head) ? head : [head, ...rest].join('/');
  const key = `${method} ${resource}`;
  const started = vmState !== 'Not started';
  if (PRE_BOOT.has(key) && started) throw new Fault(NOT_AFTER);
  if (POST_BOOT.has(key) && !started) throw new Fault(NOT_BEFORE);
  const b = body ?? {};
  switch (key) {
    case 'GET ':
      return { app_name: 'Firecracker', id: instanceId, state: vmState, vmm_version: VMM_VERSION[version] };
    case 'GET version':
      return { firecracker_version: VMM_VERSION[version] };
    case 'GET machine-config':
      return machine;
    case 'GET vm/config':
      return vmConfig();
    case 'PUT machine-config':
    case 'PATCH machine-config': {
      const next: Body = method === 'PUT' ? { smt: false, track_dirty_pages: false, huge_pages: 'None', ...b } : { ...machine, ...b };
      if (next.smt && next.vcpu_count > 1 && next.vcpu_count % 2 !== 0) throw new Fault('The number of vCPUs must be 1 or an even number when SMT is enabled.');
      machine = next;
      bootResourcesConfigured = true;
      return undefined;
    }
    case 'PUT boot-source':
      requireFile(b.kernel_image_path, 'The kernel file');
      if (b.initrd_path) requireFile(b.initrd_path, 'The initrd file');
      bootSource = b;
      bootResourcesConfigured = true;
      return undefined;
    case 'PUT drives': {
      if (!b.path_on_host && !b.socket) throw new Fault('Unable to create the block device: path_on_host or socket is required.');
      if (b.path_on_host) requireFile(b.path_on_host, `The block device file of drive ${b.drive_id}`);
      const otherRoot = [...drives.values()].find((drive) => drive.is_root_device && drive.drive_id !== b.drive_id);
      if (b.is_root_device && otherRoot) throw new Fault('A root block device already exists!');
      drives.set(b.drive_id, { cache_type: 'Unsafe', io_engine: 'Sync', ...(b.path_on_host ? { is_read_only: false } : {}), ...b });
      bootResourcesConfigured = true;
      return undefined;
    }
    case 'PATCH drives': {
      const drive = drives.get(b.drive_id);
      if (!drive) throw new Fault(`Unable to patch the block device: drive ${b.drive_id} not found.`);
      if (b.path_on_host) requireFile(b.path_on_host, `The block device file of drive ${b.drive_id}`);
      drives.set(b.drive_id, { ...drive, ...b });
      return undefined;
    }
    case 'PUT network-interfaces':
      requireTap(b.host_dev_name);
      nets.set(b.iface_id, b);
      bootResourcesConfigured = true;
      return undefined;
    case 'PATCH network-interfaces': {
      const net = nets.get(b.iface_id);
      if (!net) throw new Fault(`Unable to patch the network device: interface ${b.iface_id} not found.`);
      nets.set(b.iface_id, { ...net, ...b });
      return undefined;
    }
    case 'PUT pmem':
      requireFile(b.path_on_host, `The pmem backing file of ${b.id}`);
      devices.pmem = [...(devices.pmem ?? []).filter((pmem: Body) => pmem.id !== b.id), b];
      bootResourcesConfigured = true;
      return undefined;
    case 'PUT logger':
      logger.configure(b);
      return undefined;
    case 'PUT metrics':
      configureMetrics(b);
      return undefined;
    case 'PUT actions':
      return action(b.action_type);
    case 'PATCH vm':
      vmState = b.state === 'Paused' ? 'Paused' : 'Running';
      if (vmState === 'Running' && resetPending) resetGuest();
      return undefined;
    case 'PUT snapshot/create':
      createSnapshot(b);
      return undefined;
    case 'PUT snapshot/load':
      loadSnapshot(b);
      return undefined;
  }
  const recorded = method === 'PUT' ? RECORDED[resource] : undefined;
  if (!recorded) throw new Fault(`The Firecracker double does not implement ${method} ${path}.`);
  if (resource === 'mmds/config')
    for (const iface of b.network_interfaces) if (!nets.has(iface)) throw new Fault(`The MMDS could not be configured: interface ${iface} does not exist.`);
  if (recorded.key) devices[recorded.key] = b;
  if (recorded.boot) bootResourcesConfigured = true;
  return undefined;
}

function action(type: 'InstanceStart' | 'FlushMetrics' | 'SendCtrlAltDel'): undefined {
  const started = vmState !== 'Not started';
  if (type === 'InstanceStart') {
    if (started) throw new Fault(NOT_AFTER);
    requireBootFiles();
    guestSerial = /(^|\s)console=ttyS0/.test(bootSource?.boot_args ?? '');
    vmState = 'Running';
    log('info', 'fc_api', 'Successfully started microvm.');
    startGuest(true);
    return undefined;
  }
  if (!started) throw new Fault(NOT_BEFORE);
  if (type === 'FlushMetrics') flushMetrics();
  // A paused guest sees the key press when it runs again.
  else if (vmState === 'Running') resetGuest();
  else resetPending = true;
  return undefined;
}

function answer(res: ServerResponse, status: number, body: unknown): void {
  const text = JSON.stringify(body);
  res.writeHead(status, { 'Content-Type': 'application/json', 'Content-Length': Buffer.byteLength(text) });
  res.end(text);
}

function serveRequest(req: IncomingMessage, res: ServerResponse, raw: string): void {
  const method = req.method ?? 'GET';
  const path = req.url ?? '/';
  res.setHeader('Server', 'Firecracker API');
  log('info', 'fc_api', `The API server received a ${method} request on "${path}"${raw ? ` with body ${JSON.stringify(raw)}` : ''}.`);
  try {
    let body: Body | undefined;
    try {
      body = raw.trim() === '' ? undefined : JSON.parse(raw);
    } catch (error) {
      throw new Fault(`An error occurred when deserializing the json body of a request: ${(error as Error).message}.`);
    }
    const reply = execute(method, path, body);
    if (reply === undefined) {
      // No body and no Content-Length on a 204, as micro-http answers.
      res.writeHead(204);
      res.end();
    } else answer(res, 200, reply);
    log('info', 'fc_api', `The request was executed successfully. Status code: ${reply === undefined ? '204 No Content' : '200 OK'}.`);
  } catch (caught) {
    // A failed file operation is a 400 in Firecracker too, never a crash.
    const error = caught instanceof Fault ? caught : new Fault((caught as Error).message);
    log('error', 'fc_api', `Received Error. Status code: 400 Bad Request. Message: ${error.message}`);
    if (error.fatal) res.on('finish', () => process.exit(1));
    answer(res, 400, { fault_message: error.message });
  }
}

/** --config-file: every key is the body of its PUT, then InstanceStart; any failure is exit 152. */
function bootFromConfigFile(file: string): void {
  const fail = (why: string): never => {
    process.stderr.write(`Configuration for VMM from one single json failed: ${why}\n`);
    process.exit(152);
  };
  let config: Body = {};
  try {
    config = JSON.parse(readFileSync(file, 'utf8'));
  } catch (error) {
    fail((error as Error).message);
  }
  if (!config['boot-source'] || !Array.isArray(config.drives)) fail('`boot-source` and `drives` are required.');
  const single: Record<string, string> = {
    logger: '/logger',
    metrics: '/metrics',
    'machine-config': '/machine-config',
    'cpu-config': '/cpu-config',
    'boot-source': '/boot-source',
    vsock: '/vsock',
    balloon: '/balloon',
    entropy: '/entropy',
    'memory-hotplug': '/hotplug/memory',
  };
  const listed: Record<string, [string, string]> = {
    drives: ['/drives/', 'drive_id'],
    'network-interfaces': ['/network-interfaces/', 'iface_id'],
    pmem: ['/pmem/', 'id'],
  };
  const calls: [string, Body][] = [];
  for (const [key, value] of Object.entries(config)) {
    if (single[key]) calls.push([single[key], value]);
    else if (listed[key] && Array.isArray(value)) for (const item of value) calls.push([`${listed[key][0]}${item?.[listed[key][1]]}`, item]);
    else if (key !== 'mmds-config') fail(`unknown field \`${key}\``);
  }
  // MMDS config names interfaces, so it goes after them.
  if (config['mmds-config']) calls.push(['/mmds/config', config['mmds-config']]);
  try {
    for (const [path, body] of calls) execute('PUT', path, body);
    execute('PUT', '/actions', { action_type: 'InstanceStart' });
  } catch (error) {
    fail((error as Error).message);
  }
}

function startup(): void {
  try {
    if (args.has('log-path') || args.has('level')) logger.configure({ log_path: args.get('log-path'), level: args.get('level') });
    if (args.has('metrics-path')) configureMetrics({ metrics_path: args.get('metrics-path') });
  } catch (error) {
    process.stderr.write(`${(error as Error).message}\n`);
    process.exit(1);
  }
  log('info', 'main', `Running Firecracker v${VMM_VERSION[version]}`);
  const configFile = args.get('config-file');
  if (configFile) bootFromConfigFile(configFile);
}

if (args.has('no-api')) startup();
else {
  // Jailed (the jailer double chroots it), this path is inside the jail, as for the real binary.
  const apiSock = args.get('api-sock') ?? '/run/firecracker.socket';
  // Never closed: libuv unlinks a listening unix socket on close, and Firecracker never removes it.
  const server = createServer((req, res) => {
    let raw = '';
    req.setEncoding('utf8');
    req.on('data', (chunk: string) => (raw += chunk));
    req.on('end', () => serveRequest(req, res, raw));
  });
  server.on('error', (error) => {
    process.stderr.write(`Failed to open the API socket at: ${apiSock}. Check that it is not already used. (${error.message})\n`);
    process.exit(1);
  });
  server.listen(apiSock, startup);
}
