/**
 * What snapshots cost and buy, through the manager's API with a real guest (the test image,
 * 1 vCPU, 128 MiB, on its project's default network): a cold boot (create -> boot marker on the
 * console), snapshots of the running guest (POST /v1/vms/:id/snapshots -> 201, the guest paused
 * for the capture and running again) with their size, and new VMs made from a snapshot
 * (POST /v1/snapshots/:id/instantiate -> running, and -> answering a ping at its own address),
 * and a hibernated VM woken in place (-> running, -> answering a ping), median of 5 each, each as
 * a ratio to the cold boot. Prints; asserts nothing.
 */
import { execFile } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { startGuestHost } from '../test/support/guest-host.js';
import { send } from '../test/support/test-manager.js';

const RUNS = Number(process.env.BENCH_RUNS ?? 5);
const median = (values: number[]) => [...values].sort((a, b) => a - b)[Math.floor(values.length / 2)] ?? NaN;
const run = promisify(execFile);

async function until(what: string, check: () => boolean | Promise<boolean>, timeoutMs = 120_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 5));
  }
}

const answersPing = (ip: string) =>
  run('busybox', ['ping', '-c', '1', '-W', '1', ip]).then(
    () => true,
    () => false,
  );

const host = await startGuestHost();
const url = (path: string) => `${host.manager.url}${path}`;
try {
  const startedAt = Date.now();
  const created = await send(url('/v1/vms'), { body: host.guest('bench-snapshot') });
  if (created.status !== 201) throw new Error(`create answered ${created.status}: ${JSON.stringify(created.body)}`);
  const id = created.body.id as string;
  const consoleLog = join(host.runDir, 'vms', id, 'logs', 'console.log');
  const consoleText = () => (existsSync(consoleLog) ? readFileSync(consoleLog, 'utf8') : '');
  await until('the boot marker', () => consoleText().includes('NEXUS_BOOT_OK'));
  const coldBoot = Date.now() - startedAt;
  await until('the guest counting', () => consoleText().includes('NEXUS_COUNTER'));

  const takes: number[] = [];
  const sizes: number[] = [];
  let kept = '';
  for (let round = 0; round < RUNS; round++) {
    const began = performance.now();
    const taken = await send(url(`/v1/vms/${id}/snapshots`), { body: {} });
    takes.push(Math.round(performance.now() - began));
    if (taken.status !== 201) throw new Error(`snapshot answered ${taken.status}: ${JSON.stringify(taken.body)}`);
    sizes.push(taken.body.size_bytes);
    if (kept) await send(url(`/v1/snapshots/${kept}`), { method: 'DELETE' });
    kept = taken.body.id;
  }

  const toRunning: number[] = [];
  const toPing: number[] = [];
  for (let round = 0; round < RUNS; round++) {
    const began = performance.now();
    const made = await send(url(`/v1/snapshots/${kept}/instantiate?wait=60`), { body: { name: `bench-clone-${round}` } });
    toRunning.push(Math.round(performance.now() - began));
    if (made.status !== 201 || made.body.state !== 'running') throw new Error(`instantiate answered ${made.status}: ${JSON.stringify(made.body)}`);
    await until('the clone answering a ping', () => answersPing(made.body.addresses[0].ip));
    toPing.push(Math.round(performance.now() - began));
    await send(url(`/v1/vms/${made.body.id}?wait=60`), { method: 'DELETE' });
  }

  const hibernates: number[] = [];
  const wakes: number[] = [];
  const wakesToPing: number[] = [];
  const ip = created.body.addresses[0].ip as string;
  for (let round = 0; round < RUNS; round++) {
    let began = performance.now();
    const slept = await send(url(`/v1/vms/${id}/hibernate?wait=60`), { method: 'POST' });
    if (slept.status !== 200) throw new Error(`hibernate answered ${slept.status}: ${JSON.stringify(slept.body)}`);
    hibernates.push(Math.round(performance.now() - began));
    began = performance.now();
    const woke = await send(url(`/v1/vms/${id}/wake?wait=60`), { method: 'POST' });
    if (woke.status !== 200) throw new Error(`wake answered ${woke.status}: ${JSON.stringify(woke.body)}`);
    wakes.push(Math.round(performance.now() - began));
    await until('the woken guest answering a ping', () => answersPing(ip));
    wakesToPing.push(Math.round(performance.now() - began));
  }

  const mib = (bytes: number) => `${(bytes / 2 ** 20).toFixed(1)} MiB`;
  const line = (label: string, values: number[]) =>
    console.log(`  ${label.padEnd(44)} ${median(values)} ms   [${values.join(', ')}]   ${(median(values) / coldBoot).toFixed(2)}x the cold boot`);
  console.log(`\nsnapshots through the manager (1 vCPU, 128 MiB guest on a network; memory, state and a copy of its disk), median of ${RUNS}\n`);
  console.log(`  ${'cold boot (create -> boot marker)'.padEnd(44)} ${coldBoot} ms`);
  line('snapshot create (POST -> 201, running again)', takes);
  console.log(`  ${'snapshot size'.padEnd(44)} ${mib(median(sizes))}   [${sizes.map(mib).join(', ')}]`);
  line('instantiate -> running (?wait)', toRunning);
  line('instantiate -> answering a ping', toPing);
  line('hibernate (POST -> hibernated, ?wait)', hibernates);
  line('wake -> running (?wait)', wakes);
  line('wake -> answering a ping', wakesToPing);
  console.log('');
} finally {
  await host.close();
}
