import { randomUUID } from 'node:crypto';
import assert from 'node:assert/strict';
import { execFileSync, spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { chmodSync, existsSync, realpathSync, mkdirSync, readFileSync, readdirSync, readlinkSync, rmSync, statSync, symlinkSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { tapNameOf, vmNetnsNameOf } from '../../src/contracts/host-names.js';
import { vmLayout } from '../../src/contracts/vm-layout.js';
import { readLink } from '../../src/agent/host/net/ip-command.js';
import { assertErrorContract } from '../support/error-contract.js';
import {
  FIRECRACKER_DOUBLE,
  type FirecrackerAgent,
  JAILED_ID,
  JAILER_DOUBLE,
  doubleImage,
  doubleVmSpec,
  startFirecrackerAgent,
} from '../support/firecracker-agent.js';
import { eventually, isAlive } from '../support/nexus-process.js';
import { testVmId } from '../support/net-names.js';
import { tempDir } from '../support/temp-dir.js';

/** A jailed Firecracker host (doubles) with a kernel and root disk to boot, in a temp dir of the test's. */
async function startJailedHost(dirPath: string, runDir: string, jailedIds?: number): Promise<FirecrackerAgent> {
  // The jailed user must reach its jail root (a real chroot would not look at the parents).
  chmodSync(dirPath, 0o755);
  const image = doubleImage(runDir);
  mkdirSync(join(image.kernel, '..'), { recursive: true });
  writeFileSync(image.kernel, 'kernel');
  writeFileSync(image.rootfs, Buffer.alloc(1 << 20));
  return startFirecrackerAgent({ runDir, jailed: true, ...(jailedIds === undefined ? {} : { jailedIds }) });
}

/**
 * The Firecracker driver launching through the jailer (its double: same argv and jail layout,
 * privileges dropped to the jailed uid, a real chroot of the jail root): the VM's files are
 * linked into the jail, the API is reached in it, snapshots come out of it, and every jail is
 * removed when its process ends.
 */
describe('Firecracker through the jailer (doubles)', () => {
  const dir = tempDir('nexus-fc-jail-');
  const runDir = join(dir.path, 'run');
  const jails = join(runDir, 'jail', 'firecracker-double');
  let fc: FirecrackerAgent;
  const id = testVmId();

  before(async () => {
    fc = await startJailedHost(dir.path, runDir);
  });
  after(async () => {
    await fc?.call('DELETE', `/agent/v1/vms/${id}`).catch(() => undefined);
    await fc?.close();
    dir.remove();
  });

  const act = async (id: string, action: string, extra: Record<string, unknown> = {}) => {
    const response = await fc.call('POST', `/agent/v1/vms/${id}/actions`, { action, ...extra });
    assert.equal(response.status, 200, JSON.stringify(response.body));
    return response.body;
  };
  const jailsNow = () => (existsSync(jails) ? readdirSync(jails) : []);

  it('runs the VM in a fresh jail per launch and removes each jail when its process ends', async () => {
    const ensured = await fc.call('PUT', `/agent/v1/vms/${id}`, doubleVmSpec(runDir));
    assert.equal(ensured.status, 200, JSON.stringify(ensured.body));
    const started = await act(id, 'start');
    assert.equal(started.vm.state, 'running');
    const [jail = ''] = jailsNow();
    assert.ok(jail.startsWith(`${id}-`), `a jail named after the VM: ${jailsNow().join(', ')}`);
    const root = join(jails, jail, 'root');
    // Plain mode: the jailer execs Firecracker in place (the pid the agent supervises is its own),
    // chrooted in the jail, and writes no pid file (it does only with --new-pid-ns).
    assert.equal(statSync(`/proc/${started.vm.pid}/root`).ino, statSync(root).ino, 'the supervised process runs chrooted in the jail');
    assert.equal(existsSync(join(root, 'firecracker-double.pid')), false, 'no pid file without --new-pid-ns');
    assert.equal(statSync(join(root, 'vm', 'drive-rootfs')).uid, JAILED_ID, 'the writable disk belongs to the jailed user');
    assert.equal(statSync(join(root, 'vm', 'kernel')).ino, statSync(doubleImage(runDir).kernel).ino, 'the kernel is linked, not copied');
    assert.equal(statSync(join(root, 'fc.sock')).uid, JAILED_ID, 'Firecracker runs as the jailed user');
    assert.equal(realpathSync(join(runDir, 'vms', id, 'sock', 'fc.sock')), join(root, 'fc.sock'), "the VM's socket path leads into the jail");
    await eventually(
      'the guest console reaches the VM console log',
      () => readFileSync(join(runDir, 'vms', id, 'logs', 'console.log'), 'utf8').includes('NEXUS_BOOT_OK'),
      10_000,
    );
    const firecrackerLog = join(runDir, 'vms', id, 'logs', 'firecracker.log');
    assert.match(readFileSync(firecrackerLog, 'utf8'), /Running Firecracker|InstanceStart|successfully/, "Firecracker's own log lands in the VM folder");
    const tap = await readLink(tapNameOf(id));
    const tun = (tap?.linkinfo as { info_data?: { user?: number; group?: number } } | undefined)?.info_data;
    assert.deepEqual([tun?.user, tun?.group], [JAILED_ID, JAILED_ID], `the TAP belongs to the jailed user: ${JSON.stringify(tap?.linkinfo)}`);
    const info = await fc.call('GET', `/agent/v1/vms/${id}/proxy/`);
    assert.equal(info.body.state, 'Running', 'the proxy finds the socket in the jail');

    await act(id, 'pause');
    const { snapshot } = await act(id, 'snapshot');
    assert.ok(snapshot.state_file.startsWith(join(runDir, 'vms', id, 'snapshots')), 'the snapshot comes out of the jail into the VM folder');
    assert.ok(existsSync(snapshot.memory_file));
    await act(id, 'stop', { timeout_ms: 2000 });
    assert.deepEqual(jailsNow(), [], 'the jail goes with its process');
    assert.ok(readFileSync(firecrackerLog, 'utf8').length > 0, 'the log outlives the jail');

    const restored = await act(id, 'restore', { snapshot_id: snapshot.snapshot_id });
    assert.equal(restored.vm.state, 'running');
    const [second] = jailsNow();
    assert.ok(second && second !== jail, 'a fresh jail id for the new launch');
    // A snapshot of the restored VM must not write over the one it came from (linked into the jail to load it).
    const savedState = readFileSync(snapshot.state_file, 'utf8');
    await act(id, 'pause');
    const { snapshot: later } = await act(id, 'snapshot');
    assert.notEqual(later.state_file, snapshot.state_file);
    assert.equal(readFileSync(snapshot.state_file, 'utf8'), savedState, 'the first snapshot is unchanged');
    assert.notEqual(statSync(later.memory_file).ino, statSync(snapshot.memory_file).ino, 'two snapshots, two memory files');
    await act(id, 'resume');
    // One kept on the host, outside the VM folder: it comes out of the jail too.
    const sid = randomUUID();
    const kept = await fc.call('POST', `/agent/v1/vms/${id}/snapshots`, { snapshot_id: sid });
    assert.equal(kept.status, 201, JSON.stringify(kept.body));
    assert.equal(kept.body.snapshot.memory_file, join(runDir, 'snapshots', sid, 'memory.bin'), 'out of the jail into <run-dir>/snapshots');
    assert.ok(existsSync(kept.body.snapshot.memory_file));
    assert.equal(kept.body.vm.state, 'running');
    // A new VM from it: in a jail of its own, where its drives have the paths the saved state names.
    const clone = testVmId();
    const made = await fc.call('POST', `/agent/v1/snapshots/${sid}/instantiate`, { vm_id: clone, spec: doubleVmSpec(runDir) });
    assert.equal(made.status, 201, JSON.stringify(made.body));
    assert.equal(made.body.state, 'running', 'loaded and resumed, as the double reports');
    assert.equal(made.body.driver, 'firecracker');
    assert.ok(
      jailsNow().some((jail) => jail.startsWith(`${clone}-`)),
      `the clone has a jail of its own: ${jailsNow().join(', ')}`,
    );
    assert.equal((await fc.call('DELETE', `/agent/v1/vms/${clone}`)).status, 200);
    assert.equal((await fc.call('DELETE', `/agent/v1/snapshots/${sid}`)).status, 200);

    assert.equal((await fc.call('DELETE', `/agent/v1/vms/${id}`)).status, 200);
    await eventually('the VMM exited', () => !isAlive(restored.vm.pid), 5000);
    assert.deepEqual(jailsNow(), [], 'no jail left after delete');
    assert.equal(existsSync(join(runDir, 'vms', id)), false);
    assert.equal(await readLink(tapNameOf(id)), undefined);
  });
});

/**
 * Each jailed VM runs as a uid and gid of its own from NEXUS_JAILER_UID_RANGE (here two ids): in the
 * jailer's argv, on its files and TAP; held while its folder or a jail of it exists, kept across an
 * agent restart, refused with the error contract when none is free; jails of VMs the agent does not
 * know are swept like other leftovers, and nothing else under (or linked from) the chroot base is.
 */
describe('jailed VMs: a uid of their own each (doubles)', () => {
  const dir = tempDir('nexus-fc-uids-');
  const runDir = join(dir.path, 'run');
  const jails = join(runDir, 'jail', 'firecracker-double');
  const [first, second] = [JAILED_ID, JAILED_ID + 1];
  let fc: FirecrackerAgent;
  const created: string[] = [];
  /** VMMs whose VM folder the test removes: the agent's delete no longer finds them. */
  const strays: Array<{ pid: number; vmId: string }> = [];

  before(async () => {
    fc = await startJailedHost(dir.path, runDir, 2);
  });
  after(async () => {
    for (const { pid, vmId } of strays) {
      if (isAlive(pid)) process.kill(pid, 'SIGKILL');
      await eventually(`stray VMM ${pid} exited`, () => !isAlive(pid), 5000).catch(() => undefined);
      await fc?.host.supervisor.forget(vmLayout(runDir, vmId)); // its cgroup
    }
    for (const id of created) await fc?.call('DELETE', `/agent/v1/vms/${id}`).catch(() => undefined);
    await fc?.close();
    dir.remove();
  });

  const ensure = (id: string) => {
    if (!created.includes(id)) created.push(id);
    const image = doubleImage(runDir);
    return fc.call('PUT', `/agent/v1/vms/${id}`, {
      vcpu: 1,
      mem_mib: 128,
      kernel: { path: image.kernel, cmdline: 'console=ttyS0 reboot=k panic=1' },
      drives: [{ id: 'rootfs', path: image.rootfs, is_root: true }],
      nics: [{}],
    });
  };
  const act = async (id: string, action: string, extra: Record<string, unknown> = {}) => {
    const response = await fc.call('POST', `/agent/v1/vms/${id}/actions`, { action, ...extra });
    assert.equal(response.status, 200, JSON.stringify(response.body));
    return response.body;
  };
  const started = async (id: string): Promise<number> => {
    const response = await ensure(id);
    assert.equal(response.status, 200, JSON.stringify(response.body));
    return (await act(id, 'start')).vm.pid;
  };
  /**
   * Who the VM's jailed process, its files and its TAP belong to, each as seen on the host. (The
   * jailer's own argv is gone once it has exec'd Firecracker: the process's uid and gid, which the
   * jailer double drops to from --uid/--gid, show what it was given.)
   */
  const usersOf = async (id: string, pid: number) => {
    const status = readFileSync(`/proc/${pid}/status`, 'utf8');
    const [jail = ''] = readdirSync(jails).filter((name) => name.startsWith(`${id}-`));
    const root = join(jails, jail, 'root');
    const tun = ((await readLink(tapNameOf(id)))?.linkinfo as { info_data?: { user?: number; group?: number } } | undefined)?.info_data;
    return {
      process: [/^Uid:\s+(\d+)/m.exec(status)?.[1], /^Gid:\s+(\d+)/m.exec(status)?.[1]].map(Number),
      disk: [statSync(join(root, 'vm', 'drive-rootfs')).uid, statSync(join(root, 'vm', 'drive-rootfs')).gid],
      socket: statSync(join(root, 'fc.sock')).uid,
      tap: [tun?.user, tun?.group],
      record: JSON.parse(readFileSync(join(runDir, 'vms', id, 'jail-user.json'), 'utf8')),
    };
  };
  const expected = (uid: number) => ({ process: [uid, uid], disk: [uid, uid], socket: uid, tap: [uid, uid], record: { uid, gid: uid } });
  const refusedForWantOfUids = async (id: string) => {
    const refused = await ensure(id);
    assertErrorContract(refused, 409, 'conflict');
    assert.match(refused.body.fault_message, /no uid of NEXUS_JAILER_UID_RANGE \d+-\d+ is free/);
    assert.match(refused.body.suggestion, /widen NEXUS_JAILER_UID_RANGE/);
    assert.equal(existsSync(join(runDir, 'vms', id)), false, 'the refused VM leaves no folder');
    assert.equal(await readLink(tapNameOf(id)), undefined, 'nor a TAP');
  };
  const orphanDirs = async (): Promise<string[]> => (await fc.call('GET', '/agent/v1/inventory')).body.orphans.dirs;

  it('runs a VM on a network jailed in its own namespace: the jailer joins it, and tap0 there is the jailed user’s', async () => {
    // Not in `created`: the tests after this one count the VMs there.
    const id = testVmId();
    const third = randomBytes(1)[0] ?? 0;
    const network = { id: `${randomBytes(4).toString('hex')}-0000-4000-8000-000000000000`, cidr: `10.214.${third}.0/24`, egress: 'allow', dns: [] };
    const image = doubleImage(runDir);
    const ensured = await fc.call('PUT', `/agent/v1/vms/${id}`, {
      vcpu: 1,
      mem_mib: 128,
      kernel: { path: image.kernel, cmdline: 'console=ttyS0 reboot=k panic=1' },
      drives: [{ id: 'rootfs', path: image.rootfs, is_root: true }],
      nics: [{ network, ip: `10.214.${third}.2` }],
    });
    try {
      assert.equal(ensured.status, 200, JSON.stringify(ensured.body));
      const pid = (await act(id, 'start')).vm.pid as number;
      const netns = vmNetnsNameOf(id);
      const inNetns = execFileSync('ip', ['netns', 'exec', netns, 'readlink', '/proc/self/ns/net'], { encoding: 'utf8' }).trim();
      assert.equal(readlinkSync(`/proc/${pid}/ns/net`), inNetns, "the jailed process runs in the VM's namespace");
      const [tap] = JSON.parse(execFileSync('ip', ['-n', netns, '-j', '-d', 'link', 'show', 'tap0'], { encoding: 'utf8' })) as Array<{
        linkinfo?: { info_data?: { user?: number } };
      }>;
      const uid = Number(/^Uid:\s+(\d+)/m.exec(readFileSync(`/proc/${pid}/status`, 'utf8'))?.[1]);
      assert.equal(tap?.linkinfo?.info_data?.user, uid, 'tap0 belongs to the jailed user, who opened it');
    } finally {
      assert.equal((await fc.call('DELETE', `/agent/v1/vms/${id}`)).status, 200);
    }
    assert.equal(existsSync(`/run/netns/${vmNetnsNameOf(id)}`), false, 'its namespace goes with it');
  });

  it("runs two VMs as two users, refuses a third, and gives a deleted VM's uid to the next", async () => {
    const [a, b, c] = [testVmId(), testVmId(), testVmId()];
    const pidA = await started(a);
    const pidB = await started(b);
    assert.deepEqual(await usersOf(a, pidA), expected(first), 'the first VM: the first id of the range, everywhere');
    assert.deepEqual(await usersOf(b, pidB), expected(second), 'the second VM: the next one');

    await refusedForWantOfUids(c);
    assert.equal((await fc.call('DELETE', `/agent/v1/vms/${a}`)).status, 200);
    const pidC = await started(c);
    assert.deepEqual(await usersOf(c, pidC), expected(first), "a's folder and jail are gone: its uid is c's now");
  });

  it('holds a uid while a jail of a VM with no folder still runs, then sweeps that jail and frees the uid', async () => {
    const [b, c] = created.slice(1);
    assert.ok(b && c && created.length === 3, `b and c run: ${created.join(', ')}`);
    // A crash mid-delete: b's folder is gone, its VMM still runs in its jail as b's uid.
    const bPid: number = (await fc.call('GET', `/agent/v1/vms/${b}`)).body.pid;
    strays.push({ pid: bPid, vmId: b });
    rmSync(join(runDir, 'vms', b), { recursive: true });
    const bJail = join(jails, readdirSync(jails).find((name) => name.startsWith(`${b}-`)) ?? '');
    // Beside it: a jail of a VM never seen here, and what is not a jail or leads out of the base.
    const unknownJail = join(jails, `${testVmId()}-lq2x9k`);
    mkdirSync(join(unknownJail, 'root'), { recursive: true });
    const notAJail = join(jails, 'notes');
    mkdirSync(join(notAJail, 'root'), { recursive: true });
    const noRoot = join(jails, `${testVmId()}-lq2x9k`);
    mkdirSync(noRoot);
    const outside = join(dir.path, 'outside-the-base');
    mkdirSync(join(outside, 'root'), { recursive: true });
    const linked = join(jails, `${testVmId()}-lq2x9k`);
    symlinkSync(outside, linked);

    const listed = await orphanDirs();
    assert.ok(listed.includes(unknownJail), `the unknown VM's jail is a leftover: ${listed.join(', ')}`);
    for (const kept of [bJail, notAJail, noRoot, linked, outside]) assert.ok(!listed.includes(kept), `${kept} is not offered for removal`);
    const d = testVmId();
    await refusedForWantOfUids(d);

    const inventory = (await fc.call('GET', '/agent/v1/inventory')).body;
    assert.deepEqual(
      inventory.orphans.processes.map((entry: { pid: number; vm_id: string }) => [entry.pid, entry.vm_id]),
      [[bPid, b]],
      "b's VMM, found by its root (b's jail) and its --id, is an orphan: no VM folder names it",
    );
    const collect = (body: Record<string, unknown>) => fc.call('POST', '/agent/v1/gc', { processes: [], taps: [], sockets: [], dirs: [], ...body });
    const swept = await collect({ taps: inventory.orphans.taps, dirs: [unknownJail, bJail, notAJail, noRoot, linked] });
    assert.equal(swept.status, 200, JSON.stringify(swept.body));
    assert.deepEqual(swept.body.removed.dirs, [unknownJail], "only the jail that was a leftover when asked: b's still runs");
    assert.deepEqual(swept.body.removed.taps, [tapNameOf(b)], "b's TAP, which has no VM now");
    assert.ok(isAlive(bPid), "b's VMM still runs");
    assert.deepEqual((await collect({ processes: [bPid] })).body.removed.processes, [bPid], "the orphan collector ends b's VMM by its pid");
    assert.ok(!isAlive(bPid), "b's VMM has exited");
    await fc.host.supervisor.forget(vmLayout(runDir, b));
    assert.ok((await orphanDirs()).includes(bJail), "b's jail is a leftover once nothing runs in it");
    assert.deepEqual((await collect({ dirs: [bJail] })).body.removed.dirs, [bJail]);
    for (const kept of [notAJail, noRoot, linked, join(outside, 'root')]) assert.ok(existsSync(kept), `${kept} stays`);

    const pidD = await started(d);
    assert.deepEqual(await usersOf(d, pidD), expected(second), "b's uid is free again, for d");
  });

  it('keeps every allocation across an agent restart, and sweeps jails of unknown VMs as it starts', async () => {
    const [c, d] = created.slice(2);
    assert.ok(c && d, `c and d run: ${created.join(', ')}`);
    const leftover = join(jails, `${testVmId()}-lq2x9k`);
    mkdirSync(join(leftover, 'root'), { recursive: true });
    await fc.close();
    fc = await startFirecrackerAgent({ runDir, jailed: true, jailedIds: 2 });
    assert.equal(existsSync(leftover), false, 'swept on start');
    assert.ok(existsSync(join(jails, 'notes')) && existsSync(join(dir.path, 'outside-the-base', 'root')), 'what is not a jail stays');

    await refusedForWantOfUids(testVmId());
    await act(c, 'stop', { timeout_ms: 1000 });
    const pidC = (await act(c, 'start')).vm.pid;
    assert.deepEqual(await usersOf(c, pidC), expected(first), 'c starts again as its own uid');
  });
});

/**
 * The jailer double keeps to the jailer's pid file rule, so no test passes because of a file the
 * real jailer never writes: `<exec name>.pid` in the jail only with --new-pid-ns.
 */
describe('the jailer double', () => {
  const dir = tempDir('nexus-jailer-double-');
  after(() => dir.remove());

  it('writes the pid file only with --new-pid-ns, naming the process that runs Firecracker', async () => {
    chmodSync(dir.path, 0o755);
    const base = join(dir.path, 'base');
    mkdirSync(base);
    const launch = async (jailId: string, extra: string[]) => {
      const child = spawn(
        JAILER_DOUBLE,
        [
          ...['--id', jailId, '--exec-file', FIRECRACKER_DOUBLE, '--uid', String(JAILED_ID), '--gid', String(JAILED_ID)],
          ...['--chroot-base-dir', base, '--cgroup-version', '2'],
          ...extra,
          '--',
          '--api-sock',
          '/fc.sock',
        ],
        { stdio: 'ignore' },
      );
      const root = join(base, 'firecracker-double', jailId, 'root');
      try {
        await eventually(`the double of ${jailId} serves its socket`, () => existsSync(join(root, 'fc.sock')), 20_000);
        return {
          pid: child.pid ?? 0,
          pidFile: existsSync(join(root, 'firecracker-double.pid')) ? readFileSync(join(root, 'firecracker-double.pid'), 'utf8') : undefined,
        };
      } finally {
        child.kill('SIGKILL');
        await new Promise((resolve) => (child.exitCode !== null || child.signalCode !== null ? resolve(undefined) : child.once('exit', resolve)));
      }
    };
    assert.equal((await launch(`${testVmId()}-plain1`, [])).pidFile, undefined, 'plain mode: no pid file');
    const withPidNs = await launch(`${testVmId()}-pidns1`, ['--new-pid-ns']);
    assert.equal(withPidNs.pidFile, String(withPidNs.pid), '--new-pid-ns: the pid of the process that became Firecracker');
  });
});
