/** The console line the guest's init prints once it is ready: network configured, power button handled. */
export const BOOT_MARKER = 'NEXUS_BOOT_OK';
/** Prefix of the line init prints once a second after the marker: `NEXUS_COUNTER <n>`, n = 1, 2, … */
export const COUNTER_PREFIX = 'NEXUS_COUNTER';
/** Prefix of init's network report: `NEXUS_NET eth0 <addr/prefix>[ via <gw>]`, `NEXUS_NET none` or `NEXUS_NET_FAILED …`. */
export const NET_PREFIX = 'NEXUS_NET';
/**
 * Prefix of what init prints for each address of `nexus.ping=<ip>[,<ip>…]`: `NEXUS_PING <ip> up|down`,
 * first after the marker, then whenever it changes (one ping a second each): a guest's view of
 * its network, for operators and tests, without a way into the guest.
 */
export const PING_PREFIX = 'NEXUS_PING';
/**
 * What init prints once `nexus.httpd=<port>` has busybox httpd serving on that port:
 * `NEXUS_HTTPD <port>`. It serves one page, `nexus <hostname>`.
 */
export const HTTPD_PREFIX = 'NEXUS_HTTPD';
/** What init prints when acpid is not listening after 5 s: the power button will be ignored. */
export const ACPID_FAILED_MARKER = 'NEXUS_ACPID_FAILED';
/** What the power-button handler prints just before it powers the guest off. */
export const POWEROFF_MARKER = 'NEXUS_POWEROFF';
/** What the initramfs prints before giving up (then PID 1 exits, the kernel panics, the VM stops). */
export const INITRAMFS_FAILED_MARKER = 'NEXUS_INITRAMFS_FAILED';

/** Where the initramfs keeps the modules it loads. */
export const INITRAMFS_MODULE_DIR = 'lib/modules';

/**
 * The initramfs's /init: loads the modules Debian builds virtio and ext4 as, in the given order,
 * mounts the root disk and hands over to its init. Honours `root=/dev/…`, `rootfstype=`, `ro`/`rw`
 * and `init=` from the kernel command line. Any failure stops the VM (PID 1 exits, `panic=1`)
 * after a line saying why, rather than leaving it hung where only a timeout would notice.
 */
export function initramfsInit(moduleNames: readonly string[]): string {
  for (const name of moduleNames) {
    if (!/^[a-z0-9_]+$/.test(name)) throw new Error(`not a module name: ${name}`);
  }
  return `#!/bin/sh
# Nexus initramfs. Debian's kernel has virtio and ext4 as modules and no modules.dep here, so they
# are loaded by hand, in dependency order.
export PATH=/bin:/sbin:/usr/bin:/usr/sbin

fail() {
  echo "${INITRAMFS_FAILED_MARKER} $*"
  # PID 1 exiting panics the kernel; panic=1 reboots and QEMU's -no-reboot then stops the VM.
  exit 1
}

mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev

for module in ${moduleNames.join(' ')}; do
  insmod /${INITRAMFS_MODULE_DIR}/$module.ko || fail "insmod $module"
done

root=/dev/vda
rootfstype=ext4
mode=rw
init=/sbin/init
for arg in $(cat /proc/cmdline); do
  case "$arg" in
    root=/dev/*) root="\${arg#root=}" ;;
    rootfstype=*) rootfstype="\${arg#rootfstype=}" ;;
    ro) mode=ro ;;
    rw) mode=rw ;;
    init=*) init="\${arg#init=}" ;;
  esac
done

# Device nodes appear as the drivers probe; give a slow (emulated) disk five seconds.
tries=0
while [ ! -b "$root" ]; do
  tries=$((tries + 1))
  [ "$tries" -gt 50 ] && fail "no root device $root"
  usleep 100000
done

mount -t "$rootfstype" -o "$mode" "$root" /newroot || fail "cannot mount $root ($rootfstype, $mode)"
[ -x "/newroot$init" ] || fail "no executable $init on $root"
# Keep devtmpfs (and the console open on it) for the real root.
mount --move /dev /newroot/dev || umount /dev
umount /sys
umount /proc
exec switch_root /newroot "$init"
`;
}

/**
 * The root filesystem's /sbin/init (PID 1). Works after the initramfs and as the init of a kernel
 * that mounts the disk itself. Network settings come from Nexus's own kernel parameters
 * (`nexus.ip=<addr/prefix> nexus.gw=<ip> nexus.dns=<ip,ip> nexus.hostname=<name>`), or DHCP with
 * `nexus.net=dhcp` (busybox udhcpc, which wins over `nexus.ip=`): the kernel's `ip=` cannot work
 * when virtio_net is a module. `nexus.exercise=1` makes it write to its disk and ping the gateway
 * every second after the marker (a workload for metrics tests). The marker comes last, so a VM that printed it is ready to use:
 * eth0 configured and acpid listening for the power button.
 */
