#!/bin/bash
# SPDX-License-Identifier: GPL-2.0-or-later
#
# Install what scripts/check-libvirt.sh needs: libvirtd with its QEMU
# driver and virsh, libvirt 11.3.0 from bookworm-backports (postcopy
# recovery with `virsh migrate --postcopy-resume`; bookworm's 9.0.0 would
# do too, but 11.3.0 is what this harness was written against).
#
# Idempotent: prints what it changes; does nothing where all is present.
# Only the libvirt packages themselves come from backports; everything
# they pull in comes from bookworm (apt's default priority), without
# recommends.  The QEMU driver's dependency on a QEMU is met by bookworm's
# qemu-system-x86 7.2, which the harness never runs (each domain's
# <emulator> is the project's build).  The firmware packages the project's
# build loads (seabios, ipxe-qemu, qemu-system-data) must come out of the
# install at the version they went in with: the install is simulated
# first and refused if it would change them, and checked again after.
set -euo pipefail

LV=11.3.0-2~bpo12+1
PKGS="libvirt-daemon libvirt-daemon-driver-qemu libvirt-clients"
FIRMWARE="seabios ipxe-qemu qemu-system-data"

log() { echo "install-libvirt: $*"; }

have_all=1
for p in $PKGS; do
    v=$(dpkg-query -W -f='${Status} ${Version}' "$p" 2>/dev/null || true)
    case $v in
        "install ok installed $LV") ;;
        *) have_all=0 ;;
    esac
done
if [ $have_all = 1 ] && command -v libvirtd >/dev/null &&
   command -v virsh >/dev/null; then
    log "libvirt $LV present"
    exit 0
fi

if [ "$(id -u)" != 0 ]; then
    log "libvirt $LV missing ($PKGS); run as root to install" >&2
    exit 1
fi

# bookworm-backports, the way install-deps.sh adds it (it is needed for
# meson too, so it is normally there already).
"$(dirname "$0")/install-deps.sh" >/dev/null

fw_versions() {
    for p in $FIRMWARE; do
        printf '%s=%s\n' "$p" \
            "$(dpkg-query -W -f='${Version}' "$p" 2>/dev/null || echo none)"
    done
}

before=$(fw_versions)
# pkg/suite, not pkg=version: apt then takes the libvirt libraries the
# packages depend on (which pin the same version) from backports as well.
args=()
for p in $PKGS; do
    args+=("$p/bookworm-backports")
done
export DEBIAN_FRONTEND=noninteractive
sim=$(apt-get -s install -q --no-install-recommends "${args[@]}") || {
    echo "$sim" >&2
    log "apt-get cannot install ${args[*]}" >&2
    exit 1
}
for p in $FIRMWARE; do
    if echo "$sim" | grep -Eq "^(Inst|Remv) $p "; then
        echo "$sim" | grep -E "^(Inst|Remv) $p " >&2
        log "refusing: installing libvirt would change $p, whose" \
            "firmware the project's QEMU build loads" >&2
        exit 1
    fi
done
log "installing ${args[*]} (--no-install-recommends); apt would:"
echo "$sim" | sed -n 's/^Inst /  install /p'
apt-get install -y -q --no-install-recommends "${args[@]}"

after=$(fw_versions)
if [ "$before" != "$after" ]; then
    log "firmware packages changed:" >&2
    diff <(echo "$before") <(echo "$after") >&2 || true
    exit 1
fi
log "firmware packages unchanged: $(echo $after)"
log "done"
