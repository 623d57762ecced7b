#!/bin/sh
# Installs the system packages libnfq needs to build and test, if any is missing
# (Debian/Ubuntu; uses sudo when not root). Extra package names may be passed as arguments.
set -eu
pkgs="pkg-config gcc libnetfilter-queue-dev libmnl-dev libnfnetlink-dev iptables iproute2 util-linux linux-libc-dev iperf3 $*"
missing=""
for p in $pkgs; do
    if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
        missing="$missing $p"
    fi
done
[ -z "$missing" ] && exit 0
if ! command -v apt-get >/dev/null 2>&1; then
    echo "install-deps: missing packages:$missing (this script knows only apt-get; see README)" >&2
    exit 1
fi
if [ "$(id -u)" -eq 0 ]; then sudo=""; else sudo="sudo"; fi
echo "install-deps: installing$missing" >&2
$sudo apt-get update -qq
$sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $missing >/dev/null
