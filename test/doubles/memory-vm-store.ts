/**
 * In-memory fakes of the agent's host ports, for unit tests of its use cases and plans: a VM store
 * whose files are map entries, a process table and counters. Paths are plain strings
 * (no symlinks), judged by the same rules as the real store. Every operation is recorded in
 * `log`, and any can be made to fail once with `failNext`.
 */
import { posix } from 'node:path';
import type { VmMetricsRecord } from '../../src/contracts/observe-api.js';
import type { HostSnapshot } from '../../src/contracts/agent-vm-api.js';
import { UUID_PATTERN } from '../../src/contracts/schema.js';
import {
  type SnapshotLayout,
  VM_ID_PATTERN,
  type VmLayout,
  hostSnapshotsDir,
  imagesDir,
  snapshotLayout,
  vmLayout,
  vmsDir,
} from '../../src/contracts/vm-layout.js';
import { isUnderAllowedRoot } from '../../src/agent/domain/path-policy.js';
import type { HostCounters } from '../../src/agent/ports/host-counters.js';
import type { PathPlace, SocketLookup, StoredVm, VmStore } from '../../src/agent/ports/vm-store.js';
import type { VmmProcess, VmmProcessFinder } from '../../src/agent/ports/vmm-processes.js';
import { NexusError } from '../../src/kit/nexus-error.js';
import type { ProcessIdentity } from '../../src/kit/process-identity.js';

export class MemoryVmStore implements VmStore {
  /** Every file, by path: its content. */
  readonly files = new Map<string, string>();
  readonly folders = new Set<string>();
  readonly sockets = new Set<string>();
  readonly metrics = new Map<string, VmMetricsRecord[]>();
  /** What `freeSpace` answers, wherever it is asked: free bytes on the host's one disk. */
  freeBytes = Number.MAX_SAFE_INTEGER;
  /** Each operation that changed something, as `<operation> <path>`. */
  readonly log: string[] = [];
  private readonly failures = new Map<string, Error>();

  constructor(readonly runDir = '/run/nexus') {}

  /** Puts a file in place (an image, a kernel). */
  put(path: string, content = 'bytes'): void {
    this.files.set(path, content);
  }

  /** Makes the next `operation` on `path` (e.g. `copyDisk`, `/run/nexus/vms/<id>/drives/rootfs.img`) throw `error`. */
  failNext(operation: string, path: string, error: Error = new Error(`injected: ${operation} ${path} failed`)): void {
    this.failures.set(`${operation} ${path}`, error);
  }

  /** Every path under `dir`, files and folders. */
  under(dir: string): string[] {
    return [...this.files.keys(), ...this.folders].filter((path) => path === dir || path.startsWith(`${dir}/`)).sort();
  }

  layout(id: string): VmLayout {
    if (!VM_ID_PATTERN.test(id)) throw new NexusError('bad_request', `not a VM id: ${id}`);
    return vmLayout(this.runDir, id);
  }

  async listing(): Promise<{ vms: string[]; strays: string[] }> {
    const root = vmsDir(this.runDir);
    const names = [
      ...new Set([...this.folders, ...this.files.keys()].filter((path) => posix.dirname(path) === root).map((path) => posix.basename(path))),
    ].sort();
    const listing = { vms: [] as string[], strays: [] as string[] };
    for (const name of names) {
      if (VM_ID_PATTERN.test(name) && this.files.has(`${root}/${name}/spec.json`)) listing.vms.push(name);
      else if (!name.startsWith('.')) listing.strays.push(`${root}/${name}`);
    }
    return listing;
  }

  async ids(): Promise<string[]> {
    const root = vmsDir(this.runDir);
    return [...this.folders]
      .filter((path) => posix.dirname(path) === root && VM_ID_PATTERN.test(posix.basename(path)))
      .map((path) => posix.basename(path))
      .sort();
  }

  async hasFolder(vm: VmLayout): Promise<boolean> {
    return this.folders.has(vm.dir);
  }

