// test-lane: parallel (its own managers, hollow hosts, databases, temp dirs and ports: no host network, guest, cgroup or host-wide scan)
import assert from 'node:assert/strict';
import { appendFileSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { type VmLayout, vmLayout } from '../../src/contracts/vm-layout.js';
import { VmLogKeeper } from '../../src/agent/host/vm-log-keeper.js';
import { captureLogger } from '../support/capture-logger.js';
import { type HollowAgent, startHollowAgent } from '../support/hollow-agents.js';
import { eventually } from '../support/nexus-process.js';
import { type EventStream, type SseEvent, openEventStream } from '../support/sse-client.js';
import { tempDir } from '../support/temp-dir.js';
import { type TestManager, send, startTestManager } from '../support/test-manager.js';

/**
 * A VM's log stream, relayed by the manager from its agent, over a log file the test writes itself
 * (a hollow VM prints nothing): exactly where a reconnect resumes, and what a cut-back log sends.
 * The real guest's side (a booting console followed live) is in test/e2e/vm-logs.test.ts.
 */
describe('VM log stream: Last-Event-ID and rotation', () => {
  const dir = tempDir('nexus-log-stream-');
  let manager: TestManager;
  let hollow: HollowAgent;
  let vm: VmLayout;
  const url = (path: string) => `${manager.url}${path}`;
  const streamUrl = (query = '') => url(`/v1/vms/${vm.id}/logs/stream${query}`);
  /** What the stream sends for each line: its text, and the byte offset after it as the id. */
  let written: Array<{ id: string; data: string }> = [];
  let size = 0;
  const write = (...texts: string[]) => {
    for (const text of texts) {
      appendFileSync(vm.consoleLog, `${text}\n`);
      size += Buffer.byteLength(`${text}\n`);
      written.push({ id: String(size), data: text });
    }
  };
  /** The next `count` events of a stream, as id and data (and the event's name when not a line). */
  const take = async (stream: EventStream, count: number) => {
    const events: SseEvent[] = count === 0 ? [] : await stream.until(() => --count === 0, 20_000);
    return events.map((event) => (event.event === 'message' ? { id: event.id, data: event.data } : event));
  };

  before(async () => {
    manager = await startTestManager();
    hollow = await startHollowAgent(manager.url, (await manager.hosts.mintJoinToken(600)).token, join(dir.path, 'run'), 'log-stream-host');
    await eventually('the host is ready', async () => (await manager.hosts.list()).some((host) => host.status === 'ready'));
    const created = await send(url('/v1/vms?wait=30'), {
      body: { name: 'printer', vcpu: 1, mem_mib: 128, kernel_path: hollow.image.kernel, rootfs_path: hollow.image.rootfs },
    });
    assert.equal(created.status, 201, JSON.stringify(created.body));
    vm = vmLayout(hollow.runDir, created.body.id);
    mkdirSync(vm.logsDir, { recursive: true });
    writeFileSync(vm.consoleLog, '');
  });
  after(async () => {
    if (vm) await send(url(`/v1/vms/${vm.id}?wait=30`), { method: 'DELETE' });
    await hollow?.agent.close();
    await manager?.dispose();
    dir.remove();
  });

  it('a reconnect with Last-Event-ID gets exactly the lines after that offset (none again, none skipped), then each new line; tail is ignored', async () => {
    write(...Array.from({ length: 10 }, (_, i) => `line ${i + 1} of the first boot`));
    const first = await openEventStream(streamUrl('?tail=10'));
    let seen: Awaited<ReturnType<typeof take>>;
    try {
      assert.equal(first.status, 200);
      seen = await take(first, 10);
      assert.deepEqual(seen, written, 'the last 10 lines, each with the offset after it as its id');
    } finally {
      first.close();
    }

    // As an EventSource would after a drop: the id of the 4th line it saw.
    const resumed = await openEventStream(streamUrl('?tail=10'), { 'last-event-id': seen[3]!.id! });
    try {
      assert.equal(resumed.status, 200);
      assert.deepEqual(await take(resumed, 6), written.slice(4), 'lines 5 to 10: neither the tail again nor a jump to the end');
      write('line 11, written after the reconnect', 'line 12');
      assert.deepEqual(await take(resumed, 2), written.slice(10), 'then the new lines, in order, from where it was');
    } finally {
      resumed.close();
    }

    // Resuming at the last line's offset gives only what is written next.
    const caughtUp = await openEventStream(streamUrl(), { 'last-event-id': written.at(-1)!.id });
    try {
      write('line 13');
      assert.deepEqual(await take(caughtUp, 1), written.slice(12));
    } finally {
      caughtUp.close();
    }
  });

  it('a stream that has answered already holds its place: a line written right after it opened is its first event', async () => {
    // The place must be read before the answer's head goes out; read after it, a line written in
    // between would be taken for old and never sent. Several tries, each with a new stream, so a
    // place read late cannot go unnoticed by luck.
    for (let attempt = 1; attempt <= 20; attempt++) {
      const stream = await openEventStream(streamUrl());
      try {
        write(`written as stream ${attempt} opened`);
        assert.deepEqual(await take(stream, 1), written.slice(-1), `stream ${attempt}`);
      } finally {
        stream.close();
      }
    }
  });

  it("a log cut back by the agent's log keeper sends a rotated event, then the lines from the file's new start", async () => {
    const stream = await openEventStream(streamUrl());
    try {
      // Without tail, the stream starts at the end: the next line written is the first event, proof it follows.
      write('the last line before the cut, longer than the line after it');
      assert.deepEqual(await take(stream, 1), written.slice(-1));
      const before = readFileSync(vm.consoleLog);
      // The agent's own keeper, with a cap this log is over: it keeps the tail as console.log.1 and empties the file.
      const cut = await new VmLogKeeper(hollow.runDir, 64, captureLogger('log-keeper').log).sweep();
      assert.ok(cut.includes(vm.consoleLog), `the keeper cut the console: ${JSON.stringify(cut)}`);
      assert.deepEqual(readFileSync(`${vm.consoleLog}.1`), before.subarray(before.length - 16), 'its tail kept aside');
      size = 0;
      written = [];
      write('after the cut');
      assert.deepEqual(await take(stream, 2), [
        { event: 'rotated', id: '0', data: JSON.stringify({ reason: 'rotated' }) },
        { id: String(Buffer.byteLength('after the cut\n')), data: 'after the cut' },
      ]);
      write('and on');
      assert.deepEqual(await take(stream, 1), written.slice(-1), 'then it follows the new file');
    } finally {
      stream.close();
    }
  });

  it('a reader whose Last-Event-ID is past the end (the log was cut while it was away) gets rotated, then the file from its start', async () => {
    const stream = await openEventStream(streamUrl(), { 'last-event-id': String(size + 1_000_000) });
    try {
      assert.deepEqual(await take(stream, 1 + written.length), [{ event: 'rotated', id: '0', data: JSON.stringify({ reason: 'rotated' }) }, ...written]);
    } finally {
      stream.close();
    }
  });

  it('a Last-Event-ID that is not an offset is no resume: the tail comes as without one', async () => {
    for (const foreign of ['twelve', '-1', '1.5', '9'.repeat(16)]) {
      const stream = await openEventStream(streamUrl('?tail=1'), { 'last-event-id': foreign });
      try {
        assert.deepEqual(await take(stream, 1), written.slice(-1), `Last-Event-ID ${foreign}`);
      } finally {
        stream.close();
      }
    }
  });
});
