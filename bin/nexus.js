#!/usr/bin/env node
// The one `nexus` binary: everything lives in the compiled CLI (`npm run build`, run by `npm ci`).
import { main } from '../dist/cli/main.js';

main(process.argv).catch((error) => {
  process.stderr.write(`nexus: ${error instanceof Error ? error.message : String(error)}\n`);
  process.exit(1);
});
