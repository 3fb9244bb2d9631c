# SPDX-License-Identifier: GPL-2.0-or-later
# Apply qemu-patches/series to a QEMU git tree; sourced, not run.
# SERIES_DIR and SERIES_BASE, set before sourcing, name another series
# and what it applies to (scripts/prepare-libvirt.sh: libvirt-patches/,
# libvirt 11.3.0).
#
# Format of qemu-patches/series, one patch a line, in order:
#
#     PATCH-FILE [NEW-FILE ...]
#
# PATCH-FILE is a git-format-patch file in qemu-patches/ holding the edits
# to existing QEMU files.  The NEW-FILEs are files of this repository, at
# the path they take in the QEMU tree, that the same upstream commit adds;
# they are copied in and amended into that commit, so that the prepared
# tree has exactly one commit per upstream patch.  '#' starts a comment.
#
# A NEW-FILE is kept here as the whole series leaves it.  Later patches of
# the series may change it: their patch files carry those changes, and the
# commit that adds the file gets it with them undone.

SERIES_DIR=${SERIES_DIR:-$TOP/qemu-patches}
SERIES_BASE=${SERIES_BASE:-QEMU $QEMU_VERSION}
SERIES_NAME=${SERIES_DIR#"$TOP"/}

series_lines() {
    sed -e 's/#.*//' -e '/^[[:space:]]*$/d' "$SERIES_DIR/series"
}

# All NEW-FILEs of the series, one a line.
series_new_files() {
    series_lines | awk '{ for (i = 2; i <= NF; i++) print $i }'
}

# A hash of everything the commits of the prepared tree are made from,
# except the new files' contents (those are synced without re-applying).
series_hash() {
    {
        cat "$SERIES_DIR/series"
        series_lines | while read -r p _; do cat "$SERIES_DIR/$p"; done
    } | sha256sum | cut -d' ' -f1
}

# series_undo_later DIR INDEX FILE: undo in DIR what the patches after the
# INDEX-th (from 0) change in FILE, last patch first.
series_undo_later() {
    local dir=$1 index=$2 f=$3 j
    local -a all
    mapfile -t all < <(series_lines | awk '{ print $1 }')
    for ((j = ${#all[@]} - 1; j > index; j--)); do
        if grep -qx -- "+++ b/$f" "$SERIES_DIR/${all[j]}"; then
            git -C "$dir" apply -R --include="$f" \
                "$SERIES_DIR/${all[j]}" >&2 ||
                die "$f: cannot undo $SERIES_NAME/${all[j]} in it"
        fi
    done
}

# series_apply DIR: DIR is a clean git tree at the pristine base.
series_apply() {
    local dir=$1 patch files f index=0
    while read -r patch files; do
        [ -f "$SERIES_DIR/$patch" ] ||
            die "$SERIES_NAME/series names $patch, which does not exist"
        if ! git -C "$dir" am -q --keep-cr "$SERIES_DIR/$patch" >&2; then
            git -C "$dir" am --abort >/dev/null 2>&1 || true
            die "patch $SERIES_NAME/$patch does not apply to $SERIES_BASE" \
                "(base plus the patches before it)"
        fi
        if [ -n "$files" ]; then
            for f in $files; do
                [ -f "$TOP/$f" ] || die "$patch: new file $f does not exist"
                mkdir -p "$dir/$(dirname "$f")"
                cp "$TOP/$f" "$dir/$f"
                series_undo_later "$dir" "$index" "$f"
                git -C "$dir" add -f "$f"
            done
            git -C "$dir" commit -q --amend --no-edit --no-verify
        fi
        index=$((index + 1))
    done < <(series_lines)
}

# fresh_worktree DIR: a new worktree of the prepared tree at the base.
fresh_worktree() {
    git -C "$TREE" worktree remove --force "$1" >/dev/null 2>&1 || true
    rm -rf "$1"
    git -C "$TREE" worktree prune
    git -C "$TREE" worktree add -q --detach "$1" qemu-gmem-base
}

# series_sync_new_files DIR: copy the new files whose contents differ.
series_sync_new_files() {
    local dir=$1 f
    for f in $(series_new_files); do
        if ! cmp -s "$TOP/$f" "$dir/$f"; then
            mkdir -p "$dir/$(dirname "$f")"
            cp "$TOP/$f" "$dir/$f"
            log "synced $f"
        fi
    done
}
