#!/bin/bash
# SPDX-License-Identifier: GPL-2.0-or-later
#
# Fetch the QEMU 10.2.2 source (Debian source package qemu 1:10.2.2+ds-1)
# into the download cache, verify it against the checksums of its .dsc and
# unpack it.  Order of sources: the cache (a second run downloads nothing),
# the Debian archive through a private apt configuration (the system's apt
# setup is not touched), then the copy in ../shared/cache.
#
# Prints the path of the unpacked, pristine source tree on stdout.
set -euo pipefail
. "$(dirname "$0")/common.sh"

DL="$CACHE/downloads"
mkdir -p "$DL"
dsc="$DL/$QEMU_DSC"

verify() {
    # Every file the .dsc lists must be present with the listed sha256.
    [ -f "$dsc" ] || return 1
    awk '/^Checksums-Sha256:/ { on = 1; next } /^[^ ]/ { on = 0 }
         on && NF == 3 { print $1 "  " $3 }' "$dsc" > "$DL/sha256sums"
    [ -s "$DL/sha256sums" ] || return 1
    grep -q "$QEMU_ORIG_SHA256" "$DL/sha256sums" || {
        log "the .dsc does not list the pinned orig tarball sha256"
        return 1
    }
    (cd "$DL" && sha256sum --quiet -c sha256sums) >&2
}

fetch_archive() {
    local uri apt="$CACHE/apt"
    uri=$(debian_archive_uri) || return 1
    mkdir -p "$apt/lists/partial" "$apt/parts"
    cat > "$apt/sources.list" <<EOT
deb-src [signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] $uri sid main
EOT
    local opts=(-o "Dir::Etc::SourceList=$apt/sources.list"
                -o "Dir::Etc::SourceParts=$apt/parts"
                -o "Dir::State::Lists=$apt/lists"
                -o "APT::Sandbox::User=root")
    log "fetching qemu=$QEMU_DEB_VERSION from the Debian archive"
    apt-get "${opts[@]}" update -q >&2 || return 1
    (cd "$DL" && apt-get "${opts[@]}" source --download-only -q \
        "qemu=$QEMU_DEB_VERSION") >&2 || return 1
}

fetch_shared() {
    local s="$SHARED/cache/debian-qemu-10.2.2"
    [ -f "$s/$QEMU_DSC" ] || return 1
    log "using the copy in $s"
    cp "$s"/* "$DL"/
}

if ! verify 2>/dev/null; then
    if ! { fetch_archive && verify; }; then
        log "the archive did not give a verified source; trying shared/"
        fetch_shared && verify || die "no verified QEMU $QEMU_VERSION source"
    fi
fi

out="$CACHE/qemu-pristine"
if [ ! -f "$out/.qemu-gmem-unpacked" ]; then
    rm -rf "$out"
    log "unpacking"
    dpkg-source --no-check --skip-patches -x "$dsc" "$out" >&2
    grep -qx "$QEMU_VERSION" "$out/VERSION" ||
        die "unpacked tree is $(cat "$out/VERSION"), not $QEMU_VERSION"
    touch "$out/.qemu-gmem-unpacked"
fi
echo "$out"
