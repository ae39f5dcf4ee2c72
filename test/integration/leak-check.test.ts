import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { execFile, execFileSync } from 'node:child_process';
import { existsSync, mkdirSync, readFileSync, rmSync, rmdirSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { randomBytes } from 'node:crypto';
import { tempDir } from '../support/temp-dir.js';

/**
 * The leak check (test/support/leak-check.cjs) proved on child runs: one whose test leaves one of
 * each kind behind must fail and name each, through the runner and through the hook of a hand-made
 * `node --test`; one that cleans up after itself must pass. This file makes the leaks itself (so
 * it knows their names) and removes every one of them, whatever the child runs said.
 */

const repo = resolve(import.meta.dirname, '../..');
const suffix = randomBytes(3).toString('hex');
const cgroup2 = readFileSync('/proc/self/mounts', 'utf8')
  .split('\n')
  .map((line) => line.split(' '))
  .find((fields) => fields[2] === 'cgroup2')?.[1];
const iptablesLegacy = (() => {
  try {
    execFileSync('iptables-legacy', ['-S'], { stdio: 'ignore' });
    return true;
  } catch {
    return false;
  }
})();

const work = tempDir('nexus-leak-check-');
const imageCache = join(work.path, 'image-cache');
const leaks = {
  pidFile: join(work.path, 'sleeper.pid'),
  device: `nxleak${suffix}`,
  nftTable: `nexus_leak_${suffix}`,
  netns: `nxleak${suffix}`,
  cgroup: cgroup2 ? join(cgroup2, 'nexus', `fc-leak-${suffix}`) : undefined,
  tempPrefix: `nexus-leaked-${suffix}-`,
  cacheJunk: join(imageCache, 'images', `.build-default-${suffix}00`),
  iptablesComment: `nexus-leak-${suffix}`,
};
const forwardingBefore = readFileSync('/proc/sys/net/ipv4/ip_forward', 'utf8').trim();
const madeCgroupParent = cgroup2 !== undefined && !existsSync(join(cgroup2, 'nexus'));

/** A test file that leaves one of each kind behind (names from `leaks`), for a child run. */
const leakyTest = `
import { test } from 'node:test';
import { spawn, execFileSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
const leaks = ${JSON.stringify(leaks)};
test('leaves one of each behind', () => {
  const sleeper = spawn('sleep', ['600'], { detached: true, stdio: 'ignore' });
  sleeper.unref();
  writeFileSync(leaks.pidFile, String(sleeper.pid));
  execFileSync('ip', ['link', 'add', 'name', leaks.device, 'type', 'bridge']);
  execFileSync('nft', ['add', 'table', 'inet', leaks.nftTable]);
  execFileSync('ip', ['netns', 'add', leaks.netns]);
  if (leaks.cgroup) mkdirSync(leaks.cgroup, { recursive: true });
  mkdtempSync(join(tmpdir(), leaks.tempPrefix));
  mkdirSync(leaks.cacheJunk, { recursive: true });
  writeFileSync('/proc/sys/net/ipv4/ip_forward', ${JSON.stringify(forwardingBefore === '1' ? '0\n' : '1\n')});
  if (${iptablesLegacy}) execFileSync('iptables-legacy', ['-A', 'INPUT', '-s', '192.0.2.1/32', '-m', 'comment', '--comment', leaks.iptablesComment, '-j', 'ACCEPT']);
});
`;

/** A test file that starts a child, makes a temp dir and a device, and removes all of them. */
const tidyTest = `
import { test } from 'node:test';
import { spawn, execFileSync } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
test('cleans up after itself', async () => {
  const child = spawn('sleep', ['600'], { stdio: 'ignore' });
  const dir = mkdtempSync(join(tmpdir(), 'nexus-tidy-'));
  execFileSync('ip', ['link', 'add', 'name', 'nxtidy${suffix}', 'type', 'bridge']);
  execFileSync('ip', ['link', 'del', 'dev', 'nxtidy${suffix}']);
  rmSync(dir, { recursive: true });
  child.kill();
  await new Promise((resolve) => child.on('exit', resolve));
});
`;

/** Runs a child test run with its own environment: not marked as this run's, not a test file's. */
function childRun(args: string[]): Promise<{ code: number | null; output: string }> {
  const env: NodeJS.ProcessEnv = { ...process.env, NEXUS_TEST_IMAGE_DIR: imageCache };
  delete env.NEXUS_TEST_RUN;
  delete env.NODE_TEST_CONTEXT;
  return new Promise((done) => {
    const child = execFile(process.execPath, args, { cwd: repo, env, maxBuffer: 16 * 1024 * 1024 }, (_error, stdout, stderr) =>
      done({ code: child.exitCode, output: `${stdout}${stderr}` }),
    );
  });
}

function quietly(action: () => void): void {
  try {
    action();
  } catch {
    // not there (the child run may have stopped before making it)
  }
}

/** Removes every leak of the leaky test, whether or not it was made. */
function removeLeaks(): void {
  quietly(() => process.kill(Number(readFileSync(leaks.pidFile, 'utf8')), 'SIGKILL'));
  quietly(() => execFileSync('ip', ['link', 'del', 'dev', leaks.device], { stdio: 'ignore' }));
  quietly(() => execFileSync('nft', ['delete', 'table', 'inet', leaks.nftTable], { stdio: 'ignore' }));
  quietly(() => execFileSync('ip', ['netns', 'del', leaks.netns], { stdio: 'ignore' }));
  if (leaks.cgroup) quietly(() => rmdirSync(leaks.cgroup!));
  if (madeCgroupParent && cgroup2) quietly(() => rmdirSync(join(cgroup2, 'nexus')));
  for (const name of execFileSync('ls', [tmpdir()], { encoding: 'utf8' }).split('\n')) {
    if (name.startsWith(leaks.tempPrefix)) rmSync(join(tmpdir(), name), { recursive: true, force: true });
  }
  rmSync(leaks.cacheJunk, { recursive: true, force: true });
  writeFileSync('/proc/sys/net/ipv4/ip_forward', `${forwardingBefore}\n`);
  if (iptablesLegacy) {
    quietly(() =>
      execFileSync('iptables-legacy', ['-D', 'INPUT', '-s', '192.0.2.1/32', '-m', 'comment', '--comment', leaks.iptablesComment, '-j', 'ACCEPT'], {
        stdio: 'ignore',
      }),
    );
  }
}

describe('the leak check', () => {
  const leaky = join(work.path, 'leaky.test.mjs');
  const tidy = join(work.path, 'tidy.test.mjs');

  before(() => {
    mkdirSync(join(imageCache, 'images'), { recursive: true });
    writeFileSync(leaky, leakyTest);
    writeFileSync(tidy, tidyTest);
  });

  after(() => {
    removeLeaks();
    work.remove();
  });

  /** Each kind the leaky test leaves, as the report names it. */
  function assertNamesEveryLeak(output: string): void {
    const pid = readFileSync(leaks.pidFile, 'utf8').trim();
    const expected: [string, RegExp][] = [
      ['a child process', new RegExp(`process ${pid} sleep 600`)],
      ['a network device', new RegExp(`device ${leaks.device}\\b`)],
      ['an nftables table', new RegExp(`nft table inet ${leaks.nftTable}\\b`)],
      ['a network namespace', new RegExp(`netns ${leaks.netns}\\b`)],
      ['a temp dir', new RegExp(`file ${tmpdir()}/${leaks.tempPrefix}`)],
      ['junk in the image cache', new RegExp(`image cache junk .*\\.build-default-${suffix}00`)],
      ['a changed sysctl', /sysctl net\.ipv4\.ip_forward = \d \(was \d/],
    ];
    if (leaks.cgroup) expected.push(['a VM cgroup', new RegExp(`cgroup nexus/fc-leak-${suffix}\\b`)]);
    if (iptablesLegacy) expected.push(['an iptables-legacy rule', new RegExp(`iptables-legacy rule -t filter -A INPUT .*${leaks.iptablesComment}`)]);
    for (const [what, pattern] of expected) assert.match(output, pattern, `the report names ${what}`);
  }

  it('fails a run of scripts/run-tests.mjs whose test leaves one of each kind behind, naming each', async () => {
    try {
      const { code, output } = await childRun(['scripts/run-tests.mjs', leaky]);
      assert.match(output, /The tests left these behind/, 'the runner reports a leak');
      assert.equal(code, 1, 'a leaky run fails');
      assertNamesEveryLeak(output);
    } finally {
      removeLeaks();
    }
  });

  it('fails a hand-made node --test run with the hook the same way', async () => {
    try {
      const { code, output } = await childRun(['--require', './test/support/leak-hook.cjs', '--test-reporter=spec', '--test', leaky]);
      assert.match(output, /ℹ pass 1\b/, 'the leaky test itself passes');
      assert.equal(code, 1, 'a leaky run fails');
      assertNamesEveryLeak(output);
    } finally {
      removeLeaks();
    }
  });

  it('passes runs whose test removes what it made, by the runner and by the hook', async () => {
    for (const args of [
      ['scripts/run-tests.mjs', tidy],
      ['--require', './test/support/leak-hook.cjs', '--test-reporter=spec', '--test', tidy],
    ]) {
      const { code, output } = await childRun(args);
      assert.doesNotMatch(output, /left these behind/, `nothing reported by ${args[0]}`);
      assert.match(output, /leak check: no process/, `the clean check is reported by ${args[0]}`);
      assert.equal(code, 0, `a tidy run passes (${args[0]})`);
    }
  });
});
