import { open, readdir, stat, truncate } from 'node:fs/promises';
import type { Logger } from 'pino';
import { join } from 'node:path';
import { VM_ID_PATTERN, vmLayout, vmsDir } from '../../contracts/vm-layout.js';
import { writeFileAtomically } from '../../kit/atomic-file.js';
import { metricsFileOf } from './vm-metrics.js';

/**
 * Keeps each VM's logs within `maxBytes` each: the console (the guest decides how much it prints,
 * the host's disk must not), and Firecracker's own log and metrics. A log over the cap keeps its
 * last quarter as `<name>.1` and starts again empty. The console is written in append mode, so the
 * next line lands at the start; Firecracker writes its log and metrics at its own offset, so those
 * files go on sparse (a hole where the cut was), their blocks freed all the same.
 */
export class VmLogKeeper {
  constructor(
    private readonly runDir: string,
    private readonly maxBytes: number,
    private readonly log: Logger,
  ) {}

  /** One pass over every VM folder; answers the logs that were cut. */
  async sweep(): Promise<string[]> {
    let ids: string[];
    try {
      ids = (await readdir(vmsDir(this.runDir))).filter((name) => VM_ID_PATTERN.test(name));
    } catch {
      return [];
    }
    const cut: string[] = [];
    for (const id of ids) {
      const vm = vmLayout(this.runDir, id);
      for (const path of [vm.consoleLog, join(vm.logsDir, 'firecracker.log'), join(vm.dir, 'metrics.json'), metricsFileOf(vm)]) {
        try {
          if (await this.cap(path)) cut.push(path);
        } catch (error) {
          // A VM deleted mid-pass, a full disk: this log waits for the next pass, the others go on.
          this.log.warn({ err: error, vm_id: id, path }, 'could not cap a VM log');
        }
      }
    }
    return cut;
  }

  private async cap(path: string): Promise<boolean> {
    // Allocated blocks, not the apparent size: a log cut before is sparse up to its writer's offset.
    const found = await stat(path).catch(() => undefined);
    const used = found ? Math.min(found.size, found.blocks * 512) : 0;
    if (!found || used <= this.maxBytes) return false;
    await writeFileAtomically(`${path}.1`, await tail(path, found.size, Math.floor(this.maxBytes / 4)), 0o640);
    await truncate(path, 0);
    this.log.info({ path, bytes: used, kept: `${path}.1` }, 'VM log over its cap: kept its tail and started it again');
    return true;
  }
}

async function tail(path: string, size: number, bytes: number): Promise<Buffer> {
  const file = await open(path, 'r');
  try {
    const length = Math.min(bytes, size);
    const buffer = Buffer.alloc(length);
    await file.read(buffer, 0, length, size - length);
    return buffer;
  } finally {
    await file.close();
  }
}
