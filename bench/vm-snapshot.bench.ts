/**
 * What a snapshot costs, through the manager's API with a real guest (the test image, 1 vCPU,
 * 128 MiB, no NIC): a cold boot (create -> boot marker on the console), then snapshots of the
 * running guest (POST /v1/vms/:id/snapshots -> 201, the guest paused for the capture and running
 * again), median of 5, with their size, each as a ratio to the cold boot. Prints; asserts nothing.
 */
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { startGuestHost } from '../test/support/guest-host.js';
import { send } from '../test/support/test-manager.js';

const RUNS = Number(process.env.BENCH_RUNS ?? 5);
const median = (values: number[]) => [...values].sort((a, b) => a - b)[Math.floor(values.length / 2)] ?? NaN;

async function until(what: string, check: () => boolean, timeoutMs = 120_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!check()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 5));
  }
}

const host = await startGuestHost();
const url = (path: string) => `${host.manager.url}${path}`;
try {
  const startedAt = Date.now();
  const created = await send(url('/v1/vms'), { body: host.guest('bench-snapshot', { nic: false }) });
  if (created.status !== 201) throw new Error(`create answered ${created.status}: ${JSON.stringify(created.body)}`);
  const id = created.body.id as string;
  const consoleLog = join(host.runDir, 'vms', id, 'logs', 'console.log');
  const console_ = () => (existsSync(consoleLog) ? readFileSync(consoleLog, 'utf8') : '');
  await until('the boot marker', () => console_().includes('NEXUS_BOOT_OK'));
  const coldBoot = Date.now() - startedAt;
  await until('the guest counting', () => console_().includes('NEXUS_COUNTER'));

  const times: number[] = [];
  const sizes: number[] = [];
  for (let run = 0; run < RUNS; run++) {
    const began = performance.now();
    const taken = await send(url(`/v1/vms/${id}/snapshots`), { body: {} });
    times.push(Math.round(performance.now() - began));
    if (taken.status !== 201) throw new Error(`snapshot answered ${taken.status}: ${JSON.stringify(taken.body)}`);
    sizes.push(taken.body.size_bytes);
    await send(url(`/v1/snapshots/${taken.body.id}`), { method: 'DELETE' });
  }
  const took = median(times);
  const mib = (bytes: number) => `${(bytes / 2 ** 20).toFixed(1)} MiB`;
  console.log(`\nsnapshots through the manager (1 vCPU, 128 MiB guest, no NIC; memory, state and a copy of its disk), median of ${RUNS}\n`);
  console.log(`  cold boot (create -> boot marker)       ${coldBoot} ms`);
  console.log(`  snapshot create (POST -> 201, running)  ${took} ms   [${times.join(', ')}]   ${(took / coldBoot).toFixed(2)}x the cold boot`);
  console.log(`  snapshot size                           ${mib(median(sizes))}   [${sizes.map(mib).join(', ')}]\n`);
} finally {
  await host.close();
}
