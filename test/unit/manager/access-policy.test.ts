import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { type Principal, type ResourceKind, type Verb, type Verdict, brokenQuota, decide, visibleProjects } from '../../../src/manager/domain/access-policy.js';

const caller = (role: Principal['role'], project: string | null = 'alpha'): Principal => ({ tokenId: 't', owner: 'o', role, project });

describe('access policy', () => {
  // Every role x resource x verb x own/other project, and what each gets.
  const table: Array<[Principal['role'], ResourceKind, Verb, 'own' | 'other' | 'none', Verdict]> = [];
  for (const resource of ['vm', 'snapshot', 'template'] as const) {
    table.push(
      ['viewer', resource, 'read', 'own', 'allow'],
      ['viewer', resource, 'read', 'other', 'hide'],
      ['viewer', resource, 'read', 'none', 'allow'],
      ['viewer', resource, 'write', 'own', 'deny'],
      ['viewer', resource, 'write', 'other', 'deny'],
      ['viewer', resource, 'write', 'none', 'deny'],
      ['operator', resource, 'read', 'own', 'allow'],
      ['operator', resource, 'read', 'other', 'hide'],
      ['operator', resource, 'write', 'own', 'allow'],
      ['operator', resource, 'write', 'other', 'hide'],
      ['operator', resource, 'write', 'none', 'allow'],
      ['admin', resource, 'read', 'other', 'allow'],
      ['admin', resource, 'write', 'other', 'allow'],
    );
  }
  for (const role of ['viewer', 'operator'] as const) {
    table.push([role, 'image', 'read', 'none', 'allow'], [role, 'image', 'write', 'none', 'deny']);
    for (const resource of ['host', 'token', 'project', 'audit'] as const)
      table.push([role, resource, 'read', 'none', 'deny'], [role, resource, 'write', 'none', 'deny']);
  }
  for (const resource of ['image', 'host', 'token', 'project', 'audit'] as const)
    table.push(['admin', resource, 'read', 'none', 'allow'], ['admin', resource, 'write', 'none', 'allow']);

  for (const [role, resource, verb, where, expected] of table) {
    it(`${role} ${verb} ${resource} (${where} project) -> ${expected}`, () => {
      const project = where === 'own' ? 'alpha' : where === 'other' ? 'beta' : undefined;
      assert.equal(decide(caller(role, role === 'admin' ? null : 'alpha'), resource, verb, project), expected);
    });
  }

  it('lists: an admin sees every project, others their own', () => {
    assert.equal(visibleProjects(caller('admin', null)), undefined);
    assert.deepEqual(visibleProjects(caller('operator')), ['alpha']);
  });

  it('names the quota a new VM would break', () => {
    const usage = { vms: 2, vcpus: 4, memoryMib: 1024 };
    assert.equal(brokenQuota({ maxVms: null, maxVcpus: null, maxMemoryMib: null }, usage, 32, 1 << 20), undefined);
    assert.match(brokenQuota({ maxVms: 2, maxVcpus: null, maxMemoryMib: null }, usage, 1, 128) ?? '', /^max_vms 2/);
    assert.match(brokenQuota({ maxVms: null, maxVcpus: 5, maxMemoryMib: null }, usage, 2, 128) ?? '', /^max_vcpus 5 \(4 in use, 2 asked\)/);
    assert.match(brokenQuota({ maxVms: null, maxVcpus: null, maxMemoryMib: 1100 }, usage, 1, 128) ?? '', /^max_memory_mib 1100/);
    assert.equal(brokenQuota({ maxVms: 3, maxVcpus: 5, maxMemoryMib: 1152 }, usage, 1, 128), undefined, 'exactly full fits');
  });
});
