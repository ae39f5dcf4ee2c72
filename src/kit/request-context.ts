import { AsyncLocalStorage } from 'node:async_hooks';

const storage = new AsyncLocalStorage<{ requestId: string }>();

/** Runs `work` (and everything it starts) as part of the request `requestId`. */
export function runInRequest<T>(requestId: string, work: () => T): T {
  return storage.run({ requestId }, work);
}

/** The id of the request the caller is serving, if any: sent on to agents so one id follows a call. */
export function currentRequestId(): string | undefined {
  return storage.getStore()?.requestId;
}
