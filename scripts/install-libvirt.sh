#!/bin/bash
# SPDX-License-Identifier: GPL-2.0-or-later
#
# Install what scripts/check-libvirt.py needs: libvirtd with its QEMU
# driver and virsh, bookworm's own libvirt 9.0.0 (postcopy recovery with
# `virsh migrate --postcopy-resume` since libvirt 8.5).
#
# Not bookworm-backports' 11.3.0: there the destination daemon crashes on
# --postcopy-resume.  qemuMigrationDstPrepareResume() passes fd=NULL to
# qemuProcessIncomingDefNew(), which dereferences it (`*fd`, the `int *fd`
# parameter came in around 11.2), and the destination libvirtd dies of
# SIGSEGV; the harness's memfd-recovery case fails.  With 9.0.0 every
# case passes (gmem-recovery skipped: this host's kernel lacks guest_memfd
# postcopy).
#
# Idempotent: prints what it changes; does nothing where all is present.
# Everything comes from bookworm (main and its security updates), without
# recommends.  Where 11.x from backports is installed, apt downgrades it
# and removes the packages 9.0.0 does not have (libvirt-common,
# libvirt-daemon-common, libvirt-daemon-log: 11.x split them off and
# declared they replace files of libvirt0 and the others); dpkg then
# may delete, with the removed packages, files 9.0.0's packages had just
# unpacked (seen here: 120 files the first time, cpu_map/*.xml among
# them, and libvirtd could not start a domain; 4 documentation files
# another time).  So where any file the four list is missing they are
# installed once more with --reinstall, and checked again.
#
# The QEMU driver resolves its built-in user and group, libvirt-qemu,
# before it reads qemu.conf (whose user = "root" the harness sets), and
# libvirtd stops where they do not exist: "Failed to parse user
# 'libvirt-qemu'".  libvirt-daemon-system's postinst creates them, but
# that package also brings polkit, the default network and the init
# scripts; so they are created here the way that postinst does (system
# user libvirt-qemu in group kvm, group libvirt-qemu, uid and gid 64055
# where free), each creation printed.
#
# No QEMU is installed: libvirt-daemon-driver-qemu 9.0.0 depends on none
# (libvirt-daemon only recommends one, and --no-install-recommends), and the
# harness never needs one (each domain's <emulator> is the project's
# build; its QEMU without the series, for virsh domcapabilities, is
# build-qemu.sh --stock's).  The firmware packages the
# project's build loads (seabios, ipxe-qemu, qemu-system-data) must come
# out of the install at the version they went in with: the install is
# simulated first and refused if it would change them, and checked again
# after.
set -euo pipefail

LV=9.0.0-4+deb12u2
PKGS="libvirt0 libvirt-daemon libvirt-daemon-driver-qemu libvirt-clients"
FIRMWARE="seabios ipxe-qemu qemu-system-data"

log() { echo "install-libvirt: $*"; }

# Files a package lists that are not there
missing_files() {
    dpkg-query -L "$1" 2>/dev/null | while read -r f; do
        [ -e "$f" ] || [ -L "$f" ] || echo "$f"
    done
}

# The packages are present at $LV, with every file they list
packages_present() {
    local p v
    for p in $PKGS; do
        v=$(dpkg-query -W -f='${Status} ${Version}' "$p" 2>/dev/null || true)
        [ "$v" = "install ok installed $LV" ] || return 1
        [ -z "$(missing_files "$p")" ] || return 1
    done
    command -v libvirtd >/dev/null && command -v virsh >/dev/null
}

qemu_user_present() {
    getent passwd libvirt-qemu >/dev/null &&
        getent group libvirt-qemu >/dev/null
}

# The user and group the QEMU driver needs to exist (see the top)
add_qemu_user() {
    local id=64055 opt
    if ! getent group kvm >/dev/null; then
        log "adding system group kvm"
        groupadd --system kvm
    fi
    if ! getent passwd libvirt-qemu >/dev/null; then
        opt=()
        getent passwd "$id" >/dev/null || opt=(--uid "$id")
        log "adding system user libvirt-qemu (group kvm, no login)"
        useradd --system "${opt[@]}" --gid kvm --home-dir /var/lib/libvirt \
            --no-create-home --shell /usr/sbin/nologin \
            --comment "Libvirt Qemu" libvirt-qemu
    fi
    if ! getent group libvirt-qemu >/dev/null; then
        opt=()
        getent group "$id" >/dev/null || opt=(--gid "$id")
        log "adding system group libvirt-qemu, user libvirt-qemu in it"
        groupadd --system "${opt[@]}" libvirt-qemu
        usermod -a -G libvirt-qemu libvirt-qemu
    fi
}

if packages_present && qemu_user_present; then
    log "libvirt $LV present"
    exit 0
fi

if [ "$(id -u)" != 0 ]; then
    log "libvirt $LV missing or incomplete ($PKGS, user and group" \
        "libvirt-qemu); run as root to install" >&2
    exit 1
fi

if packages_present; then
    add_qemu_user
    qemu_user_present || { log "cannot add libvirt-qemu" >&2; exit 1; }
    log "done"
    exit 0
fi

fw_versions() {
    for p in $FIRMWARE; do
        printf '%s=%s\n' "$p" \
            "$(dpkg-query -W -f='${Version}' "$p" 2>/dev/null || echo none)"
    done
}

before=$(fw_versions)
# pkg=version for all four, libvirt0 included, so that apt downgrades a
# backports libvirt rather than keeping its newer libraries.
args=()
for p in $PKGS; do
    args+=("$p=$LV")
done
export DEBIAN_FRONTEND=noninteractive
sim=$(apt-get -s install -q --allow-downgrades --no-install-recommends \
      "${args[@]}") || {
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
echo "$sim" | sed -n 's/^Inst /  install /p; s/^Remv /  remove /p'
apt-get install -y -q --allow-downgrades --no-install-recommends "${args[@]}"

# Files lost to the removal of 11.x's split packages (see the top)
lost=$(for p in $PKGS; do missing_files "$p"; done)
if [ -n "$lost" ]; then
    log "$(echo "$lost" | wc -l) files of ${PKGS// /, } missing" \
        "(e.g. $(echo "$lost" | head -1)); reinstalling them"
    apt-get install -y -q --reinstall --no-install-recommends "${args[@]}"
fi
add_qemu_user
if ! packages_present || ! qemu_user_present; then
    log "libvirt $LV still missing or incomplete after the install:" >&2
    for p in $PKGS; do missing_files "$p"; done | head >&2
    exit 1
fi

after=$(fw_versions)
if [ "$before" != "$after" ]; then
    log "firmware packages changed:" >&2
    diff <(echo "$before") <(echo "$after") >&2 || true
    exit 1
fi
log "firmware packages unchanged: $(echo $after)"
log "done"
