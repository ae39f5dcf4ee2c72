import { randomUUID } from 'node:crypto';
import assert from 'node:assert/strict';
import { existsSync, mkdirSync, readFileSync, symlinkSync, writeFileSync } from 'node:fs';
import { request as httpRequest } from 'node:http';
import { createServer } from 'node:net';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { tapNameOf } from '../../src/contracts/host-names.js';
import { readLink } from '../../src/agent/host/net/ip-command.js';
import { assertErrorContract } from '../support/error-contract.js';
import { type FirecrackerAgent, doubleImage, doubleVmSpec, startFirecrackerAgent } from '../support/firecracker-agent.js';
import { eventually, isAlive } from '../support/nexus-process.js';
import { testVmId } from '../support/net-names.js';
import { tempDir } from '../support/temp-dir.js';

/**
 * The agent's VM flow on the Firecracker driver, against the API double (which refuses any request
 * the swagger does not allow, and enforces Firecracker's phase rules): ensure, start, pause,
 * resume, snapshot, stop, restore into a fresh process, rate-limit update, delete; and the socket proxy.
 */
for (const apiVersion of ['1.17', '1.16'] as const)
  describe(`agent on the Firecracker driver (API double, v${apiVersion})`, () => {
    const dir = tempDir('nexus-fc-agent-');
    const runDir = join(dir.path, 'run');
    let fc: FirecrackerAgent;
    const created: string[] = [];

    before(async () => {
      const image = doubleImage(runDir);
      mkdirSync(join(image.kernel, '..'), { recursive: true });
      writeFileSync(image.kernel, 'a kernel the double never runs');
      writeFileSync(image.rootfs, Buffer.alloc(1 << 20));
      fc = await startFirecrackerAgent({ runDir, proxyTimeoutMs: 1500, apiVersion });
    });
    after(async () => {
      for (const id of created) await fc?.call('DELETE', `/agent/v1/vms/${id}`).catch(() => undefined);
      await fc?.close();
      dir.remove();
    });

    const spec = (extra: Record<string, unknown> = {}) => doubleVmSpec(runDir, extra);
    const ensure = async (extra: Record<string, unknown> = {}) => {
      const id = testVmId();
      created.push(id);
      const response = await fc.call('PUT', `/agent/v1/vms/${id}`, spec(extra));
      assert.equal(response.status, 200, JSON.stringify(response.body));
      return id;
    };
    const act = async (id: string, action: string, extra: Record<string, unknown> = {}) => {
      const response = await fc.call('POST', `/agent/v1/vms/${id}/actions`, { action, ...extra });
      assert.equal(response.status, 200, JSON.stringify(response.body));
      return response.body;
    };
    const vmDir = (id: string) => join(runDir, 'vms', id);
    const proxy = (id: string, method: string, path: string, body?: unknown) => fc.call(method, `/agent/v1/vms/${id}/proxy${path}`, body);
    /** A GET whose path goes on the wire exactly as written (no URL normalization on the way). */
    const rawRequest = (path: string) =>
      new Promise<{ status: number; body: string }>((resolve, reject) => {
        const target = new URL(fc.agent.url);
        const request = httpRequest(
          { host: target.hostname, port: target.port, path, headers: { authorization: `Bearer ${fc.agent.identity.credential}` } },
          (response) => {
            let body = '';
            response
              .setEncoding('utf8')
              .on('data', (chunk: string) => (body += chunk))
              .on('end', () => resolve({ status: response.statusCode ?? 0, body }));
          },
        );
        request.on('error', reject).end();
      });

    it('runs the whole flow, each step checked against what the double reports', async () => {
      const id = await ensure();
      const started = await act(id, 'start');
      assert.equal(started.vm.state, 'running');
      assert.equal(started.vm.driver, 'firecracker', 'Firecracker is the default where it is available');
      const pid = started.vm.pid as number;
      assert.ok(isAlive(pid));
      assert.equal((await readLink(tapNameOf(id)))?.master, fc.bridge, 'its TAP is on the bridge');
      await eventually(
        'the guest console reaches the console log',
        () => readFileSync(join(vmDir(id), 'logs', 'console.log'), 'utf8').includes('NEXUS_BOOT_OK'),
        10_000,
      );
      assert.equal((await proxy(id, 'GET', '/')).body.state, 'Running');
      // Metrics: the agent flushes Firecracker's metrics at each sample and keeps normalized records.
      let records: any[] = [];
      await eventually(
        'metrics records from Firecracker',
        async () => {
          records = (await fc.call('GET', `/agent/v1/vms/${id}/metrics/recent?window=60s`)).body.items;
          return records.length >= 2;
        },
        10_000,
      );
      const record = records.at(-1);
      assert.equal(record.vmm, 'firecracker');
      assert.ok(record.rss_bytes > 0 && record.vcpu_seconds >= 0, JSON.stringify(record));
      assert.deepEqual(Object.keys(record.block).sort(), ['read_bytes', 'read_ops', 'write_bytes', 'write_ops']);
      assert.ok(typeof record.raw.utc_timestamp_ms === 'number', "the raw record is Firecracker's metrics line");
      assert.match(readFileSync(join(vmDir(id), 'metrics.json'), 'utf8'), /"utc_timestamp_ms"/, 'FlushMetrics wrote lines');

      assert.equal((await act(id, 'pause')).vm.state, 'paused');
      assert.equal((await proxy(id, 'GET', '/')).body.state, 'Paused');
      const snapshot = (await act(id, 'snapshot')).snapshot;
      assert.ok(existsSync(snapshot.state_file));
      assert.ok(existsSync(snapshot.memory_file), 'Firecracker keeps guest memory in a file of its own');
      assert.equal((await act(id, 'resume')).vm.state, 'running');

      const limited = await fc.call('PATCH', `/agent/v1/vms/${id}/drives/rootfs`, { bytes_per_second: 1_000_000, ops_per_second: 500 });
      assert.equal(limited.status, 200, JSON.stringify(limited.body));
      const config = (await proxy(id, 'GET', '/vm/config')).body;
      const rootfs = config.drives.find((drive: { drive_id: string }) => drive.drive_id === 'rootfs');
      assert.deepEqual(rootfs.rate_limiter, { bandwidth: { size: 1_000_000, refill_time: 1000 }, ops: { size: 500, refill_time: 1000 } });

      assert.equal((await act(id, 'stop', { timeout_ms: 5000 })).vm.state, 'stopped');
      await eventually('the VMM exited', () => !isAlive(pid), 5000);
      assert.equal(existsSync(join(vmDir(id), 'sock', 'fc.sock')), false, 'the socket Firecracker leaves behind is removed');

      const restored = await act(id, 'restore', { snapshot_id: snapshot.snapshot_id });
      assert.equal(restored.vm.state, 'running', 'loaded into a fresh process, then resumed');
      assert.notEqual(restored.vm.pid, pid);
      assert.equal((await proxy(id, 'GET', '/')).body.state, 'Running');

      const deleted = await fc.call('DELETE', `/agent/v1/vms/${id}`);
      assert.equal(deleted.status, 200);
      await eventually('the restored VMM exited', () => !isAlive(restored.vm.pid), 5000);
      assert.equal(existsSync(vmDir(id)), false);
      assert.equal(await readLink(tapNameOf(id)), undefined, 'its TAP is gone');
    });

    it('takes a snapshot kept on the host from a running VM: paused for it, its memory in a file of its own, then running again', async () => {
      const id = await ensure();
      assert.equal((await act(id, 'start')).vm.state, 'running');
      const sid = randomUUID();
      const taken = await fc.call('POST', `/agent/v1/vms/${id}/snapshots`, { snapshot_id: sid });
      assert.equal(taken.status, 201, JSON.stringify(taken.body));
      const dir = join(runDir, 'snapshots', sid);
      assert.equal(taken.body.snapshot.state_file, join(dir, 'state.bin'));
      assert.equal(taken.body.snapshot.memory_file, join(dir, 'memory.bin'), 'Firecracker keeps guest memory in a file of its own');
      assert.ok(existsSync(taken.body.snapshot.state_file) && existsSync(taken.body.snapshot.memory_file));
      assert.equal(taken.body.snapshot.driver, 'firecracker');
      assert.equal(taken.body.vm.state, 'running');
      assert.equal((await proxy(id, 'GET', '/')).body.state, 'Running', 'resumed, as the double reports');
      // Unjailed, its saved state names this VM's drive paths: no new VM is made from it.
      const clone = testVmId();
      const refused = await fc.call('POST', `/agent/v1/snapshots/${sid}/instantiate`, { vm_id: clone, spec: spec() });
      assertErrorContract(refused, 409, 'conflict');
      assert.match(refused.body.fault_message, /cannot restore a snapshot as a new VM/);
      assert.equal(existsSync(vmDir(clone)), false, 'nothing of it is made');
      assert.equal((await fc.call('DELETE', `/agent/v1/snapshots/${sid}`)).status, 200);
      assert.equal(existsSync(dir), false);
    });

    it('starts paused (spawn) and boots on resume', async () => {
      const id = await ensure();
      const spawned = await fc.call('POST', `/agent/v1/vms/${id}/spawn`);
      assert.equal(spawned.status, 200, JSON.stringify(spawned.body));
      assert.equal((await proxy(id, 'GET', '/')).body.state, 'Not started');
      assert.equal((await act(id, 'resume')).vm.state, 'running');
      assert.equal((await proxy(id, 'GET', '/')).body.state, 'Running');
      await act(id, 'stop', { timeout_ms: 2000 });
    });

    it('proxy: relays an allowed call with Firecracker status and body, refuses other endpoints', async () => {
      const id = await ensure();
      await act(id, 'start');
      const info = await proxy(id, 'GET', '/');
      assert.equal(info.status, 200);
      assert.equal(info.body.app_name, 'Firecracker');
      assert.equal(info.body.id, id);
      const refused = await proxy(id, 'PUT', '/machine-config', { vcpu_count: 2, mem_size_mib: 256 });
      assert.equal(refused.status, 400, 'Firecracker refuses pre-boot calls after start, and the proxy passes that on');
      assert.match(refused.body.fault_message, /not supported after starting/);
      assert.equal(refused.body.error, undefined, "the body is Firecracker's own, not the agent's error contract");
      const flushed = await proxy(id, 'PUT', '/actions', { action_type: 'FlushMetrics' });
      assert.equal(flushed.status, 204);
      assert.equal(flushed.body, undefined, 'no body, as Firecracker sent none');
      for (const [method, path] of [
        ['PUT', '/mmds'],
        ['GET', '/mmds'],
        ['DELETE', '/drives/rootfs'],
        ['POST', '/actions'],
        ['PUT', '/vsock'],
      ] as const) {
        assertErrorContract(await proxy(id, method, path, method === 'PUT' || method === 'POST' ? {} : undefined), 403, 'forbidden');
      }
      // Fields naming host files or devices never reach Firecracker (it would open them as root).
      const limit = { drive_id: 'rootfs', rate_limiter: { bandwidth: { size: 1000, refill_time: 1000 } } };
      assert.equal((await proxy(id, 'PATCH', '/drives/rootfs', limit)).status, 204, 'a rate-limit change is relayed');
      const hostDisk = await proxy(id, 'PATCH', '/drives/rootfs', { drive_id: 'rootfs', path_on_host: '/dev/sda' });
      assertErrorContract(hostDisk, 403, 'forbidden');
      assert.match(hostDisk.body.fault_message, /path_on_host/);
      await act(id, 'pause');
      assertErrorContract(await proxy(id, 'PUT', '/snapshot/create', { snapshot_path: '/etc/passwd', mem_file_path: '/tmp/m' }), 403, 'forbidden');
      assertErrorContract(await proxy(id, 'PATCH', '/network-interfaces/eth0', { iface_id: 'eth0', host_dev_name: 'eth0' }), 403, 'forbidden');
      await act(id, 'resume');
    });

    describe('proxy: a socket outside the VM own socket folder is refused, however it is spelt', () => {
      let id: string;
      let other: string;
      let outside: string;
      const server = createServer();
      before(async () => {
        [id, other] = [await ensure(), await ensure()];
        await act(id, 'start');
        await act(other, 'start');
        outside = join(dir.path, 'elsewhere.sock');
        await new Promise<void>((resolve) => server.listen(outside, resolve));
        symlinkSync(outside, join(vmDir(id), 'sock', 'link.sock'));
      });
      after(() => server.close());
      const refused = async (sock: string) => {
        const response = await proxy(id, 'GET', `/?sock=${encodeURIComponent(sock)}`);
        assertErrorContract(response, 403, 'forbidden');
      };

      it('its own socket, named, is relayed', async () => {
        assert.equal((await proxy(id, 'GET', `/?sock=${encodeURIComponent(join(vmDir(id), 'sock', 'fc.sock'))}`)).status, 200);
      });
      it('.. out of its folder: 403', () => refused(join(vmDir(id), 'sock', '..', '..', other, 'sock', 'fc.sock')));
      it('a symlink out of its folder: 403', () => refused(join(vmDir(id), 'sock', 'link.sock')));
      it("another VM's socket: 403", () => refused(join(vmDir(other), 'sock', 'fc.sock')));
      it('a socket elsewhere on the host: 403', () => refused(outside));
      it('a relative path: 403', () => refused('sock/fc.sock'));
      it('percent-encoded traversal, in the socket and in the endpoint path: 403', async () => {
        assertErrorContract(await proxy(id, 'GET', `/?sock=${join(vmDir(id), 'sock')}/%2e%2e/%2e%2e/${other}/sock/fc.sock`), 403, 'forbidden');
        // fetch would resolve these dot segments itself; sent as they are, the agent must refuse them.
        for (const path of ['/%2e%2e/version', '/vm/../version', '/vm/%2E%2E/version', '//version']) {
          const raw = await rawRequest(`/agent/v1/vms/${id}/proxy${path}`);
          assert.equal(raw.status, 403, `${path}: ${raw.body}`);
          assert.equal(JSON.parse(raw.body).error, 'forbidden');
        }
      });
    });

    it('proxy: a VMM that does not answer in time is a 504; a VM on another driver is a 409', async () => {
      const id = await ensure();
      await act(id, 'start');
      // Make the VM's API stall: a listener that accepts and never answers, in place of the double's socket.
      const socket = join(vmDir(id), 'sock', 'fc.sock');
      const stall = join(vmDir(id), 'sock', 'stall.sock');
      const server = createServer(() => undefined);
      await new Promise<void>((resolve) => server.listen(stall, resolve));
      try {
        const timedOut = await proxy(id, 'GET', `/?sock=${encodeURIComponent(stall)}`);
        assertErrorContract(timedOut, 504, 'upstream_timeout');
        assert.ok(existsSync(socket));
      } finally {
        server.close();
      }
      const onQemu = await ensure({ driver: 'qemu' });
      const wrongDriver = await proxy(onQemu, 'GET', '/');
      assertErrorContract(wrongDriver, 409, 'conflict');
      assert.match(wrongDriver.body.suggestion, /Firecracker VMs/);
      const stopped = await ensure();
      assertErrorContract(await proxy(stopped, 'GET', '/'), 409, 'conflict');
    });
  });
