// test-lane: parallel (its own managers, hollow hosts, databases, temp dirs and ports: no host network, guest, cgroup or host-wide scan)
import assert from 'node:assert/strict';
import { type ChildProcess, spawn } from 'node:child_process';
import { once } from 'node:events';
import { existsSync, readFileSync, statSync, unlinkSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterEach, describe, it } from 'node:test';
import { Agent, request } from 'undici';
import { type FirecrackerApiVersion, firecrackerContract } from '../doubles/firecracker-contract.js';
import { eventually, isAlive } from '../support/nexus-process.js';
import { tempDir } from '../support/temp-dir.js';

/** Spawned exactly as a driver would spawn the `firecracker` binary. */
const SHIM = fileURLToPath(new URL('../doubles/firecracker-double', import.meta.url));
const SHIM_1_16 = fileURLToPath(new URL('../doubles/firecracker-double-v1-16', import.meta.url));

interface Reply {
  status: number;
  headers: Record<string, string | string[] | undefined>;
  text: string;
  body: any;
}

interface DoubleProcess {
  dir: string;
  socketPath: string;
  child: ChildProcess;
  exited: Promise<number | null>;
  output(): string;
  call(method: 'GET' | 'PUT' | 'PATCH', path: string, body?: unknown): Promise<Reply>;
}

const running: { child: ChildProcess; dispatcher: Agent; removeDir: () => void }[] = [];

