#!/usr/bin/env bash
# Installs the Debian packages the test suite uses for real, when they are missing (as root, with
# apt-get); otherwise says exactly what is missing. Run by `npm test` (pretest) and by .ci/run.
#   qemu-system-x86   boots guests, probes KVM
#   postgresql        the harness starts a throwaway server (initdb + pg_ctl)
#   iproute2 iptables nftables   host networking (bridges, TAPs, NAT, namespaces)
#   dnsmasq-base   the agent's DHCP server per network
#   busybox-static e2fsprogs cpio xz-utils   guest image building
#   procps util-linux   ps, runuser, nsenter
#   openssl   throwaway certificate authorities for the TLS tests
set -euo pipefail
packages=(qemu-system-x86 postgresql iproute2 iptables nftables dnsmasq-base busybox-static e2fsprogs cpio xz-utils procps util-linux openssl)

missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
done
[ ${#missing[@]} -eq 0 ] && exit 0

if [ "$(id -u)" -ne 0 ] || ! command -v apt-get >/dev/null; then
  echo "The tests need these Debian packages: ${missing[*]}" >&2
  echo "Install them as root: apt-get install -y ${missing[*]}" >&2
  exit 1
fi
echo "Installing what the tests need: ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends "${missing[@]}"
