import { createReadStream, createWriteStream } from 'node:fs';
import { readFile, rm } from 'node:fs/promises';
import { pipeline } from 'node:stream/promises';
import { NexusError } from '../kit/nexus-error.js';
import { spawnHostTool, waitForHostTool } from '../kit/host-tool.js';

/** The six bytes every XZ stream starts with. */
export const XZ_MAGIC = Buffer.from([0xfd, 0x37, 0x7a, 0x58, 0x5a, 0x00]);
const ELF_MAGIC = Buffer.from([0x7f, 0x45, 0x4c, 0x46]);
const PT_NOTE = 4;
/** XEN_ELFNOTE_PHYS32_ENTRY: the 32-bit entry point a PVH loader (QEMU -kernel, Firecracker) jumps to. */
const XEN_ELFNOTE_PHYS32_ENTRY = 18;
/** bzImages are tried at no more than this many XZ magics: the real payload starts at the first. */
const MAX_PAYLOAD_CANDIDATES = 3;

/** The offset of the first XZ magic at or after `from`, or -1. */
export function findXzMagicOffset(image: Buffer, from = 0): number {
  return image.indexOf(XZ_MAGIC, from);
}

/**
 * The physical PVH entry address from a 64-bit little-endian ELF's `Xen` note, or undefined when
 * the file is not such an ELF or has no PVH note (then QEMU's microvm cannot boot it directly).
 */
export function pvhEntryAddress(elf: Buffer): number | undefined {
  if (elf.length < 64 || !elf.subarray(0, 4).equals(ELF_MAGIC) || elf[4] !== 2 || elf[5] !== 1) return undefined;
  const phoff = Number(elf.readBigUInt64LE(0x20));
  const phentsize = elf.readUInt16LE(0x36);
  const phnum = elf.readUInt16LE(0x38);
  for (let i = 0; i < phnum; i++) {
    const ph = phoff + i * phentsize;
    if (ph + 56 > elf.length || elf.readUInt32LE(ph) !== PT_NOTE) continue;
    const start = Number(elf.readBigUInt64LE(ph + 8));
    const end = Math.min(elf.length, start + Number(elf.readBigUInt64LE(ph + 0x20)));
    for (let note = start; note + 12 <= end;) {
      const nameSize = elf.readUInt32LE(note);
      const descSize = elf.readUInt32LE(note + 4);
      const type = elf.readUInt32LE(note + 8);
      const nameStart = note + 12;
      const descStart = nameStart + align4(nameSize);
      const name = elf.toString('latin1', nameStart, nameStart + Math.max(0, nameSize - 1));
      if (name === 'Xen' && type === XEN_ELFNOTE_PHYS32_ENTRY && descSize >= 4 && descStart + 4 <= end) {
        return elf.readUInt32LE(descStart);
      }
      note = descStart + align4(descSize);
    }
  }
  return undefined;
}

/**
 * Turns Debian's bzImage (`boot/vmlinuz-*`) into the uncompressed ELF `vmlinux` with a PVH
 * entry. Booting it skips the in-guest XZ decompression, which costs seconds under TCG.
 * The payload is the XZ stream inside the bzImage; `--single-stream` ignores what follows it.
 */
export async function extractVmlinux(bzImagePath: string, destPath: string): Promise<void> {
  const image = await readFile(bzImagePath);
  const failures: string[] = [];
  let offset = findXzMagicOffset(image);
  for (let tried = 0; offset >= 0 && tried < MAX_PAYLOAD_CANDIDATES; tried++) {
    try {
      await decompressXz(bzImagePath, offset, destPath);
      const vmlinux = await readFile(destPath);
      if (pvhEntryAddress(vmlinux) !== undefined) return;
      failures.push(`at offset ${offset}: not an ELF with a PVH entry note`);
    } catch (error) {
      failures.push(`at offset ${offset}: ${error instanceof Error ? error.message : String(error)}`);
    }
    offset = findXzMagicOffset(image, offset + 1);
  }
  await rm(destPath, { force: true });
  throw new NexusError(
    'unavailable',
    `extracting vmlinux from ${bzImagePath}: no XZ payload gave a PVH-bootable ELF${failures.length ? ` (${failures.join('; ')})` : ' (no XZ magic found)'}`,
    {
      suggestion: 'The kernel package is not an XZ-compressed x86_64 bzImage with CONFIG_PVH, as Debian 12 amd64 kernels are.',
    },
  );
}

async function decompressXz(path: string, offset: number, destPath: string): Promise<void> {
  const args = ['-dc', '--single-stream'];
  const xz = spawnHostTool('xz', args, { stdin: 'pipe', stdout: 'pipe' });
  const finished = waitForHostTool(xz, 'xz', args, 'decompressing the kernel');
  const stdin = xz.stdin;
  const stdout = xz.stdout;
  if (!stdin || !stdout) throw new Error('xz was started without pipes');
  const fed = pipeline(createReadStream(path, { start: offset }), stdin).catch((error: NodeJS.ErrnoException) => {
    // xz stops reading at the end of the stream; the rest of the bzImage is not wanted.
    if (error.code !== 'EPIPE' && error.code !== 'ERR_STREAM_PREMATURE_CLOSE') throw error;
  });
  await Promise.all([fed, pipeline(stdout, createWriteStream(destPath)), finished]);
}

function align4(value: number): number {
  return (value + 3) & ~3;
}
