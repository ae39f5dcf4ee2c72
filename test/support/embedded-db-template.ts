import { PGlite } from '@electric-sql/pglite';
import { cp, mkdir, mkdtemp, rename, rm } from 'node:fs/promises';
import { existsSync } from 'node:fs';
import { join } from 'node:path';

/**
 * Gives `<dataDir>/pglite` a freshly initialised embedded database (PGlite's initdb, nothing
 * migrated), copied from a template made once per test run: initdb costs about 7 s of CPU, the copy
 * a fraction of one. The manager still runs every migration on it, so what it opens is what a first
 * start makes, only sooner. The test runner (scripts/run-tests.mjs) names the template's place in
 * NEXUS_TEST_PGLITE_TEMPLATE and removes it when the run ends; a test file run on its own, without
 * it, lets the manager make its database itself.
 */
export async function seedEmbeddedDatabase(dataDir: string): Promise<void> {
  const place = process.env.NEXUS_TEST_PGLITE_TEMPLATE;
  const target = join(dataDir, 'pglite');
  if (!place || existsSync(target)) return;
  await mkdir(dataDir, { recursive: true, mode: 0o700 });
  await cp(await template(place), target, { recursive: true });
}

let made: Promise<string> | undefined;

function template(path: string): Promise<string> {
  made ??= (async () => {
    if (!existsSync(join(path, 'PG_VERSION'))) await buildTemplate(path);
    return path;
  })();
  return made;
}

/**
 * Builds the template beside its final place and renames it there, so a test file running at the
 * same time never copies a half-made one; the loser of such a race throws its copy away.
 */
async function buildTemplate(path: string): Promise<void> {
  const building = await mkdtemp(`${path}.building-`);
  try {
    const db = await PGlite.create({ dataDir: join(building, 'db') });
    await db.close();
    await rename(join(building, 'db'), path).catch((error: unknown) => {
      if (!existsSync(join(path, 'PG_VERSION'))) throw error;
    });
  } finally {
    await rm(building, { recursive: true, force: true });
  }
}
