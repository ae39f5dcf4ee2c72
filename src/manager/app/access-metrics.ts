import { Counter, type Registry } from 'prom-client';
import type { AccessService } from './access-service.js';

/**
 * `nexus_manager_token_secret_checks_total{outcome}`: API token secrets checked with the slow hash
 * (`hashed`) or turned away without one because their token id had its minute's share
 * (`refused`). A climbing `refused` is someone guessing a token's secret.
 */
export function registerAccessMetrics(registry: Registry, access: Pick<AccessService, 'secretCheckCounts'>): void {
  new Counter({
    name: 'nexus_manager_token_secret_checks_total',
    help: 'API token secrets checked with the slow hash (hashed) or refused without one (over the token id limit)',
    labelNames: ['outcome'] as const,
    registers: [registry],
    collect() {
      const counts = access.secretCheckCounts();
      this.reset();
      this.inc({ outcome: 'hashed' }, counts.run);
      this.inc({ outcome: 'refused' }, counts.refused);
    },
  });
}
