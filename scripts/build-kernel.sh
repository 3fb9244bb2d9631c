#!/bin/bash
# SPDX-License-Identifier: GPL-2.0-or-later
#
# Build the kernel that `make check-vm-uffd` boots: Debian's Linux 7.3
# source (linux-source-7.3) with kernel/uffd-guest-memfd.patch, which
# gives guest_memfd mappings userfaultfd missing and minor faults, so that
# the guest_memfd postcopy tests run for real instead of skipping.
#
#   build-kernel.sh        prints the path of the bzImage on stdout
#
# The configuration is `make tinyconfig` plus kernel/config: everything
# check-vm and the tests need is built in, so the kernel boots without
# modules.  Source and build are cached in .cache/kernel/; the kernel is
# rebuilt only when the patch, the configuration, this script or the
# Debian source version changes.  KERNEL_SERIES (default 7.3) picks
# another linux-source-X.Y, for which the patch must apply.
set -euo pipefail
. "$(dirname "$0")/common.sh"

SERIES=${KERNEL_SERIES:-7.3}
KDIR=$CACHE/kernel
PATCH=$TOP/kernel/uffd-guest-memfd.patch
FRAGMENT=$TOP/kernel/config
# Debian suites that carry linux-source-$SERIES, tried in this order.
SUITES="trixie-backports sid forky"

mkdir -p "$KDIR"
APT_OPTS=()
PRIVATE_APT=""

# The newest linux-source-$SERIES any of SUITES offers: sets SUITE, DEBVER.
SUITE="" DEBVER=""
find_source() {
    local s v
    for s in $SUITES; do
        private_apt "$s" "$KDIR/apt-$s"
        v=$(apt-cache "${APT_OPTS[@]}" show "linux-source-$SERIES" 2>/dev/null |
            awk '/^Version:/ { print $2 }' | sort -V | tail -1)
        if [ -n "$v" ]; then
            SUITE=$s DEBVER=$v
            return 0
        fi
    done
    return 1
}

# The cached source tarball, if any (a second run downloads nothing).
tarball=$(ls "$KDIR"/src-*/linux-source-"$SERIES".tar.xz 2>/dev/null |
          sort -V | tail -1 || true)
if [ -z "$tarball" ]; then
    find_source || die "no Debian suite of '$SUITES' has linux-source-$SERIES"
    src=$KDIR/src-$DEBVER
    mkdir -p "$src"
    log "downloading linux-source-$SERIES $DEBVER from Debian $SUITE"
    (cd "$src" && apt-get "${APT_OPTS[@]}" download -q \
         "linux-source-$SERIES=$DEBVER" 2>&1 |
         { grep -v 'unsandboxed as root' >&2 || true; }) ||
        die "apt-get download linux-source-$SERIES=$DEBVER failed"
    deb=$(ls "$src"/linux-source-"$SERIES"_*.deb)
    dpkg-deb --fsys-tarfile "$deb" |
        tar -xf - -O "./usr/src/linux-source-$SERIES.tar.xz" \
            > "$src/linux-source-$SERIES.tar.xz.tmp"
    mv "$src/linux-source-$SERIES.tar.xz.tmp" "$src/linux-source-$SERIES.tar.xz"
    rm -f "$deb"
    tarball=$src/linux-source-$SERIES.tar.xz
fi
DEBVER=$(basename "$(dirname "$tarball")")
DEBVER=${DEBVER#src-}

tree=$KDIR/linux-source-$SERIES
image=$tree/arch/x86/boot/bzImage
key=$( { echo "$DEBVER"; cat "$PATCH" "$FRAGMENT" "$0"; } |
       sha256sum | cut -c1-16)
if [ -f "$image" ] && [ "$(cat "$tree/.qemu-gmem-key" 2>/dev/null)" = "$key" ]; then
    echo "$image"
    exit 0
fi

log "unpacking linux-source-$SERIES $DEBVER"
rm -rf "$tree"
tar -C "$KDIR" -xJf "$tarball"
[ -d "$tree" ] || die "$tarball did not unpack to $tree"
patch -s -d "$tree" -p1 --no-backup-if-mismatch < "$PATCH" ||
    die "kernel/uffd-guest-memfd.patch does not apply to linux-source-$SERIES $DEBVER"

log "configuring (tinyconfig + kernel/config)"
(cd "$tree" &&
 make -s tinyconfig &&
 scripts/kconfig/merge_config.sh -m .config "$FRAGMENT" &&
 make -s olddefconfig) > "$KDIR/config.log" 2>&1 ||
    { tail -20 "$KDIR/config.log" >&2; die "kernel configuration failed"; }
# An option that olddefconfig dropped (a dependency missing, a renamed
# symbol) would give a kernel the tests silently skip on: refuse it.
missing=""
for opt in $(sed -n 's/^\(CONFIG_[A-Z0-9_]*=.*\)$/\1/p' "$FRAGMENT"); do
    grep -qxF "$opt" "$tree/.config" || missing="$missing ${opt%%=*}"
done
[ -z "$missing" ] ||
    die "kernel/config options lost by olddefconfig:$missing"

log "building Linux $SERIES ($DEBVER) with kernel/uffd-guest-memfd.patch"
t0=$(date +%s)
make -C "$tree" -j"$(($(nproc) + 1))" bzImage > "$KDIR/build.log" 2>&1 ||
    { grep -E 'error|Error' "$KDIR/build.log" | head -20 >&2
      die "kernel build failed (log: $KDIR/build.log)"; }
log "kernel $(cat "$tree/include/config/kernel.release") built in" \
    "$(($(date +%s) - t0)) s"
echo "$key" > "$tree/.qemu-gmem-key"
echo "$image"
