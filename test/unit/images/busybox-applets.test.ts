import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { directoriesFor, parseAppletList } from '../../../src/images/busybox-applets.js';

describe('parseAppletList', () => {
  it('keeps applet paths, minus init, linuxrc, busybox itself and anything odd', () => {
    const list = 'usr/bin/[\nsbin/acpid\nbin/sh\nsbin/init\nlinuxrc\n/bin/ip\nbin/busybox\n../etc/passwd\n\nbin/sh\n';
    assert.deepEqual(parseAppletList(list), ['bin/ip', 'bin/sh', 'sbin/acpid', 'usr/bin/[']);
  });
});

describe('directoriesFor', () => {
  it('lists each directory once, after its parent', () => {
    assert.deepEqual(directoriesFor(['usr/sbin/x', 'bin/sh', 'usr/bin/y', 'init'], ['proc', 'lib/modules']), [
      'bin',
      'lib',
      'proc',
      'usr',
      'lib/modules',
      'usr/bin',
      'usr/sbin',
    ]);
  });
});
