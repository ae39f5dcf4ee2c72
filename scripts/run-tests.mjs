#!/usr/bin/env node
// Runs every test file under test/ (or under the files and folders named) with node's test runner,
// TypeScript via tsx.
// Node 20's --test does not expand globs, so the files are found here. Afterwards it checks that
// the tests left no process of theirs behind (VMMs, agents, managers, Postgres servers).
import { spawn, spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, readdirSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, relative } from 'node:path';

function find(dir) {
  return readdirSync(dir).flatMap((name) => {
    const path = join(dir, name);
    if (statSync(path).isDirectory()) return find(path);
    return name.endsWith('.test.ts') ? [path] : [];
  });
}

/** pid -> command line of every process whose command line looks like one the tests start. */
function suspects() {
  const found = new Map();
  for (const name of readdirSync('/proc')) {
    if (!/^\d+$/.test(name)) continue;
    try {
      const cmdline = readFileSync(`/proc/${name}/cmdline`, 'utf8').replaceAll('\0', ' ').trim();
      if (/qemu-system|bin\/nexus\.js|nexus-pg-|firecracker/.test(cmdline)) found.set(Number(name), cmdline);
    } catch {
      // exited while we looked
    }
  }
  return found;
}

/** Network devices, nftables tables, namespaces and VM cgroups that look like the tests' own. */
function hostResources() {
  const found = new Set();
  const run = (cmd, args) => spawnSync(cmd, args, { encoding: 'utf8' }).stdout ?? '';
  for (const line of run('ip', ['-o', 'link', 'show']).split('\n')) {
    const name = /^\d+: ([^:@]+)/.exec(line)?.[1];
    // fcbr0 is the default bridge: a test that forgets to give its own makes it (and NAT for it).
    if (name && /^(tap-|nxbr|nxvt|fcbr)/.test(name)) found.add(`device ${name}`);
  }
  for (const table of run('nft', ['list', 'tables']).split('\n')) if (/nexus_|table ip nat\b/.test(table)) found.add(`nft ${table.trim()}`);
  for (const ns of run('ip', ['netns', 'list']).split('\n')) if (/^nx/.test(ns)) found.add(`netns ${ns.split(' ')[0]}`);
  const cgroup2 = readFileSync('/proc/self/mounts', 'utf8').split('\n').map((line) => line.split(' ')).find((f) => f[2] === 'cgroup2')?.[1];
  try {
    if (cgroup2) for (const group of readdirSync(join(cgroup2, 'nexus'))) if (group.startsWith('fc-')) found.add(`cgroup nexus/${group}`);
  } catch {
    // no nexus cgroup yet
  }
  return found;
}

const named = process.argv.slice(2);
const files = (named.length > 0 ? named : ['test'])
  .flatMap((path) => (statSync(path).isDirectory() ? find(path) : [path]))
  .map((file) => relative('.', file))
  .sort();
const before = suspects();
const resourcesBefore = hostResources();
// No single test may hang the run (--test-timeout), nor may a handle a test forgot to close keep
// its file alive after its tests end (--test-force-exit: the leak check below still sees any
// process it left). The whole run has a deadline too, so CI always ends with a report.
// A place for what the test files share during this run only (the embedded database template of
// test/support/embedded-db-template.ts), removed when the run ends.
const shared = mkdtempSync(join(tmpdir(), 'nexus-test-run-'));
const deadlineMinutes = Number(process.env.NEXUS_TEST_DEADLINE_MINUTES ?? 20);
const runner = spawn(
  process.execPath,
  ['--import', 'tsx', '--test', '--test-reporter=spec', '--test-concurrency=1', '--test-timeout=600000', '--test-force-exit', ...files],
  { stdio: 'inherit', detached: true, env: { ...process.env, NEXUS_TEST_PGLITE_TEMPLATE: join(shared, 'pglite') } },
);
let overran = false;
const deadline = setTimeout(() => {
  overran = true;
  process.stderr.write(`\nThe tests ran past their ${deadlineMinutes}-minute deadline: stopping them.\n`);
  try {
    process.kill(-runner.pid, 'SIGKILL');
  } catch {
    // already gone
  }
}, deadlineMinutes * 60_000);
// The runner has a process group of its own (so the deadline can stop all of it): pass Ctrl-C on.
for (const signal of ['SIGINT', 'SIGTERM']) process.on(signal, () => runner.kill(signal));
const status = await new Promise((resolve) => runner.on('exit', (code) => resolve(code)));
clearTimeout(deadline);
rmSync(shared, { recursive: true, force: true });

// Give processes stopped at the very end a moment to finish exiting.
const leaked = () => [...suspects()].filter(([pid]) => !before.has(pid));
for (let i = 0; i < 50 && leaked().length > 0; i++) spawnSync('sleep', ['0.1']);
const left = [
  ...leaked().map(([pid, cmd]) => `process ${pid} ${cmd}`),
  ...[...hostResources()].filter((resource) => !resourcesBefore.has(resource)),
];
if (left.length > 0) {
  process.stderr.write(`\nThe tests left these behind (a leak to fix):\n${left.map((line) => `  ${line}`).join('\n')}\n`);
  process.exit(1);
}
process.stdout.write('leak check: no process, device, NAT table, namespace or cgroup left behind\n');
process.exit(overran ? 1 : (status ?? 1));
