/**
 * Which host files a VM may be given: kernels, initrds and drives must lie under the image store
 * or the VM's own folder. Paths are judged *after* canonicalization (symlinks resolved), which the
 * caller does; this rule only compares strings.
 */
export function isUnderAllowedRoot(canonicalPath: string, allowedRoots: readonly string[]): boolean {
  return allowedRoots.some((root) => {
    const base = root.replace(/\/+$/, '');
    return canonicalPath.startsWith(`${base}/`);
  });
}
