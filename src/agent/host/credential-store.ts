import { mkdir, readFile } from 'node:fs/promises';
import { writeFileAtomically } from '../../kit/atomic-file.js';
import { join } from 'node:path';

import type { AgentIdentity, IdentityStore } from '../ports/identity-store.js';

export type { AgentIdentity } from '../ports/identity-store.js';

const FILE = 'identity.json';

/** The identity in the agent's state dir (mode 0600: it holds a secret), written atomically so a crash never leaves half of it. */
export class CredentialStore implements IdentityStore {
  constructor(private readonly stateDir: string) {}

  get path(): string {
    return join(this.stateDir, FILE);
  }

  async load(): Promise<AgentIdentity | undefined> {
    let text: string;
    try {
      text = await readFile(this.path, 'utf8');
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
      throw new Error(`reading ${this.path}: ${(error as Error).message}`, { cause: error });
    }
    const damaged = new Error(`${this.path} is damaged: remove it and enroll the agent again with a new join token`);
    let parsed: { credential?: unknown; host_id?: unknown; manager_url?: unknown };
    try {
      parsed = JSON.parse(text);
    } catch {
      throw damaged;
    }
    if (typeof parsed.credential !== 'string') throw damaged;
    if (typeof parsed.host_id === 'string' && typeof parsed.manager_url === 'string') {
      return { credential: parsed.credential, enrollment: { hostId: parsed.host_id, managerUrl: parsed.manager_url } };
    }
    return { credential: parsed.credential };
  }

  async save(identity: AgentIdentity): Promise<void> {
    await mkdir(this.stateDir, { recursive: true, mode: 0o700 });
    const body = {
      credential: identity.credential,
      host_id: identity.enrollment?.hostId,
      manager_url: identity.enrollment?.managerUrl,
    };
    await writeFileAtomically(this.path, `${JSON.stringify(body)}\n`, 0o600);
  }
}
