import assert from 'node:assert/strict';
import { appendFileSync, mkdirSync, renameSync, rmSync, truncateSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, describe, it } from 'node:test';
import { type FollowEvent, followFile, tailLines } from '../../../src/kit/log-file.js';
import { tempDir } from '../../support/temp-dir.js';

describe('log files', () => {
  const dir = tempDir('nexus-log-file-');
  after(() => dir.remove());

  it('tail: the last N lines with the offset after each, control bytes dropped; a missing file has none', async () => {
    const path = join(dir.path, 'tail.log');
    writeFileSync(path, 'one\r\ntwo\x1b[0m\nthree\nfour');
    const { lines, size } = await tailLines(path, 2);
    assert.deepEqual(lines, [
      { end: 'one\r\ntwo\x1b[0m\nthree\n'.length, text: 'three' },
      { end: size, text: 'four' },
    ]);
    assert.deepEqual(
      (await tailLines(path, 10)).lines.map((line) => line.text),
      ['one', 'two[0m', 'three', 'four'],
    );
    assert.deepEqual(await tailLines(join(dir.path, 'none.log'), 5), { lines: [], size: 0 });
  });

  it('tail reads back from the end only as far as it needs, across chunk borders', async () => {
    const path = join(dir.path, 'big.log');
    const all = Array.from({ length: 20_000 }, (_, i) => `line ${i} ${'x'.repeat(i % 50)}`);
    writeFileSync(path, `${all.join('\n')}\n`);
    assert.deepEqual(
      (await tailLines(path, 3000)).lines.map((line) => line.text),
      all.slice(-3000),
    );
    assert.ok((await tailLines(path, 5, 100)).lines.length < 5, 'a byte budget bounds the read');
  });

  it('follow: complete lines only, a cut-back file starts again, and the end when the folder goes', async () => {
    const folder = join(dir.path, 'vm');
    mkdirSync(folder);
    const path = join(folder, 'console.log');
    const follow = steppedFollow(path, 0, folder);
    try {
      assert.equal(await follow.next(), 'waits', 'a file not yet written is waited for');
      writeFileSync(path, 'boot\npart');
      assert.deepEqual(await follow.next(), { kind: 'lines', lines: [{ end: 5, text: 'boot' }] });
      assert.equal(await follow.next(), 'waits', 'half a line is held back until its newline');
      appendFileSync(path, 'ial\n');
      assert.deepEqual(await follow.next(), { kind: 'lines', lines: [{ end: 13, text: 'partial' }] });
      assert.equal(await follow.next(), 'waits');
      truncateSync(path, 0);
      appendFileSync(path, 'again\n');
      assert.deepEqual(await follow.next(), { kind: 'rotated' });
      assert.deepEqual(await follow.next(), { kind: 'lines', lines: [{ end: 6, text: 'again' }] });
      assert.equal(await follow.next(), 'waits');
      rmSync(folder, { recursive: true });
      assert.deepEqual(await follow.next(), { kind: 'gone' });
      assert.equal(await follow.next(), 'done', 'nothing follows the end');
    } finally {
      await follow.stop();
    }
  });

  it('follow: a file replaced by another (renamed away, a new one made) starts again at 0, even when the new one is already longer', async () => {
    const path = join(dir.path, 'replaced.log');
    writeFileSync(path, 'old\n');
    const follow = steppedFollow(path, 0);
    try {
      assert.deepEqual(await follow.next(), { kind: 'lines', lines: [{ end: 4, text: 'old' }] });
      assert.equal(await follow.next(), 'waits');
      renameSync(path, `${path}.1`);
      writeFileSync(path, 'new and longer\n');
      assert.deepEqual(await follow.next(), { kind: 'rotated' });
      assert.deepEqual(await follow.next(), { kind: 'lines', lines: [{ end: 15, text: 'new and longer' }] });
    } finally {
      await follow.stop();
    }
  });

  it('follow: an offset past the end (the file was cut while the reader was away) is a rotation, then the file from its start', async () => {
    const path = join(dir.path, 'cut-while-away.log');
    writeFileSync(path, 'first\nsecond\n');
    const follow = steppedFollow(path, 100);
    try {
      assert.deepEqual(await follow.next(), { kind: 'rotated' });
      assert.deepEqual(await follow.next(), {
        kind: 'lines',
        lines: [
          { end: 6, text: 'first' },
          { end: 13, text: 'second' },
        ],
      });
    } finally {
      await follow.stop();
    }
  });

  it('follow: from an offset, the lines after it and none before', async () => {
    const path = join(dir.path, 'resume.log');
    writeFileSync(path, 'one\ntwo\nthree\n');
    const follow = steppedFollow(path, 4);
    try {
      assert.deepEqual(await follow.next(), {
        kind: 'lines',
        lines: [
          { end: 8, text: 'two' },
          { end: 14, text: 'three' },
        ],
      });
      assert.equal(await follow.next(), 'waits');
    } finally {
      await follow.stop();
    }
  });
});

/**
 * A follower whose waits between polls are stepped by the test instead of a timer: `next()` lets
 * it poll once more (if it was waiting) and answers what it did first, give out an event or wait
 * again. So every poll happens at a point the test chose, whatever the machine's load.
 */
function steppedFollow(path: string, offset: number, endsWithout?: string) {
  const abort = new AbortController();
  let release: (() => void) | undefined;
  let parked: (() => void) | undefined;
  const wait = () =>
    new Promise<void>((resolve) => {
      release = resolve;
      parked?.();
    });
  const events = followFile(path, offset, { signal: abort.signal, ...(endsWithout ? { endsWithout } : {}), wait });
  let pending: Promise<IteratorResult<FollowEvent>> | undefined;
  return {
    async next(): Promise<FollowEvent | 'waits' | 'done'> {
      const waiting = release;
      release = undefined;
      const parks = new Promise<'waits'>((resolve) => {
        parked = () => resolve('waits');
      });
      waiting?.();
      pending ??= events.next();
      const outcome = await Promise.race([pending, parks]);
      parked = undefined;
      if (outcome === 'waits') return 'waits';
      pending = undefined;
      return outcome.done ? 'done' : outcome.value;
    },
    async stop(): Promise<void> {
      abort.abort();
      release?.();
      await (pending ?? events.return(undefined));
    },
  };
}
