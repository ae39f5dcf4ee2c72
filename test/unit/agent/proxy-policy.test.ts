import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { isProxyAllowed } from '../../../src/agent/domain/proxy-policy.js';
import { firecrackerApiVersionOf } from '../../../src/agent/host/driver-probe.js';

describe('proxy policy', () => {
  it('relays read-only GETs and the mutations Nexus drives', () => {
    for (const [method, path] of [
      ['GET', '/'],
      ['GET', '/vm/config'],
      ['GET', '/machine-config'],
      ['PUT', '/machine-config'],
      ['PUT', '/boot-source'],
      ['PUT', '/drives/rootfs'],
      ['PATCH', '/drives/data_1'],
      ['PATCH', '/network-interfaces/eth0'],
      ['PUT', '/logger'],
      ['PUT', '/metrics'],
      ['PUT', '/actions'],
      ['PATCH', '/vm'],
      ['PUT', '/snapshot/create'],
      ['PUT', '/snapshot/load'],
    ]) {
      assert.equal(isProxyAllowed(method as string, path as string), true, `${method} ${path}`);
    }
  });

  it('refuses other endpoints and methods, and any dot segment, doubled slash or percent-encoding', () => {
    for (const [method, path] of [
      ['PUT', '/mmds'],
      ['PUT', '/vsock'],
      ['PATCH', '/balloon'],
      ['DELETE', '/drives/rootfs'],
      ['POST', '/actions'],
      ['GET', '/mmds'],
      ['PUT', '/drives/root-fs'],
      ['GET', '/vm/../version'],
      ['GET', '/./version'],
      ['GET', '//version'],
      ['GET', '/%76ersion'],
      ['PUT', '/drives/%2e%2e'],
      ['GET', 'version'],
    ]) {
      assert.equal(isProxyAllowed(method as string, path as string), false, `${method} ${path}`);
    }
  });
});

describe('firecrackerApiVersionOf', () => {
  it('speaks a known version as itself, a newer 1.x as the newest known, and nothing older', () => {
    assert.equal(firecrackerApiVersionOf('Firecracker v1.16.1'), '1.16');
    assert.equal(firecrackerApiVersionOf('Firecracker v1.17.0-dev'), '1.17');
    assert.equal(firecrackerApiVersionOf('Firecracker v1.19.2'), '1.17');
    assert.equal(firecrackerApiVersionOf('Firecracker v1.15.0'), undefined);
    assert.equal(firecrackerApiVersionOf('Firecracker v2.0.0'), undefined);
    assert.equal(firecrackerApiVersionOf('garbage'), undefined);
  });
});
