import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { describe, it } from 'node:test';
import { generateApiMarkdown } from '../../../scripts/api-docs.js';

describe('docs/api.md', () => {
  it('matches the OpenAPI document the manager serves (run `npm run docs:api` after changing a route)', async () => {
    const committed = readFileSync(new URL('../../../docs/api.md', import.meta.url), 'utf8');
    assert.equal(committed, await generateApiMarkdown());
  });
});
