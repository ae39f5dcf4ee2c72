// test-lane: parallel (its own managers, hollow hosts, databases, temp dirs and ports: no host network, guest, cgroup or host-wide scan)
import { openDatabase } from '../../src/manager/adapters/sql/database.js';
import { type PostgresServer, startPostgres } from '../support/postgres-server.js';
import { defineStoreSuite } from './store-suite.js';
import { captureLogger } from '../support/capture-logger.js';

let server: PostgresServer | undefined;
defineStoreSuite(
  'postgres',
  async () => {
    server = await startPostgres();
    return openDatabase({ url: await server.createDatabase(), dataDir: '/nonexistent', log: captureLogger().log });
  },
  async () => server?.stop(),
);
