#!/bin/bash
# SPDX-License-Identifier: GPL-2.0-or-later
#
# Build every patch of the series on its own: apply the series to a
# worktree at the pristine base, then check out each commit in turn and
# build qemu-system-x86_64 and the tests that exist at that point, in a
# build folder of its own (.cache/series-build, incremental across runs).
set -euo pipefail
. "$(dirname "$0")/common.sh"
. "$(dirname "$0")/series.sh"

"$TOP/scripts/prepare-tree.sh" >/dev/null
wt=$CACHE/series-tree
fresh_worktree "$wt"
series_apply "$wt"
head=$(git -C "$wt" rev-parse HEAD)
bdir=$CACHE/series-build
mkdir -p "$bdir"
fail=0
for c in $(git -C "$wt" rev-list --reverse qemu-gmem-base..HEAD); do
    subj=$(git -C "$wt" log -1 --format=%s "$c")
    git -C "$wt" checkout -q "$c"
    if [ ! -f "$bdir/build.ninja" ]; then
        (cd "$bdir" && "$wt/configure" "${QEMU_CONFIGURE_OPTS[@]}") \
            > "$CACHE/series-configure.log" 2>&1 ||
            die "configure failed, see $CACHE/series-configure.log"
    fi
    targets="qemu-system-x86_64 tests/qtest/migration-test"
    [ -f "$wt/tests/qtest/guest-memfd-test.c" ] &&
        targets="$targets tests/qtest/guest-memfd-test"
    [ -f "$wt/tests/unit/test-uffd.c" ] &&
        targets="$targets tests/unit/test-uffd"
    if ninja -C "$bdir" $targets > "$CACHE/series-build.log" 2>&1; then
        log "builds: $subj"
    else
        tail -20 "$CACHE/series-build.log" >&2
        log "DOES NOT BUILD: $subj"
        fail=1
    fi
done
git -C "$wt" checkout -q "$head"
git -C "$TREE" worktree remove --force "$wt"
[ $fail = 0 ] || die "some patches do not build on their own"
log "every patch builds on its own"
