import { UUID_PATTERN } from './schema.js';
/**
 * Where a VM's files live on the host: everything under `<run-dir>/vms/<id>/`, so the agent can
 * rebuild its view of a VM from that folder alone.
 */
export interface VmLayout {
  id: string;
  dir: string;
  specFile: string;
  pidFile: string;
  sockDir: string;
  qmpSocket: string;
  firecrackerSocket: string;
  logsDir: string;
  consoleLog: string;
  vmmLog: string;
  snapshotsDir: string;
  /** A hibernated VM's saved VMM state and memory; gone once it wakes or boots afresh. */
  hibernationDir: string;
  /** Written last, once the VMM has ended: a VM with it and no VMM is hibernated. */
  hibernationRecord: string;
}

/** VM ids are UUIDs: anything else would let a path escape `<run-dir>/vms/`. */
export const VM_ID_PATTERN = UUID_PATTERN;

export function vmLayout(runDir: string, id: string): VmLayout {
  if (!VM_ID_PATTERN.test(id)) throw new Error(`not a VM id: ${id}`);
  const dir = `${vmsDir(runDir)}/${id}`;
  return {
    id,
    dir,
    specFile: `${dir}/spec.json`,
    pidFile: `${dir}/pid`,
    sockDir: `${dir}/sock`,
    qmpSocket: `${dir}/sock/qmp.sock`,
    firecrackerSocket: `${dir}/sock/fc.sock`,
    logsDir: `${dir}/logs`,
    consoleLog: `${dir}/logs/console.log`,
    vmmLog: `${dir}/logs/vmm.log`,
    snapshotsDir: `${dir}/snapshots`,
    hibernationDir: `${dir}/hibernation`,
    hibernationRecord: `${dir}/hibernation/hibernation.json`,
  };
}

/**
 * A snapshot kept as a host resource, `<run-dir>/snapshots/<id>/`, beside the VM folders rather than
 * in one: it outlives the VM it was taken of, and new VMs are restored from it.
 */
export interface SnapshotLayout {
  id: string;
  dir: string;
  /** `snapshot.json`, written last: a snapshot folder with it is complete. */
  recordFile: string;
}

export function snapshotLayout(runDir: string, id: string): SnapshotLayout {
  if (!UUID_PATTERN.test(id)) throw new Error(`not a snapshot id: ${id}`);
  const dir = `${hostSnapshotsDir(runDir)}/${id}`;
  return { id, dir, recordFile: `${dir}/snapshot.json` };
}

export function hostSnapshotsDir(runDir: string): string {
  return `${runDir.replace(/\/+$/, '')}/snapshots`;
}

export function vmsDir(runDir: string): string {
  return `${runDir.replace(/\/+$/, '')}/vms`;
}

export function imagesDir(runDir: string): string {
  return `${runDir.replace(/\/+$/, '')}/images`;
}
