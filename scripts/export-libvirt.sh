#!/bin/bash
# SPDX-License-Identifier: GPL-2.0-or-later
#
# Export the libvirt series for upstream, as scripts/export-series.sh does
# the QEMU one: apply libvirt-patches/series to a fresh worktree of the
# libvirt tree at its pristine base (libvirt-gmem-base), sign it as the
# poster (scripts/signoff.sh: SIGNOFF="Name <mail>" or git's global
# user.name/user.email; no identity or the placeholder and it refuses;
# libvirt requires the Signed-off-by), `git format-patch` it into
# .cache/export/libvirt/ (EXPORT_DIR/libvirt), check that the files apply
# with `git am` to pristine 11.3.0 and that nothing names the placeholder.
# With a libvirt-patches/cover-letter.txt (subject line, then blurb) it
# writes a cover letter too.
#
# The libvirt tree (.cache/libvirt/src) is only read; it is prepared
# (scripts/prepare-libvirt.sh, which fetches libvirt) only when it has no
# base yet.
set -euo pipefail
. "$(dirname "$0")/common.sh"
. "$(dirname "$0")/libvirt-common.sh"
SERIES_DIR=$LIBVIRT_PATCHES
SERIES_BASE="libvirt $LIBVIRT_VERSION"
. "$(dirname "$0")/series.sh"
. "$(dirname "$0")/signoff.sh"

poster_identity

TREE=$LIBVIRT_TREE
if ! git -C "$TREE" rev-parse -q --verify libvirt-gmem-base >/dev/null 2>&1
then
    "$TOP/scripts/prepare-libvirt.sh" >/dev/null
fi
top=${EXPORT_DIR:-$CACHE/export}
top=$(mkdir -p "$top" && cd "$top" && pwd)
out=$top/libvirt
mkdir -p "$out"
wt=$top-libvirt-tree
cleanup() {
    git -C "$TREE" worktree remove --force "$wt" >/dev/null 2>&1 || true
}
trap cleanup EXIT

# fresh_worktree (series.sh) starts at the QEMU tree's base tag
libvirt_worktree() {
    git -C "$TREE" worktree remove --force "$1" >/dev/null 2>&1 || true
    rm -rf "$1"
    git -C "$TREE" worktree prune
    git -C "$TREE" worktree add -q --detach "$1" libvirt-gmem-base
}

libvirt_worktree "$wt"
series_apply "$wt"
signoff_rewrite "$wt" libvirt-gmem-base

rm -f "$out"/*.patch
blurb=$LIBVIRT_PATCHES/cover-letter.txt
cover=()
[ ! -f "$blurb" ] || cover=(--cover-letter)
poster_git -C "$wt" format-patch -q "${cover[@]}" --no-signature --thread \
    --from="$POSTER" --subject-prefix="PATCH" -o "$out" libvirt-gmem-base..HEAD
if [ -f "$blurb" ]; then
    python3 - "$out/0000-cover-letter.patch" "$blurb" <<'PY'
import sys
cover, text = sys.argv[1], open(sys.argv[2]).read().split("\n", 1)
s = open(cover).read()
s = s.replace("*** SUBJECT HERE ***", text[0].strip())
s = s.replace("*** BLURB HERE ***", text[1].strip())
open(cover, "w").write(s)
PY
fi

# The exported files must apply to the pristine tree as they are and
# give the same tree: in the same worktree (a second checkout costs more)
signed=$(git -C "$wt" rev-parse HEAD)
git -C "$wt" reset -q --hard libvirt-gmem-base
poster_git -C "$wt" am -q $(ls "$out"/*.patch | grep -v '/0000-cover-letter')
[ "$(git -C "$wt" rev-parse HEAD^{tree})" = \
  "$(git -C "$wt" rev-parse "$signed^{tree}")" ] ||
    die "the exported libvirt series does not reproduce the libvirt tree"
git -C "$TREE" worktree remove --force "$wt"
signoff_check "$out"
n=$(ls "$out"/*.patch | grep -vc 0000-cover)
log "exported $n libvirt patches to $out, signed off by $POSTER"
