#!/bin/bash
# SPDX-License-Identifier: GPL-2.0-or-later
#
# Export the series for upstream: apply qemu-patches/series to a fresh
# worktree at the pristine base, `git format-patch` it with a cover letter
# into .cache/export/, check that the exported files apply with `git am` to
# the pristine tree, and run QEMU's scripts/checkpatch.pl on each patch.
set -euo pipefail
. "$(dirname "$0")/common.sh"
. "$(dirname "$0")/series.sh"

"$TOP/scripts/prepare-tree.sh" >/dev/null
out=${EXPORT_DIR:-$CACHE/export}
wt=$CACHE/export-tree
check=$CACHE/export-check

fresh_worktree "$wt"
series_apply "$wt"

rm -rf "$out"
mkdir -p "$out"
git -C "$wt" format-patch -q --cover-letter --no-signature --thread \
    --subject-prefix="PATCH" -o "$out" qemu-gmem-base..HEAD
cover=$(ls "$out"/0000-cover-letter.patch)
python3 - "$cover" "$TOP/qemu-patches/cover-letter.txt" <<'PY'
import sys
cover, text = sys.argv[1], open(sys.argv[2]).read().split("\n", 1)
s = open(cover).read()
s = s.replace("*** SUBJECT HERE ***", text[0].strip())
s = s.replace("*** BLURB HERE ***", text[1].strip())
open(cover, "w").write(s)
PY

# The exported files must apply to the pristine tree as they are.
fresh_worktree "$check"
git -C "$check" am -q $(ls "$out"/*.patch | grep -v '/0000-cover-letter')
[ -z "$(git -C "$check" diff "$(git -C "$wt" rev-parse HEAD)")" ] ||
    die "the exported series does not reproduce the prepared tree"
git -C "$TREE" worktree remove --force "$check"

fail=0
for p in "$out"/*.patch; do
    case "$p" in */0000-cover-letter.patch) continue ;; esac
    # Clean means no error and no warning, not just a zero exit status.
    if ! res=$(cd "$wt" && ./scripts/checkpatch.pl "$p" 2>&1) ||
       ! grep -q "total: 0 errors, 0 warnings" <<<"$res"; then
        echo "$res" >&2
        log "checkpatch: $(basename "$p") has problems"
        fail=1
    fi
done
git -C "$TREE" worktree remove --force "$wt"
n=$(ls "$out" | grep -vc 0000-cover)
if [ $fail = 0 ]; then
    log "exported $n patches and a cover letter to $out; checkpatch clean"
else
    die "exported $n patches to $out; checkpatch found problems (above)"
fi
