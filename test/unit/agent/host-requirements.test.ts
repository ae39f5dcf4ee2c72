import assert from 'node:assert/strict';
import { chmodSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, describe, it } from 'node:test';
import { checkHostRequirements } from '../../../src/agent/host/host-requirements.js';
import { tempDir } from '../../support/temp-dir.js';

describe('host requirements', () => {
  const dir = tempDir('nexus-requirements-');
  after(() => dir.remove());
  const program = (name: string) => {
    writeFileSync(join(dir.path, name), '#!/bin/sh\n');
    chmodSync(join(dir.path, name), 0o755);
  };

  it('take a program that serves as well for a missing one: iptables where nft is not installed', async () => {
    const rules = async () => (await checkHostRequirements({ PATH: dir.path })).find((check) => check.binary === 'nft');
    assert.equal((await rules())?.path, undefined, 'neither: missing, and nftables is what gets installed');
    assert.equal((await rules())?.debianPackage, 'nftables');
    program('iptables-restore');
    assert.equal((await rules())?.path, join(dir.path, 'iptables-restore'), 'iptables serves');
    program('nft');
    assert.equal((await rules())?.path, join(dir.path, 'nft'), 'nft first when both are there');
  });
});
