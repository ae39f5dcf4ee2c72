import { type Command, InvalidArgumentError } from 'commander';
import { JOIN_TOKEN_DEFAULT_TTL_SECONDS, JOIN_TOKEN_MAX_TTL_SECONDS } from '../../contracts/host-api.js';
import { type ClientFlags, runClient, withClientFlags } from '../client-command.js';
import { printJson } from '../output/print.js';

function parseTtl(text: string): number {
  const value = Number(text);
  if (!Number.isInteger(value) || value < 60 || value > JOIN_TOKEN_MAX_TTL_SECONDS) {
    throw new InvalidArgumentError(`a whole number of seconds from 60 to ${JOIN_TOKEN_MAX_TTL_SECONDS}`);
  }
  return value;
}

export function registerHostsJoinToken(hosts: Command): void {
  withClientFlags(
    hosts
      .command('join-token')
      .description('mint a single-use join token that admits one agent')
      .option('--ttl <seconds>', 'how long the token stays valid', parseTtl, JOIN_TOKEN_DEFAULT_TTL_SECONDS)
      .option('--replace <host-name>', 'let the token take over this host even while it is ready (its agent is locked out); it enrolls no other name'),
  ).action((flags: ClientFlags & { ttl: number; replace?: string }) =>
    runClient(flags, async (client) => {
      const token = await client.mintJoinToken(flags.ttl, flags.replace);
      if (flags.json) return printJson(token);
      const replacing = token.replace_host === null ? '' : ` It replaces host ${token.replace_host}: start the agent with --name ${token.replace_host}.`;
      process.stdout.write(
        `${token.token}\n\nValid once, until ${token.expires_at}.${replacing} On the new host, as root:\n` +
          `  NEXUS_JOIN_TOKEN=${token.token} nexus agent --manager ${flags.api} --advertise <this-host-address>:9090\n`,
      );
    }),
  );
}
