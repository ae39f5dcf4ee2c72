import assert from 'node:assert/strict';
import { mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import parsePrometheusTextFormat from 'parse-prometheus-text-format';
import type { AgentHarness } from '../support/agent-harness.js';
import { assertErrorContract } from '../support/error-contract.js';
import { type GuestHost, startGuestHost } from '../support/guest-host.js';
import { eventually } from '../support/nexus-process.js';
import { openEventStream } from '../support/sse-client.js';
import { type TestManager, send, startTestManager } from '../support/test-manager.js';

/** A real guest's console, read and followed through the manager, which relays from its agent. */
describe('observing real guests through the manager: logs, metrics, failures', () => {
  let host: GuestHost;
  let manager: TestManager;
  let agent: AgentHarness;
  let runDir: string;
  let subnet: string;
  let id: string;
  let junkDir: string;
  const guest = (name: string, extra: Record<string, unknown> = {}) => host.guest(name, extra);

  before(async () => {
    host = await startGuestHost({ agentEnv: { NEXUS_METRICS_INTERVAL_MS: '500' } });
    ({ manager, agent, runDir, subnet } = host);
    // A file under the image store that is not a kernel (the store is the shared test cache: removed after).
    junkDir = join(host.imageStore, `junk-${process.pid}`);
    mkdirSync(junkDir, { recursive: true });
    writeFileSync(join(junkDir, 'vmlinux'), 'this is not a kernel\n'.repeat(64));
  });
  after(async () => {
    await host?.close();
    if (junkDir) rmSync(junkDir, { recursive: true, force: true });
  });

  const failedVm = async (id: string, timeoutMs: number) => {
    let vm: any;
    await eventually(
      `VM ${id} is failed`,
      async () => {
        vm = (await send(`${manager.url}/v1/vms/${id}`)).body;
        return vm.state === 'failed' && vm.last_error !== null;
      },
      timeoutMs,
    );
    return vm;
  };

  const url = (path: string) => `${manager.url}${path}`;

  it('the boot marker arrives over the stream while the guest boots; a reconnect with Last-Event-ID resumes right after it', async () => {
    // Created stopped, so the stream is open before the guest prints its first line.
    const created = await send(url('/v1/vms?wait=30'), { body: guest('logs-1', { desired_state: 'stopped' }) });
    assert.equal(created.status, 201, JSON.stringify(created.body));
    id = created.body.id;
    await eventually(
      'the VM is made on its host, not started',
      async () => {
        const vm = (await send(url(`/v1/vms/${id}`))).body;
        return vm.host_id !== null && vm.state === 'configured';
      },
      30_000,
    );
    const stream = await openEventStream(url(`/v1/vms/${id}/logs/stream`));
    try {
      assert.equal(stream.status, 200);
      assert.match(stream.headers.get('content-type') ?? '', /^text\/event-stream/);
      assert.equal((await send(url(`/v1/vms/${id}/start`), { method: 'POST' })).status, 200);
      const seen = await stream.until((event) => event.data.includes('NEXUS_BOOT_OK'), 120_000);
      const marker = seen.at(-1);
      assert.ok(marker?.id && /^\d+$/.test(marker.id), 'each line carries its offset as the event id');
      for (let i = 1; i < seen.length; i++) assert.ok(Number(seen[i]!.id) > Number(seen[i - 1]!.id), 'ids grow');
      // The guest prints a counter every second: the lines after the marker, as this stream saw them.
      const afterMarker = [await stream.next(30_000), await stream.next(30_000)];
      assert.ok(
        afterMarker.every((event) => event?.event === 'message' && Number(event.id) > Number(marker.id)),
        JSON.stringify(afterMarker),
      );
      stream.close();

      // Resuming after the marker gives exactly those lines again, the first one first: not the
      // marker again, nor only what the guest prints from now on.
      const resumed = await openEventStream(url(`/v1/vms/${id}/logs/stream`), { 'last-event-id': marker.id });
      try {
        assert.deepEqual([await resumed.next(30_000), await resumed.next(30_000)], afterMarker, `resumed after offset ${marker.id}`);
      } finally {
        resumed.close();
      }
    } finally {
      stream.close();
    }
  });

  it('tail answers the last N lines, and the VMM log too', async () => {
    const three = await send(url(`/v1/vms/${id}/logs?tail=3`));
    assert.equal(three.status, 200, JSON.stringify(three.body));
    assert.equal(three.body.source, 'console');
    assert.equal(three.body.lines.length, 3);
    const all = await send(url(`/v1/vms/${id}/logs?tail=10000`));
    assert.ok(
      all.body.lines.some((line: string) => line.includes('NEXUS_BOOT_OK')),
      'the boot marker is in the whole log',
    );
    assert.ok(all.body.lines.join('\n').includes(three.body.lines.join('\n')), 'the last 3 lines are lines of the whole log, in order');
    assert.ok(three.body.next_offset > 0, JSON.stringify(three.body));
    // The VMM's log is QEMU's standard error, not the console: a guest that booted well leaves it
    // empty under TCG, so its content is checked on a QEMU that complains (the kernel that is not one, below).
    const vmm = await send(url(`/v1/vms/${id}/logs?source=vmm`));
    assert.equal(vmm.status, 200, JSON.stringify(vmm.body));
    assert.equal(vmm.body.source, 'vmm');
    const vmmFile = readFileSync(join(runDir, 'vms', id, 'logs', 'vmm.log'), 'utf8');
    assert.deepEqual(vmm.body.lines, vmmFile.split('\n').filter(Boolean).slice(-200), 'the lines of logs/vmm.log');
    assert.ok(!vmm.body.lines.some((line: string) => line.includes('NEXUS_BOOT_OK')), `not the console: ${JSON.stringify(vmm.body.lines)}`);
  });

  it("a client's request id appears in the manager's and the agent's log lines for that call", async () => {
    const requestId = `trace-${Date.now()}`;
    const answer = await send(url(`/v1/vms/${id}/logs?tail=1`), { headers: { 'x-request-id': requestId } });
    assert.equal(answer.status, 200);
    assert.equal(answer.headers.get('x-request-id'), requestId);
    assert.ok(
      manager.logs.some((line) => line.request_id === requestId && line.route === '/v1/vms/:id/logs'),
      'the manager logged the request under its id',
    );
    await eventually('the agent logged the relayed call under the same id', () =>
      agent.process
        .output()
        .split('\n')
        .some((line) => line.includes(`"request_id":"${requestId}"`) && line.includes('/agent/v1/vms/:id/logs')),
    );
  });

  it('bad input: an unknown source or a tail out of range is a 400; an unknown VM a 404', async () => {
    assertErrorContract(await send(url(`/v1/vms/${id}/logs?source=kernel`)), 400, 'validation_failed');
    assertErrorContract(await send(url(`/v1/vms/${id}/logs?tail=-1`)), 400, 'validation_failed');
    assertErrorContract(await send(url(`/v1/vms/${id}/logs?tail=10001`)), 400, 'validation_failed');
    assertErrorContract(await send(url(`/v1/vms/${id}/logs?lines=3`)), 400, 'validation_failed');
    assertErrorContract(await send(url('/v1/vms/00000000-0000-4000-8000-000000000000/logs')), 404, 'not_found');
    assertErrorContract(await send(url('/v1/vms/00000000-0000-4000-8000-000000000000/logs/stream')), 404, 'not_found');
  });

  it('dev mode tails a log by path under the VM folders; any other path is a 403; production mode has no such route', async () => {
    const consoleLog = join(runDir, 'vms', id, 'logs', 'console.log');
    const tailed = await send(url(`/v1/logs/tail?path=${encodeURIComponent(consoleLog)}&tail=2`));
    assert.equal(tailed.status, 200, JSON.stringify(tailed.body));
    assert.equal(tailed.body.lines.length, 2);
    for (const path of [
      '/etc/passwd',
      join(runDir, 'agent', 'identity.json'),
      `${runDir}/vms/../agent/identity.json`,
      `${runDir}/vms/${id}/../../agent/identity.json`,
      `${runDir}/images/test/vmlinux`,
    ]) {
      assertErrorContract(await send(url(`/v1/logs/tail?path=${encodeURIComponent(path)}`)), 403, 'forbidden');
    }
    assertErrorContract(await send(url('/v1/logs/tail?path=vms/x.log')), 400, 'bad_request');
    assertErrorContract(await send(url('/v1/logs/tail')), 400, 'validation_failed');
    const production = await startTestManager({ mode: 'production' });
    try {
      assertErrorContract(await send(`${production.url}/v1/logs/tail?path=${encodeURIComponent(consoleLog)}`), 404, 'route_not_found');
    } finally {
      await production.dispose();
    }
  });

  it('metrics records update while the guest runs; block and net counters grow as it writes to disk and pings the host', async () => {
    const bootArgs = `console=ttyS0 reboot=t panic=1 root=/dev/vda rw nexus.ip=${subnet}.9/24 nexus.gw=${subnet}.1 nexus.exercise=1`;
    const created = await send(url('/v1/vms?wait=30'), { body: guest('busy', { boot_args: bootArgs }) });
    assert.equal(created.status, 201, JSON.stringify(created.body));
    const busy = created.body.id;
    await eventually(
      'the guest booted',
      async () => (await send(url(`/v1/vms/${busy}/logs?tail=50`))).body.lines?.some((line: string) => line.includes('NEXUS_BOOT_OK')),
      120_000,
    );
    const recent = async () => (await send(url(`/v1/vms/${busy}/metrics/recent?window=30s`))).body.items as any[];
    const first = (await recent()).at(-1);
    assert.ok(first, 'records exist once the VMM runs');
    assert.equal(first.vmm, 'qemu');
    assert.ok(first.vcpu_seconds > 0 && first.rss_bytes > 1024 * 1024, JSON.stringify(first));
    assert.ok(Array.isArray(first.raw.blockstats), JSON.stringify(first.raw));
    assert.equal(first.raw.status, 'running', "QEMU's run status from query-status");
    let last = first;
    await eventually(
      'block writes and network packets both ways grow',
      async () => {
        last = (await recent()).at(-1);
        return (
          Date.parse(last.at) > Date.parse(first.at) &&
          last.block.write_bytes > first.block.write_bytes &&
          last.block.write_ops > first.block.write_ops &&
          last.net.tx_packets > first.net.tx_packets &&
          last.net.rx_packets > first.net.rx_packets &&
          last.vcpu_seconds >= first.vcpu_seconds
        );
      },
      30_000,
    );
    const records = await recent();
    assert.ok(records.length >= 2, `records: ${JSON.stringify(records)}`);
    for (let i = 1; i < records.length; i++) assert.ok(Date.parse(records[i].at) >= Date.parse(records[i - 1].at), 'oldest first');
    const alias = await send(url(`/v1/metrics/recent?id=${busy}&window=1m`));
    assert.equal(alias.status, 200);
    assert.ok(alias.body.items.length >= records.length - 2, `the alias answers the same records: ${alias.body.items.length} of ${records.length}`);
    assertErrorContract(await send(url(`/v1/vms/${busy}/metrics/recent?window=2h`)), 400, 'validation_failed');
    assertErrorContract(await send(url(`/v1/vms/${busy}/metrics/recent?window=61m`)), 400, 'validation_failed');
    assertErrorContract(await send(url('/v1/metrics/recent')), 400, 'validation_failed');
    assert.equal((await send(url(`/v1/vms/${busy}?wait=30`), { method: 'DELETE' })).status, 200);
  });

  it("a kernel that is not a kernel: failed, with QEMU's own message and a suggestion", async () => {
    const created = await send(url('/v1/vms'), { body: guest('not-a-kernel', { kernel_path: join(runDir, 'images', `junk-${process.pid}`, 'vmlinux') }) });
    assert.equal(created.status, 201, JSON.stringify(created.body));
    const vm = await failedVm(created.body.id, 60_000);
    assert.equal(vm.last_error.reason, 'vmm_failed');
    assert.match(vm.last_error.message, /QEMU exited while starting: .*qemu/i);
    assert.match(vm.last_error.suggestion, /kernel/);
    const events = (await send(url(`/v1/vms/${created.body.id}/events`))).body.items;
    assert.ok(
      events.some((event: any) => event.level === 'error' && /QEMU exited while starting/.test(event.message)),
      JSON.stringify(events),
    );
    // QEMU's own words are in its log (source=vmm), where the error quoted them from.
    const vmm = await send(url(`/v1/vms/${created.body.id}/logs?source=vmm`));
    assert.equal(vmm.status, 200, JSON.stringify(vmm.body));
    const said = (vmm.body.lines as string[]).filter((line) => /^qemu[\w-]*: \S/.test(line));
    assert.ok(said.length > 0, `QEMU's complaint in its log: ${JSON.stringify(vmm.body)}`);
    for (const line of said) assert.ok(vm.last_error.message.includes(line), `the error quotes QEMU's "${line}": ${vm.last_error.message}`);
    assert.equal((await send(url(`/v1/vms/${created.body.id}?wait=30`), { method: 'DELETE' })).status, 200);
  });

  it('a guest that panics on boot: failed after its restarts, with the panic in console_tail', async () => {
    const bootArgs = 'console=ttyS0 reboot=t panic=1 root=/dev/vda rw rdinit=/nonexistent init=/nonexistent';
    const created = await send(url('/v1/vms'), { body: guest('panics', { boot_args: bootArgs }) });
    assert.equal(created.status, 201, JSON.stringify(created.body));
    const vm = await failedVm(created.body.id, 180_000);
    assert.equal(vm.last_error.reason, 'vmm_exited');
    assert.match(vm.last_error.message, /exited 3 times soon after starting/);
    assert.ok(vm.last_error.suggestion, JSON.stringify(vm.last_error));
    assert.ok(
      vm.last_error.console_tail.some((line: string) => /Kernel panic/.test(line)),
      `console_tail: ${JSON.stringify(vm.last_error.console_tail)}`,
    );
    // It stays failed: no more restarts until someone acts.
    const events = (await send(url(`/v1/vms/${created.body.id}/events`))).body.items.length;
    await new Promise((resolve) => setTimeout(resolve, 3000));
    assert.equal((await send(url(`/v1/vms/${created.body.id}`))).body.state, 'failed');
    assert.equal((await send(url(`/v1/vms/${created.body.id}/events`))).body.items.length, events);
    assert.equal((await send(url(`/v1/vms/${created.body.id}?wait=30`), { method: 'DELETE' })).status, 200);
  });

  it('/metrics on manager and agent parse as Prometheus text and hold the families operators need', async () => {
    const families = (text: string) => new Map(parsePrometheusTextFormat(text).map((family) => [family.name, family]));
    const managerText = String((await send(url('/metrics'))).body);
    const manager$ = families(managerText);
    for (const name of [
      'nexus_manager_http_requests_total',
      'nexus_manager_http_request_duration_seconds',
      'nexus_manager_reconcile_queue_depth',
      'nexus_manager_reconcile_actions_total',
      'nexus_manager_convergence_seconds',
      'nexus_manager_vms',
      'nexus_manager_hosts',
      'nexus_manager_orphans_removed_total',
      'process_cpu_user_seconds_total',
      'process_resident_memory_bytes',
    ]) {
      assert.ok(manager$.has(name), `the manager's /metrics has ${name}`);
    }
    const actions = manager$.get('nexus_manager_reconcile_actions_total')!.metrics;
    assert.ok(
      actions.some((sample) => sample.labels?.action === 'start' && sample.labels?.result === 'ok' && Number(sample.value) > 0),
      JSON.stringify(actions),
    );
    assert.ok(
      actions.some((sample) => sample.labels?.action === 'start' && sample.labels?.result === 'failed'),
      `the kernel that is not one: ${JSON.stringify(actions)}`,
    );
    // By host and state, as GET /v1/vms tells them (the first guest still runs; the others were deleted after their checks).
    const fleet = manager$.get('nexus_manager_vms')!.metrics;
    const hostNames = new Map(((await send(url('/v1/hosts'))).body.items as Array<{ id: string; name: string }>).map((one) => [one.id, one.name]));
    const counted = new Map<string, number>();
    for (const vm of (await send(url('/v1/vms?limit=100'))).body.items as Array<{ host_id: string | null; state: string }>) {
      const key = `${vm.host_id ? hostNames.get(vm.host_id) : ''}|${vm.state}`;
      counted.set(key, (counted.get(key) ?? 0) + 1);
    }
    assert.ok(fleet.length > 0 && counted.size > 0, `the running guest is counted: ${JSON.stringify(fleet)}`);
    assert.deepEqual(
      new Map(fleet.map((sample) => [`${sample.labels?.host}|${sample.labels?.state}`, Number(sample.value)])),
      counted,
      'one sample per host and state, with as many VMs as the API lists',
    );
    assert.equal(manager$.get('nexus_manager_hosts')!.metrics.find((sample) => sample.labels?.status === 'ready')?.value, '1');
    assert.equal(manager$.get('nexus_manager_convergence_seconds')!.type, 'HISTOGRAM');
    assert.match(managerText, /^nexus_manager_convergence_seconds_count [1-9]\d*$/m, 'created VMs converged');

    const agentText = String((await agent.call('GET', '/metrics')).body);
    const agent$ = families(agentText);
    for (const name of [
      'nexus_agent_http_requests_total',
      'nexus_agent_http_request_duration_seconds',
      'nexus_agent_vmm_launch_seconds',
      'nexus_agent_driver_errors_total',
      'nexus_agent_orphans_removed_total',
      'process_resident_memory_bytes',
    ]) {
      assert.ok(agent$.has(name), `the agent's /metrics has ${name}`);
    }
    // The parser keeps a histogram's buckets but not its labels: read the count of QEMU launches from the text.
    assert.equal(agent$.get('nexus_agent_vmm_launch_seconds')!.type, 'HISTOGRAM');
    const launched = /^nexus_agent_vmm_launch_seconds_count\{driver="qemu",result="ok"\} (\d+)$/m.exec(agentText);
    assert.ok(launched && Number(launched[1]) >= 3, `launches of QEMU counted: ${launched?.[0]}`);
    const errors = agent$.get('nexus_agent_driver_errors_total')!.metrics;
    assert.ok(
      errors.some((sample) => sample.labels?.operation === 'start' && sample.labels?.code === 'vmm_failed'),
      JSON.stringify(errors),
    );
  });

  it('a stream of a VM being deleted ends with a final end event', async () => {
    const stream = await openEventStream(url(`/v1/vms/${id}/logs/stream`));
    try {
      assert.equal((await send(url(`/v1/vms/${id}?wait=30`), { method: 'DELETE' })).status, 200);
      const events = await stream.until((event) => event.event === 'end', 20_000);
      assert.deepEqual(JSON.parse(events.at(-1)!.data), { reason: 'vm_deleted' });
      assert.equal(await stream.next(5000), undefined, 'the server closed the stream');
    } finally {
      stream.close();
    }
  });
});
