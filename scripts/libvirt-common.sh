# SPDX-License-Identifier: GPL-2.0-or-later
# Settings of the libvirt scripts (fetch-libvirt, prepare-libvirt,
# build-libvirt); sourced after common.sh, not run.

LIBVIRT_PATCHES=$TOP/libvirt-patches
base_field() { awk -v k="$1" '$1 == k { print $2 }' "$LIBVIRT_PATCHES/BASE"; }
LIBVIRT_VERSION=$(base_field version)
LIBVIRT_DEB_VERSION=$(base_field debian-version)
LIBVIRT_DEB_SUITE=$(base_field debian-suite)
LIBVIRT_ORIG=$(base_field orig-tarball)
LIBVIRT_ORIG_SHA256=$(base_field orig-sha256)
LIBVIRT_CACHE=$CACHE/libvirt
LIBVIRT_TREE=$LIBVIRT_CACHE/src
LIBVIRT_BUILD=$LIBVIRT_CACHE/build

# What the build needs: the QEMU driver, libvirtd, the remote driver and
# virsh, and the unit tests; every other feature off (auto_features),
# docs off; libnl on, since 11.3.0's virnetdevbridge.c does not build on
# Linux without it (RTM_SETLINK undeclared).  -Dsystem=true: the daemon's
# paths are the system's (/etc/libvirt, /var/lib/libvirt, /run/libvirt),
# which is what scripts/check-libvirt.py bind-mounts folders of its own
# over.
LIBVIRT_MESON_OPTS=(--buildtype=debugoptimized -Dsystem=true
      -Dauto_features=disabled -Ddocs=disabled -Dtests=enabled
      -Ddriver_qemu=enabled -Ddriver_remote=enabled
      -Ddriver_libvirtd=enabled -Djson_c=enabled -Dreadline=enabled
      -Dlibnl=enabled
      -Dnls=disabled -Dexpensive_tests=disabled -Dgit_werror=disabled)

# Debian packages the build needs (bookworm)
LIBVIRT_BUILD_DEPS="meson ninja-build pkg-config gcc libc6-dev libglib2.0-dev
libxml2-dev libxml2-utils xsltproc libgnutls28-dev libtirpc-dev libjson-c-dev
libreadline-dev libnl-3-dev libnl-route-3-dev python3 python3-docutils perl"
