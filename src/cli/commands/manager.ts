import type { Command } from 'commander';
import { createLogger } from '../../kit/logger.js';
import { adminTokenFile, resolveManagerConfig, startManager } from '../launcher.js';
import { runService } from '../service-lifecycle.js';
import { type TlsFlags, withTlsFlags } from '../tls-flags.js';

export function registerManager(program: Command): void {
  const command = program
    .command('manager')
    .description('run the manager: REST API, source of truth, reconciler (production mode)')
    .option('--listen <host:port>', 'where the API listens (env NEXUS_LISTEN, default 127.0.0.1:8080)')
    .option('--data-dir <dir>', 'embedded database dir when DATABASE_URL is unset (env NEXUS_DATA_DIR, default ./.nexus)')
    .option('--dev', 'dev mode, as in `nexus dev`: raw host paths for kernels and disks are accepted');
  withTlsFlags(command, "the agents' (set, the manager calls agents over https)").action(
    async (flags: { listen?: string; dataDir?: string; dev?: boolean } & TlsFlags) => {
      const config = resolveManagerConfig(
        { listen: flags.listen, dataDir: flags.dataDir, mode: flags.dev ? 'dev' : 'production', tlsCert: flags.tlsCert, tlsKey: flags.tlsKey, ca: flags.ca },
        process.env,
      );
      const log = createLogger({ name: 'manager', level: config.logLevel });
      await runService(log, async () => {
        const manager = await startManager(config, log);
        if (manager.bootstrapAdminToken) {
          const saved = config.mode === 'dev' ? `; also saved in ${adminTokenFile(config.dataDir)}` : '';
          process.stderr.write(
            `\nThe first admin token (shown once${saved}):\n  ${manager.bootstrapAdminToken}\nKeep it secret; mint narrower tokens with POST /v1/tokens.\n\n`,
          );
        }
        return manager;
      });
    },
  );
}
