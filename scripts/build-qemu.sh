#!/bin/bash
# SPDX-License-Identifier: GPL-2.0-or-later
#
# Build qemu-system-x86_64 and the qtests the project runs, incrementally.
#   build-qemu.sh [--asan | --stock]
# --asan builds in a separate folder with ASan and UBSan.
# --stock builds QEMU without the series, the base the series applies to
# (git worktree of the prepared tree's tag qemu-gmem-base in
# .cache/qemu-stock), qemu-system-x86_64 only: what the benchmarks compare
# against (make bench-stock).
set -euo pipefail
. "$(dirname "$0")/common.sh"

"$TOP/scripts/prepare-tree.sh" >/dev/null

dir=$BUILD
opts=("${QEMU_CONFIGURE_OPTS[@]}")
targets="qemu-system-x86_64 tests/qtest/migration-test"
# qemu-storage-daemon: the vhost-user backend of a postcopy refusal test
targets="$targets storage-daemon/qemu-storage-daemon tests/unit/test-uffd"
for t in $QTESTS_EXTRA; do targets="$targets tests/qtest/$t"; done
case "${1:-}" in
--asan)
    dir=$TREE/build-asan
    # -O1, the level the sanitizers are documented with: it compiles in
    # about two thirds of the time -O2 takes, and this build is on the
    # critical path of make check (check-all.py --background)
    opts+=(--enable-asan --enable-ubsan --disable-werror -Doptimization=1)
    ;;
--stock)
    stock=$CACHE/qemu-stock
    base=$(git -C "$TREE" rev-parse qemu-gmem-base)
    if [ "$(git -C "$stock" rev-parse HEAD 2>/dev/null)" != "$base" ]; then
        log "checking out the base, $QEMU_VERSION without the series," \
            "in $stock"
        rm -rf "$stock"
        git -C "$TREE" worktree prune
        git -C "$TREE" worktree add -q --detach "$stock" qemu-gmem-base
    fi
    dir=$stock/build
    targets=qemu-system-x86_64
    ;;
esac

if [ ! -f "$dir/build.ninja" ] ||
   [ "$(cat "$dir/.qemu-gmem-opts" 2>/dev/null)" != "${opts[*]}" ]; then
    log "configuring $dir"
    rm -rf "$dir"
    mkdir -p "$dir"
    (cd "$dir" && ../configure "${opts[@]}") > "$CACHE/configure.log" 2>&1 ||
        { tail -30 "$CACHE/configure.log" >&2; die "configure failed"; }
    echo "${opts[*]}" > "$dir/.qemu-gmem-opts"
fi

log "building in $dir"
ninja -C "$dir" $targets >&2

# Run from its build folder, QEMU looks for firmware only below
# qemu-bundle/ (the configured --firmwarepath, relocated): link Debian's
# firmware files there.
for fw in /usr/share/qemu /usr/share/seabios /usr/lib/ipxe/qemu; do
    mkdir -p "$dir/qemu-bundle$fw"
    for f in "$fw"/*; do
        [ -e "$dir/qemu-bundle$f" ] || ln -s "$f" "$dir/qemu-bundle$f"
    done
done
echo "$dir"
