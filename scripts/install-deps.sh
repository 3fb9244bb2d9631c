#!/bin/bash
# SPDX-License-Identifier: GPL-2.0-or-later
#
# Install what building and testing the patched QEMU needs, from Debian.
# Idempotent: does nothing (and touches no apt configuration) where all
# is present.  Prints every change it makes to apt's configuration.
#
# The archive address is never hard-coded: it is taken from the machine's
# own Debian source entry, so the same mirror (or proxy) the host is set up
# with is used for bookworm-backports and for sid's source index.
set -euo pipefail

PKGS="build-essential git pkg-config libglib2.0-dev libpixman-1-dev
libslirp-dev ninja-build python3-venv python3-setuptools flex bison
libfdt-dev zlib1g-dev dpkg-dev bzip2 xz-utils seabios ipxe-qemu
qemu-system-data busybox-static cpio kmod device-tree-compiler libnuma-dev zstd
libelf-dev bc"
BPO_PKGS="meson python3-pycotap"

need=""
for p in $PKGS; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'ok installed' ||
        need="$need $p"
done
meson_ok=0
if command -v meson >/dev/null &&
   dpkg --compare-versions "$(meson --version)" ge 1.5; then
    meson_ok=1
fi
pycotap_ok=0
/usr/bin/python3 -c 'import pycotap' 2>/dev/null && pycotap_ok=1

if [ -z "$need" ] && [ $meson_ok = 1 ] && [ $pycotap_ok = 1 ]; then
    echo "install-deps: all build dependencies present"
    exit 0
fi

if [ "$(id -u)" != 0 ]; then
    echo "install-deps: missing:$need (meson>=1.5: $meson_ok," \
         "pycotap: $pycotap_ok); run as root to install" >&2
    exit 1
fi

src=/etc/apt/sources.list.d/debian.sources
uri=""
if [ -f "$src" ]; then
    uri=$(awk '/^URIs:/ { print $2; exit }' "$src")
fi
if [ -z "$uri" ] && [ -f /etc/apt/sources.list ]; then
    uri=$(awk '$1 == "deb" && $3 ~ /^bookworm$/ { print $2; exit }' \
          /etc/apt/sources.list)
fi
if [ -z "$uri" ]; then
    echo "install-deps: cannot find the Debian archive in apt's sources" >&2
    exit 1
fi

bpo=/etc/apt/sources.list.d/qemu-gmem-backports.sources
if ! grep -rqs 'bookworm-backports' /etc/apt/sources.list.d/ \
        /etc/apt/sources.list; then
    echo "install-deps: adding $bpo (bookworm-backports from $uri)"
    cat > "$bpo" <<EOT
Types: deb
URIs: $uri
Suites: bookworm-backports
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
EOT
fi

export DEBIAN_FRONTEND=noninteractive
apt-get update -q
[ -z "$need" ] || apt-get install -y -q --no-install-recommends $need
if [ $meson_ok = 0 ] || [ $pycotap_ok = 0 ]; then
    apt-get install -y -q --no-install-recommends -t bookworm-backports \
        $BPO_PKGS
fi
echo "install-deps: done"
