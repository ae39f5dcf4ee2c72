// The jailer double's own work before it execs into the jail (see jailer-double): parses the
// jailer's argv, makes the jail as the jailer does (root folder owned by --uid/--gid, a copy of the
// exec file), writes `<exec name>.pid` only with --new-pid-ns (as the jailer does: without it
// there is no pid file), and prints the jail root, the uid, the gid and the id, one a line.
// Only ever started by tests.
import { chownSync, copyFileSync, existsSync, mkdirSync, openSync, writeSync, closeSync } from 'node:fs';
import { basename, join } from 'node:path';

const fail = (message) => {
  process.stderr.write(`Jailer error: ${message}\n`);
  process.exit(1);
};
const argv = process.argv.slice(2);
const split = argv.indexOf('--');
const own = split === -1 ? argv : argv.slice(0, split);
const flags = new Map();
const VALUED = new Set(['id', 'exec-file', 'uid', 'gid', 'chroot-base-dir', 'netns', 'cgroup-version', 'parent-cgroup', 'cgroup', 'resource-limit']);
let newPidNs = false;
for (let index = 0; index < own.length; index++) {
  const name = own[index].startsWith('--') ? own[index].slice(2) : '';
  if (name === 'daemonize') fail(`--${name} is not served by the jailer double`);
  if (name === 'new-pid-ns') {
    newPidNs = true;
    continue;
  }
  if (!VALUED.has(name) || own[index + 1] === undefined) fail(`unexpected argument ${own[index]}`);
  flags.set(name, own[++index]);
}
const id = flags.get('id') ?? '';
if (!/^[A-Za-z0-9-]{1,64}$/.test(id)) fail(`invalid id ${id}`);
const exec = flags.get('exec-file') ?? fail('--exec-file is required');
if (!existsSync(exec)) fail(`the exec file ${exec} does not exist`);
const [uid, gid] = [Number(flags.get('uid')), Number(flags.get('gid'))];
if (!Number.isInteger(uid) || !Number.isInteger(gid)) fail('--uid and --gid are required');
const base = flags.get('chroot-base-dir') ?? '/srv/jailer';
if (!existsSync(base)) fail(`the chroot base dir ${base} does not exist`);
if ((flags.get('cgroup-version') ?? '1') !== '2') fail('the jailer double serves --cgroup-version 2 only');

const root = join(base, basename(exec), id, 'root');
mkdirSync(root, { recursive: true });
copyFileSync(exec, join(root, basename(exec)));
if (newPidNs) {
  // The jailer writes its child's pid; the double makes no pid namespace, and the process that
  // becomes Firecracker is the shell that started this one (it execs into the jail next).
  let pidFile;
  try {
    pidFile = openSync(join(root, `${basename(exec)}.pid`), 'wx');
  } catch (error) {
    fail(`the pid file exists already (${error.message}): use a fresh --id per launch`);
  }
  writeSync(pidFile, String(process.ppid));
  closeSync(pidFile);
}
chownSync(root, uid, gid);
process.stdout.write(`${root}\n${uid}\n${gid}\n${id}\n`);
