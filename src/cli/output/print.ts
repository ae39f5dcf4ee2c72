import { NexusError } from '../../kit/nexus-error.js';

/** Prints rows as an aligned table with upper-case headers; an empty list says so. */
export function printTable(rows: Array<Record<string, string>>, empty: string): void {
  if (rows.length === 0) {
    process.stdout.write(`${empty}\n`);
    return;
  }
  const columns = Object.keys(rows[0] ?? {});
  const widths = columns.map((column) => Math.max(column.length, ...rows.map((row) => (row[column] ?? '').length)));
  const line = (cells: string[]) =>
    cells
      .map((cell, i) => cell.padEnd(widths[i] ?? 0))
      .join('  ')
      .trimEnd();
  process.stdout.write(`${line(columns.map((column) => column.toUpperCase()))}\n`);
  for (const row of rows) process.stdout.write(`${line(columns.map((column) => row[column] ?? ''))}\n`);
}

/** Prints one resource as `key  value` lines, the keys padded to one width. */
export function printFields(rows: Array<[string, string]>): void {
  const width = Math.max(...rows.map(([key]) => key.length)) + 2;
  for (const [key, value] of rows) process.stdout.write(`${key.padEnd(width)}${value}\n`);
}

export function printJson(value: unknown): void {
  process.stdout.write(`${JSON.stringify(value, null, 2)}\n`);
}

/** Reports a failed command: the error contract with --json, a message and a hint otherwise. */
export function printError(error: unknown, json: boolean): void {
  const nexus = error instanceof NexusError ? error : undefined;
  const message = error instanceof Error ? error.message : String(error);
  if (json) {
    const body: Record<string, string> = { error: nexus?.code ?? 'internal', fault_message: message };
    if (nexus?.suggestion) body.suggestion = nexus.suggestion;
    process.stderr.write(`${JSON.stringify(body)}\n`);
    return;
  }
  process.stderr.write(`nexus: ${message}\n`);
  if (nexus?.suggestion) process.stderr.write(`  hint: ${nexus.suggestion}\n`);
}

/** "3s ago", "2m ago": how long since a moment, for people. */
export function ago(iso: string, now = Date.now()): string {
  const seconds = Math.max(0, Math.round((now - Date.parse(iso)) / 1000));
  if (seconds < 120) return `${seconds}s ago`;
  if (seconds < 7200) return `${Math.round(seconds / 60)}m ago`;
  return `${Math.round(seconds / 3600)}h ago`;
}

/** "812 B", "4.0 KiB", "130.2 MiB", "1.5 GiB": a size, for people. */
export function bytes(count: number): string {
  const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB'];
  let unit = 0;
  let value = count;
  while (value >= 1024 && unit < units.length - 1) {
    value /= 1024;
    unit++;
  }
  return unit === 0 ? `${count} B` : `${value.toFixed(1)} ${units[unit]}`;
}
