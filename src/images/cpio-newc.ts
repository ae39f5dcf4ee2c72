/** One member of an initramfs archive. Paths are relative to its root ("bin/busybox"). */
export type CpioEntry =
  | { kind: 'dir'; path: string; mode?: number }
  | { kind: 'file'; path: string; data: Buffer; mode?: number }
  | { kind: 'symlink'; path: string; target: string }
  | { kind: 'char'; path: string; major: number; minor: number; mode?: number };

const S_IFDIR = 0o040000;
const S_IFREG = 0o100000;
const S_IFLNK = 0o120000;
const S_IFCHR = 0o020000;
const TRAILER = 'TRAILER!!!';

/**
 * A `newc` (SVR4, no CRC) cpio archive, the format the kernel unpacks as an initramfs. Written
 * here rather than with `cpio -o` so that every member is owned by root and has a fixed mtime
 * whoever builds it (the same inputs give the same bytes), and so that device nodes such as
 * /dev/console can be included without root.
 *
 * Must stay true: a directory comes before its members (the kernel does not create parents).
 */
export function newcArchive(entries: readonly CpioEntry[], mtimeSeconds = 0): Buffer {
  const parts: Buffer[] = [];
  let inode = 1;
  for (const entry of entries) {
    const path = entry.path.replace(/^\/+/, '');
    if (!path) throw new Error('a cpio entry needs a path');
    const data = entry.kind === 'file' ? entry.data : entry.kind === 'symlink' ? Buffer.from(entry.target) : Buffer.alloc(0);
    parts.push(
      member(path, data, {
        inode: inode++,
        mode: modeOf(entry),
        nlink: entry.kind === 'dir' ? 2 : 1,
        mtimeSeconds,
        rdevMajor: entry.kind === 'char' ? entry.major : 0,
        rdevMinor: entry.kind === 'char' ? entry.minor : 0,
      }),
    );
  }
  parts.push(member(TRAILER, Buffer.alloc(0), { inode: 0, mode: 0, nlink: 1, mtimeSeconds: 0, rdevMajor: 0, rdevMinor: 0 }));
  return Buffer.concat(parts);
}

function modeOf(entry: CpioEntry): number {
  switch (entry.kind) {
    case 'dir':
      return S_IFDIR | (entry.mode ?? 0o755);
    case 'file':
      return S_IFREG | (entry.mode ?? 0o644);
    case 'symlink':
      return S_IFLNK | 0o777;
    case 'char':
      return S_IFCHR | (entry.mode ?? 0o600);
  }
}

interface MemberHeader {
  inode: number;
  mode: number;
  nlink: number;
  mtimeSeconds: number;
  rdevMajor: number;
  rdevMinor: number;
}

function member(path: string, data: Buffer, header: MemberHeader): Buffer {
  const name = Buffer.from(`${path}\0`);
  const fields = [
    header.inode,
    header.mode,
    0, // uid: root
    0, // gid: root
    header.nlink,
    header.mtimeSeconds,
    data.length,
    0, // devmajor
    0, // devminor
    header.rdevMajor,
    header.rdevMinor,
    name.length,
    0, // check: unused by newc
  ];
  const head = Buffer.from(`070701${fields.map(hex8).join('')}`, 'latin1');
  // The header plus name, and then the data, are each padded to a multiple of four bytes.
  return Buffer.concat([head, name, padding(head.length + name.length), data, padding(data.length)]);
}

function hex8(value: number): string {
  if (!Number.isInteger(value) || value < 0 || value > 0xffffffff) throw new Error(`cpio field out of range: ${value}`);
  return value.toString(16).padStart(8, '0');
}

function padding(length: number): Buffer {
  return Buffer.alloc((4 - (length % 4)) % 4);
}
