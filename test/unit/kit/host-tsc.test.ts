import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { parseCpuinfoKhz, parseDmesgTscKhz } from '../../../src/kit/host-tsc.js';

describe('parseDmesgTscKhz', () => {
  it('reads the detected rate', () => {
    assert.equal(parseDmesgTscKhz('[    0.000056] tsc: Detected 2599.998 MHz processor\n[ 0.08] TSC deadline timer available'), 2599998);
    assert.equal(parseDmesgTscKhz('[    0.000000] tsc: Detected 3000.000 MHz TSC'), 3000000);
  });
  it('prefers the refined calibration, which comes later and is more exact', () => {
    const log = '[0.0] tsc: Detected 2903.994 MHz processor\n[1.5] tsc: Refined TSC clocksource calibration: 2904.012 MHz\n';
    assert.equal(parseDmesgTscKhz(log), 2904012);
  });
  it('is undefined when the log has no TSC line (rotated out, or not x86)', () => {
    assert.equal(parseDmesgTscKhz('[0.0] Linux version 6.1.0\n[0.1] clocksource: Switched to clocksource tsc'), undefined);
  });
});

describe('parseCpuinfoKhz', () => {
  it('reads the first cpu MHz line', () => {
    assert.equal(parseCpuinfoKhz('processor\t: 0\ncpu MHz\t\t: 2599.998\ncache size\t: 1 KB\n\nprocessor\t: 1\ncpu MHz\t\t: 1200.000\n'), 2599998);
    assert.equal(parseCpuinfoKhz('processor\t: 0\nBogoMIPS\t: 50.00\n'), undefined);
  });
});
