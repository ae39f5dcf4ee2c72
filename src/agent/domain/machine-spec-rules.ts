import type { MachineSpec } from '../../contracts/machine-spec.js';

/** Two specs describe the same machine: drive throttles may differ (they change at runtime). */
export function sameMachine(a: MachineSpec, b: MachineSpec): boolean {
  const strip = (spec: MachineSpec) => ({ ...spec, drives: spec.drives.map(({ rate_limit: _limit, ...drive }) => drive) });
  return JSON.stringify(strip(a)) === JSON.stringify(strip(b));
}
