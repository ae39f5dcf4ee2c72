import type { Command } from 'commander';

export interface TlsFlags {
  tlsCert?: string;
  tlsKey?: string;
  ca?: string;
}

/** `--tls-cert`, `--tls-key` and `--ca` for a service; `peers` names whose certificates the CA signs. */
export function withTlsFlags(command: Command, peers: string): Command {
  return command
    .option('--tls-cert <file>', 'serve HTTPS with this PEM certificate chain (env NEXUS_TLS_CERT; needs --tls-key)')
    .option('--tls-key <file>', 'the PEM private key of --tls-cert (env NEXUS_TLS_KEY)')
    .option('--ca <file>', `PEM CA that signed ${peers} certificates (env NEXUS_CA; default the system roots)`);
}
