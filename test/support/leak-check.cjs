// What a test run leaves behind on the host: processes, network devices, nftables tables and
// iptables rules, namespaces, VM cgroups, the ip_forward sysctl, and files (temp dirs, the default
// run dir, junk in the shared image cache). A snapshot is taken before the run and compared with
// the host after it; anything new is a leak, anything changed (a sysctl) too.
//
// Plain CommonJS, synchronous: scripts/run-tests.mjs uses it around the whole run, and
// test/support/leak-hook.cjs (a --require preload: Node runs those, not --import ones, in the
// process that runs the test files) from that process's 'exit' event, where nothing asynchronous runs.
'use strict';
const { spawnSync } = require('node:child_process');
const { existsSync, readFileSync, readdirSync, statSync } = require('node:fs');
const { tmpdir } = require('node:os');
const { join, relative } = require('node:path');
const { randomBytes } = require('node:crypto');

/**
 * The environment variable that marks every process of one run: the runner sets it for the tests,
 * and every process they start inherits it, so a child of any kind left running is found by it
 * (not only the ones whose names we know).
 */
const RUN_MARK = 'NEXUS_TEST_RUN';

/** A fresh value for {@link RUN_MARK}. */
function newRunMark() {
  return `${process.pid}-${randomBytes(6).toString('hex')}`;
}

/** The processes Nexus or its tests start, recognised by name when their environment is not ours. */
const NEXUS_PROCESS = /qemu-system|bin\/nexus\.js|nexus-pg-|firecracker|jailer|dnsmasq .*--dhcp-host=/;

/** The shared image cache of test/support/guest-image.ts (the same default). */
const imageCacheDir = () => process.env.NEXUS_TEST_IMAGE_DIR || join(tmpdir(), 'nexus-test-images');

/** What a run may add to the image cache: Debian packages, build locks, finished images. */
const IMAGE_CACHE_FILES =
  /^(\.cache|\.locks|\.cache\/[^/.][^/]*\.deb|\.locks\/[^/]+|[^/.][^/]*|[^/.][^/]*\/(vmlinux|initrd\.img|rootfs\.ext4|manifest\.json))$/;

/** Entries of tmpdir() a run keeps on purpose: the image cache, and the Node CI installs. */
const KEPT_TEMP = /^(nexus-test-images|nexus-node-[\d.]+)$/;

/** Where an agent or `nexus dev` keeps VMs when no run dir is given: no test may use it. */
const DEFAULT_RUN_DIR = '/srv/fc';

function run(command, args) {
  const result = spawnSync(command, args, { encoding: 'utf8' });
  return result.status === 0 ? result.stdout : undefined;
}

function entries(dir) {
  try {
    return readdirSync(dir);
  } catch {
    return [];
  }
}

/** Every path under `dir`, relative to it. */
function tree(dir, under = '') {
  return entries(join(dir, under)).flatMap((name) => {
    const path = under ? `${under}/${name}` : name;
    let isDir = false;
    try {
      isDir = statSync(join(dir, path)).isDirectory();
    } catch {
      // gone while we looked
    }
    return isDir ? [path, ...tree(dir, path)] : [path];
  });
}

/**
 * `process <pid>` -> what it runs, for every process that is the run's (marked) or looks like one
 * Nexus starts. Keyed by pid alone: a process may retitle itself (Postgres's do).
 */
function processes(mark) {
  const found = new Map();
  const own = new Set([process.pid, process.ppid]);
  for (const name of entries('/proc')) {
    if (!/^\d+$/.test(name) || own.has(Number(name))) continue;
    try {
      const cmdline = readFileSync(`/proc/${name}/cmdline`, 'utf8').replaceAll('\0', ' ').trim();
      if (!cmdline) continue; // a kernel thread, or a zombie
      const marked = mark !== undefined && readFileSync(`/proc/${name}/environ`, 'utf8').split('\0').includes(`${RUN_MARK}=${mark}`);
      if (marked || NEXUS_PROCESS.test(cmdline)) found.set(`process ${name}`, `process ${name} ${cmdline}`);
    } catch {
      // exited while we looked
    }
  }
  return found;
}

