import { randomBytes } from 'node:crypto';
import { mkdir, readdir, rename, rm, stat } from 'node:fs/promises';
import { basename, join } from 'node:path';
import { NexusError } from '../kit/nexus-error.js';
import { sha256OfFile } from './file-sha256.js';
import { runHostTool, spawnHostTool, waitForHostTool } from '../kit/host-tool.js';

/** One version of a Debian package as apt knows it: enough to download it and check the download. */
export interface DebianPackage {
  name: string;
  version: string;
  architecture: string;
  sizeBytes: number;
  /** The archive's SHA256 from apt's signed package lists. */
  sha256: string;
}

/** A package as `apt-cache show` describes it, with its dependencies as written. */
export interface DebianPackageRecord extends DebianPackage {
  depends: string | undefined;
}

const APT_UPDATE_HINT = 'As root: apt-get update (apt must know the package lists; the mirror is the only network needed).';

/** `name=version`, the form apt-get takes and the manifest records. */
export function packageSpec(pkg: Pick<DebianPackage, 'name' | 'version'>): string {
  return `${pkg.name}=${pkg.version}`;
}

/**
 * The kernel package a meta-package's `Depends:` field points at: `linux-image-amd64` depends on
 * exactly one `linux-image-<abi>-amd64 (= <version>)`.
 */
export function kernelDependency(depends: string | undefined): string | undefined {
  for (const clause of (depends ?? '').split(/[,|]/)) {
    const name = /^\s*(linux-image-[a-z0-9.+-]+)/.exec(clause)?.[1];
    if (name) return name;
  }
  return undefined;
}

/** The records of `apt-cache show` output, with the fields we need; records that lack one are skipped. */
export function parsePackageRecords(showOutput: string): DebianPackageRecord[] {
  return showOutput.split(/\n\s*\n/).flatMap((record) => {
    const field = (name: string) => new RegExp(`^${name}:[ \\t]*(.+)$`, 'm').exec(record)?.[1]?.trim();
    const [name, version, architecture, size, sha256] = ['Package', 'Version', 'Architecture', 'Size', 'SHA256'].map(field);
    if (!name || !version || !architecture || !size || !sha256 || !/^\d+$/.test(size) || !/^[0-9a-f]{64}$/.test(sha256)) return [];
    return [{ name, version, architecture, sizeBytes: Number(size), sha256, depends: field('Depends') }];
  });
}

/** The file name a package version is cached under: the epoch's ':' is escaped as apt does. */
export function cachedDebName(pkg: Pick<DebianPackage, 'name' | 'version' | 'architecture'>): string {
  return `${pkg.name}_${pkg.version.replaceAll(':', '%3a')}_${pkg.architecture}.deb`;
}

/**
 * Asks apt which version of each package it would install (the candidate), in one call (each
 * apt-cache run reads the package lists again), without network.
 */
export async function resolveDebianPackages(names: readonly string[]): Promise<DebianPackageRecord[]> {
  const doing = `looking up the Debian packages ${names.join(', ')}`;
  let output: string;
  try {
    ({ stdout: output } = await runHostTool('apt-cache', ['show', '--no-all-versions', ...names], { doing }));
  } catch (error) {
    throw withAptHint(error);
  }
  const records = parsePackageRecords(output);
  return names.map((name) => {
    const record = records.find((candidate) => candidate.name === name);
    if (!record) throw new NexusError('unavailable', `${doing}: apt-cache show printed no usable record for ${name}`, { suggestion: APT_UPDATE_HINT });
    return record;
  });
}

/**
 * The .deb of a package version, downloaded into `cacheDir` unless a copy with the size and
 * SHA256 from apt's lists is already there. Downloads land in a private partial dir and are
 * renamed into place, so the cache never holds a truncated file under a final name.
 */