  async createFolder(vm: VmLayout): Promise<void> {
    this.change('createFolder', vm.dir);
    this.folders.add(vm.dir);
  }

  async removeFolder(vm: VmLayout): Promise<void> {
    await this.remove(vm.dir);
  }

  async read(vm: VmLayout): Promise<StoredVm | undefined> {
    const text = this.files.get(vm.specFile);
    return text === undefined ? undefined : (JSON.parse(text) as StoredVm);
  }

  async write(vm: VmLayout, stored: StoredVm): Promise<void> {
    this.change('write', vm.specFile);
    this.requireFolder(vm.specFile);
    this.files.set(vm.specFile, JSON.stringify(stored));
  }

  async isLaunched(vm: VmLayout): Promise<boolean> {
    return this.files.has(`${vm.dir}/launched`);
  }

  async markLaunched(vm: VmLayout, at: Date): Promise<void> {
    this.change('markLaunched', vm.dir);
    this.files.set(`${vm.dir}/launched`, at.toISOString());
  }

  async clearConsole(vm: VmLayout): Promise<void> {
    this.change('clearConsole', vm.consoleLog);
    this.files.delete(vm.consoleLog);
  }

  privateDrivePath(vm: VmLayout, driveId: string): string {
    return `${vm.dir}/drives/${driveId}.img`;
  }

  snapshotLayout(id: string): SnapshotLayout {
    if (!UUID_PATTERN.test(id)) throw new NexusError('bad_request', `not a snapshot id: ${id}`);
    return snapshotLayout(this.runDir, id);
  }

  async createSnapshotFolder(snapshot: SnapshotLayout): Promise<void> {
    this.change('createSnapshotFolder', snapshot.dir);
    this.folders.add(snapshot.dir);
  }

  async snapshotIds(): Promise<string[]> {
    const root = `${hostSnapshotsDir(this.runDir)}/`;
    const names = [...this.files.keys(), ...this.folders].filter((path) => path.startsWith(root)).map((path) => path.slice(root.length).split('/')[0] ?? '');
    return [...new Set(names)].filter((name) => UUID_PATTERN.test(name)).sort();
  }

  async readSnapshot(snapshot: SnapshotLayout): Promise<HostSnapshot | undefined> {
    const text = this.files.get(snapshot.recordFile);
    return text === undefined ? undefined : (JSON.parse(text) as HostSnapshot);
  }

  snapshotDrivePath(snapshotDir: string, driveId: string): string {
    return `${snapshotDir}/drive-${driveId}.img`;
  }

  async copyDisk(source: string, target: string): Promise<void> {
    this.change('copyDisk', target);
    const content = this.files.get(source);
    if (content === undefined) throw new Error(`ENOENT: ${source}`);
    if (this.files.has(target)) throw new NexusError('conflict', `the disk ${target} already exists`);
    this.folders.add(posix.dirname(target));
    this.files.set(target, content);
  }

  async exists(path: string): Promise<boolean> {
    return this.files.has(path) || this.folders.has(path) || this.sockets.has(path);
  }

  async allocatedBytes(path: string): Promise<number> {
    return this.sizeOf(path);
  }

  async freeSpace(): Promise<number> {
    return this.freeBytes;
  }

  async sizeOf(path: string): Promise<number> {
    const content = this.files.get(path);
    if (content === undefined) throw new Error(`ENOENT: ${path}`);
    return content.length;
  }

  async move(from: string, to: string): Promise<void> {
    this.change('move', from);
    const content = this.files.get(from);
    if (content === undefined) throw new Error(`ENOENT: ${from}`);
    this.files.delete(from);
    this.files.set(to, content);
  }

  async remove(path: string): Promise<void> {
    this.change('remove', path);
    for (const entry of this.under(path)) {
      this.files.delete(entry);
      this.folders.delete(entry);
    }
    for (const socket of [...this.sockets]) if (socket === path || socket.startsWith(`${path}/`)) this.sockets.delete(socket);
  }

