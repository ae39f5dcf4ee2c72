// test-lane: parallel (its own managers, hollow hosts, databases, temp dirs and ports: no host network, guest, cgroup or host-wide scan)
import assert from 'node:assert/strict';
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import { crashManagerRepeatedly } from '../support/crash-loop.js';
import { tempDir } from '../support/temp-dir.js';

/**
 * Kills with -9 a real manager on the embedded database while it starts and while writes flow,
 * and reopens it each time. Four kills keep the test short; `bench/embedded-crash.bench.ts` runs
 * the same loop twenty times (NEXUS_CRASH_KILLS here runs more).
 */
const KILLS = Number(process.env.NEXUS_CRASH_KILLS ?? 4);

describe('the manager killed with -9 on the embedded database', () => {
  it(`reopens ${KILLS} times, taking over the dead process's lock, with every acknowledged write still there`, async () => {
    const dir = tempDir('nexus-crash-');
    try {
      const dataDir = join(dir.path, 'data');
      const report = await crashManagerRepeatedly({ dataDir, kills: KILLS });
      const writing = report.rounds.filter((round) => round.killedWhile === 'writing');
      assert.ok(
        writing.length >= 2 && writing.every((round) => round.acknowledged > 0),
        `writes were acknowledged before each kill: ${JSON.stringify(report.rounds)}`,
      );
      assert.ok(
        report.rounds.some((round) => round.killedWhile === 'starting'),
        'one kill lands while the manager starts',
      );
      // A life killed while serving held the lock: the next one found it left behind, and still opened.
      const afterServing = report.rounds.filter((round, i) => i > 0 && report.rounds[i - 1]?.killedWhile === 'writing');
      assert.ok(
        afterServing.every((round) => round.staleLock),
        `a dead manager's lock was left behind: ${JSON.stringify(report.rounds)}`,
      );
      assert.deepEqual(
        report.rounds.flatMap((round) => round.lost),
        [],
        'no acknowledged write was missing after a kill',
      );
      assert.deepEqual(report.lostAtEnd, [], 'no acknowledged write was missing after the last kill');
      assert.ok(report.acknowledged > 0, 'writes were acknowledged');
      // The last life stopped cleanly and gave its lock back.
      assert.equal(existsSync(join(dataDir, 'nexus.lock')), false, 'the lock is released on a clean stop');
    } finally {
      dir.remove();
    }
  });
});
