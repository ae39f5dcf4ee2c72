import { NexusError } from './nexus-error.js';

export interface ListenAddress {
  host: string;
  port: number;
}

/** Parses `host:port`, `[v6]:port` or `:port` (all interfaces); port 0 picks a free one. */
export function parseListenAddress(text: string, what: string): ListenAddress {
  const match = /^(?:\[([^\]]+)\]|([^:[\]]*)):(\d{1,5})$/.exec(text.trim());
  const port = match ? Number(match[3]) : NaN;
  if (!match || port > 65535) {
    throw new NexusError('bad_request', `${what} must be host:port (got '${text}')`, {
      suggestion: `For example 127.0.0.1:8080, [::1]:8080 or :8080.`,
    });
  }
  return { host: match[1] ?? (match[2] || '0.0.0.0'), port };
}

/** `host:port` a local client can dial for a bound address: wildcards become loopback, v6 gets brackets. */
export function dialableHostPort(address: ListenAddress): string {
  const host = address.host === '0.0.0.0' ? '127.0.0.1' : address.host === '::' ? '::1' : address.host;
  return `${host.includes(':') ? `[${host}]` : host}:${address.port}`;
}

/** The URL a local client uses for a bound address (https when it serves TLS). */
export function urlOf(address: ListenAddress, tls = false): string {
  return `${tls ? 'https' : 'http'}://${dialableHostPort(address)}`;
}
