import { createCipheriv, createDecipheriv, randomBytes } from 'node:crypto';
import { NexusError } from './nexus-error.js';

/** Bytes of an AES-256 key. */
export const SECRET_KEY_BYTES = 32;
const IV_BYTES = 12;
const TAG_BYTES = 16;
const VERSION = 'v1';

/**
 * Seals secrets that must be read back (not only checked) with AES-256-GCM under one key kept
 * outside the database: `v1.<iv>.<ciphertext>.<tag>`, base64url. Each value names its purpose as
 * additional data, so a sealed value copied into another column does not open there. GCM's tag
 * makes a wrong key or a changed byte fail loudly instead of yielding garbage.
 */
export class SecretBox {
  private readonly key: Buffer;

  constructor(key: Buffer) {
    if (key.length !== SECRET_KEY_BYTES) throw new NexusError('bad_request', `a secret key has ${SECRET_KEY_BYTES} bytes (got ${key.length})`);
    this.key = Buffer.from(key);
  }

  seal(plaintext: string, purpose: string): string {
    // A fresh random IV per value: 2^-32 collision odds only after ~2^32 seals under one key.
    const iv = randomBytes(IV_BYTES);
    const cipher = createCipheriv('aes-256-gcm', this.key, iv, { authTagLength: TAG_BYTES });
    cipher.setAAD(Buffer.from(purpose, 'utf8'));
    const ciphertext = Buffer.concat([cipher.update(plaintext, 'utf8'), cipher.final()]);
    return [VERSION, iv.toString('base64url'), ciphertext.toString('base64url'), cipher.getAuthTag().toString('base64url')].join('.');
  }

  /** The plaintext; throws `secret_unreadable` when the value was sealed under another key or purpose, or was altered. */
  open(sealed: string, purpose: string): string {
    const [version, iv, ciphertext, tag] = sealed.split('.');
    if (version !== VERSION || iv === undefined || ciphertext === undefined || tag === undefined) {
      throw new NexusError('secret_unreadable', 'not a sealed value (expected v1.<iv>.<ciphertext>.<tag>)');
    }
    try {
      const decipher = createDecipheriv('aes-256-gcm', this.key, Buffer.from(iv, 'base64url'), { authTagLength: TAG_BYTES });
      decipher.setAAD(Buffer.from(purpose, 'utf8'));
      decipher.setAuthTag(Buffer.from(tag, 'base64url'));
      return Buffer.concat([decipher.update(Buffer.from(ciphertext, 'base64url')), decipher.final()]).toString('utf8');
    } catch (error) {
      throw new NexusError('secret_unreadable', `a sealed ${purpose} does not open with this key`, { cause: error });
    }
  }
}
