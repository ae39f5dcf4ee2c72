/**
 * The manager on the embedded database killed with -9 BENCH_CRASH_KILLS times (default 20) while
 * it starts and while four writers create VMs, reopened each time: how long each reopen took,
 * how many writes each life acknowledged, and how many acknowledged writes the next life did not
 * find (the integration test runs the same loop six times and requires none). Prints; asserts nothing.
 */
import { join } from 'node:path';
import { crashManagerRepeatedly } from '../test/support/crash-loop.js';
import { tempDir } from '../test/support/temp-dir.js';

const KILLS = Number(process.env.BENCH_CRASH_KILLS ?? 20);

const dir = tempDir('nexus-bench-crash-');
try {
  console.log(`\nThe manager on the embedded database, killed with -9 ${KILLS} times under write load`);
  const started = performance.now();
  const report = await crashManagerRepeatedly({
    dataDir: join(dir.path, 'data'),
    kills: KILLS,
    onRound: (round) => {
      const opened = round.openedInMs === undefined ? '' : `, had reopened in ${(round.openedInMs / 1000).toFixed(1)} s`;
      const moment =
        round.killedWhile === 'writing' ? `${round.killAfterMs} ms after its first acknowledged write` : `${round.killAfterMs} ms after it was spawned`;
      console.log(
        `  kill ${String(round.round + 1).padStart(2)}: ${moment}${opened}; ${round.acknowledged} writes acknowledged; ${round.lost.length} earlier acknowledged writes missing; dead lock left: ${round.staleLock ? 'yes' : 'no'}`,
      );
    },
  });
  const missing = report.rounds.reduce((sum, round) => sum + round.lost.length, 0) + report.lostAtEnd.length;
  console.log(`  ${report.acknowledged} writes acknowledged in all; ${missing} missing after a kill; ${((performance.now() - started) / 1000).toFixed(0)} s`);
} finally {
  dir.remove();
}
