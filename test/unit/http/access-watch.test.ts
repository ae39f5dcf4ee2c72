import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import type { FastifyRequest } from 'fastify';
import { ACCESS_UNVERIFIED, AccessLapsed, AccessWatch, whileAccessHolds } from '../../../src/http/access-watch.js';
import { statusOfErrorCode } from '../../../src/contracts/errors.js';

const lapseOf = (signal: AbortSignal): Promise<AccessLapsed> =>
  new Promise((resolve) => signal.addEventListener('abort', () => resolve(signal.reason as AccessLapsed), { once: true }));
const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

describe('AccessWatch', () => {
  it('lapses on the first refusal, as 401 with the reason (403 for forbidden)', async () => {
    for (const [reason, code] of [
      ['token_revoked', 'unauthorized'],
      ['token_expired', 'unauthorized'],
      ['forbidden', 'forbidden'],
    ] as const) {
      let asked = 0;
      const watch = new AccessWatch(async () => (++asked >= 3 ? reason : undefined), { everyMs: 5 });
      const lapse = await lapseOf(watch.lapsed);
      assert.equal(lapse.reason, reason);
      assert.equal(lapse.code, code, reason);
      assert.equal(statusOfErrorCode(lapse.code), code === 'forbidden' ? 403 : 401);
      assert.match(lapse.faultMessage, reason === 'forbidden' ? /lost the right/ : new RegExp(reason));
      assert.equal(asked, 3, 'asked until it refused, and no more');
    }
  });

  it('keeps going while the guard cannot tell (throws), and lapses as access_unverified (503) only past the limit without an answer', async () => {
    let asked = 0;
    let failing = true;
    const watch = new AccessWatch(
      async () => {
        asked++;
        if (failing) throw new Error('database_unavailable');
        return undefined;
      },
      { everyMs: 5, unverifiedLimitMs: 10_000 },
    );
    await sleep(100);
    assert.equal(watch.lapsed.aborted, false, `${asked} failed checks within the limit end nothing`);
    failing = false;
    await sleep(30);
    assert.equal(watch.lapsed.aborted, false);
    watch.stop();

    const bounded = new AccessWatch(
      async () => {
        throw new Error('database_unavailable');
      },
      { everyMs: 5, unverifiedLimitMs: 50 },
    );
    const lapse = await lapseOf(bounded.lapsed);
    assert.equal(lapse.reason, ACCESS_UNVERIFIED);
    assert.equal(statusOfErrorCode(lapse.code), 503);
  });

  it('asks nothing once stopped, and never lapses without a guard', async () => {
    let asked = 0;
    const watch = new AccessWatch(
      async () => {
        asked++;
        return 'token_revoked';
      },
      { everyMs: 20 },
    );
    watch.stop();
    await sleep(60);
    assert.equal(asked, 0);
    assert.equal(watch.lapsed.aborted, false);
    const unguarded = new AccessWatch(undefined, { everyMs: 1 });
    await sleep(20);
    assert.equal(unguarded.lapsed.aborted, false);
  });

  it('whileAccessHolds hands the work the lapse and stops watching when the work ends', async () => {
    let asked = 0;
    const request = { accessGuard: async () => (++asked >= 2 ? 'token_revoked' : undefined) } as unknown as FastifyRequest;
    // The default pace (1 s): a wait of 3 s is cut off after about 2.
    await assert.rejects(
      whileAccessHolds(request, async (lapsed) => {
        for (let waited = 0; waited < 3000; waited += 50) {
          lapsed.throwIfAborted();
          await sleep(50);
        }
      }),
      (error: unknown) => error instanceof AccessLapsed && error.reason === 'token_revoked',
    );
    const before = asked;
    assert.equal(await whileAccessHolds(request, async () => 'done'), 'done');
    await sleep(1200);
    assert.equal(asked, before, 'the finished work is no longer watched');
  });
});
