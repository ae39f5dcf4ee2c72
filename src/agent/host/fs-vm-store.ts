import { lstat, mkdir, readFile, readdir, realpath, rename, rm, stat, statfs, writeFile } from 'node:fs/promises';
import { basename, dirname, isAbsolute, join, resolve } from 'node:path';
import type { VmMetricsRecord } from '../../contracts/observe-api.js';
import type { HostSnapshot } from '../../contracts/agent-vm-api.js';
import { UUID_PATTERN } from '../../contracts/schema.js';
import { type SnapshotLayout, VM_ID_PATTERN, type VmLayout, hostSnapshotsDir, imagesDir, snapshotLayout, vmLayout, vmsDir } from '../../contracts/vm-layout.js';
import { pathExists, writeFileAtomically } from '../../kit/atomic-file.js';
import { NexusError } from '../../kit/nexus-error.js';
import { copySparse } from '../../kit/sparse-copy.js';
import { isUnderAllowedRoot } from '../domain/path-policy.js';
import type { PathPlace, SocketLookup, StoredVm, VmStore } from '../ports/vm-store.js';
import { VmMetricsFile, metricsFileOf } from './vm-metrics.js';

/** The VM folders of a run dir on this machine's disk: `<run-dir>/vms/<id>/`. */
export class FsVmStore implements VmStore {
  constructor(private readonly runDir: string) {}

  layout(id: string): VmLayout {
    if (!VM_ID_PATTERN.test(id)) throw new NexusError('bad_request', `not a VM id: ${id}`);
    return vmLayout(this.runDir, id);
  }

  async listing(): Promise<{ vms: string[]; strays: string[] }> {
    const root = vmsDir(this.runDir);
    let names: string[] = [];
    try {
      names = await readdir(root);
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code !== 'ENOENT') throw error;
    }
    const listing = { vms: [] as string[], strays: [] as string[] };
    for (const name of names.sort()) {
      if (VM_ID_PATTERN.test(name) && (await pathExists(join(root, name, 'spec.json')))) listing.vms.push(name);
      else if (!name.startsWith('.')) listing.strays.push(join(root, name));
    }
    return listing;
  }

  async ids(): Promise<string[]> {
    return (await readdir(vmsDir(this.runDir)).catch(() => [] as string[])).filter((name) => VM_ID_PATTERN.test(name)).sort();
  }

  hasFolder(vm: VmLayout): Promise<boolean> {
    return pathExists(vm.dir);
  }

  async createFolder(vm: VmLayout): Promise<void> {
    await mkdir(vm.dir, { recursive: true, mode: 0o750 });
  }

  removeFolder(vm: VmLayout): Promise<void> {
    return rm(vm.dir, { recursive: true, force: true });
  }

  read(vm: VmLayout): Promise<StoredVm | undefined> {
    return readRecord<StoredVm>(vm.specFile);
  }

  write(vm: VmLayout, stored: StoredVm): Promise<void> {
    return writeFileAtomically(vm.specFile, JSON.stringify(stored, null, 2), 0o640);
  }

  isLaunched(vm: VmLayout): Promise<boolean> {
    return pathExists(launchedMarker(vm));
  }

  markLaunched(vm: VmLayout, at: Date): Promise<void> {
    return writeFile(launchedMarker(vm), `${at.toISOString()}\n`);
  }

  clearConsole(vm: VmLayout): Promise<void> {
    return rm(vm.consoleLog, { force: true });
  }

  privateDrivePath(vm: VmLayout, driveId: string): string {
    return join(drivesDir(vm), `${driveId}.img`);
  }

  snapshotLayout(id: string): SnapshotLayout {
    if (!UUID_PATTERN.test(id)) throw new NexusError('bad_request', `not a snapshot id: ${id}`);
    return snapshotLayout(this.runDir, id);
  }

  async createSnapshotFolder(snapshot: SnapshotLayout): Promise<void> {
    await mkdir(hostSnapshotsDir(this.runDir), { recursive: true, mode: 0o700 });
    await mkdir(snapshot.dir, { mode: 0o700 });
  }

  async snapshotIds(): Promise<string[]> {
    return (await readdir(hostSnapshotsDir(this.runDir)).catch(() => [] as string[])).filter((name) => UUID_PATTERN.test(name)).sort();
  }

  readSnapshot(snapshot: SnapshotLayout): Promise<HostSnapshot | undefined> {
    return readRecord<HostSnapshot>(snapshot.recordFile);
  }

  snapshotDrivePath(snapshotDir: string, driveId: string): string {
    return join(snapshotDir, `drive-${driveId}.img`);
  }

  async copyDisk(source: string, target: string): Promise<void> {
    await mkdir(dirname(target), { recursive: true });
    await copySparse(await realpath(source), target);
  }

  exists(path: string): Promise<boolean> {
    return pathExists(path);
  }

  async sizeOf(path: string): Promise<number> {
    return (await stat(path)).size;
  }

  async allocatedBytes(path: string): Promise<number> {
    return (await stat(path)).blocks * 512;
  }

  async freeSpace(path: string): Promise<number> {
    // What is to be made there may not exist yet: its disk is its nearest existing folder's.
    let where = path;
    while (!(await pathExists(where)) && dirname(where) !== where) where = dirname(where);
    const { bavail, bsize } = await statfs(where);
    return bavail * bsize;
  }

  move(from: string, to: string): Promise<void> {
    return rename(from, to);
  }

  remove(path: string): Promise<void> {
    return rm(path, { recursive: true, force: true });
  }

  writeRecord(path: string, value: unknown): Promise<void> {
    return writeFileAtomically(path, JSON.stringify(value, null, 2), 0o640);
  }

  /**
   * The canonical path of a file a VM may be given: under the image store or the VM's own
   * `drives/` (never elsewhere in its folder: spec.json, pid and snapshots are the agent's).
   */
  async allowedFile(vm: VmLayout, what: string, path: string): Promise<string> {
    return fileUnder(path, await this.allowedRoots(vm), what, { missing: 'Build or upload the image first (`nexus image build`).', blockDevices: true });
  }

  async placeOf(vm: VmLayout, path: string): Promise<PathPlace> {
    const [images, drives] = await this.allowedRoots(vm);
    const canonicalPath = await canonicalAncestor(path);
    if (isUnderAllowedRoot(canonicalPath, [images as string])) return 'images';
    if (isUnderAllowedRoot(canonicalPath, [drives as string])) return 'vm-drives';
    return 'elsewhere';
  }

  async vmFolderFile(path: string): Promise<string> {
    if (!isAbsolute(path)) throw new NexusError('bad_request', `the log path ${path} is not absolute`, { suggestion: 'Give an absolute path.' });
    return fileUnder(path, [await canonical(vmsDir(this.runDir))], 'log', { missing: 'GET /v1/vms/:id names its console_log.', blockDevices: false });
  }

  async socketBeside(own: string, wanted: string): Promise<SocketLookup> {
    // The folder the VM's socket really lives in: its sock/ folder, or its jail when jailed.
    const ownResolved = await realpath(own).catch(() => undefined);
    const ownDirs = [await canonical(dirname(own)), ...(ownResolved ? [dirname(ownResolved)] : [])];
    if (!isAbsolute(wanted) || !isUnderAllowedRoot(await canonicalAncestor(wanted), ownDirs)) return { kind: 'outside' };
    const resolved = await realpath(wanted).catch(() => undefined);
    if (resolved === undefined) return { kind: 'missing' };
    if (!ownDirs.some((allowed) => dirname(resolved) === allowed)) return { kind: 'outside' };
    // The VM's own short path when that is the socket meant (a jail's host path can be too long for a socket).
    return { kind: 'found', path: resolved === ownResolved ? own : resolved, isSocket: (await lstat(resolved)).isSocket() };
  }

  appendMetrics(vm: VmLayout, record: VmMetricsRecord): Promise<void> {
    return new VmMetricsFile(metricsFileOf(vm)).append(record);
  }

  recentMetrics(vm: VmLayout, seconds: number, now: Date): Promise<VmMetricsRecord[]> {
    return new VmMetricsFile(metricsFileOf(vm)).recent(seconds, now);
  }

  private async allowedRoots(vm: VmLayout): Promise<[string, string]> {
    return [await canonical(imagesDir(this.runDir)), await canonical(drivesDir(vm))];
  }
}

