import type { Command } from 'commander';
import { readFileSync } from 'node:fs';
import { resolve } from 'node:path';
import { adminTokenFile } from './launcher.js';
import { readTlsSettings } from '../kit/tls-files.js';
import { ManagerClient } from './client/manager-client.js';
import { printError } from './output/print.js';

export interface ClientFlags {
  json?: boolean;
  api?: string;
  token?: string;
  dataDir?: string;
  ca?: string;
}

const CA_LABELS = { cert: '--tls-cert', key: '--tls-key', ca: '--ca (NEXUS_CA)' };

/** Adds the flags every client command takes. */
export function withClientFlags(command: Command): Command {
  return command
    .option('--json', 'print JSON instead of a table')
    .option('--api <url>', 'manager API URL (env NEXUS_API)', process.env.NEXUS_API ?? 'http://127.0.0.1:8080')
    .option('--token <token>', 'API token (env NEXUS_TOKEN; default: <data-dir>/admin.token, which `nexus dev` writes)')
    .option('--data-dir <dir>', 'where to find admin.token (env NEXUS_DATA_DIR, default ./.nexus)')
    .option('--ca <file>', 'PEM CA that signed an https manager certificate (env NEXUS_CA; default the system roots)');
}

/** The API token to send: --token, NEXUS_TOKEN, else the admin token `nexus dev` saved. */
export function tokenOf(flags: Pick<ClientFlags, 'token' | 'dataDir'>): string | undefined {
  const given = flags.token ?? (process.env.NEXUS_TOKEN || undefined);
  if (given) return given;
  try {
    return readFileSync(adminTokenFile(resolve(flags.dataDir ?? process.env.NEXUS_DATA_DIR ?? './.nexus')), 'utf8').trim() || undefined;
  } catch {
    return undefined;
  }
}

/** Runs one client command against the manager; a failure sets the exit code and is printed. */
export async function runClient(flags: ClientFlags, body: (client: ManagerClient) => Promise<void>): Promise<void> {
  let client: ManagerClient;
  try {
    const { ca } = readTlsSettings({ cert: undefined, key: undefined, ca: flags.ca ?? (process.env.NEXUS_CA || undefined) }, CA_LABELS);
    client = new ManagerClient(flags.api ?? 'http://127.0.0.1:8080', tokenOf(flags), ca);
  } catch (error) {
    printError(error, flags.json ?? false);
    process.exitCode = 1;
    return;
  }
  try {
    await body(client);
  } catch (error) {
    printError(error, flags.json ?? false);
    process.exitCode = 1;
  } finally {
    await client.close();
  }
}
