import type { FastifyRequest } from 'fastify';
import { NexusError } from '../kit/nexus-error.js';
import { sleepUnlessAborted } from '../kit/sleep.js';

/**
 * Whether the caller of a request may still be served: undefined while it may, or why not
 * (`token_revoked`, `token_expired`, `token_rotated`, `forbidden`…), a definitive refusal. It
 * throws when it cannot tell (the database away, a rate limit): that is no refusal, and the watch
 * asks again. Whoever authenticated the request sets it; it must answer within a second or so.
 */
export type AccessGuard = () => Promise<string | undefined>;

declare module 'fastify' {
  interface FastifyRequest {
    /** Asked about every second for as long as one of the request's long-lived answers runs (see AccessWatch). */
    accessGuard?: AccessGuard;
  }
}

/** The reason a watch gives when its guard could not tell, for {@link AccessWatchOptions.unverifiedLimitMs}, whether the caller may still be served. */
export const ACCESS_UNVERIFIED = 'access_unverified';

export interface AccessWatchOptions {
  /** How often the guard is asked. Default 1 s: a revocation ends what it watches within about that. */
  everyMs: number;
  /**
   * How long the guard may fail to answer (throw) before the caller is no longer served, as
   * `access_unverified`. Default 30 s: a database restart or a brief rate limit does not end a
   * stream, but a caller nobody can check is not served indefinitely either.
   */
  unverifiedLimitMs: number;
}

const DEFAULTS: AccessWatchOptions = { everyMs: 1000, unverifiedLimitMs: 30_000 };

/** What a watched answer ends with when its caller's access lapses: 401 (403 for `forbidden`, 503 when it could not be checked), in the error contract. */
export class AccessLapsed extends NexusError {
  constructor(readonly reason: string) {
    super(...lapseAnswer(reason));
  }
}

function lapseAnswer(reason: string): ConstructorParameters<typeof NexusError> {
  if (reason === 'forbidden')
    return ['forbidden', 'the API token may no longer make this call (it lost the right while the call waited)', { suggestion: 'Ask an admin.' }];
  if (reason === ACCESS_UNVERIFIED) {
    return [
      'unavailable',
      'the API token could not be checked again while the call waited (the database did not answer)',
      { suggestion: 'Retry once GET /readyz answers 200.', terminal: false },
    ];
  }
  return [
    'unauthorized',
    `the API token lapsed while the call waited (${reason}); what the call changed before it waited stays changed`,
    { suggestion: 'Ask an admin for a new token.' },
  ];
}

/**
 * Watches, while a long-lived answer runs (an event stream, a `?wait=`, an export), whether its
 * caller may still be served, by asking the request's {@link AccessGuard} every second: `lapsed`
 * aborts, its reason an {@link AccessLapsed}, on the guard's first refusal, or once the guard has
 * failed to answer for longer than `unverifiedLimitMs` in a row. A request without a guard (a
 * public route) is never cut off. Stop the watch when the answer ends.
 */
export class AccessWatch {
  private readonly lapse = new AbortController();
  private readonly done = new AbortController();

  constructor(guard: AccessGuard | undefined, options: Partial<AccessWatchOptions> = {}) {
    if (guard) void this.run(guard, { ...DEFAULTS, ...options });
  }

  /** Aborts when the caller may no longer be served; `reason` is then an {@link AccessLapsed}. */
  get lapsed(): AbortSignal {
    return this.lapse.signal;
  }

  stop(): void {
    this.done.abort();
  }

  private async run(guard: AccessGuard, options: AccessWatchOptions): Promise<void> {
    let verifiedAt = Date.now();
    while (!this.done.signal.aborted) {
      await sleepUnlessAborted(options.everyMs, this.done.signal);
      if (this.done.signal.aborted) return;
      let reason: string | undefined;
      try {
        reason = await guard();
        verifiedAt = Date.now();
      } catch {
        // Not a refusal: asked again next time, until the limit.
        if (Date.now() - verifiedAt > options.unverifiedLimitMs) reason = ACCESS_UNVERIFIED;
      }
      if (reason !== undefined && !this.done.signal.aborted) {
        this.lapse.abort(new AccessLapsed(reason));
        return;
      }
    }
  }
}

/**
 * Runs `work` (a wait of up to minutes) under an {@link AccessWatch} of the request's caller; the
 * work is handed the `lapsed` signal and must end when it aborts (throwing its reason, which
 * answers in the error contract).
 */
export async function whileAccessHolds<T>(request: FastifyRequest, work: (lapsed: AbortSignal) => Promise<T>): Promise<T> {
  const watch = new AccessWatch(request.accessGuard);
  try {
    return await work(watch.lapsed);
  } finally {
    watch.stop();
  }
}