export async function fetchDebianPackage(pkg: DebianPackage, cacheDir: string, onProgress: (line: string) => void): Promise<string> {
  await mkdir(cacheDir, { recursive: true });
  const path = join(cacheDir, cachedDebName(pkg));
  if (await matchesRecord(path, pkg)) {
    onProgress(`using cached ${packageSpec(pkg)}`);
    return path;
  }
  onProgress(`downloading ${packageSpec(pkg)} (${(pkg.sizeBytes / 2 ** 20).toFixed(1)} MiB)`);
  const partial = join(cacheDir, `.partial-${randomBytes(6).toString('hex')}`);
  await mkdir(partial);
  try {
    // apt drops to the _apt user to download, which cannot write into a root-owned dir; as root
    // we download as root instead of loosening the dir's permissions.
    await runHostTool('apt-get', ['download', '-q', '-o', 'APT::Sandbox::User=root', packageSpec(pkg)], {
      cwd: partial,
      doing: `downloading ${packageSpec(pkg)}`,
    }).catch((error: unknown) => {
      throw withAptHint(error);
    });
    const [downloaded] = (await readdir(partial)).filter((file) => file.endsWith('.deb'));
    if (!downloaded) throw new NexusError('unavailable', `downloading ${packageSpec(pkg)}: apt-get download wrote no .deb`, { terminal: false });
    if (!(await matchesRecord(join(partial, downloaded), pkg))) {
      throw new NexusError('unavailable', `downloading ${packageSpec(pkg)}: the file does not match apt's size and SHA256`, {
        terminal: false,
        suggestion: APT_UPDATE_HINT,
      });
    }
    await rename(join(partial, downloaded), path);
  } finally {
    await rm(partial, { recursive: true, force: true });
  }
  return path;
}

/**
 * Extracts members of a .deb into `destDir` without root: the data tarball is piped through tar,
 * which writes only what `patterns` select (shell wildcards matched against `./path` names; all
 * members when empty). tar fails when a pattern matches nothing, so a missing file is an error.
 */
export async function extractDebianPackage(debPath: string, destDir: string, patterns: readonly string[] = []): Promise<void> {
  await mkdir(destDir, { recursive: true });
  const doing = `extracting ${debPath}`;
  const tarball = spawnHostTool('dpkg-deb', ['--fsys-tarfile', debPath], { stdout: 'pipe' });
  const tarArgs = ['-x', '-C', destDir, '--no-same-owner', ...(patterns.length > 0 ? ['--wildcards', ...patterns] : [])];
  const tar = spawnHostTool('tar', tarArgs, { stdin: tarball, stdout: 'ignore' });
  const results = await Promise.allSettled([
    waitForHostTool(tarball, 'dpkg-deb', ['--fsys-tarfile', debPath], doing),
    waitForHostTool(tar, 'tar', tarArgs, doing),
  ]);
  // tar stops reading once it has what it needs, so dpkg-deb may die of SIGPIPE; tar's verdict counts.
  const [, tarResult] = results;
  if (tarResult.status === 'rejected') throw tarResult.reason;
}

/**
 * Removes every cached .deb except `keepPaths`, so a kernel update does not leave the previous
 * 70 MB package behind for ever. Partial downloads of a running fetch are left alone.
 */
export async function pruneDebianCache(cacheDir: string, keepPaths: readonly string[]): Promise<void> {
  const keep = new Set(keepPaths.map((path) => basename(path)));
  for (const file of await readdir(cacheDir)) {
    if (file.endsWith('.deb') && !keep.has(file)) await rm(join(cacheDir, file), { force: true });
  }
}

async function matchesRecord(path: string, pkg: DebianPackage): Promise<boolean> {
  try {
    if ((await stat(path)).size !== pkg.sizeBytes) return false;
  } catch {
    return false;
  }
  return (await sha256OfFile(path)) === pkg.sha256;
}

function withAptHint(error: unknown): unknown {
  if (!(error instanceof NexusError) || error.suggestion) return error;
  return new NexusError(error.code, error.message, { cause: error.cause ?? error, terminal: error.terminal, suggestion: APT_UPDATE_HINT });
}
