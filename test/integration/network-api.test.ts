// test-lane: parallel (its own managers, hollow hosts, databases, temp dirs and ports: no host network, guest, cgroup or host-wide scan)
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { vmNetnsNameOf } from '../../src/contracts/host-names.js';
import { assertErrorContract } from '../support/error-contract.js';
import { type HollowAgent, startHollowAgent } from '../support/hollow-agents.js';
import { eventually } from '../support/nexus-process.js';
import { tempDir } from '../support/temp-dir.js';
import { type TestManager, send, startTestManager } from '../support/test-manager.js';

/**
 * Networks through the API, on a manager with one hollow host: every refusal in the error
 * contract, addresses on the VM answer and at its agent, audit rows, and an address held until
 * the agent has removed its VM.
 */
describe('networks and addresses through the API', () => {
  const dir = tempDir('nexus-network-api-');
  let manager: TestManager;
  let hollow: HollowAgent;
  const url = (path: string) => `${manager.url}${path}`;
  const vmBody = (name: string, extra: Record<string, unknown> = {}) => ({
    name,
    vcpu: 1,
    mem_mib: 128,
    kernel_path: hollow.image.kernel,
    rootfs_path: hollow.image.rootfs,
    desired_state: 'stopped',
    ...extra,
  });

  before(async () => {
    manager = await startTestManager({ resyncMs: 500 });
    hollow = await startHollowAgent(manager.url, (await manager.hosts.mintJoinToken(600)).token, join(dir.path, 'run'), 'hollow-networks');
    await eventually('the hollow host is ready', async () => (await manager.hosts.list()).some((host) => host.status === 'ready'));
  });
  after(async () => {
    await hollow?.agent.close();
    await manager?.dispose();
    dir.remove();
  });

  it('creates, reads, lists, changes and deletes a network, each change audited', async () => {
    const created = await send(url('/v1/networks'), { body: { name: 'crud', cidr: '10.30.0.0/24', dns: ['10.30.0.53'] } });
    assert.equal(created.status, 201, JSON.stringify(created.body));
    assert.deepEqual(
      {
        name: created.body.name,
        project: created.body.project,
        cidr: created.body.cidr,
        gateway: created.body.gateway,
        egress: created.body.egress,
        dns: created.body.dns,
      },
      { name: 'crud', project: 'default', cidr: '10.30.0.0/24', gateway: '10.30.0.1', egress: 'allow', dns: ['10.30.0.53'] },
    );
    const id = created.body.id as string;
    assert.deepEqual((await send(url(`/v1/networks/${id}`))).body, created.body);
    assert.ok(
      (await send(url('/v1/networks'))).body.items.some((network: { id: string }) => network.id === id),
      'listed',
    );
    const changed = await send(url(`/v1/networks/${id}`), { method: 'PATCH', body: { egress: 'deny' } });
    assert.equal(changed.body.egress, 'deny');
    assert.equal(changed.body.cidr, '10.30.0.0/24');
    assert.equal((await send(url(`/v1/networks/${id}`), { method: 'DELETE' })).status, 200);
    assertErrorContract(await send(url(`/v1/networks/${id}`)), 404, 'not_found');
    const audit = (await send(url(`/v1/audit?limit=100`))).body.items as Array<{ action: string; resource_id: string; result: string }>;
    for (const action of ['network.create', 'network.update', 'network.delete']) {
      assert.ok(
        audit.some((row) => row.action === action && row.resource_id === id && row.result === 'success'),
        `${action} is audited`,
      );
    }
  });

  it('refuses every bad network with the error contract and stores nothing', async () => {
    await send(url('/v1/networks'), { body: { name: 'taken-block', cidr: '10.31.0.0/16' } });
    const refusals: Array<[unknown, number, string]> = [
      [{ name: 'bad', cidr: '10.32.0/24' }, 400, 'validation_failed'],
      [{ name: 'bad', cidr: '10.32.0.1/24' }, 400, 'validation_failed'],
      [{ name: 'bad', cidr: '10.0.0.0/12' }, 400, 'validation_failed'],
      [{ name: 'bad', cidr: '10.32.0.0/31' }, 400, 'validation_failed'],
      [{ name: 'bad', cidr: '10.32.0.0/24', egress: 'sometimes' }, 400, 'validation_failed'],
      [{ name: 'bad', cidr: '10.32.0.0/24', dns: ['one.one.one.one'] }, 400, 'validation_failed'],
      [{ name: 'Bad_Name', cidr: '10.32.0.0/24' }, 400, 'validation_failed'],
      [{ name: 'bad', cidr: '10.31.8.0/24' }, 409, 'conflict'],
      [{ name: 'taken-block', cidr: '10.33.0.0/24' }, 409, 'conflict'],
    ];
    for (const [body, status, code] of refusals) assertErrorContract(await send(url('/v1/networks'), { body }), status, code);
    const overlap = await send(url('/v1/networks'), { body: { name: 'bad', cidr: '10.31.8.0/24' } });
    assert.match(overlap.body.fault_message, /overlaps network taken-block \(10\.31\.0\.0\/16\)/);
    const names = (await send(url('/v1/networks'))).body.items.map((network: { name: string }) => network.name);
    assert.ok(!names.includes('bad'), 'nothing refused was stored');
    assertErrorContract(
      await send(url(`/v1/networks/${'0'.repeat(8)}-0000-4000-8000-000000000000`), { method: 'PATCH', body: { cidr: '10.1.0.0/24' } }),
      400,
      'validation_failed',
    );
  });

  it("gives a VM an address on its project's default network, shows it, and hands it to the agent with the guest's boot parameters", async () => {
    const created = await send(url('/v1/vms?wait=30'), { body: vmBody('addressed') });
    assert.equal(created.status, 201, JSON.stringify(created.body));
    const [address] = created.body.addresses as Array<Record<string, unknown>>;
    assert.ok(address, 'the VM has an address');
    assert.equal(address.network, 'default');
    assert.equal(address.prefix_length, 24);
    const network = (await send(url(`/v1/networks/${String(address.network_id)}`))).body;
    assert.equal(network.name, 'default', 'the default network was made on first use');
    assert.equal(address.gateway, network.gateway);
    const onAgent = await send(`${hollow.agent.url}/agent/v1/vms/${created.body.id}`, {
      headers: { authorization: `Bearer ${hollow.agent.identity.credential}` },
    });
    assert.deepEqual(onAgent.body.spec.nics, [{ network: { id: network.id, cidr: network.cidr, egress: 'allow', dns: [] }, ip: address.ip }]);
    assert.match(
      onAgent.body.spec.kernel.cmdline,
      new RegExp(
        `nexus\\.ip=${String(address.ip).replaceAll('.', '\\.')}/24 nexus\\.gw=${String(network.gateway).replaceAll('.', '\\.')} nexus\\.hostname=addressed`,
      ),
    );
    assert.deepEqual(
      hollow.host.network.nicOf.get(vmNetnsNameOf(created.body.id)),
      { network: { id: network.id, cidr: network.cidr, egress: 'allow', dns: [] }, ip: address.ip, mac: address.mac },
      "the VM's namespace is on the network, with the VM's address and MAC for its lease",
    );
  });

  it('refuses a bad NIC with the error contract, and leaves no VM and no address behind', async () => {
    await send(url('/v1/networks'), { body: { name: 'nics', cidr: '10.34.0.0/24' } });
    const holder = await send(url('/v1/vms'), { body: vmBody('nic-holder', { networks: [{ network: 'nics', ip: '10.34.0.10' }] }) });
    assert.equal(holder.status, 201, JSON.stringify(holder.body));
    assert.equal(holder.body.addresses[0].ip, '10.34.0.10');
    const refusals: Array<[Record<string, unknown>, number, string, RegExp]> = [
      [{ networks: [{ network: 'nics', ip: '10.34.0.10' }] }, 409, 'conflict', /taken by VM nic-holder/],
      [{ networks: [{ network: 'nics', ip: '10.35.0.10' }] }, 422, 'unprocessable', /not in network nics/],
      [{ networks: [{ network: 'nics', ip: '10.34.0.1' }] }, 422, 'unprocessable', /the gateway/],
      [{ networks: [{ network: 'nics', ip: '10.34.0.300' }] }, 400, 'validation_failed', /ip/],
      [{ networks: [{ network: 'nowhere' }] }, 404, 'not_found', /no network nowhere/],
      [{ networks: [{ network: 'nics' }, { network: 'default' }] }, 400, 'validation_failed', /networks/],
      [{ nic: false, networks: [{ network: 'nics' }] }, 400, 'validation_failed', /nic: false/],
    ];
    for (const [extra, status, code, message] of refusals) {
      const refused = await send(url('/v1/vms'), { body: vmBody('refused', extra) });
      assertErrorContract(refused, status, code);
      assert.match(refused.body.fault_message ?? '', message, JSON.stringify(extra));
    }
    assert.deepEqual((await send(url('/v1/vms?name_prefix=refused'))).body.items, [], 'no refused VM was stored');
    const nics = (await send(url('/v1/networks'))).body.items.find((network: { name: string }) => network.name === 'nics');
    assert.equal(nics.vm_count, 1, 'only the holder has an address in it');
  });

  it('will not delete a network in use (409 naming its VMs); its address is free once the agent has removed the VM', async () => {
    await send(url('/v1/networks'), { body: { name: 'in-use', cidr: '10.36.0.0/24' } });
    const vm = (await send(url('/v1/vms?wait=30'), { body: vmBody('user', { networks: [{ network: 'in-use' }] }) })).body;
    const network = (await send(url('/v1/networks'))).body.items.find((each: { name: string }) => each.name === 'in-use');
    const refused = await send(url(`/v1/networks/${network.id}`), { method: 'DELETE' });
    assertErrorContract(refused, 409, 'conflict');
    assert.match(refused.body.fault_message, /in use by VMs user/);
    assert.equal((await send(url(`/v1/vms/${vm.id}?wait=30`), { method: 'DELETE' })).status, 200);
    assert.equal(hollow.host.network.taps.has(vmNetnsNameOf(vm.id)), false, 'the agent removed its namespace');
    const again = (await send(url('/v1/vms'), { body: vmBody('reuser', { networks: [{ network: 'in-use' }] }) })).body;
    assert.equal(again.addresses[0].ip, vm.addresses[0].ip, 'the address is free again');
    await send(url(`/v1/vms/${again.id}?wait=30`), { method: 'DELETE' });
    assert.equal((await send(url(`/v1/networks/${network.id}`), { method: 'DELETE' })).status, 200, 'with no VM left, it goes');
  });

  it('publishes ports: shown where reachable, sent to the agent, each host port held once; every bad one refused with the error contract', async () => {
    const ports = [{ host_port: 18080, guest_port: 80 }];
    const web = await send(url('/v1/vms?wait=30'), { body: vmBody('web-ports', { desired_state: 'running', ports }) });
    assert.equal(web.status, 201, JSON.stringify(web.body));
    const host = (await manager.hosts.list())[0];
    const hostName = new URL(`http://${host?.address}`).hostname;
    assert.deepEqual(web.body.ports, [{ host_port: 18080, guest_port: 80, protocol: 'tcp', reachable_at: `${hostName}:18080` }], 'where the port is reachable');
    const onAgent = await send(`${hollow.agent.url}/agent/v1/vms/${web.body.id}`, { headers: { authorization: `Bearer ${hollow.agent.identity.credential}` } });
    assert.deepEqual(onAgent.body.spec.nics[0].ports, [{ host_port: 18080, guest_port: 80, protocol: 'tcp' }], 'the agent is asked to publish it');
    assert.deepEqual(
      hollow.host.network.nicOf.get(vmNetnsNameOf(web.body.id))?.ports,
      [{ host_port: 18080, guest_port: 80, protocol: 'tcp' }],
      'and plumbs it',
    );

    const minted = await send(url('/v1/tokens'), { body: { owner: 'ports-op', role: 'operator', project: 'default' } });
    assert.equal(minted.status, 201, JSON.stringify(minted.body));
    const asOperator = { authorization: `Bearer ${minted.body.token}` };
    const refusals: Array<[string, Record<string, unknown>, number, string, RegExp, Record<string, string>?]> = [
      ['taken', { ports: [{ host_port: 18080, guest_port: 81 }] }, 409, 'conflict', /18080\/tcp by VM web-ports/],
      [
        'twice',
        {
          ports: [
            { host_port: 18081, guest_port: 80 },
            { host_port: 18081, guest_port: 81 },
          ],
        },
        400,
        'validation_failed',
        /published twice/,
      ],
      ['no-nic', { nic: false, ports: [{ host_port: 18082, guest_port: 80 }] }, 400, 'validation_failed', /need a NIC/],
      ['privileged', { ports: [{ host_port: 80, guest_port: 80 }] }, 403, 'forbidden', /only an admin/, asOperator],
      ['zero', { ports: [{ host_port: 0, guest_port: 80 }] }, 400, 'validation_failed', /host_port/],
      ['too-high', { ports: [{ host_port: 18083, guest_port: 65536 }] }, 400, 'validation_failed', /guest_port/],
      ['protocol', { ports: [{ host_port: 18084, guest_port: 80, protocol: 'sctp' }] }, 400, 'validation_failed', /protocol/],
      ['too-many', { ports: Array.from({ length: 17 }, (_, index) => ({ host_port: 20000 + index, guest_port: 80 })) }, 400, 'validation_failed', /ports/],
    ];
    for (const [name, extra, status, code, message, headers] of refusals) {
      const refused = await send(url('/v1/vms'), { body: vmBody(`refused-${name}`, extra), ...(headers ? { headers } : {}) });
      assertErrorContract(refused, status, code);
      assert.match(`${refused.body.fault_message}`, message, `${name}: ${refused.body.fault_message}`);
    }
    const names = ((await send(url('/v1/vms'))).body.items as Array<{ name: string }>).map((vm) => vm.name);
    assert.deepEqual(
      names.filter((name) => name.startsWith('refused-')),
      [],
      'nothing refused was created',
    );
    assert.equal((await send(url(`/v1/vms/${web.body.id}?wait=30`), { method: 'DELETE' })).status, 200);
    const again = await send(url('/v1/vms'), { body: vmBody('web-ports-again', { ports }) });
    assert.equal(again.status, 201, `the port is free again once its VM is gone: ${JSON.stringify(again.body)}`);
  });
});
