export type IdempotencyClaim = { kind: 'claimed' } | { kind: 'replay'; statusCode: number; response: unknown } | { kind: 'in_progress' } | { kind: 'mismatch' };

/** First answers to POSTs that carried an Idempotency-Key. */
export interface IdempotencyRepo {
  /** Claims the key for this request, or says what the key already holds. */
  claim(key: string, requestHash: string): Promise<IdempotencyClaim>;
  complete(key: string, statusCode: number, response: unknown): Promise<void>;
  /** Gives the key up (the request failed), so a retry runs afresh. */
  release(key: string): Promise<void>;
  /** Removes expired answers and abandoned claims; answers how many. */
  prune(): Promise<number>;
}
