/**
 * The Firecracker API double's log and metrics outputs, in Firecracker's formats and with its way
 * of opening files, so code that tails or parses them can be tested without a real binary.
 */
import { constants, openSync, writeSync } from 'node:fs';

type Write = (text: string) => void;

const LEVELS = ['off', 'error', 'warning', 'info', 'debug', 'trace'];

// The guest serial port and, until a logger names a file, Firecracker's log both go to stdout.
// A closed stdout must not kill the process: Firecracker only counts SIGPIPE.
process.stdout.on('error', () => undefined);
export const toStdout: Write = (text) => void process.stdout.write(text);

/**
 * Opened as Firecracker does: read-write, created if missing, no truncation, no append, so an
 * existing file is overwritten from offset 0; non-blocking, so a full FIFO loses lines, not time.
 */
function openSink(path: string): Write {
  const fd = openSync(path, constants.O_RDWR | constants.O_CREAT | constants.O_NONBLOCK);
  return (text) => {
    try {
      writeSync(fd, text);
    } catch {
      // EAGAIN on a full FIFO: Firecracker counts the miss and goes on.
    }
  };
}

/** `<local timestamp> [<id>:<thread>[:<LEVEL>][:<file>:<line>]] <message>`, Info and up by default. */
export class DoubleLogger {
  private write: Write = toStdout;
  private level = LEVELS.indexOf('info');
  private showLevel = false;
  private showOrigin = false;

  constructor(private readonly instanceId: string) {}

  /** A PUT /logger body (or the --log-path/--level flags); the level is case-insensitive, as in the code. */
  configure(body: { log_path?: string; level?: string; show_level?: boolean; show_log_origin?: boolean }): void {
    const level = LEVELS.indexOf((body.level ?? 'Info').toLowerCase());
    if (level < 0) throw new Error(`Invalid log level: ${body.level}`);
    this.write = body.log_path ? openSink(body.log_path) : toStdout;
    this.level = level;
    this.showLevel = body.show_level === true;
    this.showOrigin = body.show_log_origin === true;
  }

  log(level: 'error' | 'info', thread: string, message: string): void {
    if (LEVELS.indexOf(level) > this.level) return;
    const now = new Date();
    const pad = (value: number, width = 2) => String(value).padStart(width, '0');
    const date = `${now.getFullYear()}-${pad(now.getMonth() + 1)}-${pad(now.getDate())}`;
    const time = `${pad(now.getHours())}:${pad(now.getMinutes())}:${pad(now.getSeconds())}.${pad(now.getMilliseconds() * 1_000_000, 9)}`;
    const tags = [this.instanceId, thread];
    if (this.showLevel) tags.push(level.toUpperCase());
    if (this.showOrigin) tags.push('src/firecracker/src/api_server/mod.rs:0');
    this.write(`${date}T${time} [${tags.join(':')}] ${message}\n`);
  }
}

/** NDJSON metrics: one line per flush, every group present even for absent devices. */
export class DoubleMetrics {
  private readonly write: Write;

  /** `extras` are the main-only emit_id/properties outputs, already resolved for the version. */
  constructor(
    metricsPath: string,
    private readonly extras: { id?: string; properties?: Record<string, string> },
  ) {
    this.write = openSink(metricsPath);
  }

  flush(driveIds: Iterable<string>, ifaceIds: Iterable<string>): void {
    const line: Record<string, unknown> = { utc_timestamp_ms: Date.now(), ...this.extras };
    Object.assign(line, {
      api_server: { process_startup_time_us: 0, process_startup_time_cpu_us: 0 },
      block: { activate_fails: 0, read_bytes: 0, write_bytes: 0, read_count: 0, write_count: 0 },
      net: { activate_fails: 0, rx_bytes_count: 0, tx_bytes_count: 0, rx_packets_count: 0, tx_packets_count: 0 },
      uart: { missed_write_count: 0, flush_count: 0 },
      vcpu: { exit_io_in: 0, exit_io_out: 0, failures: 0 },
      vmm: { device_events: 0, panic_count: 0 },
    });
    for (const id of driveIds) line[`block_${id}`] = { read_bytes: 0, write_bytes: 0 };
    for (const id of ifaceIds) line[`net_${id}`] = { rx_bytes_count: 0, tx_bytes_count: 0 };
    this.write(`${JSON.stringify(line)}\n`);
  }
}
