// test-lane: parallel (its own managers, hollow hosts, databases, temp dirs and ports: no host network, guest, cgroup or host-wide scan)
import { openDatabase } from '../../src/manager/adapters/sql/database.js';
import { tempDir } from '../support/temp-dir.js';
import { defineStoreSuite } from './store-suite.js';
import { captureLogger } from '../support/capture-logger.js';

const dir = tempDir('nexus-store-pglite-');
defineStoreSuite(
  'pglite',
  () => openDatabase({ dataDir: dir.path, log: captureLogger().log }),
  async () => dir.remove(),
);
