import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { blockContains, blockSize, blocksOverlap, formatIpv4, formatIpv4Block, parseIpv4, parseIpv4Block } from '../../../src/kit/ipv4.js';

const block = (text: string) => {
  const parsed = parseIpv4Block(text);
  assert.ok(parsed, `${text} parses`);
  return parsed;
};

describe('IPv4 arithmetic', () => {
  it('reads dotted quads only, and writes them back', () => {
    assert.equal(parseIpv4('10.220.0.1'), 0x0adc0001);
    assert.equal(formatIpv4(0x0adc0001), '10.220.0.1');
    assert.equal(formatIpv4(0xffffffff), '255.255.255.255');
    for (const bad of ['10.220.1', '10.220.0.256', '010.0.0.1', '1.2.3.4.5', '', 'a.b.c.d', '0x0a.0.0.1']) {
      assert.equal(parseIpv4(bad), undefined, `${bad} is not a dotted quad`);
    }
  });

  it('reads blocks, telling whether host bits were set', () => {
    assert.deepEqual(parseIpv4Block('10.220.8.0/24'), { base: 0x0adc0800, prefixLength: 24, hostBitsSet: false });
    assert.deepEqual(parseIpv4Block('10.220.8.1/24'), { base: 0x0adc0800, prefixLength: 24, hostBitsSet: true });
    assert.deepEqual(parseIpv4Block('0.0.0.0/0'), { base: 0, prefixLength: 0, hostBitsSet: false });
    for (const bad of ['10.220.8.0', '10.220.8.0/33', '10.220.8.0/24/1', '10.220.8.0/-1', '10.220.8/24', '10.220.8.0/024']) {
      assert.equal(parseIpv4Block(bad), undefined, `${bad} is not a block`);
    }
    assert.equal(formatIpv4Block(block('192.168.1.7/16')), '192.168.0.0/16');
    assert.equal(blockSize(block('10.0.0.0/30')), 4);
  });

  it('knows what a block holds and which blocks overlap', () => {
    assert.equal(blockContains(block('10.220.8.0/24'), parseIpv4('10.220.8.255') ?? 0), true);
    assert.equal(blockContains(block('10.220.8.0/24'), parseIpv4('10.220.9.0') ?? 0), false);
    assert.equal(blocksOverlap(block('10.220.0.0/16'), block('10.220.8.0/24')), true, 'one holds the other');
    assert.equal(blocksOverlap(block('10.220.8.0/24'), block('10.220.0.0/16')), true, 'either way round');
    assert.equal(blocksOverlap(block('10.220.8.0/24'), block('10.220.8.0/24')), true, 'the same block');
    assert.equal(blocksOverlap(block('10.220.8.0/24'), block('10.220.9.0/24')), false, 'neighbours');
    assert.equal(blocksOverlap(block('10.220.8.0/25'), block('10.220.8.128/25')), false, 'two halves');
  });
});
