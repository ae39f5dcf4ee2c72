/**
 * How fast a VM's log answers through the manager (relayed from its agent): the last 200 lines
 * (`GET /v1/vms/:id/logs?tail=200`) and the first event of a stream (`/logs/stream?tail=10`),
 * for a real guest's console of a few kilobytes. The aim is 200 ms for both. Prints; asserts nothing.
 */
import { startGuestHost } from '../test/support/guest-host.js';
import { eventually } from '../test/support/nexus-process.js';
import { openEventStream } from '../test/support/sse-client.js';
import { send } from '../test/support/test-manager.js';

const TAILS = Number(process.env.BENCH_RUNS ?? 50);
const STREAMS = Math.max(5, Math.round(TAILS / 2));
const percentile = (values: number[], p: number) =>
  [...values].sort((a, b) => a - b)[Math.min(values.length - 1, Math.floor((p / 100) * values.length))] ?? NaN;

const host = await startGuestHost();
const { manager } = host;
try {
  const vm = (await send(`${manager.url}/v1/vms?wait=60`, { body: host.guest('bench-logs') })).body;
  await eventually(
    'the guest booted',
    async () => (await send(`${manager.url}/v1/vms/${vm.id}/logs?tail=50`)).body.lines?.some((line: string) => line.includes('NEXUS_BOOT_OK')),
    120_000,
  );

  const tails: number[] = [];
  let lines = 0;
  for (let i = 0; i < TAILS; i++) {
    const started = performance.now();
    const answer = await send(`${manager.url}/v1/vms/${vm.id}/logs?tail=200`);
    tails.push(performance.now() - started);
    lines = answer.body.lines.length;
  }
  const firsts: number[] = [];
  for (let i = 0; i < STREAMS; i++) {
    const started = performance.now();
    const stream = await openEventStream(`${manager.url}/v1/vms/${vm.id}/logs/stream?tail=10`);
    await stream.next(10_000);
    firsts.push(performance.now() - started);
    stream.close();
  }
  await send(`${manager.url}/v1/vms/${vm.id}?wait=30`, { method: 'DELETE' });

  const row = (name: string, values: number[]) =>
    `${name.padEnd(44)} ${String(values.length).padStart(5)} ${percentile(values, 50).toFixed(1).padStart(8)} ${percentile(values, 95).toFixed(1).padStart(8)} ${percentile(values, 99).toFixed(1).padStart(8)}`;
  process.stdout.write(`\nVM logs through the manager (real guest, ${lines}-line console tail; aim: 200 ms)\n\n`);
  process.stdout.write(`${'call'.padEnd(44)} ${'runs'.padStart(5)} ${'p50 ms'.padStart(8)} ${'p95 ms'.padStart(8)} ${'p99 ms'.padStart(8)}\n`);
  process.stdout.write(`${row('GET /v1/vms/:id/logs?tail=200', tails)}\n`);
  process.stdout.write(`${row('logs/stream?tail=10: first event', firsts)}\n`);
} finally {
  await host.close();
}
