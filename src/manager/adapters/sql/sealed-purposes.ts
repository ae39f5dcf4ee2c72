/**
 * What each sealed value in the database is, named as additional data when it is sealed (see
 * SecretBox): a value opens only as what it was sealed as. Never change these: values sealed
 * under them are stored in databases.
 */
export const SEALED_PURPOSE = {
  /** host.credential_sealed and host.next_credential_sealed: the credential the manager presents to the agent. */
  hostCredential: 'host.credential',
  /** secret_key_check.sealed: proves the manager holds the key the database was sealed with. */
  keyCheck: 'secret_key_check',
} as const;

/** The text sealed in secret_key_check: what opens is compared with it. */
export const KEY_CHECK_TEXT = 'nexus: the database is sealed with this key';
