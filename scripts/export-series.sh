#!/bin/bash
# SPDX-License-Identifier: GPL-2.0-or-later
#
# Export the series for upstream: apply qemu-patches/series to a fresh
# worktree at the pristine base, sign it as the poster (scripts/signoff.sh:
# SIGNOFF="Name <mail>" or git's global user.name/user.email; no identity
# or the placeholder and it refuses), `git format-patch` it with a cover
# letter into .cache/export/ (EXPORT_DIR), check that the exported files
# apply with `git am` to the pristine tree, run QEMU's scripts/checkpatch.pl
# on each patch, and check that nothing exported names the placeholder.
#
# The prepared tree (.cache/qemu) is only read: its base tag and objects
# are used, its branch and working copy are not touched (it is prepared
# first only when it has no base yet).
#
#   --print-identity   print the identity the export would sign with, and stop
set -euo pipefail
. "$(dirname "$0")/common.sh"
. "$(dirname "$0")/series.sh"
. "$(dirname "$0")/signoff.sh"

poster_identity
if [ "${1:-}" = --print-identity ]; then
    echo "$POSTER"
    exit 0
fi

if ! git -C "$TREE" rev-parse -q --verify qemu-gmem-base >/dev/null 2>&1; then
    "$TOP/scripts/prepare-tree.sh" >/dev/null
fi
out=${EXPORT_DIR:-$CACHE/export}
out=$(mkdir -p "$out" && cd "$out" && pwd)
wt=$out-tree
cleanup() {
    git -C "$TREE" worktree remove --force "$wt" >/dev/null 2>&1 || true
}
trap cleanup EXIT

fresh_worktree "$wt"
series_apply "$wt"
signoff_rewrite "$wt" qemu-gmem-base

# Only the files this script writes: libvirt/ is scripts/export-libvirt.sh's
rm -f "$out"/*.patch
poster_git -C "$wt" format-patch -q --cover-letter --no-signature --thread \
    --from="$POSTER" --subject-prefix="PATCH" -o "$out" qemu-gmem-base..HEAD
cover=$(ls "$out"/0000-cover-letter.patch)
python3 - "$cover" "$TOP/qemu-patches/cover-letter.txt" <<'PY'
import sys
cover, text = sys.argv[1], open(sys.argv[2]).read().split("\n", 1)
s = open(cover).read()
s = s.replace("*** SUBJECT HERE ***", text[0].strip())
s = s.replace("*** BLURB HERE ***", text[1].strip())
open(cover, "w").write(s)
PY

# The exported files must apply to the pristine tree as they are and
# give the same tree: in the same worktree (a second checkout costs more)
signed=$(git -C "$wt" rev-parse HEAD)
git -C "$wt" reset -q --hard qemu-gmem-base
poster_git -C "$wt" am -q $(ls "$out"/*.patch | grep -v '/0000-cover-letter')
[ "$(git -C "$wt" rev-parse HEAD^{tree})" = \
  "$(git -C "$wt" rev-parse "$signed^{tree}")" ] ||
    die "the exported series does not reproduce the prepared tree"

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
signoff_check "$out"
n=$(ls "$out"/*.patch | grep -vc 0000-cover)
if [ $fail = 0 ]; then
    log "exported $n patches and a cover letter to $out, signed off by" \
        "$POSTER; checkpatch clean"
else
    die "exported $n patches to $out; checkpatch found problems (above)"
fi
