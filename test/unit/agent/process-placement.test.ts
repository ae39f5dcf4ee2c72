import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { scopedCommand } from '../../../src/agent/host/supervisor/process-placement.js';

describe('process placement', () => {
  it('wraps the VMM in a transient systemd scope named fc-<id> where systemd is PID 1', () => {
    const command = scopedCommand({ kind: 'systemd-scope', systemdRun: '/usr/bin/systemd-run' }, 'abc', 'qemu-system-x86_64', ['-M', 'microvm']);
    assert.deepEqual(command, {
      binary: '/usr/bin/systemd-run',
      args: ['--scope', '--quiet', '--collect', '--unit=fc-abc', '--', 'qemu-system-x86_64', '-M', 'microvm'],
    });
  });
  it('runs the VMM directly otherwise', () => {
    assert.deepEqual(scopedCommand({ kind: 'cgroup', root: '/sys/fs/cgroup' }, 'abc', 'qemu', ['-x']), { binary: 'qemu', args: ['-x'] });
    assert.deepEqual(scopedCommand({ kind: 'none' }, 'abc', 'qemu', []), { binary: 'qemu', args: [] });
  });
});
