# SPDX-License-Identifier: GPL-2.0-or-later
# Shared settings of the qemu-gmem scripts; sourced, not run.

TOP=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
CACHE=${QEMU_GMEM_CACHE:-$TOP/.cache}
SHARED=${QEMU_GMEM_SHARED:-$TOP/../shared}
QEMU_VERSION=$(awk '/^version/ { print $2 }' "$TOP/qemu-patches/BASE")
QEMU_DEB_VERSION=$(awk '/^debian-version/ { print $2 }' "$TOP/qemu-patches/BASE")
QEMU_ORIG_SHA256=$(awk '/^orig-sha256/ { print $2 }' "$TOP/qemu-patches/BASE")
QEMU_DSC=$(awk '/^debian-dsc/ { print $2 }' "$TOP/qemu-patches/BASE")
TREE=$CACHE/qemu
BUILD=$TREE/build

# How QEMU is configured, for the build and for the per-patch build check.
QEMU_CONFIGURE_OPTS=(--python=/usr/bin/python3 --target-list=x86_64-softmmu
      --disable-docs --disable-rust --disable-download --enable-slirp
      --enable-kvm --enable-numa --disable-install-blobs
      --firmwarepath=/usr/share/qemu:/usr/share/seabios:/usr/lib/ipxe/qemu)

log() { echo "[qemu-gmem] $*" >&2; }
die() { echo "[qemu-gmem] error: $*" >&2; exit 1; }
QTESTS_EXTRA=${QTESTS_EXTRA-"guest-memfd-test"}
