#!/usr/bin/env node
// Runs every test file under test/ (or under the files and folders named) with node's test runner,
// TypeScript via tsx.
// Node 20's --test does not expand globs, so the files are found here. Afterwards it checks that
// the tests left nothing behind on the host (test/support/leak-check.cjs says what it looks at).
import { spawn } from 'node:child_process';
import { mkdtempSync, readFileSync, readdirSync, rmSync, statSync } from 'node:fs';
import { availableParallelism, tmpdir } from 'node:os';
import { join, relative } from 'node:path';
import { CLEAN_RUN, RUN_MARK, leakReport, leaksSince, newRunMark, snapshot } from '../test/support/leak-check.cjs';

function find(dir) {
  return readdirSync(dir).flatMap((name) => {
    const path = join(dir, name);
    if (statSync(path).isDirectory()) return find(path);
    return name.endsWith('.test.ts') ? [path] : [];
  });
}

const named = process.argv.slice(2);
const files = (named.length > 0 ? named : ['test'])
  .flatMap((path) => (statSync(path).isDirectory() ? find(path) : [path]))
  .map((file) => relative('.', file))
  .sort();
const mark = newRunMark();
const before = snapshot(mark);
// No single test may hang the run (--test-timeout), nor may a handle a test forgot to close keep
// its file alive after its tests end (--test-force-exit: the leak check below still sees any
// process it left). The whole run has a deadline too, so CI always ends with a report.
// A place for what the test files share during this run only (the embedded database template of
// test/support/embedded-db-template.ts), removed when the run ends.
const shared = mkdtempSync(join(tmpdir(), 'nexus-test-run-'));
// The whole suite takes about 19 minutes on a quiet 2-core machine (measured): the deadline is
// twice that, so a loaded machine still finishes and a hung run still ends with a report.
const deadlineMinutes = Number(process.env.NEXUS_TEST_DEADLINE_MINUTES ?? 40);
let runner;
let overran = false;
const deadline = setTimeout(() => {
  overran = true;
  process.stderr.write(`\nThe tests ran past their ${deadlineMinutes}-minute deadline: stopping them.\n`);
  try {
    if (runner) process.kill(-runner.pid, 'SIGKILL');
  } catch {
    // already gone
  }
}, deadlineMinutes * 60_000);
// Each runner has a process group of its own (so the deadline can stop all of it): pass Ctrl-C on.
for (const signal of ['SIGINT', 'SIGTERM']) process.on(signal, () => runner?.kill(signal));

/** Runs `batch` in one test runner, `concurrency` files at once; resolves with its exit code. */
function run(batch, concurrency) {
  runner = spawn(
    process.execPath,
    ['--import', 'tsx', '--test', '--test-reporter=spec', `--test-concurrency=${concurrency}`, '--test-timeout=600000', '--test-force-exit', ...batch],
    { stdio: 'inherit', detached: true, env: { ...process.env, NEXUS_TEST_PGLITE_TEMPLATE: join(shared, 'pglite'), [RUN_MARK]: mark } },
  );
  return new Promise((resolve) => runner.on('exit', (code) => resolve(code ?? 1)));
}

// Three lanes. Unit tests run on in-memory fakes and their own temp dirs: one per core. Files
// marked `// test-lane: parallel` use only their own managers, databases, temp dirs and ports
// (no host network, guest, cgroup or host-wide scan): two at a time. Every other file shares the
// host (bridges, guests, the leak check's view) and runs alone.
const PARALLEL_MARK = '// test-lane: parallel';
const laneOf = (file) => (file.startsWith('test/unit/') ? 'unit' : readFileSync(file, 'utf8').startsWith(PARALLEL_MARK) ? 'parallel' : 'alone');
const lanes = [
  { name: 'unit', files: files.filter((file) => laneOf(file) === 'unit'), concurrency: availableParallelism() },
  { name: 'parallel', files: files.filter((file) => laneOf(file) === 'parallel'), concurrency: Math.min(2, availableParallelism()) },
  { name: 'alone', files: files.filter((file) => laneOf(file) === 'alone'), concurrency: 1 },
];
// NEXUS_TEST_LANES=unit,parallel runs only those lanes (CI's second Node.js version: the files that share nothing with the host).
const chosen = new Set((process.env.NEXUS_TEST_LANES ?? 'unit,parallel,alone').split(',').map((lane) => lane.trim()));
let status = 0;
for (const lane of lanes) if (chosen.has(lane.name) && lane.files.length > 0 && !overran) status = Math.max(status, await run(lane.files, lane.concurrency));
clearTimeout(deadline);
rmSync(shared, { recursive: true, force: true });

const left = leaksSince(before, mark);
if (left.length > 0) {
  process.stderr.write(leakReport(left));
  process.exit(1);
}
process.stdout.write(CLEAN_RUN);
process.exit(overran ? 1 : (status ?? 1));