  async writeRecord(path: string, value: unknown): Promise<void> {
    this.change('writeRecord', path);
    this.files.set(path, JSON.stringify(value));
  }

  async allowedFile(vm: VmLayout, what: string, path: string): Promise<string> {
    const roots = this.roots(vm);
    if (!isUnderAllowedRoot(posix.resolve(path), roots)) {
      throw new NexusError('forbidden', `the ${what} ${path} is outside the allowed roots`, { suggestion: `Put it under ${roots[0]}.` });
    }
    if (!this.files.has(posix.resolve(path))) throw new NexusError('bad_request', `the ${what} ${path} does not exist`);
    return posix.resolve(path);
  }

  async placeOf(vm: VmLayout, path: string): Promise<PathPlace> {
    const [images, drives] = this.roots(vm);
    if (isUnderAllowedRoot(posix.resolve(path), [images])) return 'images';
    if (isUnderAllowedRoot(posix.resolve(path), [drives])) return 'vm-drives';
    return 'elsewhere';
  }

  async vmFolderFile(path: string): Promise<string> {
    if (!path.startsWith('/')) throw new NexusError('bad_request', `the log path ${path} is not absolute`);
    if (!isUnderAllowedRoot(posix.resolve(path), [vmsDir(this.runDir)])) throw new NexusError('forbidden', `the log ${path} is outside the allowed roots`);
    if (!this.files.has(posix.resolve(path))) throw new NexusError('bad_request', `the log ${path} does not exist`);
    return posix.resolve(path);
  }

  async socketBeside(own: string, wanted: string): Promise<SocketLookup> {
    const resolved = posix.resolve(wanted);
    if (posix.dirname(resolved) !== posix.dirname(own)) return { kind: 'outside' };
    if (this.sockets.has(resolved)) return { kind: 'found', path: resolved, isSocket: true };
    if (this.files.has(resolved)) return { kind: 'found', path: resolved, isSocket: false };
    return { kind: 'missing' };
  }

  async appendMetrics(vm: VmLayout, record: VmMetricsRecord): Promise<void> {
    this.metrics.set(vm.id, [...(this.metrics.get(vm.id) ?? []), record]);
  }

  async recentMetrics(vm: VmLayout, seconds: number, now: Date): Promise<VmMetricsRecord[]> {
    return (this.metrics.get(vm.id) ?? []).filter((record) => Date.parse(record.at) >= now.getTime() - seconds * 1000);
  }

  private roots(vm: VmLayout): [string, string] {
    return [imagesDir(this.runDir), `${vm.dir}/drives`];
  }

  private requireFolder(path: string): void {
    if (!this.folders.has(posix.dirname(path))) throw new Error(`ENOENT: no folder ${posix.dirname(path)}`);
  }

  private change(operation: string, path: string): void {
    const key = `${operation} ${path}`;
    const failure = this.failures.get(key);
    if (failure) {
      this.failures.delete(key);
      throw failure;
    }
    this.log.push(key);
  }
}

/** A process table of VMMs no pid file names, for the stray and orphan rules. */
export class MemoryVmmProcesses implements VmmProcessFinder {
  readonly strays: VmmProcess[] = [];
  async scan(): Promise<VmmProcess[]> {
    return [...this.strays];
  }
  async identify(pid: number): Promise<ProcessIdentity | undefined> {
    return this.strays.some((entry) => entry.pid === pid) ? { pid, startTicks: 1 } : undefined;
  }
}

/** Counters that say a process uses one CPU second and 64 MiB, and a TAP that moved nothing. */
export const fixedCounters: HostCounters = {
  processUsage: async () => ({ cpuSeconds: 1, rssBytes: 64 * 1024 * 1024 }),
  guestNet: async () => ({ rx_bytes: 0, tx_bytes: 0, rx_packets: 0, tx_packets: 0 }),
};
