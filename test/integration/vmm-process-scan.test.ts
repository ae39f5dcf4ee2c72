// test-lane: parallel (its own managers, hollow hosts, databases, temp dirs and ports: no host network, guest, cgroup or host-wide scan)
import assert from 'node:assert/strict';
import { type ChildProcess, execFileSync, spawn } from 'node:child_process';
import { mkdirSync, symlinkSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { after, describe, it } from 'node:test';
import { scanVmmProcesses } from '../../src/agent/host/supervisor/vmm-process-scan.js';
import { eventually } from '../support/nexus-process.js';
import { testVmId } from '../support/net-names.js';
import { tempDir } from '../support/temp-dir.js';

const ENTER_JAIL = fileURLToPath(new URL('../doubles/enter-jail', import.meta.url));

/**
 * The scan that finds VMM processes a pid file may no longer name (the sweep kills what it finds):
 * stand-ins for unjailed VMMs (tail, under a QEMU binary's name, following files) and for jailed
 * Firecrackers (Node chrooted in a jail root by test/doubles/enter-jail, carrying a jail id).
 */
describe('VMM process scan', () => {
  const dir = tempDir('nexus-vmm-scan-');
  const runDir = join(dir.path, 'run');
  const jailBase = join(runDir, 'jail');
  const children: ChildProcess[] = [];
  const fakeQemu = join(dir.path, 'bin', 'qemu-system-x86_64');
  mkdirSync(join(fakeQemu, '..'), { recursive: true });
  const tail = execFileSync('sh', ['-c', 'command -v tail'], { encoding: 'utf8' }).trim();
  symlinkSync(tail, fakeQemu);

  after(async () => {
    for (const child of children) child.kill('SIGKILL');
    await Promise.all(
      children.map((child) => (child.exitCode !== null || child.signalCode !== null ? undefined : new Promise((resolve) => child.once('exit', resolve)))),
    );
    dir.remove();
  });

  /** A stand-in following `file` (made first) as `binary`, its argument `prefix` + the path. */
  const follower = (binary: string, file: string, prefix = ''): number => {
    mkdirSync(join(file, '..'), { recursive: true });
    writeFileSync(file, '');
    // -F: tail keeps running even when the argument (file=…) names no file.
    const child = spawn(binary, ['-F', `${prefix}${file}`], { stdio: 'ignore' });
    children.push(child);
    return child.pid ?? 0;
  };
  /** A process chrooted in `root`, carrying `args`; resolves once it runs there. */
  const jailed = async (root: string, args: string[]): Promise<number> => {
    mkdirSync(root, { recursive: true });
    const child = spawn(ENTER_JAIL, [root, '54321', '54321', process.execPath, '-e', 'console.log("in"); setTimeout(() => {}, 60_000)', '--', ...args], {
      stdio: ['ignore', 'pipe', 'inherit'],
    });
    children.push(child);
    await new Promise<void>((resolve, reject) => {
      child.stdout?.once('data', () => resolve());
      child.once('exit', (code) => reject(new Error(`enter-jail exited (${code})`)));
    });
    return child.pid ?? 0;
  };
  const scanned = async () => new Map((await scanVmmProcesses(runDir, jailBase)).map((found) => [found.pid, found.vmId]));

  it('finds a VMM by a VM folder path of this run dir at the start of an argument or after = , :, and nothing else', async () => {
    const [a, b, c, d] = [testVmId(), testVmId(), testVmId(), testVmId()];
    const plain = follower(fakeQemu, join(runDir, 'vms', a, 'logs', 'console.log'));
    const afterEquals = follower(fakeQemu, join(runDir, 'vms', b, 'logs', 'console.log'), 'file=');
    // Another run dir whose path ends with this one's: `<elsewhere>/<run dir>/vms/<id>/`.
    const longer = follower(fakeQemu, join(dir.path, 'elsewhere', runDir, 'vms', c, 'logs', 'console.log'));
    // A VM folder path, but not a VMM binary.
    const notAVmm = follower(tail, join(runDir, 'vms', d, 'logs', 'console.log'));
    await eventually('the stand-ins run', async () => (await scanned()).size >= 2, 5000);

    const found = await scanned();
    assert.equal(found.get(plain), a, 'a path argument names VM a');
    assert.equal(found.get(afterEquals), b, 'so does file=<path>');
    assert.equal(found.has(longer), false, 'a path that only holds the run dir further in belongs to another run dir');
    assert.equal(found.has(notAVmm), false, 'a process that is no VMM is not one');
  });

  it('finds a jailed Firecracker by its root being the jail its --id names, and nothing that only claims one', async () => {
    const [e, f, g, h] = [testVmId(), testVmId(), testVmId(), testVmId()];
    const root = (id: string) => join(jailBase, 'firecracker', id, 'root');
    const spaced = await jailed(root(`${e}-aa1`), ['--id', `${e}-aa1`]);
    const joined = await jailed(root(`${f}-bb2`), [`--id=${f}-bb2`]);
    // In g's jail, claiming to be h's launch: its root is not h's jail.
    const claiming = await jailed(root(`${g}-cc3`), ['--id', `${h}-dd4`]);
    mkdirSync(root(`${h}-dd4`), { recursive: true });
    // Carrying a jail id, outside any jail.
    const outside = spawn(process.execPath, ['-e', 'setTimeout(() => {}, 60_000)', '--', '--id', `${h}-dd4`], { stdio: 'ignore' });
    children.push(outside);

    const found = await scanned();
    assert.equal(found.get(spaced), e, '--id <id> in the jail of that id');
    assert.equal(found.get(joined), f, '--id=<id> too, as the jailer passes it');
    assert.equal(found.has(claiming), false, 'a process in one jail claiming another jail id');
    assert.equal(found.has(outside.pid ?? 0), false, 'a process outside any jail claiming a jail id');
    assert.deepEqual(
      new Map((await scanVmmProcesses(runDir)).map((entry) => [entry.pid, entry.vmId])).has(spaced),
      false,
      'without a chroot base, jails are not looked at',
    );
  });
});
