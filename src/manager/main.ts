import { mkdir } from 'node:fs/promises';
import { writeFileAtomically } from '../kit/atomic-file.js';
import { systemClock } from '../kit/clock.js';
import { type HttpServer, listenOn } from '../http/http-server.js';
import { urlOf } from '../kit/listen-address.js';
import type { Logger } from '../kit/logger.js';
import { messageOf } from '../kit/nexus-error.js';
import { PeriodicTask } from '../kit/periodic-task.js';
import { UndoStack } from '../kit/undo-stack.js';
import { type Database, openDatabase } from './adapters/sql/database.js';
import { migrateToLatest } from './adapters/sql/migrator.js';
import { holdsSealedSecrets, verifySecretKey } from './adapters/sql/secret-key-check.js';
import { SEALED_PURPOSE } from './adapters/sql/sealed-purposes.js';
import { loadSecretBox } from './adapters/secret-key-file.js';
import { RefusalAudit } from './app/refusal-audit.js';
import { SqlHostRepo } from './adapters/sql/sql-host-repo.js';
import { SqlImageRepo } from './adapters/sql/sql-image-repo.js';
import { HostRegistry } from './app/host-registry.js';
import { AccessService } from './app/access-service.js';
import { AuditLog } from './app/audit-log.js';
import { SqlAuditRepo, SqlProjectRepo, SqlTokenRepo } from './adapters/sql/sql-access-repos.js';
import { ImageRegistry } from './app/image-registry.js';
import { type ManagerConfig, adminTokenFile } from './config.js';
import { createManagerServer } from './http/manager-server.js';
import { registerFleetMetrics } from './app/fleet-metrics.js';
import { registerAccessMetrics } from './app/access-metrics.js';
import { VmObserver } from './app/vm-observer.js';
import { HostLiveness } from './reconcilers/host-liveness.js';
import { VmReconciler } from './reconcilers/vm-reconciler.js';
import { OrphanCollector } from './reconcilers/orphan-collector.js';
import { VmManager } from './app/vm-manager.js';
import { NetworkManager } from './app/network-manager.js';
import { SqlNetworkRepo } from './adapters/sql/sql-network-repo.js';
import { SnapshotManager } from './app/snapshot-manager.js';
import { SqlSnapshotRepo } from './adapters/sql/sql-snapshot-repo.js';
import { SqlVmRepo } from './adapters/sql/sql-vm-repo.js';
import { SqlIdempotencyRepo } from './adapters/sql/sql-idempotency-repo.js';
import { HttpAgentGateway } from './adapters/http-agent-gateway.js';
import { AdvisoryLockLeadership, soleLeadership } from './adapters/sql/advisory-lock-leadership.js';
import { PgWakeChannel } from './adapters/sql/pg-wake-channel.js';
import { holdingStartLock } from './adapters/sql/start-lock.js';
import type { SecretBox } from '../kit/secret-box.js';

/** How often the leader removes expired idempotency keys. */
const IDEMPOTENCY_PRUNE_EVERY_MS = 3600_000;

export interface RunningManager {
  /** Whether this manager runs the reconciler now (always, on the embedded database). */
  isLeader(): boolean;
  /** Base URL of the API, with the port actually bound. */
  url: string;
  database: Database;
  hosts: HostRegistry;
  server: HttpServer;
  /** The first admin token, when this start minted it (the database had none): show it once. */
  bootstrapAdminToken: string | undefined;
  /** Stops serving, stops the loops, closes the database. Safe to call twice. */
  close(): Promise<void>;
}

/**
 * Makes the database ready for a manager: the secret key (made only for a database with nothing
 * sealed yet; else a missing key file stops here, before anything is migrated or written), the
 * schema at the latest version, the key checked against it, then `then` (the first admin token).
 * Managers starting together on one Postgres, and `nexus migrate`, take turns through here, so the
 * second finds the first one's schema, check row and admin token instead of minting a second one.
 */
