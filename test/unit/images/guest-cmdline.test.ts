import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { GUEST_BOOT_ARGS, guestKernelCmdline, isIpv4, isIpv4Cidr } from '../../../src/images/guest-cmdline.js';

describe('guestKernelCmdline', () => {
  it('is the boot args alone by default', () => {
    assert.equal(guestKernelCmdline(), GUEST_BOOT_ARGS);
    assert.equal(GUEST_BOOT_ARGS, 'console=ttyS0 reboot=t panic=1 root=/dev/vda rw');
  });
  it('adds the TSC rate and the nexus.* parameters init reads, in a stable order', () => {
    assert.equal(
      guestKernelCmdline({ tscKhz: 2599998, ipCidr: '10.99.0.2/24', gatewayIp: '10.99.0.1', hostname: 'vm-1' }),
      `${GUEST_BOOT_ARGS} tsc_early_khz=2599998 tsc=reliable nexus.ip=10.99.0.2/24 nexus.gw=10.99.0.1 nexus.hostname=vm-1`,
    );
    assert.equal(guestKernelCmdline({ bootArgs: 'console=ttyS0', ipCidr: '192.168.1.5/32' }), 'console=ttyS0 nexus.ip=192.168.1.5/32');
  });
  it('refuses values that would break the command line or the guest network as bad_request', () => {
    for (const options of [
      { tscKhz: 0 },
      { tscKhz: 1.5 },
      { ipCidr: '10.0.0.2' },
      { ipCidr: '10.0.0.2/33' },
      { ipCidr: '10.0.0.2/24 init=/bin/sh' },
      { gatewayIp: '10.0.0.1' },
      { ipCidr: '10.0.0.2/24', gatewayIp: '10.0.0.256' },
      { hostname: 'a b' },
      { hostname: '-vm' },
      { hostname: 'x'.repeat(64) },
    ]) {
      assert.throws(
        () => guestKernelCmdline(options),
        (error: { code?: string }) => error.code === 'bad_request',
        JSON.stringify(options),
      );
    }
  });
});

describe('IPv4 checks', () => {
  it('accepts dotted quads and CIDRs, and nothing else', () => {
    assert.ok(isIpv4('0.0.0.0') && isIpv4('255.255.255.255') && isIpv4('10.1.2.3'));
    assert.ok(!isIpv4('010.1.2.3') && !isIpv4('1.2.3') && !isIpv4('1.2.3.4.5') && !isIpv4('a.b.c.d') && !isIpv4('256.1.1.1'));
    assert.ok(isIpv4Cidr('10.0.0.0/8') && isIpv4Cidr('10.0.0.1/0') && isIpv4Cidr('10.0.0.1/32'));
    assert.ok(!isIpv4Cidr('10.0.0.1/') && !isIpv4Cidr('10.0.0.1/24/1') && !isIpv4Cidr('10.0.0.1/024'));
  });
});
