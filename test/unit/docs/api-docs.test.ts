import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { describe, it } from 'node:test';
import { generateApiDocs } from '../../../scripts/api-docs.js';

describe('API references under docs/', () => {
  it('match the OpenAPI documents the manager and the agent serve (run `npm run docs:api` after changing a route)', async () => {
    for (const [file, text] of Object.entries(await generateApiDocs())) {
      const committed = readFileSync(new URL(`../../../docs/${file}`, import.meta.url), 'utf8');
      assert.equal(committed, text, `docs/${file} is stale`);
    }
  });
});
