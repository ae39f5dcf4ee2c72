import { Type, type Static } from 'typebox';
import { Int32, StrictObject, Text } from './schema.js';

/** A VM's logs: the guest's serial console, or the VMM's own log. */
export const LogSource = Type.Union([Type.Literal('console'), Type.Literal('vmm')], { default: 'console' });
export type LogSource = Static<typeof LogSource>;

export const LOG_TAIL_MAX_LINES = 10_000;

export const LogTailQuery = StrictObject({
  source: Type.Optional(LogSource),
  tail: Type.Optional(Int32({ minimum: 0, maximum: LOG_TAIL_MAX_LINES, default: 200, description: 'How many of the last lines' })),
});
export type LogTailQuery = Static<typeof LogTailQuery>;

export const LogStreamQuery = StrictObject({
  source: Type.Optional(LogSource),
  tail: Type.Optional(
    Int32({
      minimum: 0,
      maximum: LOG_TAIL_MAX_LINES,
      default: 0,
      description: 'Lines already written to send first (ignored when resuming with Last-Event-ID)',
    }),
  ),
});
export type LogStreamQuery = Static<typeof LogStreamQuery>;

const pathTail = {
  path: Text(4096, { minLength: 1, description: 'An absolute path under the VM folders (<run-dir>/vms/)' }),
  tail: Type.Optional(Int32({ minimum: 0, maximum: LOG_TAIL_MAX_LINES, default: 200 })),
};

/** The agent's tail of a file by path. */
export const FileTailQuery = StrictObject(pathTail);
export type FileTailQuery = Static<typeof FileTailQuery>;

/** The manager's dev-mode tail of a file by path, on one of its hosts. */
export const LogPathTailQuery = StrictObject({
  ...pathTail,
  host_id: Type.Optional(Type.String({ format: 'uuid', description: 'The host whose file it is; needed only when there are several' })),
});
export type LogPathTailQuery = Static<typeof LogPathTailQuery>;

export const LogTail = Type.Object(
  {
    source: Type.Union([LogSource, Type.Literal('file')]),
    lines: Type.Array(Type.String()),
    next_offset: Type.Integer({ description: 'The byte offset after the last line: send it as Last-Event-ID to stream what follows' }),
  },
  { additionalProperties: false },
);
export type LogTail = Static<typeof LogTail>;

/** Named events of a log stream (text/event-stream); a line is a plain message whose `id` is the byte offset after it. */
export const LOG_STREAM_EVENTS = {
  /** data: {"reason":"rotated"}: the file was cut back; lines continue from its new start. */
  rotated: 'rotated',
  /**
   * The last event; the stream closes. data: {"reason":"vm_deleted"}, or (from the manager) why the
   * caller may no longer read: token_revoked, token_expired, token_rotated, forbidden, access_unverified.
   */
  end: 'end',
} as const;

/** Counters are totals since the VMM started; `net` is seen from the guest (rx: what it received). */
export const VmMetricsRecord = Type.Object(
  {
    at: Type.String({ format: 'date-time' }),
    vmm: Type.Union([Type.Literal('qemu'), Type.Literal('firecracker')]),
    vcpu_seconds: Type.Number({ description: 'CPU time of the VMM process (user + system): the vCPUs and the device model' }),
    rss_bytes: Type.Integer({ description: 'Resident memory of the VMM process' }),
    block: Type.Object(
      { read_bytes: Type.Integer(), write_bytes: Type.Integer(), read_ops: Type.Integer(), write_ops: Type.Integer() },
      { additionalProperties: false },
    ),
    net: Type.Object(
      { rx_bytes: Type.Integer(), tx_bytes: Type.Integer(), rx_packets: Type.Integer(), tx_packets: Type.Integer() },
      { additionalProperties: false },
    ),
    raw: Type.Unknown({ description: "The VMM's own record (QEMU's query-blockstats, Firecracker's metrics line)" }),
  },
  { additionalProperties: false },
);
export type VmMetricsRecord = Static<typeof VmMetricsRecord>;

export const MetricsWindowQuery = StrictObject({
  window: Type.Optional(
    Text(5, {
      pattern: '^[0-9]{1,4}(s|m)?$',
      example: '60s',
      default: '60s',
      description: 'How far back: seconds (60 or 60s) or minutes (5m), at most 1 hour',
    }),
  ),
});
export type MetricsWindowQuery = Static<typeof MetricsWindowQuery>;

export const MetricsRecent = Type.Object({ items: Type.Array(VmMetricsRecord) }, { additionalProperties: false });
export type MetricsRecent = Static<typeof MetricsRecent>;

/** Seconds in a window like `60`, `60s` or `5m`; undefined past an hour. */
export function windowSeconds(window: string): number | undefined {
  const match = /^([0-9]{1,4})(s|m)?$/.exec(window);
  if (!match) return undefined;
  const seconds = Number(match[1]) * (match[2] === 'm' ? 60 : 1);
  return seconds > 0 && seconds <= 3600 ? seconds : undefined;
}
