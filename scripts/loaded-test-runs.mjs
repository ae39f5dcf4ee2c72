#!/usr/bin/env node
// Runs the fast tiers (unit, integration) several times while busy loops load every core, and says
// how many runs passed: the check that no test leans on timing a loaded machine cannot keep.
//
//   node scripts/loaded-test-runs.mjs [runs, default 10] [busy loops, default one per core]
//
// Each run is scripts/run-tests.mjs (leak check included); the busy loops are this script's
// children, stopped by their pids when it ends, Ctrl-C included.
import { spawn } from 'node:child_process';
import { availableParallelism } from 'node:os';

const runs = Number(process.argv[2] ?? 10);
const loops = Number(process.argv[3] ?? availableParallelism());

const busy = Array.from({ length: loops }, () => spawn(process.execPath, ['-e', 'for (;;) {}'], { stdio: 'ignore' }));
const stopBusy = () => {
  for (const child of busy) child.kill('SIGKILL');
};
process.on('exit', stopBusy);
for (const signal of ['SIGINT', 'SIGTERM']) {
  process.on(signal, () => {
    stopBusy();
    process.exit(130);
  });
}

const results = [];
for (let run = 1; run <= runs; run++) {
  const started = Date.now();
  const code = await new Promise((resolve) => {
    spawn(process.execPath, ['scripts/run-tests.mjs', 'test/unit', 'test/integration'], { stdio: 'inherit' }).on('exit', (status) => resolve(status));
  });
  results.push({ run, passed: code === 0, minutes: (Date.now() - started) / 60_000 });
  process.stdout.write(
    `\nloaded run ${run}/${runs} (${loops} busy loops): ${code === 0 ? 'passed' : `FAILED (exit ${code})`} in ${results.at(-1).minutes.toFixed(1)} min\n\n`,
  );
}
const passed = results.filter((result) => result.passed).length;
process.stdout.write(
  `${passed} of ${runs} loaded runs passed: ${results.map((r) => `${r.run}:${r.passed ? 'ok' : 'FAIL'}(${r.minutes.toFixed(1)}m)`).join(' ')}\n`,
);
process.exit(passed === runs ? 0 : 1);
