import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import { ESLint } from 'eslint';

/**
 * The layering, as `npm run lint` keeps it: the agent's core (app/, plans/, steps/, domain/) does
 * no I/O and reaches the host only through ports/; kit/ imports nothing of Nexus; the CLI reaches
 * the processes through one launcher; no import cycles. Each case lints a line as if it were in that file.
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

describe('lint keeps the other boundaries', () => {
  it('kit/ imports nothing of Nexus', async () => {
    for (const code of [
      "import { ErrorBody as x } from '../contracts/errors.js';",
      "import { createHttpServer as x } from '../http/http-server.js';",
      "import { startManager as x } from '../manager/main.js';",
    ]) {
      assert.notDeepEqual(await problemsOf('src/kit/new-helper.ts', code), [], `lint let kit/ run ${code}`);
    }
  });

  it('CLI commands reach the manager and the agent only through cli/launcher.ts, which takes only their entry points', async () => {
    assert.notDeepEqual(
      await problemsOf('src/cli/commands/new.ts', "import { startManager as x } from '../../manager/main.js';"),
      [],
      'a command imported the manager',
    );
    assert.notDeepEqual(
      await problemsOf('src/cli/commands/new.ts', "import { FsVmStore as x } from '../../agent/host/fs-vm-store.js';"),
      [],
      'a command imported agent internals',
    );
    assert.deepEqual(await problemsOf('src/cli/commands/new.ts', "import { startManager as x } from '../launcher.js';"), [], 'the launcher is the way');
    assert.deepEqual(
      await problemsOf('src/cli/launcher.ts', "export { startManager as x } from '../manager/main.js';\nimport { startAgent as x } from '../agent/main.js';"),
      [],
      'entry points are fine',
    );
    assert.notDeepEqual(
      await problemsOf('src/cli/launcher.ts', "import { openDatabase as x } from '../manager/adapters/sql/database.js';"),
      [],
      'the launcher took a manager internal',
    );
  });
});

describe('the import cycle check (madge, in npm run lint)', () => {
  it('finds a cycle written the way this code imports (.js names for .ts files); npm run lint runs it on src/', async () => {
    const { default: madge } = await import('madge');
    const dir = mkdtempSync(join(tmpdir(), 'nexus-cycle-'));
    try {
      writeFileSync(join(dir, 'a.ts'), "import type { B } from './b.js';\nexport interface A { b?: B }\n");
      writeFileSync(join(dir, 'b.ts'), "import type { A } from './a.js';\nexport interface B { a?: A }\n");
      const found = await madge(dir, { fileExtensions: ['ts'], tsConfig: 'tsconfig.json' });
      assert.deepEqual(found.circular(), [['a.ts', 'b.ts']], 'a type-only cycle counts');
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
