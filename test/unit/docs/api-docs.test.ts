import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { describe, it } from 'node:test';
import { generateApiDocs } from '../../../scripts/api-docs.js';

describe('API references under docs/', () => {
  it('match the OpenAPI documents the manager and the agent serve (run `npm run docs:api` after changing a route)', async () => {
    for (const [file, text] of Object.entries(await generateApiDocs())) {
      const committed = readFileSync(new URL(`../../../docs/${file}`, import.meta.url), 'utf8');
      // The first line that differs, not the whole texts: a diff of two long documents takes the test reporter minutes.
      if (committed === text) continue;
      const [was, is] = [committed.split('\n'), text.split('\n')];
      const differs = was.findIndex((each, index) => each !== is[index]);
      const at = differs >= 0 ? differs : was.length;
      assert.fail(`docs/${file} is stale from line ${at + 1}: it says ${JSON.stringify(was[at])}, the API ${JSON.stringify(is[at])}`);
    }
  });
});
