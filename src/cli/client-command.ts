import type { Command } from 'commander';
import { ManagerClient } from './client/manager-client.js';
import { printError } from './output/print.js';

export interface ClientFlags {
  json?: boolean;
  api?: string;
}

/** Adds the flags every client command takes. */
export function withClientFlags(command: Command): Command {
  return command
    .option('--json', 'print JSON instead of a table')
    .option('--api <url>', 'manager API URL (env NEXUS_API)', process.env.NEXUS_API ?? 'http://127.0.0.1:8080');
}

/** Runs one client command against the manager; a failure sets the exit code and is printed. */
export async function runClient(flags: ClientFlags, body: (client: ManagerClient) => Promise<void>): Promise<void> {
  const client = new ManagerClient(flags.api ?? 'http://127.0.0.1:8080');
  try {
    await body(client);
  } catch (error) {
    printError(error, flags.json ?? false);
    process.exitCode = 1;
  } finally {
    await client.close();
  }
}
