/**
 * Which Firecracker endpoints the agent's socket proxy relays. Read-only GETs, and the mutations
 * an operator drives a VM with. Anything else (balloon, MMDS, vsock, hotplug, unknown paths, other
 * methods) is refused, so the proxy cannot be used to reach parts of Firecracker Nexus does not manage.
 */
const READABLE = ['/', '/version', '/vm/config', '/machine-config', '/balloon', '/balloon/statistics'];
const WRITABLE: ReadonlyArray<{ methods: readonly string[]; path: RegExp }> = [
  { methods: ['PUT', 'PATCH'], path: /^\/machine-config$/ },
  { methods: ['PUT'], path: /^\/boot-source$/ },
  { methods: ['PUT', 'PATCH'], path: /^\/drives\/[A-Za-z0-9_]+$/ },
  { methods: ['PUT', 'PATCH'], path: /^\/network-interfaces\/[A-Za-z0-9_]+$/ },
  { methods: ['PUT'], path: /^\/logger$/ },
  { methods: ['PUT'], path: /^\/metrics$/ },
  { methods: ['PUT'], path: /^\/actions$/ },
  { methods: ['PATCH'], path: /^\/vm$/ },
  { methods: ['PUT'], path: /^\/snapshot\/(create|load)$/ },
];

/**
 * Whether `method path` may be relayed. `path` is the raw path after `/proxy` (still
 * percent-encoded): any encoding at all, a dot segment, or a doubled slash is refused rather than
 * normalized, so what is judged is exactly what Firecracker would be sent.
 */
export function isProxyAllowed(method: string, path: string): boolean {
  if (!path.startsWith('/') || path.includes('%') || path.includes('//') || path.split('/').some((segment) => segment === '.' || segment === '..'))
    return false;
  if (method === 'GET') return READABLE.includes(path);
  return WRITABLE.some((rule) => rule.methods.includes(method) && rule.path.test(path));
}

/**
 * Body fields that name a host file, socket or device. Firecracker opens them with its own rights
 * (root, unjailed), so through the proxy they would bypass the agent's rule on which files a VM may
 * have: a body carrying one is refused, whatever its value. The agent sets them itself.
 */
const HOST_RESOURCE_FIELDS = new Set([
  'kernel_image_path',
  'initrd_path',
  'path_on_host',
  'socket',
  'host_dev_name',
  'log_path',
  'metrics_path',
  'snapshot_path',
  'mem_file_path',
  'backend_path',
  'uds_path',
  'serial_out_path',
]);

/** The first field in a body (at any depth) that names a host resource, or undefined. */
export function hostResourceFieldIn(body: unknown): string | undefined {
  if (Array.isArray(body)) {
    for (const item of body) {
      const found = hostResourceFieldIn(item);
      if (found) return found;
    }
    return undefined;
  }
  if (typeof body !== 'object' || body === null) return undefined;
  for (const [key, value] of Object.entries(body)) {
    if (HOST_RESOURCE_FIELDS.has(key)) return key;
    const found = hostResourceFieldIn(value);
    if (found) return found;
  }
  return undefined;
}

/**
 * The only request headers relayed to a VMM: what the body is and what answer is wanted. Nothing
 * else a caller sends reaches it: not its credential for the agent, not hop-by-hop headers, not
 * body framing (the relay frames the body itself), not headers Firecracker has no use for.
 */
export const RELAYED_HEADERS = new Set(['content-type', 'accept']);

/** A header value fit to relay: visible ASCII and spaces only, so no CR, LF or NUL can split a header. */
export function isRelayableHeaderValue(value: string): boolean {
  return /^[\x20-\x7e\t]*$/.test(value);
}
