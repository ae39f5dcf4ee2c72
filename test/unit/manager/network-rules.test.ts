import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { parseIpv4Block } from '../../../src/kit/ipv4.js';
import { NexusError } from '../../../src/kit/nexus-error.js';
import { checkNetworkCidr, freeBlockIn, networkBlockOf, overlapping, pickAddress } from '../../../src/manager/domain/network-rules.js';

function refused(run: () => unknown, code: string, message: RegExp): void {
  assert.throws(run, (error: unknown) => {
    assert.ok(error instanceof NexusError, `a NexusError, not ${String(error)}`);
    assert.equal(error.code, code, `code of: ${error.message}`);
    assert.match(error.message, message);
    return true;
  });
}

const net = (cidr: string) => ({ ...networkBlockOf(cidr), name: 'backend' });

describe('network blocks', () => {
  it('takes /16 to /30 blocks, with the first address as gateway', () => {
    assert.deepEqual(checkNetworkCidr('10.220.8.0/24'), { base: 0x0adc0800, prefixLength: 24, gateway: 0x0adc0801 });
    assert.equal(checkNetworkCidr('10.220.0.0/16').prefixLength, 16);
    assert.equal(checkNetworkCidr('10.220.8.4/30').prefixLength, 30);
  });

  it('refuses malformed blocks, host bits, too large and too small, saying what to write', () => {
    refused(() => checkNetworkCidr('10.220.8/24'), 'validation_failed', /not an IPv4 block/);
    refused(() => checkNetworkCidr('10.220.8.300/24'), 'validation_failed', /not an IPv4 block/);
    assert.throws(
      () => checkNetworkCidr('10.220.8.1/24'),
      (error: NexusError) => error.code === 'validation_failed' && /host bits/.test(error.message) && /10\.220\.8\.0\/24/.test(error.suggestion ?? ''),
      'host bits set: the suggestion names the block',
    );
    refused(() => checkNetworkCidr('10.0.0.0/15'), 'validation_failed', /too large to manage/);
    refused(() => checkNetworkCidr('10.220.8.0/31'), 'validation_failed', /too small to hold a VM/);
    refused(() => checkNetworkCidr('10.220.8.0/32'), 'validation_failed', /too small to hold a VM/);
  });

  it('finds the first network a block overlaps', () => {
    const others = [
      { name: 'a', cidr: '10.220.0.0/24' },
      { name: 'b', cidr: '10.220.4.0/22' },
    ];
    assert.equal(overlapping(checkNetworkCidr('10.220.5.0/24'), others)?.name, 'b');
    assert.equal(overlapping(checkNetworkCidr('10.220.0.0/16'), others)?.name, 'a');
    assert.equal(overlapping(checkNetworkCidr('10.220.1.0/24'), others), undefined);
  });

  it('hands out default blocks from the pool, skipping taken ones, until it is full', () => {
    const pool = parseIpv4Block('10.220.0.0/22');
    assert.ok(pool);
    const taken = [networkBlockOf('10.220.0.0/24'), networkBlockOf('10.220.2.0/25')];
    assert.deepEqual(freeBlockIn(pool, 24, taken), { base: 0x0adc0100, prefixLength: 24 });
    assert.deepEqual(freeBlockIn(pool, 24, [...taken, networkBlockOf('10.220.1.0/24')]), { base: 0x0adc0300, prefixLength: 24 }, 'a half-taken block is taken');
    assert.equal(freeBlockIn(pool, 24, [networkBlockOf('10.220.0.0/22')]), undefined, 'a full pool');
  });
});

describe('IPAM: pickAddress', () => {
  it('gives the lowest free guest address: never the network, gateway or broadcast address', () => {
    assert.equal(pickAddress(net('10.220.8.0/24'), new Map()), '10.220.8.2');
    assert.equal(
      pickAddress(
        net('10.220.8.0/24'),
        new Map([
          ['10.220.8.2', 'a'],
          ['10.220.8.4', 'c'],
        ]),
      ),
      '10.220.8.3',
      'a gap is filled',
    );
    assert.equal(pickAddress(net('10.220.8.4/30'), new Map()), '10.220.8.6', 'a /30 holds one guest');
  });

  it('refuses a full network', () => {
    refused(() => pickAddress(net('10.220.8.4/30'), new Map([['10.220.8.6', 'only']])), 'conflict', /no free address/);
  });

  it('gives an address asked for when it is a free guest address of the block', () => {
    assert.equal(pickAddress(net('10.220.8.0/24'), new Map([['10.220.8.2', 'a']]), '10.220.8.200'), '10.220.8.200');
  });

  it('refuses an address asked for outside the block, or its network, gateway or broadcast address', () => {
    refused(() => pickAddress(net('10.220.8.0/24'), new Map(), '10.220.9.2'), 'unprocessable', /not in network backend \(10\.220\.8\.0\/24\)/);
    refused(() => pickAddress(net('10.220.8.0/24'), new Map(), '10.220.8.0'), 'unprocessable', /the network address/);
    refused(() => pickAddress(net('10.220.8.0/24'), new Map(), '10.220.8.1'), 'unprocessable', /the gateway/);
    refused(() => pickAddress(net('10.220.8.0/24'), new Map(), '10.220.8.255'), 'unprocessable', /the broadcast address/);
  });

  it('refuses an address another VM holds, naming it', () => {
    refused(() => pickAddress(net('10.220.8.0/24'), new Map([['10.220.8.9', 'web-1']]), '10.220.8.9'), 'conflict', /taken by VM web-1/);
  });
});
