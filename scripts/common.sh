# SPDX-License-Identifier: GPL-2.0-or-later
# Shared settings of the qemu-gmem scripts; sourced, not run.

TOP=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
CACHE=${QEMU_GMEM_CACHE:-$TOP/.cache}
SHARED=${QEMU_GMEM_SHARED:-$TOP/../shared}
QEMU_VERSION=$(awk '/^version/ { print $2 }' "$TOP/qemu-patches/BASE")
QEMU_DEB_VERSION=$(awk '/^debian-version/ { print $2 }' "$TOP/qemu-patches/BASE")
QEMU_ORIG_SHA256=$(awk '/^orig-sha256/ { print $2 }' "$TOP/qemu-patches/BASE")
QEMU_DSC=$(awk '/^debian-dsc/ { print $2 }' "$TOP/qemu-patches/BASE")
TREE=$CACHE/qemu
BUILD=$TREE/build

# How QEMU is configured, for the build and for the per-patch build check.
QEMU_CONFIGURE_OPTS=(--python=/usr/bin/python3 --target-list=x86_64-softmmu
      --disable-docs --disable-rust --disable-download --enable-slirp
      --enable-kvm --enable-numa --disable-install-blobs
      --firmwarepath=/usr/share/qemu:/usr/share/seabios:/usr/lib/ipxe/qemu)

log() { echo "[qemu-gmem] $*" >&2; }
die() { echo "[qemu-gmem] error: $*" >&2; exit 1; }
QTESTS_EXTRA=${QTESTS_EXTRA-"guest-memfd-test"}

# The Debian archive the host's apt sources name (never hard-coded).
debian_archive_uri() {
    local src=/etc/apt/sources.list.d/debian.sources uri
    uri=$(awk '/^URIs:/ { print $2; exit }' "$src" 2>/dev/null || true)
    if [ -z "$uri" ] && [ -f /etc/apt/sources.list ]; then
        uri=$(awk '$1 == "deb" && $2 ~ /debian\/?$/ { print $2; exit }' \
              /etc/apt/sources.list)
    fi
    [ -n "$uri" ] || die "cannot find the Debian archive in apt's sources"
    echo "$uri"
}

# A private apt configuration in folder $2 for Debian suite $1, so that
# another suite's packages can be read without touching the host's apt
# setup.  Sets APT_OPTS and PRIVATE_APT; reads the index on first use.
private_apt() {
    local suite=$1 apt=$2 uri
    uri=$(debian_archive_uri) || exit 1
    mkdir -p "$apt/lists/partial" "$apt/parts" "$apt/cache/archives/partial"
    echo "deb [signed-by=/usr/share/keyrings/debian-archive-keyring.gpg]" \
         "$uri $suite main" > "$apt/sources.list"
    APT_OPTS=(-o "Dir::Etc::SourceList=$apt/sources.list"
              -o "Dir::Etc::SourceParts=$apt/parts"
              -o "Dir::State::Lists=$apt/lists"
              -o "Dir::Cache=$apt/cache"
              -o "APT::Sandbox::User=root")
    PRIVATE_APT=$apt
    if ! ls "$apt/lists/"*_Packages* >/dev/null 2>&1; then
        private_apt_update
    fi
}

private_apt_update() {
    log "reading the package index of $(awk '{ print $4 }' \
         "$PRIVATE_APT/sources.list") (private apt configuration)"
    apt-get "${APT_OPTS[@]}" update -q >&2 ||
        die "apt-get update of $PRIVATE_APT/sources.list failed"
}
