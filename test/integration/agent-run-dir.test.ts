// test-lane: parallel (its own managers, hollow hosts, databases, temp dirs and ports: no host network, guest, cgroup or host-wide scan)
import assert from 'node:assert/strict';
import { mkdirSync, writeFileSync } from 'node:fs';
import { type AddressInfo, createServer } from 'node:net';
import { join } from 'node:path';
import { after, describe, it } from 'node:test';
import { type AgentOptions, resolveAgentConfig } from '../../src/agent/config.js';
import { startAgent } from '../../src/agent/main.js';
import { NexusError } from '../../src/kit/nexus-error.js';
import { hollowHost } from '../doubles/hollow-host.js';
import { captureLogger } from '../support/capture-logger.js';
import { testVmId } from '../support/net-names.js';
import { tempDir } from '../support/temp-dir.js';
import { send } from '../support/test-manager.js';

/**
 * The agent owns its run dir for its whole life, ends its VMs on exit (with stopVmsOnExit, as
 * `nexus dev` runs it) only once it has really started, and says so when that stop fails. Over a
 * hollow host: the VMs are in memory, the lock and the agent's life are real.
 */
describe('the agent and its run dir', () => {
  const dir = tempDir('nexus-agent-run-dir-');
  const runDir = join(dir.path, 'run');
  const images = join(runDir, 'images', 'hollow');
  mkdirSync(images, { recursive: true });
  writeFileSync(join(images, 'vmlinux'), 'hollow kernel');
  writeFileSync(join(images, 'rootfs.ext4'), Buffer.alloc(4096));
  const configOf = (options: AgentOptions = {}) => resolveAgentConfig({ bind: '127.0.0.1:0', runDir, ...options }, {});
  after(() => dir.remove());

  it('takes the run dir for its life: a second agent on it refuses to start, naming the first', async () => {
    const first = await startAgent(configOf(), captureLogger('first').log, hollowHost());
    try {
      await assert.rejects(startAgent(configOf(), captureLogger('second').log, hollowHost()), (error: unknown) => {
        assert.ok(error instanceof NexusError, `a NexusError: ${String(error)}`);
        assert.equal(error.code, 'conflict');
        assert.equal(error.message, `${runDir} is locked by process ${process.pid} (nexus agent, API on 127.0.0.1:0)`);
        assert.match(
          error.suggestion ?? '',
          /Another agent \(process \d+\) runs on this run dir: stop it first, or give this one a run dir of its own \(--run-dir, FC_RUN_DIR\)/,
        );
        return true;
      });
    } finally {
      await first.close();
    }
    const next = await startAgent(configOf(), captureLogger('next').log, hollowHost());
    await next.close();
  });

  it('with stopVmsOnExit, an agent that fails to start (its port taken) ends no VM; one that started ends them on close', async () => {
    const host = hollowHost();
    const id = testVmId();
    const keeper = await startAgent(configOf(), captureLogger('keeper').log, host);
    try {
      const headers = { authorization: `Bearer ${keeper.identity.credential}` };
      const spec = {
        vcpu: 1,
        mem_mib: 128,
        kernel: { path: join(images, 'vmlinux'), cmdline: 'console=ttyS0' },
        drives: [{ id: 'rootfs', path: join(images, 'rootfs.ext4'), is_root: true }],
        nics: [{}],
      };
      const ensured = await send(`${keeper.url}/agent/v1/vms/${id}`, { method: 'PUT', body: spec, headers });
      assert.equal(ensured.status, 200, JSON.stringify(ensured.body));
      assert.equal((await send(`${keeper.url}/agent/v1/vms/${id}/actions`, { body: { action: 'start' }, headers })).status, 200);
    } finally {
      await keeper.close(); // without stopVmsOnExit: the VM keeps running
    }
    assert.equal(host.supervisor.processes.size, 1, 'the VM runs');

    const taken = createServer().listen(0, '127.0.0.1');
    await new Promise((resolve) => taken.once('listening', resolve));
    try {
      const port = (taken.address() as AddressInfo).port;
      await assert.rejects(startAgent(configOf({ bind: `127.0.0.1:${port}`, stopVmsOnExit: true }), captureLogger('refused').log, host), /EADDRINUSE|in use/);
    } finally {
      taken.close();
    }
    assert.equal(host.supervisor.processes.size, 1, 'the VM still runs: the failed agent stopped nothing');
    assert.deepEqual([...host.network.taps].length, 1, 'its TAP stays');

    // The failed start let go of the run dir; an agent that starts ends the VMs when it closes.
    const ending = await startAgent(configOf({ stopVmsOnExit: true }), captureLogger('ending').log, host);
    await ending.close();
    assert.equal(host.supervisor.processes.size, 0, 'the VM was stopped with the agent');
    assert.equal(host.network.taps.size, 0, 'and its TAP removed');
  });

  it('fails its close when stopping every VM fails, so the process exits non-zero', async () => {
    const host = hollowHost();
    host.network.tearDown = async () => {
      throw new Error('the bridge is busy');
    };
    const agent = await startAgent(configOf({ stopVmsOnExit: true }), captureLogger('failing').log, host);
    await assert.rejects(agent.close(), (error: unknown) => {
      assert.ok(error instanceof NexusError, `a NexusError: ${String(error)}`);
      assert.match(error.message, /^the agent did not stop cleanly: could not stop the VMs and remove their network$/);
      assert.equal((error.cause as Error | undefined)?.message, 'the bridge is busy', 'the cause is kept');
      return true;
    });
  });
});
