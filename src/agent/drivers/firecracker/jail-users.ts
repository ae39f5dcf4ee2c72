import { readFile, readdir } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { VM_ID_PATTERN, type VmLayout } from '../../../contracts/vm-layout.js';
import { writeFileAtomically } from '../../../kit/atomic-file.js';
import { KeyedMutex } from '../../../kit/keyed-mutex.js';
import { NexusError } from '../../../kit/nexus-error.js';
import { idInRange, idRangeSize, lowestFreeId } from '../../domain/id-range.js';
import { type JailUser, type JailerConfig, listJails } from './jailer.js';

/** The uid/gid a VM's jailed Firecracker runs as, in the VM's folder: held until the folder is gone. */
export const JAIL_USER_RECORD = 'jail-user.json';

/**
 * Gives each jailed VM a uid and gid of its own (the same number) from the configured range, and
 * records it in the VM's folder, so an agent restart knows who holds which. An id is in use while
 * a VM folder's record names it, a jail's root belongs to it or a process in a jail runs as it (a
 * jail, and the process in it, can outlive its VM's folder): it goes to another VM only once all
 * are gone.
 */
export class JailUsers {
  /** One allocation at a time: two VMs started together must not both find the same id free. */
  private readonly allocating = new KeyedMutex();

  constructor(
    private readonly config: Pick<JailerConfig, 'uidRange' | 'chrootBaseDir'>,
    private readonly firecrackerBinary: string,
  ) {}

  /**
   * The VM's user: the one it holds, or the lowest free id of the range, recorded before it is
   * used. Asked only while the VM's VMM is not running (before a TAP or a launch), so a VM whose id
   * changes has no process left on the old one.
   */
  of(vm: VmLayout): Promise<JailUser> {
    return this.allocating.run('', async () => {
      const inUse = new Set<number>();
      for (const name of await readdir(dirname(vm.dir)).catch(() => [] as string[])) {
        if (name === vm.id || !VM_ID_PATTERN.test(name)) continue;
        const id = await readRecord(join(dirname(vm.dir), name));
        if (id !== undefined) inUse.add(id);
      }
      // A jail holds its root's owner, and the uid of whatever runs in it (found by /proc/<pid>/root,
      // as the sweep decides a jail still runs): never given away while a process runs as it.
      for (const jail of await listJails(this.config, this.firecrackerBinary)) {
        if (jail.vmId === vm.id) continue;
        inUse.add(jail.rootUid);
        for (const uid of jail.processUids) inUse.add(uid);
      }
      // Kept while no other VM claims it too (a VM folder copied by hand carries its record along).
      const held = await readRecord(vm.dir);
      if (held !== undefined && idInRange(this.config.uidRange, held) && !inUse.has(held)) return { uid: held, gid: held };
      const id = lowestFreeId(this.config.uidRange, inUse);
      if (id === undefined) {
        const { first, last } = this.config.uidRange;
        throw new NexusError(
          'conflict',
          `no uid of NEXUS_JAILER_UID_RANGE ${first}-${last} is free: all ${idRangeSize(this.config.uidRange)} are held by other jailed VMs on this host`,
          {
            suggestion: 'Delete VMs this host no longer needs, or widen NEXUS_JAILER_UID_RANGE (ids no account uses) and restart the agent.',
          },
        );
      }
      await writeFileAtomically(join(vm.dir, JAIL_USER_RECORD), `${JSON.stringify({ uid: id, gid: id })}\n`, 0o640);
      return { uid: id, gid: id };
    });
  }
}

/** The uid a VM folder's record names; undefined when there is none or it is not one (the folder is not trusted input). */
async function readRecord(vmDir: string): Promise<number | undefined> {
  try {
    const record = JSON.parse(await readFile(join(vmDir, JAIL_USER_RECORD), 'utf8')) as Partial<JailUser>;
    return Number.isInteger(record.uid) && record.uid === record.gid ? record.uid : undefined;
  } catch {
    return undefined;
  }
}