/** A JSON record the agent wrote; undefined when there is none. */
async function readRecord<T>(path: string): Promise<T | undefined> {
  try {
    return JSON.parse(await readFile(path, 'utf8')) as T;
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw new Error(`reading ${path}: ${(error as Error).message}`, { cause: error });
  }
}

/** Where a VM's private drive copies live; with the image store, the only place a VM's files may be. */
function drivesDir(vm: VmLayout): string {
  return join(vm.dir, 'drives');
}

/** Present once a VMM has been launched for the VM. */
function launchedMarker(vm: VmLayout): string {
  return join(vm.dir, 'launched');
}

/**
 * The canonical path of `path` if it is a file under one of `roots` (canonical): a 403 otherwise.
 * A path that does not resolve is judged by its nearest existing ancestor, so "missing" is never
 * answered for a path outside the roots: callers cannot probe the host's files.
 */
async function fileUnder(path: string, roots: string[], what: string, options: { missing: string; blockDevices: boolean }): Promise<string> {
  const resolved = await realpath(path).catch(() => undefined);
  if (!isUnderAllowedRoot(resolved ?? (await canonicalAncestor(path)), roots)) {
    throw new NexusError('forbidden', `the ${what} ${path} is outside the allowed roots`, { suggestion: `Put it under ${roots[0]}.` });
  }
  if (resolved === undefined) throw new NexusError('bad_request', `the ${what} ${path} does not exist`, { suggestion: options.missing });
  const info = await stat(resolved);
  if (!info.isFile() && !(options.blockDevices && info.isBlockDevice())) {
    throw new NexusError('bad_request', `the ${what} ${path} is not a file`, { suggestion: `Give the path of a file, not a folder.` });
  }
  return resolved;
}

async function canonical(path: string): Promise<string> {
  return realpath(path).catch(() => canonicalAncestor(path));
}

/** The canonical form of a path that may not exist: its nearest existing ancestor, resolved, plus the rest. */
async function canonicalAncestor(path: string): Promise<string> {
  const missing: string[] = [];
  let current = resolve(path);
  for (;;) {
    const found = await realpath(current).catch(() => undefined);
    if (found !== undefined) return join(found, ...missing.reverse());
    const parent = dirname(current);
    if (parent === current) return resolve(path);
    missing.push(basename(current));
    current = parent;
  }
}
