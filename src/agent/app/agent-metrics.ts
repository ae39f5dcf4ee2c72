import { Counter, Histogram, type Registry } from 'prom-client';
import type { CollectOrphansResponse } from '../../contracts/agent-vm-api.js';
import { NexusError } from '../../kit/nexus-error.js';
import type { VmmDriver } from '../ports/vmm-driver.js';

/** The driver operations that are timed (launches) and whose failures are counted; the rest pass through. */
const MEASURED = new Set(['start', 'restore', 'stop', 'pause', 'resume', 'snapshot', 'updateDriveRateLimit']);

/** The agent's own Prometheus families, beside the HTTP ones of its server. */
export class AgentMetrics {
  readonly launchSeconds = new Histogram({
    name: 'nexus_agent_vmm_launch_seconds',
    help: 'Time from asking a driver to start a VMM to the VMM answering its control socket',
    labelNames: ['driver', 'result'] as const,
    buckets: [0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30],
    registers: [],
  });
  readonly driverErrors = new Counter({
    name: 'nexus_agent_driver_errors_total',
    help: 'VMM driver operations that failed, by driver, operation and error code',
    labelNames: ['driver', 'operation', 'code'] as const,
    registers: [],
  });
  readonly orphansRemoved = new Counter({
    name: 'nexus_agent_orphans_removed_total',
    help: 'Leftovers the agent removed (at start or when the manager asked): VMM processes, TAPs, sockets, folders',
    labelNames: ['kind'] as const,
    registers: [],
  });

  registerOn(registry: Registry): void {
    registry.registerMetric(this.launchSeconds);
    registry.registerMetric(this.driverErrors);
    registry.registerMetric(this.orphansRemoved);
  }

  countRemoved(removed: CollectOrphansResponse['removed']): void {
    for (const [kind, list] of Object.entries(removed)) if (list.length > 0) this.orphansRemoved.inc({ kind }, list.length);
  }

  /** The driver, with its launches timed and its failures counted. */
  measured(driver: VmmDriver): VmmDriver {
    const { launchSeconds, driverErrors } = this;
    const failed = (operation: string, error: unknown) =>
      driverErrors.inc({ driver: driver.name, operation, code: error instanceof NexusError ? error.code : 'internal' });
    return new Proxy(driver, {
      get(target, property, receiver) {
        const value = Reflect.get(target, property, receiver);
        if (typeof value !== 'function' || typeof property !== 'string') return value;
        if (!MEASURED.has(property)) return value.bind(target);
        return async (...args: unknown[]) => {
          const started = process.hrtime.bigint();
          try {
            const result = await value.apply(target, args);
            if (property === 'start' || property === 'restore') launchSeconds.observe({ driver: driver.name, result: 'ok' }, elapsed(started));
            return result;
          } catch (error) {
            if (property === 'start' || property === 'restore') launchSeconds.observe({ driver: driver.name, result: 'error' }, elapsed(started));
            failed(property, error);
            throw error;
          }
        };
      },
    });
  }
}

function elapsed(started: bigint): number {
  return Number(process.hrtime.bigint() - started) / 1e9;
}
