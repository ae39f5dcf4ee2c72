import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { describe, it } from 'node:test';
import { BOOT_MARKER, POWER_BUTTON_HANDLER, ROOTFS_INIT, initramfsInit } from '../../../src/images/guest-init-scripts.js';
import { GUEST_KERNEL_MODULES } from '../../../src/images/kernel-modules.js';

/** `sh -n`: the scripts must at least parse (dash is stricter than busybox ash, which runs them). */
function syntaxError(script: string): string | undefined {
  const result = spawnSync('sh', ['-n'], { input: script, encoding: 'utf8' });
  return result.status === 0 ? undefined : result.stderr || `exit ${result.status}`;
}

describe('initramfsInit', () => {
  it('loads the modules in the given order, then mounts the root and switches to its init', () => {
    const script = initramfsInit(GUEST_KERNEL_MODULES);
    assert.ok(script.includes(`for module in ${GUEST_KERNEL_MODULES.join(' ')}; do`));
    assert.ok(script.indexOf('insmod') < script.indexOf('switch_root'));
    assert.match(script, /exec switch_root \/newroot "\$init"/);
    assert.equal(syntaxError(script), undefined);
  });
  it('refuses a module name that is not one', () => {
    assert.throws(() => initramfsInit(['ext4; reboot']), /not a module name/);
  });
});

describe('the root filesystem scripts', () => {
  it('init parses, reads nexus.ip, nexus.gw and nexus.hostname, starts acpid, and prints the marker before counting', () => {
    assert.equal(syntaxError(ROOTFS_INIT), undefined);
    for (const parameter of ['nexus.ip=*', 'nexus.gw=*', 'nexus.hostname=*']) assert.ok(ROOTFS_INIT.includes(parameter), parameter);
    assert.ok(ROOTFS_INIT.indexOf('/run/acpid.pid ]') < ROOTFS_INIT.indexOf(`echo "${BOOT_MARKER}"`), 'waits for acpid before the marker');
    assert.ok(ROOTFS_INIT.indexOf(`echo "${BOOT_MARKER}"`) < ROOTFS_INIT.indexOf('NEXUS_COUNTER'));
  });
  it('serves one page with busybox httpd on the port nexus.httpd names, before the marker', () => {
    assert.ok(ROOTFS_INIT.includes('nexus.httpd=*'), 'reads nexus.httpd');
    assert.match(ROOTFS_INIT, /httpd -p "\$httpd_port" -h \/run\/www/, 'serves /run/www on that port');
    assert.ok(ROOTFS_INIT.indexOf('httpd -p') < ROOTFS_INIT.indexOf(`echo "${BOOT_MARKER}"`), 'before the boot marker');
  });

  it('the power button handler parses and powers off without going through init', () => {
    assert.equal(syntaxError(POWER_BUTTON_HANDLER), undefined);
    assert.match(POWER_BUTTON_HANDLER, /poweroff -f/);
  });
});
