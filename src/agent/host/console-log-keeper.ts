import { open, readdir, stat, truncate } from 'node:fs/promises';
import type { Logger } from 'pino';
import { VM_ID_PATTERN, vmLayout, vmsDir } from '../../contracts/vm-layout.js';
import { writeFileAtomically } from '../../kit/atomic-file.js';

/**
 * Keeps each VM's console log within `maxBytes`: the guest decides how much it prints, the host's
 * disk must not. A log over the cap keeps its last quarter as `console.log.1` and starts again
 * empty. VMMs write it in append mode, so after the truncation their next line lands at the start.
 */
export class ConsoleLogKeeper {
  constructor(
    private readonly runDir: string,
    private readonly maxBytes: number,
    private readonly log: Logger,
  ) {}

  /** One pass over every VM folder; answers the ids whose log was cut. */
  async sweep(): Promise<string[]> {
    let ids: string[];
    try {
      ids = (await readdir(vmsDir(this.runDir))).filter((name) => VM_ID_PATTERN.test(name));
    } catch {
      return [];
    }
    const cut: string[] = [];
    for (const id of ids) {
      const path = vmLayout(this.runDir, id).consoleLog;
      const size = await stat(path).then(
        (found) => found.size,
        () => 0,
      );
      if (size <= this.maxBytes) continue;
      await writeFileAtomically(`${path}.1`, await tail(path, size, Math.floor(this.maxBytes / 4)), 0o640);
      await truncate(path, 0);
      cut.push(id);
      this.log.info({ vm_id: id, bytes: size, kept: `${path}.1` }, 'console log over its cap: kept its tail and started it again');
    }
    return cut;
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
