#!/bin/bash
# SPDX-License-Identifier: GPL-2.0-or-later
#
# Prepare the libvirt tree that gets built: a git repository of the
# pristine 11.3.0 source (tag libvirt-gmem-base) with one commit per patch
# of libvirt-patches/series, in .cache/libvirt/src.  Re-applies the series
# only when a patch or the series changed, so the build stays
# incremental.  Prints the tree's path on stdout.  libvirt's own checks
# run there: meson test -C .cache/libvirt/build --suite syntax-check.
#
# To change a patch: commit in that tree, then write the series back with
#   git -C .cache/libvirt/src format-patch -o libvirt-patches libvirt-gmem-base
# (and update libvirt-patches/series).
set -euo pipefail
. "$(dirname "$0")/common.sh"
. "$(dirname "$0")/libvirt-common.sh"
SERIES_DIR=$LIBVIRT_PATCHES
SERIES_BASE="libvirt $LIBVIRT_VERSION"
. "$(dirname "$0")/series.sh"

pristine=$("$TOP/scripts/fetch-libvirt.sh")
TREE=$LIBVIRT_TREE

if ! git -C "$TREE" rev-parse -q --verify libvirt-gmem-base >/dev/null 2>&1
then
    log "creating the libvirt base tree in $TREE"
    rm -rf "$TREE"
    mkdir -p "$TREE"
    tar -C "$pristine" --exclude=./.qemu-gmem-unpacked -cf - . |
        tar -C "$TREE" -xf -
    git -C "$TREE" init -q
    git -C "$TREE" config user.name "qemu-gmem developers"
    git -C "$TREE" config user.email "devel@qemu-gmem.invalid"
    git -C "$TREE" add -A -f .
    # keycodemapdb is a git submodule upstream: keep it out of the index
    # as there, or libvirt's syntax-check (git ls-files) checks its files
    git -C "$TREE" rm -r -q --cached subprojects/keycodemapdb
    echo "/subprojects/keycodemapdb/" >> "$TREE/.git/info/exclude"
    git -C "$TREE" commit -q -m "libvirt $LIBVIRT_VERSION (pristine)"
    git -C "$TREE" tag libvirt-gmem-base
fi

stamp="$TREE/.git/qemu-gmem-series"
want=$(series_hash)
if [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
    log "applying libvirt-patches/series"
    git -C "$TREE" am --abort >/dev/null 2>&1 || true
    git -C "$TREE" reset -q --hard libvirt-gmem-base
    rm -f "$stamp"
    series_apply "$TREE"
    echo "$want" > "$stamp"
    log "libvirt tree at $(git -C "$TREE" log --oneline | wc -l) commits"
fi
echo "$TREE"
