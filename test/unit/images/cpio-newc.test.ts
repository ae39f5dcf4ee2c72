import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { newcArchive } from '../../../src/images/cpio-newc.js';

interface Member {
  name: string;
  ino: number;
  mode: number;
  uid: number;
  gid: number;
  mtime: number;
  rdevMajor: number;
  rdevMinor: number;
  data: Buffer;
}

/** Reads a newc archive back, checking the 4-byte alignment the kernel relies on. */
function readNewc(archive: Buffer): Member[] {
  const members: Member[] = [];
  let offset = 0;
  for (;;) {
    assert.equal(offset % 4, 0, 'each header starts 4-byte aligned');
    assert.equal(archive.toString('latin1', offset, offset + 6), '070701');
    const field = (i: number) => Number.parseInt(archive.toString('latin1', offset + 6 + i * 8, offset + 14 + i * 8), 16);
    const nameSize = field(11);
    const fileSize = field(6);
    const name = archive.toString('latin1', offset + 110, offset + 110 + nameSize - 1);
    const dataStart = Math.ceil((offset + 110 + nameSize) / 4) * 4;
    const member = {
      name,
      ino: field(0),
      mode: field(1),
      uid: field(2),
      gid: field(3),
      mtime: field(5),
      rdevMajor: field(9),
      rdevMinor: field(10),
      data: archive.subarray(dataStart, dataStart + fileSize),
    };
    offset = Math.ceil((dataStart + fileSize) / 4) * 4;
    if (name === 'TRAILER!!!') break;
    members.push(member);
  }
  assert.equal(offset, archive.length, 'nothing after the trailer');
  return members;
}

describe('newcArchive', () => {
  const archive = newcArchive([
    { kind: 'dir', path: '/bin' },
    { kind: 'dir', path: 'dev' },
    { kind: 'char', path: 'dev/console', major: 5, minor: 1 },
    { kind: 'file', path: 'bin/busybox', data: Buffer.from('odd-length!'), mode: 0o755 },
    { kind: 'symlink', path: 'bin/sh', target: '/bin/busybox' },
    { kind: 'file', path: 'init', data: Buffer.from('#!/bin/sh\n') },
  ]);
  const members = readNewc(archive);

  it('writes every member in order, root-owned, with a fixed mtime and unique inodes', () => {
    assert.deepEqual(
      members.map((member) => member.name),
      ['bin', 'dev', 'dev/console', 'bin/busybox', 'bin/sh', 'init'],
    );
    assert.ok(members.every((member) => member.uid === 0 && member.gid === 0 && member.mtime === 0));
    assert.equal(new Set(members.map((member) => member.ino)).size, members.length);
  });
  it('encodes types, permissions, device numbers, file data and link targets', () => {
    const byName = new Map(members.map((member) => [member.name, member]));
    assert.equal(byName.get('bin')?.mode, 0o040755);
    assert.equal(byName.get('dev/console')?.mode, 0o020600);
    assert.deepEqual([byName.get('dev/console')?.rdevMajor, byName.get('dev/console')?.rdevMinor], [5, 1]);
    assert.equal(byName.get('bin/busybox')?.mode, 0o100755);
    assert.equal(byName.get('bin/busybox')?.data.toString(), 'odd-length!');
    assert.equal(byName.get('bin/sh')?.mode, 0o120777);
    assert.equal(byName.get('bin/sh')?.data.toString(), '/bin/busybox');
    assert.equal(byName.get('init')?.mode, 0o100644);
  });
  it('gives the same bytes for the same entries', () => {
    assert.deepEqual(newcArchive([{ kind: 'dir', path: 'a' }]), newcArchive([{ kind: 'dir', path: 'a' }]));
  });
  it('refuses an empty path', () => {
    assert.throws(() => newcArchive([{ kind: 'dir', path: '/' }]), /needs a path/);
  });
});