/** The double in a fresh temp dir (its cwd) holding a kernel and a rootfs; waits until it answers unless told not to. */
async function startDouble(
  args: string[] = [],
  options: { version?: FirecrackerApiVersion; shim?: string; waitForApi?: boolean; prepare?: (dir: string) => void } = {},
): Promise<DoubleProcess> {
  const dir = tempDir('nexus-fc-double-');
  writeFileSync(join(dir.path, 'vmlinux'), 'not really a kernel');
  writeFileSync(join(dir.path, 'rootfs.ext4'), 'not really a disk');
  options.prepare?.(dir.path);
  const socketPath = join(dir.path, 'api.sock');
  const versionArgs = options.version ? ['--api-version', options.version] : [];
  const child = spawn(options.shim ?? SHIM, ['--api-sock', socketPath, '--id', 'vm-1', ...versionArgs, ...args], {
    cwd: dir.path,
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let output = '';
  child.stdout!.on('data', (chunk: Buffer) => (output += chunk.toString()));
  child.stderr!.on('data', (chunk: Buffer) => (output += chunk.toString()));
  const exited = once(child, 'exit').then(([code]) => code as number | null);
  const dispatcher = new Agent({ connect: { socketPath } });
  running.push({ child, dispatcher, removeDir: dir.remove });
  const contract = firecrackerContract(options.shim === SHIM_1_16 ? '1.16' : (options.version ?? '1.17'));

  const call = async (method: 'GET' | 'PUT' | 'PATCH', path: string, body?: unknown): Promise<Reply> => {
    const response = await request(`http://localhost${path}`, {
      dispatcher,
      method,
      headers: body === undefined ? {} : { 'content-type': 'application/json' },
      body: body === undefined ? undefined : typeof body === 'string' ? body : JSON.stringify(body),
    });
    const text = await response.body.text();
    const reply = { status: response.statusCode, headers: response.headers, text, body: text ? JSON.parse(text) : undefined };
    // Every answer the double gives to a known GET must be one the swagger allows: it cannot drift.
    if (method === 'GET' && reply.status === 200)
      assert.equal(contract.checkResponse(method, path, reply.status, reply.body), undefined, `GET ${path}: ${text}`);
    return reply;
  };

  const double = { dir: dir.path, socketPath, child, exited, output: () => output, call };
  if (options.waitForApi !== false) {
    await eventually(
      'the double answers GET /',
      async () => {
        if (child.exitCode !== null) throw new Error(`the double exited ${child.exitCode}: ${output}`);
        return (
          existsSync(socketPath) &&
          (await call('GET', '/').then(
            (reply) => reply.status === 200,
            () => false,
          ))
        );
      },
      20_000,
    );
  }
  return double;
}

/** Pre-boot configuration that boots: a 64 MiB VM with a rootfs, a NIC on `lo`, serial on. */
async function configure(double: DoubleProcess): Promise<void> {
  const calls: [string, unknown][] = [
    ['/machine-config', { vcpu_count: 2, mem_size_mib: 64 }],
    ['/boot-source', { kernel_image_path: 'vmlinux', boot_args: 'console=ttyS0 reboot=k panic=1' }],
    ['/drives/rootfs', { drive_id: 'rootfs', is_root_device: true, path_on_host: 'rootfs.ext4', is_read_only: false }],
    ['/network-interfaces/eth0', { iface_id: 'eth0', host_dev_name: 'lo', guest_mac: '06:00:ac:10:00:02' }],
  ];
  for (const [path, body] of calls) assert.equal((await double.call('PUT', path, body)).status, 204, path);
}

async function boot(double: DoubleProcess): Promise<void> {
  await configure(double);
  assert.equal((await double.call('PUT', '/actions', { action_type: 'InstanceStart' })).status, 204);
}

async function stateOf(double: DoubleProcess): Promise<string> {
  return (await double.call('GET', '/')).body.state;
}

function assertFault(reply: Reply, pattern: RegExp): void {
  assert.equal(reply.status, 400, reply.text);
  assert.match(reply.body.fault_message, pattern);
}

describe('Firecracker API double', () => {
  afterEach(async () => {
    for (const { child, dispatcher, removeDir } of running.splice(0)) {
      if (child.pid !== undefined && child.exitCode === null && child.signalCode === null) {
        const exit = once(child, 'exit');
        process.kill(child.pid, 'SIGKILL');
        await exit;
      }
      await dispatcher.close();
      removeDir();
    }
  });

  it('refuses a socket path that exists (exit 1) and leaves that file alone', async () => {
    const double = await startDouble([], { waitForApi: false, prepare: (dir) => writeFileSync(join(dir, 'api.sock'), 'someone else') });
    assert.equal(await double.exited, 1);
    assert.match(double.output(), /Failed to open the API socket/);
    assert.equal(readFileSync(double.socketPath, 'utf8'), 'someone else');
  });

  it('exits 153 on an unknown flag, and on --no-api without --config-file', async () => {
    const unknown = await startDouble(['--seccomp-level', '2'], { waitForApi: false });
    assert.equal(await unknown.exited, 153);
    assert.match(unknown.output(), /Found argument '--seccomp-level'/);
    const noApi = await startDouble(['--no-api'], { waitForApi: false });
    assert.equal(await noApi.exited, 153);
    assert.match(noApi.output(), /config-file/);
  });

  it('answers a mutation with 204, no body and no Content-Length; GETs with the configuration', async () => {
    const double = await startDouble();
    const reply = await double.call('PUT', '/machine-config', { vcpu_count: 2, mem_size_mib: 64 });
    assert.equal(reply.status, 204);
    assert.equal(reply.text, '');
    assert.equal(reply.headers['content-length'], undefined);
    assert.equal(reply.headers.server, 'Firecracker API');
    const machine = await double.call('GET', '/machine-config');
    assert.deepEqual(machine.body, { vcpu_count: 2, mem_size_mib: 64, smt: false, track_dirty_pages: false, huge_pages: 'None' });
    assert.deepEqual((await double.call('GET', '/version')).body, { firecracker_version: '1.17.0-dev' });
    assert.deepEqual((await double.call('GET', '/')).body, { app_name: 'Firecracker', id: 'vm-1', state: 'Not started', vmm_version: '1.17.0-dev' });
  });

  it('answers 400 with a fault_message for bad bodies, bad paths and empty PUTs', async () => {
    const double = await startDouble();
    assertFault(await double.call('PUT', '/machine-config', { vcpu_count: 2, mem_size_mib: 64, cpus: 2 }), /unknown field `cpus`/);
    assertFault(await double.call('PUT', '/machine-config', { vcpu_count: 'two', mem_size_mib: 64 }), /invalid type at \/vcpu_count/);
    assertFault(
      await double.call('PUT', '/drives/rootfs', { drive_id: 'other', is_root_device: true, path_on_host: 'rootfs.ext4' }),
      /^The id from the path does not match the id from the body!$/,
    );
    assertFault(await double.call('PUT', '/vm', { state: 'Paused' }), /^Invalid request method and\/or path: PUT vm/);
    assertFault(await double.call('GET', '/nothing'), /^Invalid request method and\/or path/);
    assertFault(await double.call('PUT', '/boot-source', '{"kernel_image_path": '), /deserializing the json body/);
    assertFault(await double.call('PUT', '/boot-source'), /^Empty PUT request\.$/);
    assertFault(await double.call('PATCH', '/vm'), /^Empty PATCH request\.$/);
    assertFault(await double.call('PUT', '/boot-source', { kernel_image_path: 'missing-vmlinux' }), /missing-vmlinux/);
    assertFault(await double.call('PUT', '/network-interfaces/eth0', { iface_id: 'eth0', host_dev_name: 'nxnosuchtap0' }), /nxnosuchtap0/);
    assert.equal(await stateOf(double), 'Not started');
  });

  it('keeps the phases apart in both directions', async () => {
    const double = await startDouble();
    const notBefore = /^The requested operation is not supported before starting the microVM\.$/;
    assertFault(await double.call('PATCH', '/vm', { state: 'Paused' }), notBefore);
    assertFault(await double.call('PUT', '/actions', { action_type: 'FlushMetrics' }), notBefore);
    assertFault(await double.call('PATCH', '/drives/rootfs', { drive_id: 'rootfs', path_on_host: 'rootfs.ext4' }), notBefore);
    assertFault(await double.call('PUT', '/snapshot/create', { snapshot_path: 'snap', mem_file_path: 'mem' }), notBefore);

    await boot(double);
    const notAfter = /^The requested operation is not supported after starting the microVM\.$/;
    assertFault(await double.call('PUT', '/machine-config', { vcpu_count: 1, mem_size_mib: 64 }), notAfter);
    assertFault(await double.call('PUT', '/drives/data', { drive_id: 'data', is_root_device: false, path_on_host: 'rootfs.ext4' }), notAfter);
    assertFault(await double.call('PUT', '/logger', { log_path: 'fc.log' }), notAfter);
    assertFault(await double.call('PUT', '/actions', { action_type: 'InstanceStart' }), notAfter);
    assertFault(await double.call('PUT', '/snapshot/load', { snapshot_path: 'snap', mem_file_path: 'mem' }), notAfter);
    assert.equal((await double.call('PATCH', '/drives/rootfs', { drive_id: 'rootfs', path_on_host: 'rootfs.ext4' })).status, 204);
    assertFault(await double.call('PATCH', '/drives/data', { drive_id: 'data', path_on_host: 'rootfs.ext4' }), /data not found/);
  });

  it('boots on InstanceStart only with its files present, then prints the guest console to stdout', async () => {
    const double = await startDouble();
    assertFault(await double.call('PUT', '/actions', { action_type: 'InstanceStart' }), /without kernel configuration/);
    await configure(double);
    unlinkSync(join(double.dir, 'vmlinux'));
    assertFault(await double.call('PUT', '/actions', { action_type: 'InstanceStart' }), /kernel file/);
    assert.equal(await stateOf(double), 'Not started');
    writeFileSync(join(double.dir, 'vmlinux'), 'back again');
    assert.equal((await double.call('PUT', '/actions', { action_type: 'InstanceStart' })).status, 204);
    assert.equal(await stateOf(double), 'Running');
    await eventually('the boot marker and a console line after it', () => /NEXUS_BOOT_OK\n(.|\n)*guest alive/.test(double.output()), 10_000);
  });

  it('goes Not started -> Running -> Paused -> Running; PATCH /vm is idempotent', async () => {
    const double = await startDouble();
    assert.equal(await stateOf(double), 'Not started');
    await boot(double);
    assert.equal(await stateOf(double), 'Running');
    for (let i = 0; i < 2; i++) assert.equal((await double.call('PATCH', '/vm', { state: 'Paused' })).status, 204);
    assert.equal(await stateOf(double), 'Paused');
    for (let i = 0; i < 2; i++) assert.equal((await double.call('PATCH', '/vm', { state: 'Resumed' })).status, 204);
    assert.equal(await stateOf(double), 'Running');
  });

  it('creates a snapshot only when paused, and loads it only into a fresh process', async () => {
    const source = await startDouble();
    await boot(source);
    const snapshot = { snapshot_path: join(source.dir, 'vm.snap'), mem_file_path: join(source.dir, 'vm.mem') };
    assertFault(await source.call('PUT', '/snapshot/create', snapshot), /paused/);
    await source.call('PATCH', '/vm', { state: 'Paused' });
    assert.equal((await source.call('PUT', '/snapshot/create', snapshot)).status, 204);
    const memory = statSync(snapshot.mem_file_path);
    assert.equal(memory.size, 64 * 1024 * 1024);
    assert.ok(memory.blocks * 512 < memory.size, 'the memory file is sparse');

    const configured = await startDouble();
    await configured.call('PUT', '/machine-config', { vcpu_count: 1, mem_size_mib: 64 });
    assertFault(
      await configured.call('PUT', '/snapshot/load', { snapshot_path: snapshot.snapshot_path, mem_file_path: snapshot.mem_file_path }),
      /not allowed after configuring boot-specific resources/,
    );

    const fresh = await startDouble();
    // Logger and metrics may come first, and the disk must be where the snapshot says (cwd-relative).
    writeFileSync(join(fresh.dir, 'rootfs.ext4'), 'copied disk');
    assert.equal((await fresh.call('PUT', '/logger', { log_path: 'fc.log' })).status, 204);
    const load = {
      snapshot_path: snapshot.snapshot_path,
      mem_backend: { backend_type: 'File', backend_path: snapshot.mem_file_path },
      network_overrides: [{ iface_id: 'eth0', host_dev_name: 'lo' }],
    };
    assert.equal((await fresh.call('PUT', '/snapshot/load', load)).status, 204);
    assert.equal(await stateOf(fresh), 'Paused');
    const config = (await fresh.call('GET', '/vm/config')).body;
    assert.equal(config['boot-source'], undefined);
    assert.equal(config['machine-config'].mem_size_mib, 64);
    assert.equal(config['machine-config'].smt, undefined);
    assert.deepEqual(
      config.drives.map((drive: { drive_id: string }) => drive.drive_id),
      ['rootfs'],
    );

    const resumed = await startDouble();
    assert.equal((await resumed.call('PUT', '/snapshot/load', { ...snapshot, resume_vm: true })).status, 204);
    assert.equal(await stateOf(resumed), 'Running');

    // The override is applied: a TAP that does not exist fails the load, and the process ends.
    const missingTap = await startDouble();
    const override = { ...snapshot, network_overrides: [{ iface_id: 'eth0', host_dev_name: 'nxnosuchtap0' }] };
    assertFault(await missingTap.call('PUT', '/snapshot/load', override), /nxnosuchtap0/);
    assert.equal(await missingTap.exited, 1);
  });

  it('answers 400 and then exits 1 when a snapshot cannot be loaded', async () => {
    const double = await startDouble();
    writeFileSync(join(double.dir, 'bad.snap'), JSON.stringify({ format: 'something else' }));
    assertFault(await double.call('PUT', '/snapshot/load', { snapshot_path: 'bad.snap', mem_file_path: 'vm.mem' }), /not a snapshot state file/);
    assert.equal(await double.exited, 1);
    assert.ok(existsSync(double.socketPath), 'the socket is left behind');
  });

  it('gives every GET an answer the swagger allows, in every state', async () => {
    const double = await startDouble();
    const gets = ['/', '/version', '/machine-config', '/vm/config'];
    // call() checks each 200 answer with checkResponse; here every state is visited.
    for (const path of gets) assert.equal((await double.call('GET', path)).status, 200);
    await boot(double);
    await double.call('PUT', '/actions', { action_type: 'FlushMetrics' });
    for (const path of gets) assert.equal((await double.call('GET', path)).status, 200);
    await double.call('PATCH', '/vm', { state: 'Paused' });
    for (const path of gets) assert.equal((await double.call('GET', path)).status, 200);
    assertFault(await double.call('GET', '/balloon'), /does not implement/);
  });

  it('writes a metrics line on FlushMetrics and Firecracker-style lines to the log file', async () => {
    const double = await startDouble();
    writeFileSync(join(double.dir, 'fc.log'), 'x'.repeat(4096));
    assert.equal((await double.call('PUT', '/logger', { log_path: 'fc.log', level: 'Info', show_level: true })).status, 204);
    assert.equal((await double.call('PUT', '/metrics', { metrics_path: 'metrics.ndjson' })).status, 204);
    assertFault(await double.call('PUT', '/metrics', { metrics_path: 'metrics.ndjson' }), /metrics/i);
    await boot(double);
    assert.equal((await double.call('PUT', '/actions', { action_type: 'FlushMetrics' })).status, 204);
    const lines = readFileSync(join(double.dir, 'metrics.ndjson'), 'utf8').trim().split('\n');
    assert.equal(lines.length, 1);
    const metrics = JSON.parse(lines[0]!);
    assert.equal(typeof metrics.utc_timestamp_ms, 'number');
    for (const group of ['api_server', 'block', 'block_rootfs', 'net', 'net_eth0', 'vmm']) assert.ok(group in metrics, group);
    // Opened without truncation: the new lines overwrite the old content from offset 0.
    const log = readFileSync(join(double.dir, 'fc.log'), 'utf8');
    assert.match(log, /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{9} \[vm-1:fc_api:INFO\] /);
    assert.match(log, /x{100}$/);
  });

  it('exits 0 after SendCtrlAltDel (the guest resets) and leaves its socket behind', async () => {
    const double = await startDouble();
    await boot(double);
    assert.equal((await double.call('PUT', '/actions', { action_type: 'SendCtrlAltDel' })).status, 204);
    assert.equal(await double.exited, 0);
    assert.match(double.output(), /reboot: Restarting system/);
    assert.ok(existsSync(double.socketPath), 'Firecracker never unlinks its socket');
  });

  it('boots from --config-file at once, with or without the API', async () => {
    const config = {
      'boot-source': { kernel_image_path: 'vmlinux', boot_args: 'console=ttyS0 reboot=k' },
      drives: [{ drive_id: 'rootfs', is_root_device: true, path_on_host: 'rootfs.ext4', is_read_only: false }],
      'machine-config': { vcpu_count: 1, mem_size_mib: 32 },
    };
    const prepare = (dir: string) => writeFileSync(join(dir, 'vm.json'), JSON.stringify(config));
    const withApi = await startDouble(['--config-file', 'vm.json'], { prepare });
    assert.equal(await stateOf(withApi), 'Running');
    assert.equal((await withApi.call('GET', '/machine-config')).body.mem_size_mib, 32);

    const noApi = await startDouble(['--config-file', 'vm.json', '--no-api'], { prepare, waitForApi: false });
    await eventually('the boot marker', () => noApi.output().includes('NEXUS_BOOT_OK'), 20_000);
    assert.equal(existsSync(noApi.socketPath), false);
    assert.ok(isAlive(noApi.child.pid!));

    const broken = await startDouble(['--config-file', 'vm.json'], {
      prepare: (dir) =>
        writeFileSync(join(dir, 'vm.json'), JSON.stringify({ ...config, drives: [{ drive_id: 'rootfs', is_root_device: true, path_on_host: 'gone.ext4' }] })),
      waitForApi: false,
    });
    assert.equal(await broken.exited, 152);
  });

  it('--api-version 1.16 refuses huge_pages on /snapshot/load, 1.17 accepts it', async () => {
    const load = { snapshot_path: 'missing.snap', mem_file_path: 'missing.mem', huge_pages: 'None' };
    const old = await startDouble([], { version: '1.16' });
    assert.equal((await old.call('GET', '/')).body.vmm_version, '1.16.1');
    assertFault(await old.call('PUT', '/snapshot/load', load), /unknown field `huge_pages`/);
    assert.equal(await stateOf(old), 'Not started');
    const current = await startDouble([], { version: '1.17' });
    // Accepted by the contract; the load itself then fails on the missing file (and the process ends).
    assertFault(await current.call('PUT', '/snapshot/load', load), /cannot read the state file/);
    assert.equal(await current.exited, 1);
    // A driver that passes only the real argv picks the version by the shim it runs.
    const byShim = await startDouble([], { shim: SHIM_1_16 });
    assert.equal((await byShim.call('GET', '/')).body.vmm_version, '1.16.1');
    assertFault(await byShim.call('PUT', '/snapshot/load', load), /unknown field `huge_pages`/);
  });
});
