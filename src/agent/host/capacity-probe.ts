import { readFile, readdir, statfs } from 'node:fs/promises';
import { availableParallelism, totalmem } from 'node:os';
import { join } from 'node:path';
import { CAPACITY_NOTE_MAX_LENGTH, type DriverAvailability, type HostCapacity } from '../../contracts/agent-api.js';
import { UNSTORABLE_CHARACTERS } from '../../contracts/schema.js';
import { isProcessAlive } from '../../kit/process-identity.js';
import { probeFirecracker, probeQemu } from './driver-probe.js';
import { type KvmProbeResult, probeKvm } from './kvm-probe.js';
import { readPidFile } from './supervisor/pid-file.js';

const MIB = 1024 * 1024;
const UNSTORABLE = new RegExp(`[${UNSTORABLE_CHARACTERS}]`, 'gu');

interface StaticFacts {
  kvm: KvmProbeResult;
  drivers: DriverAvailability[];
}

/**
 * Measures what this host can give to guests. KVM and the VMM binaries are probed once (the KVM
 * probe runs a guest); memory, disk and running VMs are read on every call.
 */
export class CapacityProbe {
  private facts: StaticFacts | undefined;

  /** `kvmProbe` defaults to running the probe guest; only tests stand in another answer. */
  constructor(
    private readonly config: { runDir: string; qemuBinary: string; firecrackerBinary: string; jailer?: { binary: string } | undefined },
    private readonly kvmProbe: (qemuBinary: string) => Promise<KvmProbeResult> = probeKvm,
  ) {}

  async init(): Promise<StaticFacts> {
    if (!this.facts) {
      const [kvm, qemu] = await Promise.all([this.kvmProbe(this.config.qemuBinary), probeQemu(this.config.qemuBinary)]);
      const firecracker = await probeFirecracker(this.config.firecrackerBinary, kvm, this.config.jailer?.binary);
      this.facts = { kvm: withNotesClipped(kvm), drivers: [qemu, firecracker].map(withNotesClipped) };
    }
    return this.facts;
  }

  async measure(): Promise<HostCapacity> {
    const facts = await this.init();
    const [memoryAvailable, disk, vmsRunning] = await Promise.all([memoryAvailableBytes(), statfs(this.config.runDir), this.countRunningVms()]);
    return {
      vcpus: availableParallelism(),
      memory_mib: Math.floor(totalmem() / MIB),
      memory_available_mib: Math.floor(memoryAvailable / MIB),
      run_dir: this.config.runDir,
      disk_total_mib: Math.floor((disk.blocks * disk.bsize) / MIB),
      disk_available_mib: Math.floor((disk.bavail * disk.bsize) / MIB),
      vms_running: vmsRunning,
      kvm: facts.kvm,
      drivers: facts.drivers,
    };
  }

  /** VM folders whose pid file names a live process. */
  private async countRunningVms(): Promise<number> {
    const vmsDir = join(this.config.runDir, 'vms');
    let ids: string[];
    try {
      ids = await readdir(vmsDir);
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code === 'ENOENT') return 0;
      throw error;
    }
    const alive = await Promise.all(
      ids.map(async (id) => {
        const identity = await readPidFile(join(vmsDir, id, 'pid'));
        return identity !== undefined && (await isProcessAlive(identity));
      }),
    );
    return alive.filter(Boolean).length;
  }
}

/** MemAvailable from /proc/meminfo: free memory plus what the kernel can reclaim. */
async function memoryAvailableBytes(): Promise<number> {
  const meminfo = await readFile('/proc/meminfo', 'utf8');
  const match = /^MemAvailable:\s+(\d+) kB$/m.exec(meminfo);
  return match ? Number(match[1]) * 1024 : 0;
}

/**
 * A probe note (a version line, a failure's message) made what the manager accepts, so a verbose or
 * garbled failure cannot get this host's enrollment and heartbeats refused: no NUL or unpaired
 * surrogate, and cut by code points (never inside a surrogate pair) to the contract's length.
 */
export function probeNoteOf(note: string): string {
  const clean = note.replace(UNSTORABLE, '');
  if (clean.length <= CAPACITY_NOTE_MAX_LENGTH) return clean;
  let cut = '';
  for (const character of clean) {
    if (cut.length + character.length >= CAPACITY_NOTE_MAX_LENGTH) break;
    cut += character;
  }
  return `${cut}…`;
}

function withNotesClipped<T extends { version?: string; reason?: string }>(facts: T): T {
  return {
    ...facts,
    ...(facts.version === undefined ? {} : { version: probeNoteOf(facts.version) }),
    ...(facts.reason === undefined ? {} : { reason: probeNoteOf(facts.reason) }),
  };
}
