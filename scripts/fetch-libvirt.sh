#!/bin/bash
# SPDX-License-Identifier: GPL-2.0-or-later
#
# Fetch the libvirt 11.3.0 source (Debian's orig tarball of libvirt
# 11.3.0-2~bpo12+1) into the download cache, verify it and unpack it.
# Debian did not serve the package's .dsc when tried, so the tarball is
# checked against two things: the sha256 pinned in libvirt-patches/BASE,
# and the sha256 that bookworm-backports' Sources index lists for it (read
# through a private apt configuration, so apt checks the index against
# the signed InRelease; the system's apt setup is not touched).  A cached
# tarball that matches the pin is used without a download.
#
# Prints the path of the unpacked, pristine source tree on stdout.
set -euo pipefail
. "$(dirname "$0")/common.sh"
. "$(dirname "$0")/libvirt-common.sh"

DL="$CACHE/downloads"
mkdir -p "$DL"
tarball="$DL/$LIBVIRT_ORIG"

pinned() {
    [ -f "$tarball" ] &&
        [ "$(sha256sum "$tarball" | cut -d' ' -f1)" = "$LIBVIRT_ORIG_SHA256" ]
}

# The orig tarball's sha256 in the suite's signed Sources index
index_sha256() {
    local apt="$CACHE/apt-libvirt" uri f
    uri=$(debian_archive_uri) || return 1
    mkdir -p "$apt/lists/partial" "$apt/parts"
    echo "deb-src [signed-by=/usr/share/keyrings/debian-archive-keyring.gpg]" \
         "$uri $LIBVIRT_DEB_SUITE main" > "$apt/sources.list"
    log "reading the Sources index of $LIBVIRT_DEB_SUITE" \
        "(private apt configuration)"
    apt-get -o "Dir::Etc::SourceList=$apt/sources.list" \
            -o "Dir::Etc::SourceParts=$apt/parts" \
            -o "Dir::State::Lists=$apt/lists" \
            -o "APT::Sandbox::User=root" update -q >&2 || return 1
    # apt may keep the index compressed (lz4, gz): apt-helper reads it
    f=$(ls "$apt/lists/"*"${LIBVIRT_DEB_SUITE}_main_source_Sources"* \
        2>/dev/null | head -1)
    [ -n "$f" ] || return 1
    /usr/lib/apt/apt-helper cat-file "$f" | awk -v ver="$LIBVIRT_DEB_VERSION" -v orig="$LIBVIRT_ORIG" '
        /^Package: / { pkg = $2 } /^Version: / { v = $2 }
        /^Checksums-Sha256:/ { on = 1; next } /^[^ ]/ { on = 0 }
        on && pkg == "libvirt" && v == ver && $3 == orig { print $1 }
        /^$/ { pkg = ""; v = "" }' | head -1
}

if ! pinned; then
    uri=$(debian_archive_uri)
    sum=$(index_sha256) || die "cannot read the Sources index of" \
        "$LIBVIRT_DEB_SUITE"
    [ -n "$sum" ] || die "the Sources index of $LIBVIRT_DEB_SUITE does not" \
        "list $LIBVIRT_ORIG for libvirt $LIBVIRT_DEB_VERSION"
    [ "$sum" = "$LIBVIRT_ORIG_SHA256" ] || die "the Sources index lists" \
        "sha256 $sum for $LIBVIRT_ORIG, libvirt-patches/BASE pins" \
        "$LIBVIRT_ORIG_SHA256"
    log "fetching $LIBVIRT_ORIG (sha256 $sum, as the index lists it)"
    curl -fsS -o "$tarball.part" "$uri/pool/main/libv/libvirt/$LIBVIRT_ORIG" ||
        die "cannot download $uri/pool/main/libv/libvirt/$LIBVIRT_ORIG"
    mv "$tarball.part" "$tarball"
    pinned || die "$LIBVIRT_ORIG: sha256 $(sha256sum "$tarball" |
        cut -d' ' -f1), not $LIBVIRT_ORIG_SHA256"
fi

out="$LIBVIRT_CACHE/pristine"
if [ ! -f "$out/.qemu-gmem-unpacked" ]; then
    rm -rf "$out"
    mkdir -p "$out"
    log "unpacking $LIBVIRT_ORIG"
    tar -C "$out" --strip-components=1 -xJf "$tarball"
    grep -q "version: '$LIBVIRT_VERSION'" "$out/meson.build" ||
        die "unpacked tree is not libvirt $LIBVIRT_VERSION"
    touch "$out/.qemu-gmem-unpacked"
fi
echo "$out"
