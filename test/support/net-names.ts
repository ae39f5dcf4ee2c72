import { randomBytes } from 'node:crypto';

/** A bridge name unique to this test run (`nxbr` + 6 hex), so parallel runs never share one. */
export function testBridgeName(): string {
  return `nxbr${randomBytes(3).toString('hex')}`;
}

/** A VM id whose TAP name (`tap-` + its first 8 hex) is unique to this test run. */
export function testVmId(): string {
  const hex = randomBytes(16).toString('hex');
  return `${hex.slice(0, 8)}-${hex.slice(8, 12)}-4${hex.slice(13, 16)}-8${hex.slice(17, 20)}-${hex.slice(20, 32)}`;
}

/** A /24 in 10.213.0.0/16 for a test bridge; only the test's own guests live there. */
export function testBridgeCidr(): string {
  return `10.213.${randomBytes(1)[0] ?? 1}.1/24`;
}

/** A /18 of 10.214.0.0/16 for a test manager's default networks (64 projects' /24s), one of four at random. */
export function testNetworkPool(): string {
  return `10.214.${(randomBytes(1)[0] ?? 0) & 0xc0}.0/18`;
}
