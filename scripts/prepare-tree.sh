#!/bin/bash
# SPDX-License-Identifier: GPL-2.0-or-later
#
# Prepare the QEMU tree that gets built: a git repository of the pristine
# 10.2.2 source (tag qemu-gmem-base) with one commit per patch of
# qemu-patches/series.  Re-applies the series only when a patch or the
# series changed; otherwise only copies in new files that changed, so the
# build stays incremental.  Prints the tree's path on stdout.
set -euo pipefail
. "$(dirname "$0")/common.sh"
. "$(dirname "$0")/series.sh"

if [ -n "${QEMU_SRC:-}" ]; then
    [ -f "$QEMU_SRC/VERSION" ] && grep -qx "$QEMU_VERSION" "$QEMU_SRC/VERSION" ||
        die "QEMU_SRC=$QEMU_SRC is not a QEMU $QEMU_VERSION source tree"
    pristine=$QEMU_SRC
else
    pristine=$("$TOP/scripts/fetch-qemu.sh")
fi

git_id=(-c user.name="qemu-gmem developers"
        -c user.email="devel@qemu-gmem.invalid")

if ! git -C "$TREE" rev-parse -q --verify qemu-gmem-base >/dev/null 2>&1; then
    log "creating the base tree in $TREE"
    rm -rf "$TREE"
    mkdir -p "$TREE"
    tar -C "$pristine" --exclude=./.git --exclude=./debian \
        --exclude=./build --exclude=./.qemu-gmem-unpacked -cf - . |
        tar -C "$TREE" -xf -
    git -C "$TREE" init -q
    git -C "$TREE" config user.name "qemu-gmem developers"
    git -C "$TREE" config user.email "devel@qemu-gmem.invalid"
    git -C "$TREE" add -A -f .
    git -C "$TREE" commit -q -m "QEMU $QEMU_VERSION (pristine)"
    # Debian's +ds tarball has no firmware blobs; Debian's own patch stops
    # the build from unpacking the edk2 ones.  Part of the base, not of the
    # series: an upstream tree has the blobs and needs no such change.
    deb_patch=$pristine/debian/patches/skip-unpack-edk2-blobs.patch
    if [ ! -f "$TREE/pc-bios/edk2-x86_64-code.fd.bz2" ]; then
        [ -f "$deb_patch" ] || die "no edk2 blobs and no Debian patch for it"
        patch -s -d "$TREE" -p1 < "$deb_patch"
        git -C "$TREE" commit -q -a \
            -m "Debian: skip unpacking of edk2 blobs (+ds tarball has none)"
    fi
    git -C "$TREE" tag qemu-gmem-base
fi

stamp="$TREE/.git/qemu-gmem-series"
want=$(series_hash)
if [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
    log "applying qemu-patches/series"
    git -C "$TREE" am --abort >/dev/null 2>&1 || true
    git -C "$TREE" reset -q --hard qemu-gmem-base
    rm -f "$stamp"
    series_apply "$TREE"
    echo "$want" > "$stamp"
    log "tree at $(git -C "$TREE" log --oneline | wc -l) commits"
fi
series_sync_new_files "$TREE"
echo "$TREE"
