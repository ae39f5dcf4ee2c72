import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { describe, it } from 'node:test';
import { AccessService, type RefusalReason, TokenRefused } from '../../../src/manager/app/access-service.js';
import type { NewToken, ProjectRepo, TokenRecord, TokenRepo } from '../../../src/manager/ports/access-repos.js';
import { captureLogger } from '../../support/capture-logger.js';

/** The api_token table in memory: what several managers sharing one database all read. */
class MemoryTokenRepo implements TokenRepo {
  private readonly rows = new Map<string, TokenRecord>();

  async count(): Promise<number> {
    return this.rows.size;
  }
  async create(token: NewToken): Promise<TokenRecord> {
    const record: TokenRecord = {
      ...token,
      id: randomUUID(),
      previousSecretHash: null,
      previousValidUntil: null,
      revokedAt: null,
      lastUsedAt: null,
      createdAt: new Date(0),
    };
    this.rows.set(record.id, record);
    return { ...record };
  }
  async get(id: string): Promise<TokenRecord | undefined> {
    const row = this.rows.get(id);
    return row && { ...row };
  }
  async list(): Promise<TokenRecord[]> {
    return [...this.rows.values()].map((row) => ({ ...row }));
  }
  async rotate(id: string, secretHash: string, previousValidUntil: Date | null): Promise<TokenRecord | undefined> {
    const row = this.rows.get(id);
    if (!row || row.revokedAt) return undefined;
    Object.assign(row, { previousSecretHash: previousValidUntil ? row.secretHash : null, previousValidUntil, secretHash });
    return { ...row };
  }
  async revoke(id: string, now: Date): Promise<TokenRecord | undefined> {
    const row = this.rows.get(id);
    if (row && !row.revokedAt) row.revokedAt = now;
    return row && { ...row };
  }
  async touch(id: string, now: Date): Promise<void> {
    const row = this.rows.get(id);
    if (row) row.lastUsedAt = now;
  }
}

const noProjects: ProjectRepo = {
  list: async () => [],
  get: async () => undefined,
  create: async () => assert.fail('no project is made here'),
  setQuota: async () => undefined,
};

const CACHE_MS = 500;

/** Two managers sharing one token table, and one clock the test moves. */
function twoManagers() {
  const tokens = new MemoryTokenRepo();
  let now = new Date('2026-03-01T12:00:00Z');
  const clock = { now: () => now };
  const manager = () => new AccessService(tokens, noProjects, clock, captureLogger().log, { cacheMs: CACHE_MS, wrongSecretsPerTokenPerMinute: 10 });
  return {
    one: manager(),
    other: manager(),
    at: (ms: number) => (now = new Date(Date.parse('2026-03-01T12:00:00Z') + ms)),
    isoAt: (ms: number) => new Date(Date.parse('2026-03-01T12:00:00Z') + ms).toISOString(),
  };
}

const refusedFor = (reason: RefusalReason) => (error: unknown) => {
  assert.ok(error instanceof TokenRefused, `a TokenRefused, got ${String(error)}`);
  assert.equal(error.reason, reason);
  return true;
};

describe('AccessService across managers sharing one database', () => {
  it('a token revoked through one manager is refused by the other once its brief trust (cacheMs) lapses, and at once by the revoking one', async () => {
    const { one, other, at } = twoManagers();
    const minted = await one.mint({ owner: 'ci', role: 'admin' });
    at(0);
    assert.equal((await other.authenticate(minted.token)).tokenId, minted.id, 'the other manager trusts it, and caches that');
    await one.revoke(minted.id);
    await assert.rejects(one.authenticate(minted.token), refusedFor('token_revoked'), 'the revoking manager forgets it at once');
    at(CACHE_MS - 1);
    assert.equal((await other.authenticate(minted.token)).tokenId, minted.id, 'within its brief trust the other still answers from its cache');
    at(CACHE_MS);
    await assert.rejects(other.authenticate(minted.token), refusedFor('token_revoked'), 'the stated bound: refused once cacheMs has passed');
  });

  it('an expiry holds on every manager to the millisecond, even inside the brief trust', async () => {
    const { one, other, at, isoAt } = twoManagers();
    at(0);
    const minted = await one.mint({ owner: 'ci', role: 'admin', expires_at: isoAt(2000) });
    assert.ok(await other.authenticate(minted.token), 'valid before its expiry');
    at(1800);
    assert.ok(await other.authenticate(minted.token), 're-read 200 ms before its expiry: trusted until then only');
    at(1999);
    assert.ok(await other.authenticate(minted.token), 'still valid 1 ms before');
    at(2000);
    await assert.rejects(other.authenticate(minted.token), refusedFor('token_expired'), 'refused at its expiry, although read less than cacheMs ago');
    await assert.rejects(one.mint({ owner: 'late', role: 'admin', expires_at: isoAt(2000) }), /expires_at is in the past/);
  });

  it('rotation: the old secret works on every manager until the overlap ends, then nowhere; without an overlap the other manager refuses it once its trust lapses', async () => {
    const { one, other, at } = twoManagers();
    at(0);
    const minted = await one.mint({ owner: 'ci', role: 'admin' });
    assert.ok(await other.authenticate(minted.token));
    const rotated = await one.rotate(minted.id, 2);
    assert.ok(await one.authenticate(rotated.token), 'the new secret works at once');
    at(CACHE_MS);
    assert.ok(await other.authenticate(minted.token), 'the old secret, re-read during the overlap, still works');
    at(1999);
    assert.ok(await other.authenticate(minted.token), 'and 1 ms before the overlap ends');
    at(2000);
    await assert.rejects(other.authenticate(minted.token), refusedFor('token_rotated'), 'refused when the overlap ends, although read 1 ms before');
    assert.ok(await other.authenticate(rotated.token), 'the new secret works on the other manager');

    const again = await one.rotate(minted.id, 0);
    await assert.rejects(one.authenticate(rotated.token), refusedFor('token_rotated'), 'no overlap: the rotating manager refuses the old secret at once');
    at(2000 + CACHE_MS);
    await assert.rejects(other.authenticate(rotated.token), refusedFor('token_rotated'), 'and the other once its trust lapses');
    assert.ok(await other.authenticate(again.token));
  });
});
