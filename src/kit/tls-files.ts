import { readFileSync } from 'node:fs';
import { NexusError } from './nexus-error.js';

/** A server's certificate chain and private key, PEM. */
export interface ServerTls {
  cert: Buffer;
  key: Buffer;
}

/** The TLS settings a Nexus process may be given: its own certificate and key, and the CA it trusts for its peers. */
export interface TlsSettings {
  /** Serve HTTPS with this certificate and key (both or neither). */
  server: ServerTls | undefined;
  /** Verify peers against this CA (PEM) instead of the system's roots. */
  ca: Buffer | undefined;
}

export interface TlsFileNames {
  cert: string | undefined;
  key: string | undefined;
  ca: string | undefined;
}

/**
 * Reads the PEM files named by the settings `--tls-cert`, `--tls-key` and `--ca` (their names in
 * `labels`, for errors). A certificate without its key, an unreadable file or one that is not PEM
 * is refused at start, naming the setting, rather than failing at the first connection.
 */
export function readTlsSettings(files: TlsFileNames, labels: { cert: string; key: string; ca: string }): TlsSettings {
  if ((files.cert === undefined) !== (files.key === undefined)) {
    const [given, missing] = files.cert === undefined ? [labels.key, labels.cert] : [labels.cert, labels.key];
    throw new NexusError('bad_request', `${given} is set but ${missing} is not: HTTPS needs both the certificate and its key`, {
      suggestion: `Set ${missing} too, or neither to serve plain HTTP.`,
    });
  }
  const server =
    files.cert !== undefined && files.key !== undefined
      ? { cert: readPem(files.cert, labels.cert, 'CERTIFICATE'), key: readPem(files.key, labels.key, 'PRIVATE KEY') }
      : undefined;
  const ca = files.ca === undefined ? undefined : readPem(files.ca, labels.ca, 'CERTIFICATE');
  return { server, ca };
}

/** The file's bytes, if it is readable and holds a PEM block whose label ends with `kind`. */
function readPem(path: string, label: string, kind: 'CERTIFICATE' | 'PRIVATE KEY'): Buffer {
  let pem: Buffer;
  try {
    pem = readFileSync(path);
  } catch (error) {
    throw new NexusError('bad_request', `${label}: cannot read ${path}: ${(error as NodeJS.ErrnoException).code ?? (error as Error).message}`, {
      suggestion: 'Give the path of a PEM file this process can read.',
    });
  }
  if (!new RegExp(`-----BEGIN [A-Z ]*${kind}-----`).test(pem.toString('latin1'))) {
    throw new NexusError('bad_request', `${label}: ${path} holds no PEM ${kind.toLowerCase()}`, {
      suggestion: `Give a PEM file with a -----BEGIN ...${kind}----- block.`,
    });
  }
  return pem;
}

/** The TLS options of `nexus manager` and `nexus agent` (flags win over the environment). */
export interface TlsOptions {
  tlsCert?: string;
  tlsKey?: string;
  ca?: string;
}

/** `--tls-cert`/NEXUS_TLS_CERT, `--tls-key`/NEXUS_TLS_KEY and `--ca`/NEXUS_CA, read and checked. */
export function tlsSettingsOf(options: TlsOptions, env: NodeJS.ProcessEnv): TlsSettings {
  return readTlsSettings(
    {
      cert: options.tlsCert ?? (env.NEXUS_TLS_CERT || undefined),
      key: options.tlsKey ?? (env.NEXUS_TLS_KEY || undefined),
      ca: options.ca ?? (env.NEXUS_CA || undefined),
    },
    { cert: '--tls-cert (NEXUS_TLS_CERT)', key: '--tls-key (NEXUS_TLS_KEY)', ca: '--ca (NEXUS_CA)' },
  );
}
