import type { Egress } from '../../contracts/network-api.js';
import type { Ipv4Block } from '../../kit/ipv4.js';

export interface NetworkRecord {
  id: string;
  projectId: string;
  project: string;
  name: string;
  /** The block, as `10.220.8.0/24`. */
  cidr: string;
  egress: Egress;
  dns: string[];
  /** VMs with an address in it. */
  vmCount: number;
  resourceVersion: number;
  createdAt: Date;
  updatedAt: Date;
}

export interface NewNetwork {
  project: string;
  name: string;
  /** A block that passed `checkNetworkCidr`. */
  cidr: string;
  egress: Egress;
  dns: string[];
}

/** Where a project's default network comes from: the first free block of this size in the pool. */
export interface DefaultNetworkPool {
  pool: Ipv4Block;
  prefixLength: number;
}

/** The name every project's default network has. */
export const DEFAULT_NETWORK = 'default';

/** Networks. Their blocks never overlap, in one project or across projects: one routing domain per host. */
export interface NetworkRepo {
  /**
   * Inserts the network, unless its block overlaps another network's (`conflict`, naming it when
   * it is in the same project) or its name is taken in the project (`conflict`). The check and
   * the insert are one step: networks created at once never overlap each other.
   */
  create(network: NewNetwork): Promise<NetworkRecord>;
  /** The project's default network, made from the pool's first free block when it has none yet. */
  ensureDefault(project: string, pool: DefaultNetworkPool): Promise<NetworkRecord>;
  get(id: string): Promise<NetworkRecord | undefined>;
  byName(project: string, name: string): Promise<NetworkRecord | undefined>;
  /** Networks of `projects` (undefined: every project), by project then name. */
  list(projects?: string[]): Promise<NetworkRecord[]>;
  /** Changes egress or DNS and bumps the resource version; undefined when there is no such network. */
  update(id: string, change: { egress?: Egress; dns?: string[] }): Promise<NetworkRecord | undefined>;
  /**
   * Deletes the network unless VMs have addresses in it: then answers their names and deletes
   * nothing. Checked and done in one step, so no VM gets an address in a network being deleted.
   */
  delete(id: string): Promise<{ deleted: boolean; usedBy: string[] }>;
}