async function prepareDatabase<T>(
  database: Database,
  config: Pick<ManagerConfig, 'databaseUrl' | 'secretKeyFile'>,
  log: Logger,
  then: () => Promise<T>,
): Promise<{ secrets: SecretBox; applied: string[]; then: T }> {
  return holdingStartLock(config.databaseUrl, log, async () => {
    const secrets = await loadSecretBox(config.secretKeyFile, log, { mayCreate: !(await holdsSealedSecrets(database.db)) });
    const migrated = await migrateToLatest(database.db, { secrets });
    await verifySecretKey(database.db, secrets, config.secretKeyFile);
    log.info({ database: database.kind, location: database.location, applied: migrated.applied }, 'database ready');
    return { secrets, applied: migrated.applied, then: await then() };
  });
}

/** `nexus migrate`: brings the database's schema to the latest version, as a manager does on start, and says what it applied. */
export async function migrateDatabase(config: ManagerConfig, log: Logger): Promise<{ database: Database['kind']; location: string; applied: string[] }> {
  const database = await openDatabase({ url: config.databaseUrl, dataDir: config.dataDir, log });
  try {
    const { applied } = await prepareDatabase(database, config, log, async () => undefined);
    return { database: database.kind, location: database.location, applied };
  } finally {
    await database.close();
  }
}

