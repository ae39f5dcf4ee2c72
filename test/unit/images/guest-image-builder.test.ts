import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { checkImageName, guestImageDir } from '../../../src/images/guest-image-builder.js';

describe('image names', () => {
  it('accept plain names and place the image under <run-dir>/images', () => {
    assert.equal(guestImageDir('/srv/fc', 'default'), '/srv/fc/images/default');
    for (const name of ['default', 'test', 'debian-12', 'a.b_c', '0']) assert.equal(checkImageName(name), name);
  });
  it('refuse names that could leave the images dir or hide there, as bad_request', () => {
    for (const name of ['', '..', '.cache', '.locks', 'a/b', 'Default', '-x', 'a b', 'x'.repeat(64)]) {
      assert.throws(
        () => checkImageName(name),
        (error: { code?: string }) => error.code === 'bad_request',
        name,
      );
    }
  });
});
