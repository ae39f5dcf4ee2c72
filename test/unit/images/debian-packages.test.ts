import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { cachedDebName, kernelDependency, packageSpec, parsePackageRecords } from '../../../src/images/debian-packages.js';

const SHOW = `Package: linux-image-amd64
Source: linux-signed-amd64 (6.1.192-2)
Version: 6.1.192-2
Installed-Size: 13
Depends: linux-image-6.1.0-56-amd64 (= 6.1.192-2)
Architecture: amd64
Size: 1480
SHA256: 45457bcfc86c87585800b5656bdf2773b063a3bb95486b0e820d51e870491f8d
Description: Linux for 64-bit PCs (meta-package)

Package: busybox-static
Version: 1:1.35.0-4+deb12u1+b1
Architecture: amd64
Size: 928188
SHA256: 3d3fdbe91d4660c873e14b092c213fe81c1da6362daa236eb25d0171eb108744

Package: broken
Version: 1
Architecture: amd64
Size: 12
`;

describe('parsePackageRecords', () => {
  it('reads name, version, architecture, size, SHA256 and Depends of each complete record', () => {
    const records = parsePackageRecords(SHOW);
    assert.deepEqual(
      records.map((record) => [record.name, record.version, record.architecture, record.sizeBytes]),
      [
        ['linux-image-amd64', '6.1.192-2', 'amd64', 1480],
        ['busybox-static', '1:1.35.0-4+deb12u1+b1', 'amd64', 928188],
      ],
    );
    assert.equal(records[0]?.depends, 'linux-image-6.1.0-56-amd64 (= 6.1.192-2)');
    assert.equal(records[1]?.depends, undefined);
    assert.equal(records[1]?.sha256, '3d3fdbe91d4660c873e14b092c213fe81c1da6362daa236eb25d0171eb108744');
  });
  it('skips records without a SHA256 and reads nothing from empty output', () => {
    assert.equal(
      parsePackageRecords(SHOW).some((record) => record.name === 'broken'),
      false,
    );
    assert.deepEqual(parsePackageRecords(''), []);
  });
});

describe('kernelDependency', () => {
  it('names the versioned kernel package, ignoring version constraints and other clauses', () => {
    assert.equal(kernelDependency('linux-image-6.1.0-56-amd64 (= 6.1.192-2)'), 'linux-image-6.1.0-56-amd64');
    assert.equal(kernelDependency('initramfs-tools | linux-initramfs-tool, linux-image-6.1.0-57-amd64'), 'linux-image-6.1.0-57-amd64');
  });
  it('is undefined when no linux-image package is named', () => {
    assert.equal(kernelDependency(undefined), undefined);
    assert.equal(kernelDependency('libc6 (>= 2.36)'), undefined);
  });
});

describe('package names and files', () => {
  it('spells name=version for apt-get and escapes the epoch colon in cached file names', () => {
    const busybox = { name: 'busybox-static', version: '1:1.35.0-4+deb12u1+b1', architecture: 'amd64' };
    assert.equal(packageSpec(busybox), 'busybox-static=1:1.35.0-4+deb12u1+b1');
    assert.equal(cachedDebName(busybox), 'busybox-static_1%3a1.35.0-4+deb12u1+b1_amd64.deb');
  });
});
