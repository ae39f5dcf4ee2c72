/** Who is calling: the token that authenticated the request. */
export interface Principal {
  tokenId: string;
  owner: string;
  role: 'viewer' | 'operator' | 'admin';
  /** The project the token is for; null for admin tokens over every project. */
  project: string | null;
}

/** What a route touches. Project-scoped resources live in one project each. */
export type ResourceKind = 'vm' | 'network' | 'snapshot' | 'template' | 'image' | 'host' | 'token' | 'project' | 'audit';
export type Verb = 'read' | 'write';

/**
 * `allow`; `deny` (403: the caller may know the resource exists, but not do this); `hide` (404:
 * another project's resource, whose existence is not the caller's to learn).
 */
export type Verdict = 'allow' | 'deny' | 'hide';

const PROJECT_SCOPED: ReadonlySet<ResourceKind> = new Set(['vm', 'network', 'snapshot', 'template']);
/** Shared by every project: images come from the hosts' stores. */
const SHARED_READABLE: ReadonlySet<ResourceKind> = new Set(['image']);

/**
 * The access rule, pure. `resourceProject` is the project of the resource acted on (undefined for
 * collection calls, whose results the caller then filters with {@link visibleProjects}).
 * - admin: everything.
 * - viewer: reads its project's VMs, networks, snapshots and templates, and the shared images.
 * - operator: also creates, changes and deletes its project's VMs, networks, snapshots and templates.
 * - hosts, tokens, projects and the audit log: admin only.
 * A viewer's write is denied before the resource is looked at, so the 403 leaks nothing; a
 * resource in another project is hidden (404), whatever the verb.
 */
export function decide(principal: Principal, kind: ResourceKind, verb: Verb, resourceProject?: string): Verdict {
  if (principal.role === 'admin') return 'allow';
  if (SHARED_READABLE.has(kind)) return verb === 'read' ? 'allow' : 'deny';
  if (!PROJECT_SCOPED.has(kind)) return 'deny';
  if (verb === 'write' && principal.role === 'viewer') return 'deny';
  if (resourceProject !== undefined && resourceProject !== principal.project) return 'hide';
  return 'allow';
}

/** The projects whose resources a caller may see: all (undefined) for an admin, else its own. */
export function visibleProjects(principal: Principal): string[] | undefined {
  return principal.role === 'admin' ? undefined : [principal.project ?? ''];
}

/** Quotas of a project; null fields are unlimited. */
export interface ProjectQuota {
  maxVms: number | null;
  maxVcpus: number | null;
  maxMemoryMib: number | null;
}

/** What a project's VMs take now. */
export interface ProjectUsage {
  vms: number;
  vcpus: number;
  memoryMib: number;
}

/** The quota a new VM of `vcpu` and `memMib` would break, named for the caller; undefined if it fits. */
export function brokenQuota(quota: ProjectQuota, usage: ProjectUsage, vcpu: number, memMib: number): string | undefined {
  if (quota.maxVms !== null && usage.vms + 1 > quota.maxVms) return `max_vms ${quota.maxVms} (the project has ${usage.vms} VMs)`;
  if (quota.maxVcpus !== null && usage.vcpus + vcpu > quota.maxVcpus) return `max_vcpus ${quota.maxVcpus} (${usage.vcpus} in use, ${vcpu} asked)`;
  if (quota.maxMemoryMib !== null && usage.memoryMib + memMib > quota.maxMemoryMib) {
    return `max_memory_mib ${quota.maxMemoryMib} (${usage.memoryMib} MiB in use, ${memMib} asked)`;
  }
  return undefined;
}
