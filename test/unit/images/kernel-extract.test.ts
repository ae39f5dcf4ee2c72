import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { XZ_MAGIC, findXzMagicOffset, pvhEntryAddress } from '../../../src/images/kernel-extract.js';

/** A minimal ELF64 LE with one PT_NOTE segment holding the given notes. */
function elfWithNotes(notes: Array<{ name: string; type: number; desc: Buffer }>): Buffer {
  const pad4 = (buffer: Buffer) => Buffer.concat([buffer, Buffer.alloc((4 - (buffer.length % 4)) % 4)]);
  const noteBytes = Buffer.concat(
    notes.map((note) => {
      const head = Buffer.alloc(12);
      head.writeUInt32LE(note.name.length + 1, 0);
      head.writeUInt32LE(note.desc.length, 4);
      head.writeUInt32LE(note.type, 8);
      return Buffer.concat([head, pad4(Buffer.from(`${note.name}\0`)), pad4(note.desc)]);
    }),
  );
  const header = Buffer.alloc(64);
  Buffer.from([0x7f, 0x45, 0x4c, 0x46, 2, 1, 1]).copy(header);
  header.writeBigUInt64LE(64n, 0x20); // e_phoff
  header.writeUInt16LE(56, 0x36); // e_phentsize
  header.writeUInt16LE(1, 0x38); // e_phnum
  const phdr = Buffer.alloc(56);
  phdr.writeUInt32LE(4, 0); // PT_NOTE
  phdr.writeBigUInt64LE(120n, 8); // p_offset
  phdr.writeBigUInt64LE(BigInt(noteBytes.length), 0x20); // p_filesz
  return Buffer.concat([header, phdr, noteBytes]);
}

const u32 = (value: number) => {
  const buffer = Buffer.alloc(4);
  buffer.writeUInt32LE(value);
  return buffer;
};

describe('findXzMagicOffset', () => {
  it('finds the XZ stream inside a bzImage-like buffer, and the next one after a given offset', () => {
    const image = Buffer.concat([Buffer.alloc(100, 0x90), XZ_MAGIC, Buffer.alloc(20), XZ_MAGIC, Buffer.alloc(5)]);
    assert.equal(findXzMagicOffset(image), 100);
    assert.equal(findXzMagicOffset(image, 101), 126);
    assert.equal(findXzMagicOffset(image, 127), -1);
  });
  it('does not take a partial magic for the real thing', () => {
    assert.equal(findXzMagicOffset(Buffer.from([0xfd, 0x37, 0x7a, 0x58, 0x5a, 0x01, 0xfd, 0x37])), -1);
  });
});

describe('pvhEntryAddress', () => {
  it('reads the Xen PHYS32_ENTRY note, skipping other notes', () => {
    const elf = elfWithNotes([
      { name: 'GNU', type: 3, desc: Buffer.alloc(20, 1) },
      { name: 'Xen', type: 18, desc: u32(0x1000560) },
    ]);
    assert.equal(pvhEntryAddress(elf), 0x1000560);
  });
  it('is undefined without the note, for a Xen note of another type, and for non-ELF data', () => {
    assert.equal(pvhEntryAddress(elfWithNotes([{ name: 'GNU', type: 3, desc: Buffer.alloc(8) }])), undefined);
    assert.equal(pvhEntryAddress(elfWithNotes([{ name: 'Xen', type: 17, desc: u32(5) }])), undefined);
    assert.equal(pvhEntryAddress(Buffer.alloc(200)), undefined);
    assert.equal(pvhEntryAddress(Buffer.from('MZ not an elf')), undefined);
  });
  it('does not read past a truncated note segment', () => {
    const elf = elfWithNotes([{ name: 'Xen', type: 18, desc: u32(0x1000) }]);
    assert.equal(pvhEntryAddress(elf.subarray(0, elf.length - 4)), undefined);
  });
});
