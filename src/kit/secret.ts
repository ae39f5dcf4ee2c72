import { createHash, randomBytes, timingSafeEqual } from 'node:crypto';

/**
 * A bearer secret with 256 bits of entropy, URL-safe, prefixed so a leaked one is recognisable
 * in logs and by secret scanners (`nxjt_…` join token, `nxhc_…` host credential).
 */
export function mintSecret(prefix: string): string {
  return `${prefix}_${randomBytes(32).toString('base64url')}`;
}

/**
 * SHA-256 of a secret. Enough for minted 256-bit secrets (no dictionary to attack); human-chosen
 * passwords would need a slow hash instead.
 */
export function hashSecret(secret: string): string {
  return createHash('sha256').update(secret).digest('hex');
}

/** Compares two secrets in time independent of where they differ. */
export function secretsEqual(a: string, b: string): boolean {
  const left = createHash('sha256').update(a).digest();
  const right = createHash('sha256').update(b).digest();
  return timingSafeEqual(left, right);
}

/** Whether `secret` hashes (see {@link hashSecret}) to `hash`, compared in constant time. */
export function matchesSecretHash(secret: string, hash: string): boolean {
  const expected = Buffer.from(hash, 'hex');
  const actual = createHash('sha256').update(secret).digest();
  return expected.length === actual.length && timingSafeEqual(expected, actual);
}
