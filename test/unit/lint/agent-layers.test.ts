import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { ESLint } from 'eslint';

/**
 * The agent's layering, as lint keeps it: its core (app/, plans/, steps/, domain/) does no I/O
 * and reaches the host only through ports/. Each case lints a line as if it were in that file.
 */
const eslint = new ESLint({ cwd: process.cwd() });

async function problemsOf(filePath: string, code: string): Promise<string[]> {
  const [result] = await eslint.lintText(`${code}\nexport const used = [x];\n`, { filePath });
  return (result?.messages ?? []).filter((message) => message.ruleId?.endsWith('no-restricted-imports')).map((message) => message.message);
}

describe("lint keeps the agent's core free of I/O", () => {
  const core = ['src/agent/app/new-use-case.ts', 'src/agent/plans/new-plan.ts', 'src/agent/steps/new-steps.ts', 'src/agent/domain/new-rule.ts'];
  const forbidden: Array<[string, string]> = [
    ['node:fs', "import { readFile as x } from 'node:fs/promises';"],
    ['fs', "import { readFileSync as x } from 'fs';"],
    ['child processes', "import { spawn as x } from 'node:child_process';"],
    ['the network', "import { request as x } from 'undici';"],
    ['host/', "import { FsVmStore as x } from '../host/fs-vm-store.js';"],
    ['drivers/', "import { QemuDriver as x } from '../drivers/qemu/qemu-driver.js';"],
    ['a kit module that does I/O', "import { copySparse as x } from '../../kit/sparse-copy.js';"],
  ];
  for (const file of core) {
    for (const [what, code] of forbidden) {
      it(`${file} may not import ${what}`, async () => {
        assert.notDeepEqual(await problemsOf(file, code), [], `lint let ${file} import ${what}`);
      });
    }
  }

  it('ports and pure kit modules are allowed, and types from anywhere', async () => {
    for (const code of [
      "import { runPlan as x } from '../plans/plan.js';",
      "import { KeyedMutex as x } from '../../kit/keyed-mutex.js';",
      "import type { FsVmStore as x } from '../host/fs-vm-store.js';",
      "import type { ProcessIdentity as x } from '../../kit/process-identity.js';",
    ]) {
      assert.deepEqual(await problemsOf('src/agent/app/new-use-case.ts', code), [], `lint refused ${code} in app/`);
    }
  });

  it('host/ and drivers/ may do I/O', async () => {
    assert.deepEqual(await problemsOf('src/agent/host/new-adapter.ts', "import { readFile as x } from 'node:fs/promises';"), [], 'host/ does the I/O');
    assert.deepEqual(await problemsOf('src/agent/drivers/qemu/new.ts', "import { readFile as x } from 'node:fs/promises';"), [], 'drivers/ do the I/O');
  });
});
