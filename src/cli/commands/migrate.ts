import type { Command } from 'commander';
import { createLogger } from '../../kit/logger.js';
import { migrateDatabase, resolveManagerConfig } from '../launcher.js';
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
        // The key the managers use (NEXUS_SECRET_KEY_FILE) seals secrets as it migrates: it is made
        // only for a database with nothing sealed yet, else it must be there already.
        const report = await migrateDatabase(config, log);
        if (flags.json) printJson(report);
        else process.stdout.write(report.applied.length ? `applied: ${report.applied.join(', ')}\n` : 'the schema is up to date\n');
      } catch (error) {
        log.debug({ err: error }, 'migration failed');
        printError(error, flags.json ?? false);
        process.exitCode = 1;
      }
    });
}
