import assert from 'node:assert/strict';
import { appendFileSync, mkdirSync, rmSync, truncateSync, writeFileSync } from 'node:fs';
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
    assert.deepEqual((await tailLines(path, 10)).lines.map((line) => line.text), ['one', 'two[0m', 'three', 'four']);
    assert.deepEqual(await tailLines(join(dir.path, 'none.log'), 5), { lines: [], size: 0 });
  });

  it('tail reads back from the end only as far as it needs, across chunk borders', async () => {
    const path = join(dir.path, 'big.log');
    const all = Array.from({ length: 20_000 }, (_, i) => `line ${i} ${'x'.repeat(i % 50)}`);
    writeFileSync(path, `${all.join('\n')}\n`);
    assert.deepEqual((await tailLines(path, 3000)).lines.map((line) => line.text), all.slice(-3000));
    assert.ok((await tailLines(path, 5, 100)).lines.length < 5, 'a byte budget bounds the read');
  });

  it('follow: complete lines only, a cut-back file starts again, and the end when the folder goes', async () => {
    const folder = join(dir.path, 'vm');
    mkdirSync(folder);
    const path = join(folder, 'console.log');
    const abort = new AbortController();
    const events: FollowEvent[] = [];
    const following = (async () => {
      for await (const event of followFile(path, 0, { signal: abort.signal, endsWithout: folder, pollMs: 10 })) events.push(event);
    })();
    const settle = () => new Promise((resolve) => setTimeout(resolve, 80));
    await settle();
    assert.deepEqual(events, [], 'a file not yet written is waited for');
    writeFileSync(path, 'boot\npart');
    await settle();
    appendFileSync(path, 'ial\n');
    await settle();
    truncateSync(path, 0);
    appendFileSync(path, 'again\n');
    await settle();
    rmSync(folder, { recursive: true });
    await following;
    assert.deepEqual(events, [
      { kind: 'lines', lines: [{ end: 5, text: 'boot' }] },
      { kind: 'lines', lines: [{ end: 13, text: 'partial' }] },
      { kind: 'rotated' },
      { kind: 'lines', lines: [{ end: 6, text: 'again' }] },
      { kind: 'gone' },
    ]);
    abort.abort();
  });
});