export const ROOTFS_INIT = `#!/bin/sh
# Nexus guest init.
export PATH=/bin:/sbin:/usr/bin:/usr/sbin

[ -e /proc/self ] || mount -t proc proc /proc
[ -d /sys/kernel ] || mount -t sysfs sysfs /sys
grep -qs ' /dev ' /proc/mounts || mount -t devtmpfs devtmpfs /dev
mkdir -p /dev/pts
mount -t devpts devpts /dev/pts 2>/dev/null
mount -o remount,rw / 2>/dev/null
mount -t tmpfs -o mode=0755 tmpfs /run
mount -t tmpfs -o mode=1777 tmpfs /tmp

net_ip=
net_gw=
net_mode=
exercise=
probes=
httpd_port=
for arg in $(cat /proc/cmdline); do
  case "$arg" in
    nexus.exercise=1) exercise=1 ;;
    nexus.httpd=*) httpd_port="\${arg#nexus.httpd=}" ;;
    nexus.ping=*) probes=$(echo "\${arg#nexus.ping=}" | tr ',' ' ') ;;
    nexus.ip=*) net_ip="\${arg#nexus.ip=}" ;;
    nexus.net=dhcp) net_mode=dhcp ;;
    nexus.gw=*) net_gw="\${arg#nexus.gw=}" ;;
    nexus.dns=*) for server in $(echo "\${arg#nexus.dns=}" | tr ',' ' '); do echo "nameserver $server"; done > /etc/resolv.conf ;;
    nexus.hostname=*) hostname "\${arg#nexus.hostname=}" ;;
  esac
done

ip link set lo up
tries=0
while [ -n "$net_ip$net_mode" ] && [ ! -e /sys/class/net/eth0 ] && [ "$tries" -lt 30 ]; do
  tries=$((tries + 1))
  usleep 100000
done
if [ "$net_mode" = dhcp ]; then
  # nexus.net=dhcp: ask for the address (the host's DHCP server hands out the one IPAM gave).
  cat > /run/udhcpc.script <<'SCRIPT'
#!/bin/sh
case "$1" in
  deconfig) ip addr flush dev "$interface"; ip link set "$interface" up ;;
  bound|renew)
    ip addr flush dev "$interface"
    ip addr add "$ip/$mask" dev "$interface"
    gw=
    for gw in $router; do break; done
    [ -z "$gw" ] || ip route replace default via "$gw"
    [ -z "$dns" ] || for server in $dns; do echo "nameserver $server"; done > /etc/resolv.conf
    echo "$ip/$mask $gw" > /run/udhcpc.lease ;;
esac
SCRIPT
  chmod 755 /run/udhcpc.script
  if udhcpc -i eth0 -n -q -t 10 -T 1 -s /run/udhcpc.script >/run/udhcpc.log 2>&1 && read -r lease gw < /run/udhcpc.lease; then
    echo "${NET_PREFIX} eth0 $lease via $gw (dhcp)"
    net_gw="$gw"
  else
    echo "${NET_PREFIX}_FAILED eth0 dhcp: $(tail -n 1 /run/udhcpc.log)"
  fi
elif [ -n "$net_ip" ]; then
  if ip addr add "$net_ip" dev eth0 && ip link set eth0 up && { [ -z "$net_gw" ] || ip route add default via "$net_gw"; }; then
    echo "${NET_PREFIX} eth0 $net_ip\${net_gw:+ via $net_gw}"
  else
    echo "${NET_PREFIX}_FAILED eth0 $net_ip\${net_gw:+ via $net_gw}"
  fi
else
  echo "${NET_PREFIX} none"
fi

# The ACPI power button (QMP system_powerdown) runs /etc/acpi/PWRF/00000080. acpid forks before
# it opens the input devices and writes its pid file after: wait for the file, or a press right
# after the marker would be lost.
acpid -c /etc/acpi -l /run/acpid.log -p /run/acpid.pid
tries=0
while [ ! -s /run/acpid.pid ] && [ "$tries" -lt 50 ]; do
  tries=$((tries + 1))
  usleep 100000
done
[ -s /run/acpid.pid ] || echo "${ACPID_FAILED_MARKER} see /run/acpid.log"

# nexus.httpd=<port>: a web server with one page, for published-port tests.
if [ -n "$httpd_port" ]; then
  mkdir -p /run/www
  echo "nexus $(hostname)" > /run/www/index.html
  if httpd -p "$httpd_port" -h /run/www; then echo "${HTTPD_PREFIX} $httpd_port"; else echo "${HTTPD_PREFIX}_FAILED $httpd_port"; fi
fi

echo "${BOOT_MARKER}"
n=0
while :; do
  n=$((n + 1))
  echo "${COUNTER_PREFIX} $n"
  # nexus.exercise=1: some disk writes and a ping to the gateway each second, for metrics tests.
  if [ -n "$exercise" ]; then
    dd if=/dev/zero of=/nexus-exercise bs=64k count=4 conv=fsync 2>/dev/null
    [ -z "$net_gw" ] || ping -c 1 -W 1 "$net_gw" >/dev/null 2>&1
  fi
  for probe in $probes; do
    if ping -c 1 -W 1 "$probe" >/dev/null 2>&1; then seen=up; else seen=down; fi
    eval "was=\\$probe_$(echo "$probe" | tr '.' '_')"
    if [ "$seen" != "$was" ]; then
      echo "${PING_PREFIX} $probe $seen"
      eval "probe_$(echo "$probe" | tr '.' '_')=$seen"
    fi
  done
  sleep 1
done
`;

/**
 * Busybox acpid's handler for the power button (ACPI event PWRF 00000080): power off at once.
 * `poweroff -f` syncs first; the VM's disk is its own copy, so nothing else needs stopping.
 */
export const POWER_BUTTON_HANDLER = `#!/bin/sh
echo "${POWEROFF_MARKER}" > /dev/console
poweroff -f
`;

/** Where {@link POWER_BUTTON_HANDLER} lives in the root filesystem. */
export const POWER_BUTTON_HANDLER_PATH = 'etc/acpi/PWRF/00000080';
