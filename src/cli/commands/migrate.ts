import type { Command } from 'commander';
import { createLogger } from '../../kit/logger.js';
import { openDatabase } from '../../manager/adapters/sql/database.js';
import { migrateToLatest } from '../../manager/adapters/sql/migrator.js';
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
      const log = createLogger({ name: 'migrate', level: config.logLevel });
      try {
        const database = await openDatabase({ url: config.databaseUrl, dataDir: config.dataDir, log });
        try {
          const report = await migrateToLatest(database.db);
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
