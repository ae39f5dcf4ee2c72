import type { ChildProcess } from 'node:child_process';
import { once } from 'node:events';

/**
 * Stops a child we started, by its pid: SIGTERM, then SIGKILL after `graceMs`. Resolves once it
 * has exited (and so cannot be left behind).
 */
export async function stopChild(child: ChildProcess, graceMs: number): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return;
  const exited = once(child, 'exit');
  child.kill('SIGTERM');
  const timer = setTimeout(() => child.kill('SIGKILL'), graceMs);
  try {
    await exited;
  } finally {
    clearTimeout(timer);
  }
}
