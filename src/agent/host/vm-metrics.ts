import { appendFile, readFile } from 'node:fs/promises';
import { join } from 'node:path';
import type { VmLayout } from '../../contracts/vm-layout.js';
import type { VmMetricsRecord } from '../../contracts/observe-api.js';
import { tailLines } from '../../kit/log-file.js';
import type { HostCounters } from '../ports/host-counters.js';

/** Linux reports process CPU time in clock ticks of 1/100 s (USER_HZ) on every architecture Nexus runs on. */
const TICKS_PER_SECOND = 100;

/** CPU time (user + system) and resident memory of a process, from /proc; undefined once it is gone. */
export async function processUsage(pid: number): Promise<{ cpuSeconds: number; rssBytes: number } | undefined> {
  try {
    const stat = await readFile(`/proc/${pid}/stat`, 'utf8');
    // Fields after the command name, which may hold spaces and parentheses: utime is 14th, stime 15th.
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    const ticks = Number(fields[11]) + Number(fields[12]);
    const status = await readFile(`/proc/${pid}/status`, 'utf8');
    const rssKib = Number(/^VmRSS:\s+(\d+) kB/m.exec(status)?.[1] ?? 0);
    return { cpuSeconds: ticks / TICKS_PER_SECOND, rssBytes: rssKib * 1024 };
  } catch {
    return undefined;
  }
}

/**
 * A TAP's counters seen from the guest: what the TAP transmits, the guest receives. Zeros for a
 * VM without a TAP (or one gone). With `pid`, the TAP in that process's network namespace, from
 * its `/proc/<pid>/net/dev`: a VM on a network has its TAP in a namespace of its own, where the
 * guest's traffic to its gateway and DHCP server never reaches the host's side.
 */
export async function guestNetCounters(tap: string | null, pid?: number): Promise<VmMetricsRecord['net']> {
  if (tap && pid !== undefined) return namespacedTapCounters(tap, pid);
  const read = async (name: string) => (tap ? Number((await readFile(`/sys/class/net/${tap}/statistics/${name}`, 'utf8').catch(() => '0')).trim()) : 0);
  const [rxBytes, txBytes, rxPackets, txPackets] = await Promise.all([read('tx_bytes'), read('rx_bytes'), read('tx_packets'), read('rx_packets')]);
  return { rx_bytes: rxBytes, tx_bytes: txBytes, rx_packets: rxPackets, tx_packets: txPackets };
}

async function namespacedTapCounters(tap: string, pid: number): Promise<VmMetricsRecord['net']> {
  return guestCountersIn(await readFile(`/proc/${pid}/net/dev`, 'utf8').catch(() => ''), tap);
}

/** A TAP's counters seen from the guest, from a `/proc/net/dev` table; zeros when the TAP is not in it. */
export function guestCountersIn(netDev: string, tap: string): VmMetricsRecord['net'] {
  const line = netDev.split('\n').find((each) => each.trimStart().startsWith(`${tap}:`));
  // Receive: bytes packets errs drop fifo frame compressed multicast; then transmit: bytes packets …
  const fields = (
    line
      ?.slice(line.indexOf(':') + 1)
      .trim()
      .split(/\s+/) ?? []
  ).map(Number);
  const at = (index: number) => (Number.isFinite(fields[index]) ? (fields[index] ?? 0) : 0);
  return { rx_bytes: at(8), tx_bytes: at(0), rx_packets: at(9), tx_packets: at(1) };
}

/** This machine's counters, from /proc and /sys. */
export const procHostCounters: HostCounters = { processUsage, guestNet: guestNetCounters };

/** Where the agent keeps a VM's metrics records: with its logs, capped like them. */
export function metricsFileOf(vm: Pick<VmLayout, 'logsDir'>): string {
  return join(vm.logsDir, 'metrics.ndjson');
}

/** A VM's metrics history: one JSON record a line, appended; capped with the VM's other logs. */
export class VmMetricsFile {
  constructor(private readonly path: string) {}

  async append(record: VmMetricsRecord): Promise<void> {
    await appendFile(this.path, `${JSON.stringify(record)}\n`, { mode: 0o640 });
  }

  /** The records of the last `seconds`, oldest first (at most `maxRecords`). */
  async recent(seconds: number, now: Date, maxRecords = 4000): Promise<VmMetricsRecord[]> {
    const since = now.getTime() - seconds * 1000;
    const { lines } = await tailLines(this.path, maxRecords);
    const records: VmMetricsRecord[] = [];
    for (const line of lines) {
      try {
        const record = JSON.parse(line.text) as VmMetricsRecord;
        if (Date.parse(record.at) >= since) records.push(record);
      } catch {
        // a line cut by the log keeper: skip it
      }
    }
    return records;
  }
}
