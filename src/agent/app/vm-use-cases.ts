import type { Logger } from 'pino';
import type { CollectOrphansResponse } from '../../contracts/agent-vm-api.js';
import { SocketProxyGuard } from './socket-proxy-guard.js';
import { VmContext, type VmDrivers, type VmPorts } from './vm-context.js';
import { VmExpiry } from './vm-expiry.js';
import { VmHibernation } from './vm-hibernation.js';
import { VmLeftovers } from './vm-leftovers.js';
import { VmMetricsSampler } from './vm-metrics-sampler.js';
import { VmService } from './vm-service.js';
import { VmSnapshots } from './vm-snapshots.js';

/** Every VM use case of the agent, sharing one set of ports and one lock per VM. */
export interface VmUseCases {
  vms: VmService;
  snapshots: VmSnapshots;
  hibernation: VmHibernation;
  leftovers: VmLeftovers;
  expiry: VmExpiry;
  metrics: VmMetricsSampler;
  proxy: SocketProxyGuard;
}

export interface VmUseCaseOptions {
  /** Told what garbage collection removed, for the agent's metrics. */
  onOrphansRemoved?: (removed: CollectOrphansResponse['removed']) => void;
  now?: () => Date;
}

export function vmUseCases(drivers: VmDrivers, ports: VmPorts, log: Logger, options: VmUseCaseOptions = {}): VmUseCases {
  const ctx = new VmContext(drivers, ports, log, options.now);
  const vms = new VmService(ctx);
  return {
    vms,
    snapshots: new VmSnapshots(ctx),
    hibernation: new VmHibernation(ctx),
    leftovers: new VmLeftovers(ctx, options.onOrphansRemoved),
    expiry: new VmExpiry(ctx, vms),
    metrics: new VmMetricsSampler(ctx),
    proxy: new SocketProxyGuard(ctx),
  };
}
