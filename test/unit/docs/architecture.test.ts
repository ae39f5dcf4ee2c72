import assert from 'node:assert/strict';
import { existsSync, readFileSync, readdirSync } from 'node:fs';
import { join } from 'node:path';
import { describe, it } from 'node:test';

// docs/architecture.md is the map a newcomer reads first: it must name every folder under src/
// and may name no src/ path that is not there. Run from the checkout's root, as every test is.

const DOC = 'docs/architecture.md';

/** Every folder under `root`, as `src/a/b` (root itself not included), sorted. */
function foldersUnder(root: string): string[] {
  const found: string[] = [];
  const walk = (dir: string): void => {
    for (const entry of readdirSync(dir, { withFileTypes: true })) {
      if (!entry.isDirectory()) continue;
      const path = `${dir}/${entry.name}`;
      found.push(path);
      walk(path);
    }
  };
  walk(root);
  return found.sort();
}

/** The `src/…` paths the text writes in backticks, without a trailing slash. */
function srcPathsIn(text: string): string[] {
  return [...text.matchAll(/`(src\/[^`\s]*)`/g)].map((match) => (match[1] ?? '').replace(/\/+$/, ''));
}

describe(DOC, () => {
  const text = readFileSync(DOC, 'utf8');
  const named = srcPathsIn(text);

  it('names src/ paths in backticks (the checks below would pass on a page that names none)', () => {
    assert.ok(named.length > 0, `${DOC} names no src/ path in backticks`);
  });

  it('names every folder under src/', () => {
    const missing = foldersUnder('src').filter((folder) => !named.includes(folder));
    assert.deepEqual(missing, [], `${DOC} does not name these folders (write each as \`src/…/\`)`);
  });

  it('names no src/ path that does not exist', () => {
    const absent = [...new Set(named)].filter((path) => !existsSync(join(process.cwd(), path)));
    assert.deepEqual(absent, [], `${DOC} names paths that are not in the tree`);
  });
});
