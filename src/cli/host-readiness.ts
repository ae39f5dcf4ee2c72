import { type RequirementCheck, aptInstall, checkHostRequirements, planInstall } from './launcher.js';
import { NexusError } from '../kit/nexus-error.js';

/**
 * Brings this host up to what Nexus needs before `nexus dev` starts: installs missing Debian
 * packages with apt-get's progress on screen, or, where it cannot, says what is missing and how
 * to get it.
 */
export async function ensureHostReady(write: (line: string) => void): Promise<void> {
  const missing = (await checkHostRequirements()).filter((check) => !check.path);
  const plan = await planInstall(missing);
  if (plan.kind === 'nothing') return;
  if (plan.kind === 'manual') {
    throw new NexusError('unavailable', `this host lacks ${describe(missing)} and Nexus cannot install it (${plan.why})`, {
      suggestion: `As root on Debian: apt-get install -y ${plan.packages.join(' ')}. \`nexus doctor\` repeats this check.`,
    });
  }
  write(`nexus: installing what this host lacks: ${plan.packages.join(' ')} (apt-get)`);
  await aptInstall(plan.packages);
  const stillMissing = (await checkHostRequirements()).filter((check) => !check.path);
  if (stillMissing.length > 0) {
    throw new NexusError('unavailable', `after apt-get, ${describe(stillMissing)} is still missing`, {
      suggestion: 'Check PATH, or the apt-get output above.',
    });
  }
}

function describe(checks: RequirementCheck[]): string {
  return checks.map((check) => `${check.binary} (${check.debianPackage}: ${check.why})`).join(', ');
}
