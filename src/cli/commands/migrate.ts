import type { Command } from 'commander';
import { createLogger } from '../../kit/logger.js';
import { openDatabase } from '../../manager/adapters/sql/database.js';
import { migrateToLatest } from '../../manager/adapters/sql/migrator.js';
import { holdsSealedSecrets, verifySecretKey } from '../../manager/adapters/sql/secret-key-check.js';
import { loadSecretBox } from '../../manager/adapters/secret-key-file.js';
import { resolveManagerConfig } from '../../manager/config.js';
import { printError, printJson } from '../output/print.js';

export function registerMigrate(program: Command): void {
  program
    .command('migrate')
    .description('bring the database schema to the latest version (the manager also does this on start)')
    .option('--data-dir <dir>', 'embedded database dir when DATABASE_URL is unset (env NEXUS_DATA_DIR)')
    .option('--json', 'print JSON')
    .action(async (flags: { dataDir?: string; json?: boolean }) => {
      const config = resolveManagerConfig({ dataDir: flags.dataDir }, process.env);
      // Notices (a key file made) go to standard error: standard output is the command's answer (--json).
      const log = createLogger({ name: 'migrate', level: config.logLevel, destination: process.stderr });
      try {
        const database = await openDatabase({ url: config.databaseUrl, dataDir: config.dataDir, log });
        try {
          // The key the managers use (NEXUS_SECRET_KEY_FILE): a migration seals secrets with it. It
          // is made here only for a database with nothing sealed yet, else it must be there already.
          const secrets = await loadSecretBox(config.secretKeyFile, log, { mayCreate: !(await holdsSealedSecrets(database.db)) });
          const report = await migrateToLatest(database.db, { secrets });
          await verifySecretKey(database.db, secrets, config.secretKeyFile);
          if (flags.json) printJson({ database: database.kind, location: database.location, applied: report.applied });
          else process.stdout.write(report.applied.length ? `applied: ${report.applied.join(', ')}\n` : 'the schema is up to date\n');
        } finally {
          await database.close();
        }
      } catch (error) {
        log.debug({ err: error }, 'migration failed');
        printError(error, flags.json ?? false);
        process.exitCode = 1;
      }
    });
}
