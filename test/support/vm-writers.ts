import { type Agent, request } from 'undici';

export interface VmWriterOptions {
  /** The files the VMs boot from. Default `/k` and `/r`: a dev-mode manager records any path, and no host need run them. */
  image?: { kernel: string; rootfs: string };
  /** A pause after each write, per writer (keeps a run within a host's capacity). Default none. */
  paceMs?: number;
}

/** An answer other than 201 to a create. */
export interface RefusedWrite {
  status: number;
  headers: Headers;
  body: any;
}

export interface VmWriters {
  /** Creates these writers had acknowledged (201). */
  count(): number;
  /** Every answer other than 201, in the order they came. */
  refused: RefusedWrite[];
  /** Calls that got no answer at all (the manager died under them, or its connection failed). */
  unanswered(): number;
  /** Stops the writers once their calls under way end. */
  stop(): Promise<void>;
}

/**
 * `count` writers creating VMs named `<prefix>-<writer>-<n>` in a loop until stopped, through
 * `dispatcher` (undici's global one when undefined). Every create answered 201 is recorded in
 * `acknowledged` (name to id), which several sets of writers may share (one per life of a
 * manager): what was acknowledged is what a later look must find.
 */
export function startWriters(
  dispatcher: Agent | undefined,
  url: string,
  token: string,
  prefix: string,
  count: number,
  acknowledged: Map<string, string>,
  options: VmWriterOptions = {},
): VmWriters {
  const image = options.image ?? { kernel: '/k', rootfs: '/r' };
  const refused: RefusedWrite[] = [];
  let running = true;
  let mine = 0;
  let unanswered = 0;
  const loops = Array.from({ length: count }, async (_, writer) => {
    for (let n = 0; running; n++) {
      const name = `${prefix}-${writer}-${n}`;
      try {
        const response = await request(`${url}/v1/vms`, {
          method: 'POST',
          ...(dispatcher ? { dispatcher } : {}),
          headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json' },
          body: JSON.stringify({ name, vcpu: 1, mem_mib: 128, kernel_path: image.kernel, rootfs_path: image.rootfs }),
        });
        const text = await response.body.text();
        const body = parsed(text);
        if (response.statusCode === 201 && typeof body?.id === 'string') {
          acknowledged.set(name, body.id);
          mine++;
        } else {
          refused.push({ status: response.statusCode, headers: headersOf(response.headers), body });
        }
      } catch {
        // No answer: the write was not acknowledged.
        unanswered++;
        await sleep(20);
      }
      if (options.paceMs) await sleep(options.paceMs);
    }
  });
  return {
    count: () => mine,
    refused,
    unanswered: () => unanswered,
    stop: async () => {
      running = false;
      await Promise.all(loops);
    },
  };
}

function parsed(text: string): any {
  try {
    return text ? JSON.parse(text) : undefined;
  } catch {
    return text;
  }
}

function headersOf(raw: Record<string, string | string[] | undefined>): Headers {
  const headers = new Headers();
  for (const [name, value] of Object.entries(raw)) for (const one of [value ?? []].flat()) headers.append(name, one);
  return headers;
}

function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}
