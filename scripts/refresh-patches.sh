#!/bin/bash
# SPDX-License-Identifier: GPL-2.0-or-later
#
# Developer tool: turn the commits of the prepared tree (qemu-gmem-base..HEAD)
# back into qemu-patches/.  Each commit's edits to existing QEMU files become
# a patch file; the files it adds that this repository owns (same path here)
# are listed after it in qemu-patches/series instead of being put in the
# patch, so that they are edited in one place only.
set -euo pipefail
. "$(dirname "$0")/common.sh"

git -C "$TREE" rev-parse -q --verify qemu-gmem-base >/dev/null ||
    die "no prepared tree at $TREE"
[ -z "$(git -C "$TREE" status --porcelain --untracked-files=no)" ] ||
    die "the prepared tree has uncommitted changes; commit them first"

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
{
    echo "# Applied in order to QEMU $QEMU_VERSION by scripts/prepare-tree.sh."
    echo "# PATCH-FILE [NEW-FILE ...]: see scripts/series.sh for the format."
} > "$tmp/series"

n=0
for c in $(git -C "$TREE" rev-list --reverse qemu-gmem-base..HEAD); do
    n=$((n + 1))
    owned=()
    for f in $(git -C "$TREE" diff-tree --no-commit-id --name-only -r \
               --diff-filter=A "$c"); do
        if [ -f "$TOP/$f" ]; then
            owned+=("$f")
            # kept here as the series leaves it (scripts/series.sh)
            cmp -s "$TOP/$f" <(git -C "$TREE" show "HEAD:$f") ||
                log "warning: $f differs between this repo and the tree"
        fi
    done
    excl=()
    for f in "${owned[@]}"; do excl+=(":(exclude)$f"); done
    name=$(git -C "$TREE" format-patch -1 --no-signature --zero-commit -N \
           --start-number "$n" -o "$tmp" "$c" -- . "${excl[@]}")
    echo "$(basename "$name") ${owned[*]}" | sed 's/ *$//' >> "$tmp/series"
done

rm -f "$TOP"/qemu-patches/*.patch
cp "$tmp"/*.patch "$TOP/qemu-patches/" 2>/dev/null || true
cp "$tmp/series" "$TOP/qemu-patches/series"
# The tree now matches the series: record it so prepare does not re-apply.
. "$(dirname "$0")/series.sh"
series_hash > "$TREE/.git/qemu-gmem-series"
log "wrote $n patches to qemu-patches/"
