import { runHostTool } from '../kit/host-tool.js';

/** Applet links we never install: the images bring their own init. */
const RESERVED_APPLET_PATHS = new Set(['sbin/init', 'linuxrc', 'init']);

/**
 * Where each applet of a busybox binary belongs ("bin/sh", "usr/bin/awk"), from its own
 * `--list-full`; each becomes a symlink to /bin/busybox. The binary is static, so running it on
 * the build host is safe.
 */
export async function busyboxAppletPaths(busyboxPath: string): Promise<string[]> {
  const { stdout } = await runHostTool(busyboxPath, ['--list-full'], { doing: 'listing the busybox applets' });
  return parseAppletList(stdout);
}

/** The applet paths from `busybox --list-full` output, minus the ones the images reserve. */
export function parseAppletList(listFull: string): string[] {
  const paths = listFull
    .split('\n')
    .map((line) => line.trim().replace(/^\/+/, ''))
    .filter((path) => path && !path.includes('..') && path !== 'bin/busybox' && !RESERVED_APPLET_PATHS.has(path));
  return [...new Set(paths)].sort();
}

/**
 * The directories an archive needs for the given relative file paths and directories, each
 * after its parent ("usr" before "usr/bin").
 */
export function directoriesFor(filePaths: readonly string[], dirPaths: readonly string[] = []): string[] {
  const dirs = new Set<string>();
  const addWithParents = (parts: string[]) => {
    for (let i = 1; i <= parts.length; i++) dirs.add(parts.slice(0, i).join('/'));
  };
  for (const path of filePaths) addWithParents(path.split('/').slice(0, -1));
  for (const path of dirPaths) addWithParents(path.split('/'));
  return [...dirs].sort((a, b) => a.split('/').length - b.split('/').length || a.localeCompare(b));
}
