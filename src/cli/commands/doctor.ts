import type { Command } from 'commander';
import { checkHostRequirements, planInstall, probeKvm, resolveAgentConfig } from '../launcher.js';
import { printJson } from '../output/print.js';

const MIN_NODE_MAJOR = 20;
/** The majors CI runs the suites on (package.json's `engines` says the same). */
export const TESTED_NODE_MAJORS = [20, 24];

export function registerDoctor(program: Command): void {
  program
    .command('doctor')
    .description('check that this host has what Nexus needs, and say how to get what is missing')
    .option('--json', 'print JSON')
    .action(async (flags: { json?: boolean }) => {
      const config = resolveAgentConfig({}, process.env);
      const nodeMajor = Number(process.versions.node.split('.')[0]);
      const requirements = await checkHostRequirements();
      const missing = requirements.filter((check) => !check.path);
      const kvm = missing.length === 0 ? await probeKvm(config.qemuBinary) : { usable: false, reason: 'QEMU is missing, so KVM was not probed' };
      const plan = await planInstall(missing);
      const report = {
        ok: nodeMajor >= MIN_NODE_MAJOR && missing.length === 0,
        node: { version: process.versions.node, ok: nodeMajor >= MIN_NODE_MAJOR, tested: TESTED_NODE_MAJORS.includes(nodeMajor) },
        requirements: requirements.map((check) => ({ binary: check.binary, package: check.debianPackage, why: check.why, path: check.path ?? null })),
        kvm,
        database: process.env.DATABASE_URL ? 'postgres (DATABASE_URL)' : 'embedded PGlite (no fsync; set DATABASE_URL for production)',
        fix: plan.kind === 'nothing' ? null : `apt-get install -y ${plan.packages.join(' ')}`,
      };
      if (flags.json) printJson(report);
      else {
        const mark = (ok: boolean) => (ok ? 'ok     ' : 'MISSING');
        const tested = report.node.tested ? '' : `; not a tested version: Nexus is tested on Node.js ${TESTED_NODE_MAJORS.join(' and ')}`;
        const out: string[] = [`${mark(report.node.ok)} node ${report.node.version} (need >= ${MIN_NODE_MAJOR}${tested})`];
        for (const check of requirements)
          out.push(`${mark(Boolean(check.path))} ${check.binary} ${check.path ?? `(package ${check.debianPackage})`}: ${check.why}`);
        out.push(
          `${kvm.usable ? 'ok     ' : 'note   '} KVM ${kvm.usable ? 'runs guests' : `unusable: ${kvm.reason}; guests run under TCG emulation (slower)`}`,
        );
        out.push(`note    database: ${report.database}`);
        if (report.fix) out.push('', `To fix, as root: ${report.fix}`);
        process.stdout.write(`${out.join('\n')}\n`);
      }
      if (!report.ok) process.exitCode = 1;
    });
}
