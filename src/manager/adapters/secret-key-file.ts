import type { Logger } from 'pino';
import { loadOrCreateKeyFile, readKeyFile } from '../../kit/key-file.js';
import { NexusError } from '../../kit/nexus-error.js';
import { SECRET_KEY_BYTES, SecretBox } from '../../kit/secret-box.js';

/**
 * The manager's sealing key, from its key file. The file is made only for a database that holds
 * no sealed value yet (`mayCreate`: its first start, or its upgrade to sealing): a database that
 * already does was sealed with a key that exists somewhere, and a new one would seal further
 * secrets no other manager can open, so a missing file is an error naming where it was looked
 * for. The key never goes into the database or a log line: only whether it was made, and where.
 */
export async function loadSecretBox(keyFile: string, log: Logger, options: { mayCreate: boolean }): Promise<SecretBox> {
  const found = options.mayCreate ? await loadOrCreateKeyFile(keyFile, SECRET_KEY_BYTES) : await readKeyFile(keyFile, SECRET_KEY_BYTES);
  if (!found) {
    throw new NexusError('bad_request', `the database holds secrets sealed with a key, and there is no key file at ${keyFile}: nothing was changed`, {
      suggestion:
        'Point NEXUS_SECRET_KEY_FILE at the key file this database was first used with (copy it from the machine that first ran `nexus manager` or `nexus migrate` on it; ' +
        'without NEXUS_SECRET_KEY_FILE it is <data-dir>/secret.key, and the data dir defaults to ./.nexus in the working directory). A new key would not open them.',
    });
  }
  if ('created' in found && found.created) {
    log.warn(
      { key_file: keyFile },
      'made a new key that seals secrets in the database: back it up with the database; managers sharing the database need the same file (NEXUS_SECRET_KEY_FILE)',
    );
  }
  if (found.exposed) log.warn({ key_file: keyFile }, 'the secret key file may be read by other users: chmod 600 it');
  return new SecretBox(found.key);
}
