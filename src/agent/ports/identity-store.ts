/**
 * The agent's identity: the bearer credential every caller must present, and, once enrolled,
 * the host id and manager it belongs to.
 */
export interface AgentIdentity {
  credential: string;
  enrollment?: { hostId: string; managerUrl: string };
}

/** Where the identity is kept across restarts. It holds a secret: only the agent may read it. */
export interface IdentityStore {
  /** Where it is, for messages. */
  readonly path: string;
  load(): Promise<AgentIdentity | undefined>;
  /** Replaces it so that a crash never leaves half of it. */
  save(identity: AgentIdentity): Promise<void>;
}
