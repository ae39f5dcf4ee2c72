// The leak check of scripts/run-tests.mjs for a run of `node --test` started by hand:
//
//   node --import tsx --require ./test/support/leak-hook.cjs --test test/integration/tls.test.ts
//
// A --require preload runs in the process that runs the test files (an --import one does not) and
// again in each file's own process, where it does nothing (NODE_TEST_CONTEXT says which is which).
// It marks the run, takes the host's snapshot, and when that process exits compares: anything
// left behind is reported and turns the exit code to 1.
'use strict';
const { CLEAN_RUN, RUN_MARK, leakReport, leaksSince, newRunMark, snapshot } = require('./leak-check.cjs');

if (process.env.NODE_TEST_CONTEXT === undefined && process.env[RUN_MARK] === undefined) {
  const mark = newRunMark();
  process.env[RUN_MARK] = mark;
  const before = snapshot(mark);
  process.on('exit', (code) => {
    const left = leaksSince(before, mark);
    if (left.length > 0) {
      process.stderr.write(leakReport(left));
      if (code === 0) process.exit(1);
    } else {
      process.stdout.write(CLEAN_RUN);
    }
  });
}
