import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { guestCountersIn } from '../../../src/agent/host/vm-metrics.js';

/** A `/proc/<pid>/net/dev` as a VMM in a VM's namespace sees it. */
const NET_DEV = [
  'Inter-|   Receive                                                |  Transmit',
  ' face |bytes    packets errs drop fifo frame compressed multicast|bytes    packets errs drop fifo colls carrier compressed',
  '    lo:       0       0    0    0    0     0          0         0        0       0    0    0    0     0       0          0',
  ' veth0:    9000      90    0    0    0     0          0         0     8000      80    0    0    0     0       0          0',
  '  tap0:    1500      15    0    0    0     0          0         0     4200      42    0    0    0     0       0          0',
  '',
].join('\n');

describe("a VM's network counters from its namespace", () => {
  it("read its TAP's line, seen from the guest: what the TAP sends, the guest receives", () => {
    assert.deepEqual(guestCountersIn(NET_DEV, 'tap0'), { rx_bytes: 4200, tx_bytes: 1500, rx_packets: 42, tx_packets: 15 });
  });

  it('are zeros for a TAP that is not there', () => {
    assert.deepEqual(guestCountersIn(NET_DEV, 'tap9'), { rx_bytes: 0, tx_bytes: 0, rx_packets: 0, tx_packets: 0 });
    assert.deepEqual(guestCountersIn('', 'tap0'), { rx_bytes: 0, tx_bytes: 0, rx_packets: 0, tx_packets: 0 });
  });
});
