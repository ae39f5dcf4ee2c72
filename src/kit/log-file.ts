import { open, stat } from 'node:fs/promises';
import { sleepUnlessAborted } from './sleep.js';

/** One line of a log and where it ends: the byte offset a reader resumes from after it. */
export interface LogLine {
  end: number;
  text: string;
}

/** Lines are cut at this length: a guest that never prints a newline must not grow a reader's memory. */
const MAX_LINE_BYTES = 16 * 1024;

/**
 * The last `count` lines of a file (a last line without its newline included), reading back from
 * the end at most `maxBytes`. Answers no lines for a missing file.
 */
export async function tailLines(path: string, count: number, maxBytes = 4 * 1024 * 1024): Promise<{ lines: LogLine[]; size: number }> {
  const size = (await stat(path).catch(() => undefined))?.size ?? 0;
  if (size === 0 || count === 0) return { lines: [], size };
  const handle = await open(path, 'r');
  try {
    // Read back in growing chunks until enough newlines are in hand (or the start, or the budget).
    let start = size;
    let text = Buffer.alloc(0);
    while (start > 0 && size - start < maxBytes) {
      const chunk = Math.min(start, 64 * 1024, maxBytes - (size - start));
      start -= chunk;
      const buffer = Buffer.alloc(chunk);
      await handle.read(buffer, 0, chunk, start);
      text = Buffer.concat([buffer, text]);
      if (countNewlines(text) > count) break;
    }
    const lines = splitLines(text, start, true);
    // Unless the file was read from its start, the first piece is a partial line: drop it.
    if (start > 0) lines.shift();
    return { lines: lines.slice(-count), size };
  } finally {
    await handle.close();
  }
}

/**
 * Splits `buffer` (which starts at byte `base` of its file) into lines. Without `includePartial`
 * the bytes after the last newline are left out, for the next read to complete.
 */
export function splitLines(buffer: Buffer, base: number, includePartial: boolean): LogLine[] {
  const lines: LogLine[] = [];
  let from = 0;
  for (;;) {
    const newline = buffer.indexOf(0x0a, from);
    if (newline === -1) break;
    lines.push({ end: base + newline + 1, text: lineText(buffer.subarray(from, newline)) });
    from = newline + 1;
  }
  if (includePartial && from < buffer.length) lines.push({ end: base + buffer.length, text: lineText(buffer.subarray(from)) });
  return lines;
}

/** A serial console ends lines with \r\n and may carry other control bytes: what does not print. */
// eslint-disable-next-line no-control-regex -- removing control bytes is the point
const UNPRINTABLE = /[\r\x00-\x08\x0b-\x1f\x7f]/g;

function lineText(bytes: Buffer): string {
  return bytes.subarray(0, MAX_LINE_BYTES).toString('utf8').replace(UNPRINTABLE, '');
}

function countNewlines(buffer: Buffer): number {
  let count = 0;
  for (let at = buffer.indexOf(0x0a); at !== -1; at = buffer.indexOf(0x0a, at + 1)) count++;
  return count;
}

export type FollowEvent =
  | { kind: 'lines'; lines: LogLine[] }
  /** The file was cut back or replaced by another (its log keeper or VMM rotated it): reading starts again from its start. */
  | { kind: 'rotated' }
  /** The file is gone (its VM was deleted). Nothing follows. */
  | { kind: 'gone' };

export interface FollowOptions {
  signal: AbortSignal;
  /** The follow ends when this path is gone (the VM's folder); a missing file alone is waited for. Default: the file. */
  endsWithout?: string;
  pollMs?: number;
  chunkBytes?: number;
  /** How it waits between polls. Default: a timer of `pollMs`. Tests pass one they step by hand, so no poll depends on timing. */
  wait?: (ms: number, signal: AbortSignal) => Promise<void>;
}

/**
 * Follows a file from byte `offset` as it grows, a poll every `pollMs` (100), until the signal
 * aborts or `endsWithout` disappears. Only complete lines are given out, so a resumed reader never
 * sees half of one. At most `chunkBytes` are read per poll, so a burst is paced, not buffered whole.
 * A file that shrank below the position (cut in place) or is another file than the one read
 * before (renamed away, a new one made) is a rotation: reading starts again at 0. A file cut in
 * place that grew past the position again between two polls cannot be told from one that grew.
 */
export async function* followFile(path: string, offset: number, options: FollowOptions): AsyncGenerator<FollowEvent> {
  const { signal, endsWithout = path, pollMs = 100, chunkBytes = 256 * 1024, wait = sleepUnlessAborted } = options;
  let position = offset;
  let inode: number | undefined;
  while (!signal.aborted) {
    const found = await readFrom(path, position, chunkBytes);
    if (!found) {
      if (!(await stat(endsWithout).catch(() => undefined))) {
        yield { kind: 'gone' };
        return;
      }
      await wait(pollMs, signal);
      continue;
    }
    // The first file seen is the one the offset belongs to; a later one (same path, new inode) starts at 0.
    const replaced = inode !== undefined && found.inode !== inode;
    inode = found.inode;
    if (replaced || found.size < position) {
      position = 0;
      yield { kind: 'rotated' };
      continue;
    }
    let lines = splitLines(found.bytes, position, false);
    // A line longer than a whole chunk: give out the chunk as one (cut) line rather than stall.
    if (lines.length === 0 && found.bytes.length === chunkBytes) lines = splitLines(found.bytes, position, true);
    if (lines.length > 0) {
      position = lines[lines.length - 1]!.end;
      yield { kind: 'lines', lines };
      continue;
    }
    await wait(pollMs, signal);
  }
}

/**
 * What the file at `path` holds from `position` (at most `chunkBytes`), with its size and inode,
 * all from one open file, so a file replaced meanwhile cannot lend its bytes to another's size.
 * Undefined when there is no file. No bytes when it is not past `position`.
 */
async function readFrom(path: string, position: number, chunkBytes: number): Promise<{ inode: number; size: number; bytes: Buffer } | undefined> {
  const handle = await open(path, 'r').catch(() => undefined);
  if (!handle) return undefined;
  try {
    const { ino, size } = await handle.stat();
    if (size <= position) return { inode: ino, size, bytes: Buffer.alloc(0) };
    const buffer = Buffer.alloc(Math.min(size - position, chunkBytes));
    // Fewer bytes than the size promised when the file was cut meanwhile: only those read are lines.
    const { bytesRead } = await handle.read(buffer, 0, buffer.length, position);
    return { inode: ino, size, bytes: buffer.subarray(0, bytesRead) };
  } finally {
    await handle.close();
  }
}
