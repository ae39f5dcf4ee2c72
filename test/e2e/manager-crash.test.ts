import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { mkdirSync, symlinkSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { promisify } from 'node:util';
import { type AgentHarness, startAgentProcess } from '../support/agent-harness.js';
import { testGuestImage } from '../support/guest-image.js';
import { type NexusProcess, eventually, runNexus, spawnNexus } from '../support/nexus-process.js';
import { seedEmbeddedDatabase } from '../support/embedded-db-template.js';
import { testBridgeCidr, testBridgeName } from '../support/net-names.js';
import { freePort } from '../support/ports.js';
import { tempDir } from '../support/temp-dir.js';
import { adminTokenIn, send, useApiToken } from '../support/test-manager.js';

const run = promisify(execFile);

/** The manager killed with -9 in the middle of a create: on restart nothing is lost or doubled. */
describe('manager crash mid-create', () => {
  const dir = tempDir('nexus-manager-crash-');
  const runDir = join(dir.path, 'run');
  const dataDir = join(dir.path, 'data');
  const bridge = testBridgeName();
  const env = { NEXUS_RESYNC_MS: '1000', NEXUS_LOG_LEVEL: 'warn' };
  let port: number;
  let manager: NexusProcess | undefined;
  let agent: AgentHarness | undefined;
  let images: string;

  const startManager = async () => {
    await seedEmbeddedDatabase(dataDir);
    manager = spawnNexus(['manager', '--dev', '--listen', `127.0.0.1:${port}`, '--data-dir', dataDir], env);
    await eventually('the manager answers', async () => (await fetch(`http://127.0.0.1:${port}/healthz`).catch(() => undefined))?.ok === true, 60_000);
    useApiToken(`http://127.0.0.1:${port}`, adminTokenIn(dataDir));
  };

  before(async () => {
    const image = await testGuestImage();
    mkdirSync(runDir, { recursive: true });
    symlinkSync(join(image.dir, '..'), join(runDir, 'images'));
    images = join(runDir, 'images', image.manifest.name);
    port = await freePort();
    await startManager();
    const token = JSON.parse((await runNexus(['hosts', 'join-token', '--json', '--api', `http://127.0.0.1:${port}`, '--data-dir', dataDir])).output).token;
    agent = await startAgentProcess(
      runDir,
      { NEXUS_BRIDGE: bridge, NEXUS_BRIDGE_CIDR: testBridgeCidr(), NEXUS_NAT: 'off', NEXUS_JOIN_TOKEN: token },
      `http://127.0.0.1:${port}`,
    );
  });

  after(async () => {
    const api = `http://127.0.0.1:${port}`;
    for (const vm of (await send(`${api}/v1/vms`).catch(() => ({ body: { items: [] } }))).body?.items ?? [])
      await send(`${api}/v1/vms/${vm.id}?wait=30`, { method: 'DELETE' });
    await agent?.process.stop();
    await manager?.stop();
    await run('ip', ['link', 'del', 'dev', bridge]).catch(() => undefined);
    dir.remove();
  });

  it('converges to one running VM after kill -9 and restart', async () => {
    const api = `http://127.0.0.1:${port}`;
    const created = await send(`${api}/v1/vms`, {
      body: {
        name: 'crash-1',
        vcpu: 1,
        mem_mib: 128,
        kernel_path: join(images, 'vmlinux'),
        initrd_path: join(images, 'initrd.img'),
        rootfs_path: join(images, 'rootfs.ext4'),
      },
    });
    assert.equal(created.status, 201);
    manager?.child.kill('SIGKILL');
    await manager?.exited;
    await startManager();
    await eventually('running after the restart', async () => (await send(`${api}/v1/vms/${created.body.id}`)).body.state === 'running', 60_000);
    const onHost = (await agent?.call('GET', '/agent/v1/inventory'))?.body.vms ?? [];
    assert.deepEqual(
      onHost.map((vm: { id: string }) => vm.id),
      [created.body.id],
      'exactly one VM on the host',
    );
  });
});
