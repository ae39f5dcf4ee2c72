import { randomBytes, scrypt, timingSafeEqual } from 'node:crypto';

/** scrypt cost: 16 MiB and ~50 ms per hash; verified secrets are cached by the caller. */
const N = 16_384;
const R = 8;
const P = 1;
const KEY_BYTES = 32;

function derive(secret: string, salt: Buffer, n: number, r: number, p: number): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    scrypt(secret, salt, KEY_BYTES, { N: n, r, p, maxmem: 64 * 1024 * 1024 }, (error, key) => (error ? reject(error) : resolve(key)));
  });
}

/** A salted slow hash of a secret: `scrypt$N$r$p$<salt>$<hash>` (base64url), parameters kept for later upgrades. */
export async function slowHash(secret: string): Promise<string> {
  const salt = randomBytes(16);
  const key = await derive(secret, salt, N, R, P);
  return ['scrypt', N, R, P, salt.toString('base64url'), key.toString('base64url')].join('$');
}

/** Whether `secret` hashes to `stored` (made by {@link slowHash}), compared in constant time. */
export async function verifySlowHash(secret: string, stored: string): Promise<boolean> {
  const [scheme, n, r, p, salt, hash] = stored.split('$');
  if (scheme !== 'scrypt' || !salt || !hash) return false;
  const expected = Buffer.from(hash, 'base64url');
  const key = await derive(secret, Buffer.from(salt, 'base64url'), Number(n), Number(r), Number(p));
  return key.length === expected.length && timingSafeEqual(key, expected);
}
