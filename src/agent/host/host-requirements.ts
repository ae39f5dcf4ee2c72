import { spawn } from 'node:child_process';
import { constants } from 'node:fs';
import { access } from 'node:fs/promises';
import { delimiter, join } from 'node:path';

/** A program Nexus runs on a host, and the Debian package that provides it. */
export interface HostRequirement {
  binary: string;
  /** Programs that serve as well when `binary` is missing (then installing its package is not needed). */
  alternatives?: readonly string[];
  debianPackage: string;
  why: string;
}

/** What the agent needs on its host. Later features add theirs here, and `doctor` and `dev` follow. */
export const HOST_REQUIREMENTS: readonly HostRequirement[] = [
  { binary: 'qemu-system-x86_64', debianPackage: 'qemu-system-x86', why: 'runs guests (QEMU microvm driver) and probes KVM' },
  { binary: 'ip', debianPackage: 'iproute2', why: "makes each VM's network namespace, veth and TAP, and the flat guest bridge" },
  { binary: 'nsenter', debianPackage: 'util-linux', why: "starts each VM's VMM and DHCP server in the VM's network namespace" },
  {
    binary: 'nft',
    alternatives: ['iptables-restore'],
    debianPackage: 'nftables',
    why: 'masquerades guest traffic (NAT), keeps networks apart and publishes ports (iptables where nft is missing)',
  },
  { binary: 'dnsmasq', debianPackage: 'dnsmasq-base', why: 'answers DHCP on each network with the addresses the manager gave' },
  { binary: 'mkfs.ext4', debianPackage: 'e2fsprogs', why: 'builds guest root filesystems' },
  { binary: 'xz', debianPackage: 'xz-utils', why: "unpacks the guest kernel from Debian's package" },
];

export interface RequirementCheck extends HostRequirement {
  /** Where the binary was found, or undefined when missing. */
  path: string | undefined;
}

export async function checkHostRequirements(env: NodeJS.ProcessEnv = process.env): Promise<RequirementCheck[]> {
  return Promise.all(
    HOST_REQUIREMENTS.map(async (requirement) => {
      for (const binary of [requirement.binary, ...(requirement.alternatives ?? [])]) {
        const path = await which(binary, env);
        if (path) return { ...requirement, path };
      }
      return { ...requirement, path: undefined };
    }),
  );
}

/** The full path of an executable on PATH, like `command -v`. */
export async function which(binary: string, env: NodeJS.ProcessEnv = process.env): Promise<string | undefined> {
  const dirs = (env.PATH ?? '/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin').split(delimiter);
  for (const dir of dirs) {
    const candidate = join(dir, binary);
    try {
      await access(candidate, constants.X_OK);
      return candidate;
    } catch {
      // not here; try the next dir
    }
  }
  return undefined;
}

export type InstallPlan = { kind: 'nothing' } | { kind: 'apt'; packages: string[] } | { kind: 'manual'; packages: string[]; why: string };

/** How the missing packages can be had here: apt-get as root on Debian, or by hand otherwise. */
export async function planInstall(missing: RequirementCheck[]): Promise<InstallPlan> {
  const packages = [...new Set(missing.map((requirement) => requirement.debianPackage))];
  if (packages.length === 0) return { kind: 'nothing' };
  if (process.getuid?.() !== 0) return { kind: 'manual', packages, why: 'not running as root' };
  if (!(await which('apt-get'))) return { kind: 'manual', packages, why: 'apt-get not found (not Debian?)' };
  return { kind: 'apt', packages };
}

/** Runs apt-get with its progress on our terminal. Rejects with apt's exit code on failure. */
export async function aptInstall(packages: string[]): Promise<void> {
  const env = { ...process.env, DEBIAN_FRONTEND: 'noninteractive' };
  await runVisible('apt-get', ['update'], env);
  await runVisible('apt-get', ['install', '-y', '--no-install-recommends', ...packages], env);
}

function runVisible(command: string, args: string[], env: NodeJS.ProcessEnv): Promise<void> {
  return new Promise((resolve, reject) => {
    const child = spawn(command, args, { stdio: ['ignore', 'inherit', 'inherit'], env });
    child.on('error', reject);
    child.on('exit', (code, signal) => {
      if (code === 0) resolve();
      else reject(new Error(`${command} ${args.join(' ')} failed (${signal ?? `exit ${code}`})`));
    });
  });
}
