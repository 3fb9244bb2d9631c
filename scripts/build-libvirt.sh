#!/bin/bash
# SPDX-License-Identifier: GPL-2.0-or-later
#
# Build the patched libvirt (libvirt-patches/ on libvirt 11.3.0) in
# .cache/libvirt/build, incrementally: libvirtd with the QEMU and remote
# drivers, virsh and the unit tests, nothing else (scripts/libvirt-common.sh
# has the meson options).  Installs the Debian packages the build needs
# first, printing each one it installs.
#   build-libvirt.sh [--test]
# --test then runs the unit test suites the series touches
# (meson test; the counts are printed).
#
# The binaries run from the build folder (libvirt notices that and takes
# its driver modules, CPU map and schemas from the build and source
# trees): scripts/check-libvirt.py --libvirt .cache/libvirt/build.
# Prints the build folder on stdout.
set -euo pipefail
. "$(dirname "$0")/common.sh"
. "$(dirname "$0")/libvirt-common.sh"

# The unit tests of what the series changes
LIBVIRT_TESTS=(qemuxmlconftest genericxml2xmltest domaincapstest
    qemucaps2xmltest qemucapabilitiestest qemumigrationcookiexmltest
    "qemu replies check" virschematest qemuxmlactivetest qemuhotplugtest)

need=""
for p in $LIBVIRT_BUILD_DEPS; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'ok installed' ||
        need="$need $p"
done
if [ -n "$need" ]; then
    [ "$(id -u)" = 0 ] || die "libvirt's build needs:$need; run as root" \
        "to install them"
    log "installing libvirt's build dependencies:$need"
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q \
        --no-install-recommends $need >&2 || {
        apt-get update -q >&2
        DEBIAN_FRONTEND=noninteractive apt-get install -y -q \
            --no-install-recommends $need >&2
    }
fi

tree=$("$TOP/scripts/prepare-libvirt.sh")
dir=$LIBVIRT_BUILD

if [ ! -f "$dir/build.ninja" ] ||
   [ "$(cat "$dir/.qemu-gmem-opts" 2>/dev/null)" != "${LIBVIRT_MESON_OPTS[*]}" ]
then
    log "configuring $dir"
    rm -rf "$dir"
    meson setup "${LIBVIRT_MESON_OPTS[@]}" "$dir" "$tree" \
        > "$LIBVIRT_CACHE/configure.log" 2>&1 ||
        { tail -30 "$LIBVIRT_CACHE/configure.log" >&2; die "meson setup failed"; }
    echo "${LIBVIRT_MESON_OPTS[*]}" > "$dir/.qemu-gmem-opts"
fi

log "building libvirt in $dir"
ninja -C "$dir" >&2

if [ "${1:-}" = --test ]; then
    log "meson test: ${LIBVIRT_TESTS[*]}"
    meson test -C "$dir" --no-rebuild --print-errorlogs "${LIBVIRT_TESTS[@]}" \
        >&2 || die "libvirt unit tests failed" \
        "($dir/meson-logs/testlog.txt)"
fi
echo "$dir"