/** The manager's composition root: chooses the adapters and wires them. */
export async function startManager(config: ManagerConfig, log: Logger): Promise<RunningManager> {
  if (!config.databaseUrl && config.mode === 'production') {
    log.warn(
      { data_dir: config.dataDir },
      'running on the embedded PGlite database, which never fsyncs: a power loss can lose recent writes. Set DATABASE_URL to a Postgres server for production.',
    );
  }
  const database = await openDatabase({ url: config.databaseUrl, dataDir: config.dataDir, log });
  const undo = new UndoStack(log);
  undo.push('close the database', () => database.close());
  try {
    const access = new AccessService(new SqlTokenRepo(database.db), new SqlProjectRepo(database.db), systemClock, log, {
      cacheMs: 500,
      wrongSecretsPerTokenPerMinute: 10,
    });
    const { secrets, then: bootstrapAdminToken } = await prepareDatabase(database, config, log, () => access.bootstrap());
    if (bootstrapAdminToken) {
      log.warn({ event: 'bootstrap_admin_token' }, 'the database had no API token: minted the first admin token (shown once, on standard error)');
      if (config.mode === 'dev') await saveAdminToken(config.dataDir, bootstrapAdminToken);
    }

    const leadership = config.databaseUrl ? new AdvisoryLockLeadership(config.databaseUrl, Math.min(config.resyncMs, 5000), log) : soleLeadership;
    leadership.start();
    undo.push('give up leadership', () => leadership.stop());
    const hostRepo = new SqlHostRepo(database.db, secrets);
    const imageRepo = new SqlImageRepo(database.db);
    const images = new ImageRegistry(imageRepo, systemClock, log);
    const audit = new SqlAuditRepo(database.db);
    const liveness = new HostLiveness(hostRepo, audit, systemClock, log, { heartbeatTimeoutMs: config.heartbeatTimeoutMs }, leadership);
    const vmRepo = new SqlVmRepo(database.db);
    const snapshotRepo = new SqlSnapshotRepo(database.db);
    // Host credentials are opened only here, as the manager calls their agent.
    const agents = new HttpAgentGateway({ ca: config.tls.ca, openCredential: (sealed) => secrets.open(sealed, SEALED_PURPOSE.hostCredential) });
    undo.push('close agent connections', () => agents.close());
    const refusals = new RefusalAudit(audit, systemClock, log, { windowMs: 60_000, maxSources: 100 });
    refusals.start();
    undo.push('write the counted refusals', () => refusals.stop());
    const hosts = new HostRegistry(hostRepo, images, agents, audit, refusals, systemClock, log, { heartbeatIntervalMs: config.heartbeatIntervalMs });
    const reconciler = new VmReconciler(
      vmRepo,
      hostRepo,
      imageRepo,
      agents,
      systemClock,
      log,
      {
        resyncMs: config.resyncMs,
        vcpuOvercommit: config.vcpuOvercommit,
        startRetryBudget: 3,
        pollMs: 250,
        // The embedded database is one session: more workers would only queue behind each other.
        concurrency: database.kind === 'pglite' ? 4 : 8,
      },
      leadership,
    );
    // A follower's writes reach the leader's queue over the database; the embedded one has no followers.
    const wakes = config.databaseUrl ? new PgWakeChannel(config.databaseUrl, database.db, log, Math.min(config.resyncMs, 5000)) : undefined;
    if (wakes) {
      await wakes.start((id, userAction) => reconciler.wake(id, userAction));
      undo.push('stop the wake channel', () => wakes.stop());
    }
    const wake = (id: string, userAction: boolean): void => {
      if (leadership.isLeader()) reconciler.wake(id, userAction);
      else wakes?.publish(id, userAction);
    };
    const networks = new NetworkManager(new SqlNetworkRepo(database.db), config.networkPool);
    const snapshots = new SnapshotManager(snapshotRepo, vmRepo, hostRepo, agents, wake, log);
    const vms = new VmManager(
      vmRepo,
      hostRepo,
      images,
      networks,
      snapshots,
      (project, vcpu, memMib) => access.quotaCheck(project, vcpu, memMib),
      wake,
      systemClock,
      {
        mode: config.mode,
      },
    );
    const idempotency = new SqlIdempotencyRepo(database.db);
    const server = await createManagerServer(
      {
        database,
        hosts,
        images,
        vms,
        networks,
        snapshots,
        access,
        audit,
        auditLog: new AuditLog(audit),
        refusals,
        idempotency,
        observer: new VmObserver(vms, agents, hostRepo),
      },
      {
        logger: log,
        rateLimits: {
          readsPerMinute: config.readsPerMinute,
          writesPerMinute: config.writesPerMinute,
          requestsPerAddressPerMinute: config.requestsPerAddressPerMinute,
        },
        corsOrigins: config.corsOrigins,
        tls: config.tls.server,
        devRoutes: config.mode === 'dev',
      },
    );
    undo.push('stop serving HTTP', () => server.close());
    reconciler.registerMetrics(server.metrics.registry);
    agents.registerMetrics(server.metrics.registry);
    registerFleetMetrics(server.metrics.registry, vmRepo, hostRepo);
    registerAccessMetrics(server.metrics.registry, access);

    const url = urlOf(await listenOn(server, config.listen), config.tls.server !== undefined);
    liveness.start();
    undo.push('stop the host liveness loop', () => liveness.stop());
    reconciler.start();
    undo.push('stop the VM reconciler', () => reconciler.stop());
    const collector = new OrphanCollector(
      hostRepo,
      vmRepo,
      snapshotRepo,
      agents,
      systemClock,
      log,
      { graceMs: config.orphanGraceMs, everyMs: config.resyncMs },
      leadership,
      server.metrics.registry,
    );
    collector.start();
    undo.push('stop orphan collection', () => collector.stop());
    // Idempotency keys are kept a day; the leader drops older answers and abandoned claims.
    const keyPruning = new PeriodicTask(
      IDEMPOTENCY_PRUNE_EVERY_MS,
      async () => {
        if (!leadership.isLeader()) return;
        const pruned = await idempotency.prune();
        if (pruned > 0) log.info({ event: 'idempotency_keys_pruned', count: pruned }, 'expired idempotency keys removed');
      },
      (error) => log.warn({ err: messageOf(error) }, 'could not prune idempotency keys'),
    );
    keyPruning.start(true);
    undo.push('stop pruning idempotency keys', () => keyPruning.stop());
    log.info({ url, mode: config.mode, agents_over: config.tls.ca ? 'https' : 'http' }, 'manager listening');

    return { url, database, hosts, server, bootstrapAdminToken, isLeader: () => leadership.isLeader(), close: () => undo.unwind() };
  } catch (error) {
    await undo.unwind();
    throw error;
  }
}

async function saveAdminToken(dataDir: string, token: string): Promise<void> {
  await mkdir(dataDir, { recursive: true });
  await writeFileAtomically(adminTokenFile(dataDir), `${token}\n`, 0o600);
}
