import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { chmodSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, describe, it } from 'node:test';
import { loadOrCreateKeyFile } from '../../../src/kit/key-file.js';
import { SecretBox } from '../../../src/kit/secret-box.js';
import { tempDir } from '../../support/temp-dir.js';

describe('SecretBox', () => {
  const box = new SecretBox(randomBytes(32));

  it('seals to a value that holds no trace of the secret and opens back to it', () => {
    const secret = `nxhc_${randomBytes(32).toString('base64url')}`;
    const sealed = box.seal(secret, 'host.credential');
    assert.match(sealed, /^v1\.[\w-]+\.[\w-]+\.[\w-]+$/);
    assert.ok(!sealed.includes(secret) && !sealed.includes(secret.slice(5, 20)), 'no clear part');
    assert.notEqual(box.seal(secret, 'host.credential'), sealed, 'a fresh IV each time');
    assert.equal(box.open(sealed, 'host.credential'), secret);
  });

  it('refuses another key, another purpose, a changed byte and a value that was never sealed', () => {
    const sealed = box.seal('secret', 'host.credential');
    assert.throws(() => new SecretBox(randomBytes(32)).open(sealed, 'host.credential'), /does not open with this key/);
    assert.throws(() => box.open(sealed, 'secret_key_check'), /does not open with this key/);
    const [version, iv, ciphertext, tag] = sealed.split('.');
    const flipped = Buffer.from(ciphertext ?? '', 'base64url');
    flipped[0] = (flipped[0] ?? 0) ^ 1;
    assert.throws(() => box.open([version, iv, flipped.toString('base64url'), tag].join('.'), 'host.credential'), /does not open/);
    assert.throws(() => box.open('nxhc_in-the-clear', 'host.credential'), /not a sealed value/);
  });

  it('takes 32-byte keys only', () => {
    assert.throws(() => new SecretBox(randomBytes(16)), /32 bytes/);
  });
});

describe('loadOrCreateKeyFile', () => {
  const dir = tempDir('nexus-key-');
  after(() => dir.remove());

  it('makes a key file readable by its owner only, in a directory it makes, and reads the same key back', async () => {
    const path = join(dir.path, 'new', 'secret.key');
    const made = await loadOrCreateKeyFile(path, 32);
    assert.equal(made.created, true);
    assert.equal(made.key.length, 32);
    assert.equal(statSync(path).mode & 0o777, 0o600);
    assert.equal(statSync(join(dir.path, 'new')).mode & 0o777, 0o700);
    assert.equal(Buffer.from(readFileSync(path, 'utf8').trim(), 'base64').equals(made.key), true);
    const again = await loadOrCreateKeyFile(path, 32);
    assert.equal(again.created, false);
    assert.ok(again.key.equals(made.key), 'the same key');
    assert.equal(again.exposed, false);
  });

  it('two callers at once end with one key', async () => {
    const path = join(dir.path, 'race.key');
    const [a, b] = await Promise.all([loadOrCreateKeyFile(path, 32), loadOrCreateKeyFile(path, 32)]);
    assert.ok(a.key.equals(b.key), 'both read the key that won');
  });

  it('says when others may read it, and refuses a file that is not a key of that size', async () => {
    const path = join(dir.path, 'wide.key');
    writeFileSync(path, `${randomBytes(32).toString('base64')}\n`);
    chmodSync(path, 0o644);
    assert.equal((await loadOrCreateKeyFile(path, 32)).exposed, true);
    const short = join(dir.path, 'short.key');
    writeFileSync(short, randomBytes(16).toString('base64'));
    await assert.rejects(loadOrCreateKeyFile(short, 32), /does not hold 32 bytes in base64/);
    const junk = join(dir.path, 'junk.key');
    writeFileSync(junk, `${'!'.repeat(10)}${randomBytes(32).toString('base64')}`);
    await assert.rejects(loadOrCreateKeyFile(junk, 32), /does not hold 32 bytes in base64/);
  });
});