/** iptables rules (the nft-backed and the legacy tables), each as `-A CHAIN …` with its table. */
function iptablesRules() {
  const rules = [];
  for (const tool of ['iptables-nft-save', 'iptables-legacy-save', 'ip6tables-legacy-save']) {
    let table = '';
    for (const line of (run(tool, []) ?? '').split('\n')) {
      if (line.startsWith('*')) table = line.slice(1);
      if (line.startsWith('-A ')) rules.push(`${tool.replace(/-save$/, '')} rule -t ${table} ${line}`);
    }
  }
  return rules;
}

function cgroups() {
  const mount = readFileSync('/proc/self/mounts', 'utf8')
    .split('\n')
    .map((line) => line.split(' '))
    .find((fields) => fields[2] === 'cgroup2')?.[1];
  if (!mount) return [];
  const parent = join(mount, 'nexus');
  return entries(parent)
    .filter((name) => statSync(join(parent, name), { throwIfNoEntry: false })?.isDirectory())
    .map((group) => `cgroup nexus/${group}`);
}

function files() {
  const found = [];
  for (const name of entries(tmpdir())) if (name.startsWith('nexus') && !KEPT_TEMP.test(name)) found.push(`file ${join(tmpdir(), name)}`);
  const cache = join(imageCacheDir(), 'images');
  for (const path of tree(cache)) if (!IMAGE_CACHE_FILES.test(path)) found.push(`image cache junk ${join(cache, path)}`);
  if (existsSync(DEFAULT_RUN_DIR)) for (const name of entries(DEFAULT_RUN_DIR)) found.push(`file ${join(DEFAULT_RUN_DIR, name)}`);
  const dataDir = join(process.cwd(), '.nexus');
  if (existsSync(dataDir)) found.push(`file ${relative(process.cwd(), dataDir) || dataDir}`);
  return found;
}

/**
 * The host as a test run sees it: the things on it (key -> one line saying what and where), and the
 * settings a run may change (name -> value).
 */
function snapshot(mark) {
  const things = new Map(processes(mark));
  for (const thing of [
    ...(run('ip', ['-o', 'link', 'show']) ?? '')
      .split('\n')
      .map((line) => /^\d+: ([^:@]+)/.exec(line)?.[1])
      .filter(Boolean)
      .map((name) => `device ${name}`),
    ...(run('nft', ['list', 'tables']) ?? '')
      .split('\n')
      .filter((line) => line.trim())
      .map((line) => `nft ${line.trim()}`),
    ...iptablesRules(),
    ...(run('ip', ['netns', 'list']) ?? '')
      .split('\n')
      .filter((line) => line.trim())
      .map((line) => `netns ${line.split(' ')[0]}`),
    ...cgroups(),
    ...files(),
  ]) {
    things.set(thing, thing);
  }
  const settings = new Map();
  for (const sysctl of ['net/ipv4/ip_forward']) {
    try {
      settings.set(sysctl.replaceAll('/', '.'), readFileSync(`/proc/sys/${sysctl}`, 'utf8').trim());
    } catch {
      // not on this kernel
    }
  }
  return { things, settings };
}

/** What is on the host now and was not in `before`, and the settings that changed. */
function differences(before, mark) {
  const now = snapshot(mark);
  const left = [...now.things].filter(([key]) => !before.things.has(key)).map(([, thing]) => thing);
  for (const [name, value] of now.settings) {
    if (before.settings.get(name) !== value) left.push(`sysctl ${name} = ${value} (was ${before.settings.get(name)}: restore what you change)`);
  }
  return left;
}

/**
 * {@link differences}, waited for: processes stopped at the very end, and devices a kernel removes
 * a moment after their owner exits, get up to `waitMs` to go.
 */
function leaksSince(before, mark, waitMs = 5_000) {
  const until = Date.now() + waitMs;
  let left = differences(before, mark);
  while (left.length > 0 && Date.now() < until) {
    spawnSync('sleep', ['0.2']);
    left = differences(before, mark);
  }
  return left;
}

/** The report of a leaky run, for standard error. */
function leakReport(left) {
  return `\nThe tests left these behind (a leak to fix):\n${left.map((line) => `  ${line}`).join('\n')}\n`;
}

const CLEAN_RUN = 'leak check: no process, device, NAT table or rule, namespace, cgroup, sysctl or file left behind\n';

exports.RUN_MARK = RUN_MARK;
exports.newRunMark = newRunMark;
exports.snapshot = snapshot;
exports.differences = differences;
exports.leaksSince = leaksSince;
exports.leakReport = leakReport;
exports.CLEAN_RUN = CLEAN_RUN;
