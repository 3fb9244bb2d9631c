#!/bin/bash
# SPDX-License-Identifier: GPL-2.0-or-later
#
# Run the test suite inside a nested VM booted on another kernel.
#
#   make check-vm [KERNEL=...] [MODULES=...] [TIMEOUT=...]
#   scripts/check-vm.sh            (same variables, from the environment)
#
# KERNEL   default debian:sid: the newest Debian kernel in the archive
#          (bookworm's 6.12 has no mmap-able guest_memfd, so nothing of
#          the backend could run on it);
#          empty: the newest Debian linux-image-<ver>-amd64 the host's apt
#          sources see;
#          a Debian kernel version (6.12.57+deb12-amd64, with or without
#          the linux-image- prefix): that package;
#          debian:SUITE (debian:sid, debian:trixie-backports): the newest
#          generic amd64 kernel of that suite, read through a private apt
#          configuration under .cache/vm/apt-SUITE (the host's apt sources
#          are not touched); debian:SUITE:VERSION: that version from it;
#          a path to a bzImage: that kernel.
# MODULES  with a bzImage only: its lib/modules/<ver> folder (as written by
#          `make modules_install`); without it every driver the harness
#          needs must be built in.
# TIMEOUT  seconds for the whole VM run, boot included (default 1200).
#          Past it the VM is killed and the script exits 124.
#
# Also read from the environment:
# CHECK_VM_CMD   the command run inside (bash, cwd = the repository);
#                default: scripts/run-tests.sh --suite vm
# CHECK_VM_ENV   names of further variables to copy into the VM (CI, V
#                and QEMU_GMEM_CACHE are always copied)
# CHECK_VM_QEMU  the outer QEMU (default: the project's build, else Debian's)
# CHECK_VM_PROBE the probe run first (default .cache/tools-build/gmem-probe)
# CHECK_VM_SMP, CHECK_VM_MEM   VM size (default 2 CPUs, 4096 MiB)
# CHECK_VM_VERBOSE=1   show the kernel's boot messages
# CHECK_VM_PREPARE=1   fetch the kernel and build the initramfs, then exit
#                      without booting (make check does it in advance)
#
# The VM runs under TCG with -cpu max: TCG emulates SVM, so kvm_amd loads
# inside and /dev/kvm works there.  The host's root folder is shared read-
# only over virtio-9p and used as the VM's root (with a tmpfs overlay where
# the kernel has overlayfs, tmpfs on /tmp, /run, /var/tmp otherwise), so
# binaries built on the host run inside unchanged.  The console is copied
# to stdout and to .cache/vm/console-<time>.log.  The exit status is the
# inner command's, read from the `CHECK-VM-EXIT <status>` line the VM
# prints before it stops.  See docs/check-vm.md.
set -euo pipefail
. "$(dirname "$0")/common.sh"

KERNEL=${KERNEL-debian:sid}
MODULES=${MODULES:-}
TIMEOUT=${TIMEOUT:-1200}
CHECK_VM_CMD=${CHECK_VM_CMD:-scripts/run-tests.sh --suite vm}
CHECK_VM_SMP=${CHECK_VM_SMP:-2}
CHECK_VM_MEM=${CHECK_VM_MEM:-4096}
VMDIR=$CACHE/vm
PROBE=${CHECK_VM_PROBE:-$CACHE/tools-build/gmem-probe}

vlog() { echo "[check-vm] $*" >&2; }
vdie() { echo "[check-vm] error: $*" >&2; exit 1; }
RUN=$VMDIR/run.$$
trap 'rm -rf "$RUN" "$VMDIR/.unpack.$$" "$VMDIR/.initramfs.$$"' EXIT

case $TIMEOUT in
    ''|*[!0-9]*) vdie "TIMEOUT must be a number of seconds, not '$TIMEOUT'" ;;
esac
mkdir -p "$VMDIR/debs"
t_start=$(date +%s.%N)

# ---------------------------------------------------------------- tools
need_tools=""
for t in busybox:busybox-static cpio:cpio depmod:kmod modprobe:kmod \
         xz:xz-utils zstd:zstd timeout:coreutils; do
    command -v "${t%%:*}" >/dev/null || need_tools="$need_tools ${t#*:}"
done
BUSYBOX=$(command -v busybox || true)
if [ -n "$BUSYBOX" ] && ldd "$BUSYBOX" >/dev/null 2>&1; then
    need_tools="$need_tools busybox-static"     # a dynamic busybox
fi
[ -z "$need_tools" ] ||
    vdie "missing tools; install Debian packages:$need_tools" \
         "(scripts/install-deps.sh)"

QEMU=${CHECK_VM_QEMU:-$BUILD/qemu-system-x86_64}
if [ ! -x "$QEMU" ]; then
    if [ -n "${CHECK_VM_QEMU:-}" ]; then
        vdie "CHECK_VM_QEMU=$QEMU is not an executable"
    fi
    [ -x /usr/bin/qemu-system-x86_64 ] ||
        vdie "no outer QEMU: $QEMU is not built (scripts/build-qemu.sh)" \
             "and /usr/bin/qemu-system-x86_64 is not installed"
    vlog "NOTE: $QEMU is not built; using Debian's" \
         "/usr/bin/qemu-system-x86_64 as the outer VM"
    QEMU=/usr/bin/qemu-system-x86_64
fi

# ---------------------------------------------------------------- kernel
# Sets KIMAGE (bzImage), KVER (release, may be empty) and MODROOT (a
# folder holding lib/modules/$KVER with modules.dep, or empty).
KIMAGE="" KVER="" MODROOT=""

# apt options: none for the host's own sources, a private configuration
# for debian:SUITE.
APT_OPTS=()
PRIVATE_APT=""

# The newest generic amd64 kernel package apt knows, as a version string
# (6.12.117+deb12-amd64), or nothing.
newest_debian_kernel() {
    apt-cache "${APT_OPTS[@]}" pkgnames linux-image- 2>/dev/null |
        sed -nE 's/^linux-image-([0-9]+\.[0-9]+[.0-9]*(-[0-9]+)?(\+[a-z0-9.~]+)?-amd64)(-unsigned)?$/\1/p' |
        sort -uV | tail -1
}

# The cached version with the newest release, if any.
newest_cached_kernel() {
    ls -d "$VMDIR"/linux-*/ 2>/dev/null | sed -E 's|.*/linux-(.*)/$|\1|' |
        sort -V | tail -1
}

kernel_package() {
    local p
    for p in "linux-image-$1" "linux-image-$1-unsigned"; do
        if apt-cache "${APT_OPTS[@]}" show "$p" >/dev/null 2>&1; then
            echo "$p"
            return
        fi
    done
}

download() {
    (cd "$VMDIR/debs" && apt-get "${APT_OPTS[@]}" download -q "$1" 2>&1 |
         { grep -v 'unsandboxed as root' >&2 || true; })
}

# The kernel image in an unpacked package tree $1 of version $2.
kernel_image() {
    local f
    for f in "$1/boot/vmlinuz-$2" "$1/usr/lib/modules/$2/vmlinuz"; do
        [ ! -f "$f" ] || { echo "$f"; return; }
    done
}

# The .deb of package $1, from .cache/vm/debs or downloaded there.
fetch_deb() {
    local pkg=$1 deb
    deb=$(ls "$VMDIR/debs/${pkg}_"*.deb 2>/dev/null | head -1 || true)
    if [ -z "$deb" ]; then
        vlog "downloading $pkg"
        if ! download "$pkg"; then
            # A stale private index names a file the archive dropped.
            [ -n "$PRIVATE_APT" ] || vdie "apt-get download $pkg failed"
            private_apt_update
            download "$pkg" || vdie "apt-get download $pkg failed"
        fi
        deb=$(ls "$VMDIR/debs/${pkg}_"*.deb | head -1)
    fi
    echo "$deb"
}

debian_kernel() {
    local ver=$1 dir=$VMDIR/linux-$1 pkg deb tmp dep debs=()
    if [ ! -f "$dir/.unpacked" ]; then
        pkg=""
        for p in "linux-image-$ver" "linux-image-$ver-unsigned"; do
            if ls "$VMDIR/debs/${p}_"*.deb >/dev/null 2>&1; then
                pkg=$p
                break
            fi
        done
        if [ -z "$pkg" ]; then
            pkg=$(kernel_package "$ver")
            if [ -z "$pkg" ] && [ -n "$PRIVATE_APT" ]; then
                private_apt_update
                pkg=$(kernel_package "$ver")
            fi
            [ -n "$pkg" ] ||
                vdie "no Debian package linux-image-$ver(-unsigned) in apt's" \
                     "lists (apt-get update? apt-cache search linux-image-)"
        fi
        deb=$(fetch_deb "$pkg")
        tmp=$VMDIR/.unpack.$$
        rm -rf "$tmp"
        vlog "unpacking $(basename "$deb")"
        dpkg -x "$deb" "$tmp"
        debs+=("$deb")
        # Debian 7.x splits the kernel: linux-image-V depends on
        # linux-binary-V (the image) and linux-modules-V.
        if [ -z "$(kernel_image "$tmp" "$ver")" ]; then
            for dep in $(dpkg-deb -f "$deb" Depends | tr ',' '\n' |
                         sed -E 's/[|(].*//; s/ //g' | grep -F -- "-$ver"); do
                deb=$(fetch_deb "$dep")
                vlog "unpacking $(basename "$deb")"
                dpkg -x "$deb" "$tmp"
                debs+=("$deb")
            done
        fi
        # Newer packages install to usr/lib/modules; depmod -b and
        # modprobe -d look in lib/modules.
        if [ ! -e "$tmp/lib/modules" ] && [ -d "$tmp/usr/lib/modules" ]; then
            ln -s usr/lib "$tmp/lib"
        fi
        [ -n "$(kernel_image "$tmp" "$ver")" ] ||
            vdie "linux-image-$ver has no boot/vmlinuz-$ver nor" \
                 "usr/lib/modules/$ver/vmlinuz (nor do its dependencies)"
        depmod -b "$tmp" "$ver"
        touch "$tmp/.unpacked"
        rm -rf "$dir"
        mv "$tmp" "$dir"
        rm -f "${debs[@]}"      # the unpacked tree is the cache
    fi
    KIMAGE=$(kernel_image "$dir" "$ver")
    KVER=$ver
    MODROOT=$dir
}

if [ -z "$KERNEL" ]; then
    ver=$(newest_debian_kernel)
    if [ -z "$ver" ] && [ "$(id -u)" = 0 ]; then
        vlog "apt knows no linux-image package: running apt-get update"
        apt-get update -q >&2 || true
        ver=$(newest_debian_kernel)
    fi
    if [ -z "$ver" ]; then
        ver=$(newest_cached_kernel)
        [ -n "$ver" ] ||
            vdie "no Debian kernel found (apt-get update as root, or KERNEL=)"
        vlog "apt knows no linux-image package; using the cached $ver"
    fi
    debian_kernel "$ver"
elif [ -f "$KERNEL" ]; then
    KIMAGE=$(readlink -f "$KERNEL")
    if [ -n "$MODULES" ]; then
        [ -d "$MODULES" ] || vdie "MODULES=$MODULES is not a folder"
        MODULES=$(readlink -f "$MODULES")
        KVER=$(basename "$MODULES")
        # modprobe -d wants <root>/lib/modules/<ver>: make a root for it.
        MODROOT=$VMDIR/user-modules/$(echo "$MODULES" | sha256sum | cut -c1-12)
        mkdir -p "$MODROOT/lib/modules"
        if [ -f "$MODULES/modules.dep" ]; then
            rm -rf "${MODROOT:?}/lib/modules/$KVER"
            ln -sfn "$MODULES" "$MODROOT/lib/modules/$KVER"
        else
            vlog "$MODULES has no modules.dep: copying it and running depmod"
            rm -rf "${MODROOT:?}/lib/modules/$KVER"
            cp -a "$MODULES" "$MODROOT/lib/modules/$KVER"
            depmod -b "$MODROOT" "$KVER"
        fi
    fi
elif [[ $KERNEL == debian:* ]]; then
    [ -z "$MODULES" ] || vlog "MODULES is ignored with a Debian kernel"
    suite=${KERNEL#debian:}
    ver=""
    if [[ $suite == *:* ]]; then ver=${suite#*:}; suite=${suite%%:*}; fi
    [[ $suite =~ ^[a-z][a-z0-9-]*$ ]] || vdie "KERNEL=$KERNEL: bad suite name"
    ver=${ver#linux-image-}
    if [ -z "$ver" ] || [ ! -f "$VMDIR/linux-$ver/.unpacked" ]; then
        private_apt "$suite" "$VMDIR/apt-$suite"
        [ -n "$ver" ] || ver=$(newest_debian_kernel)
        [ -n "$ver" ] || vdie "no generic amd64 kernel in Debian $suite"
    fi
    debian_kernel "$ver"
elif [[ $KERNEL == */* ]]; then
    vdie "KERNEL=$KERNEL: no such file"
else
    [ -z "$MODULES" ] || vlog "MODULES is ignored with a Debian kernel"
    debian_kernel "${KERNEL#linux-image-}"
fi
[ -r "$KIMAGE" ] || vdie "cannot read the kernel image $KIMAGE"

# ---------------------------------------------------------------- initramfs
# The base image (busybox, modules, /init) is cached per kernel and per
# version of this script; each run appends a small archive with the
# command and the environment (the kernel unpacks concatenated archives).
MODS_WANTED="virtio_pci virtio_ring virtio 9pnet_virtio 9p netfs overlay
kvm kvm_amd kvm_intel"

write_init() {
    cat > "$1" <<'INIT'
#!/bin/sh
# /init of the check-vm initramfs (busybox sh).
export PATH=/bin
say() { echo "CHECK-VM: $*"; }
fail() {
    echo "CHECK-VM: dmesg tail:"
    dmesg | tail -20
    echo "CHECK-VM-ERROR: $*"
    echo "CHECK-VM-EXIT 125"
    sync
    reboot -f
    exit 1
}
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev
echo "CHECK-VM-KERNEL $(uname -r)"
if [ -s /modules.list ]; then
    while read -r m; do
        # Load the KVM module that matches the CPU the outer QEMU offers.
        case $m in
            kvm_intel.ko|kvm-intel.ko) grep -qw vmx /proc/cpuinfo || continue ;;
            kvm_amd.ko|kvm-amd.ko) grep -qw svm /proc/cpuinfo || continue ;;
        esac
        err=$(insmod "/modules/$m" 2>&1) || say "insmod $m: $err"
    done < /modules.list
fi

if [ -c /dev/kvm ]; then
    say "/dev/kvm present"
else
    echo "CHECK-VM-WARNING: ======================================================="
    echo "CHECK-VM-WARNING: no /dev/kvm in the VM: tests that need KVM will skip"
    grep -qw svm /proc/cpuinfo && say "cpu has svm" ||
        say "cpu has no svm flag (outer -cpu must offer SVM or VMX)"
    [ -d /sys/module/kvm ] && say "kvm loaded" || say "kvm not loaded"
    [ -d /sys/module/kvm_amd ] && say "kvm_amd loaded" ||
        say "kvm_amd not loaded"
    [ -s /modules.list ] ||
        say "no modules in the initramfs: KVM must be built in, or give MODULES="
    say "kernel messages about kvm/svm/vmx, then the last ones:"
    dmesg | grep -iE 'kvm|svm|vmx' | tail -10
    dmesg | tail -5
    echo "CHECK-VM-WARNING: ======================================================="
fi

# Migration tests talk over 127.0.0.1.
ip link set lo up 2>/dev/null || ifconfig lo 127.0.0.1 up 2>/dev/null ||
    say "cannot bring up lo"

mkdir -p /host /rw /newroot
mount -t 9p -o trans=virtio,version=9p2000.L,msize=512000,cache=loose,ro \
    host /host ||
    fail "cannot mount the host root over 9p: the kernel needs 9P_FS," \
         "NET_9P_VIRTIO and VIRTIO_PCI built in or as modules (MODULES=)"
mount -t tmpfs -o mode=755 rw /rw
root=/host
if grep -qw overlay /proc/filesystems; then
    mkdir -p /rw/upper /rw/work
    if mount -t overlay \
            -o lowerdir=/host,upperdir=/rw/upper,workdir=/rw/work \
            overlay /newroot 2>/dev/null; then
        root=/newroot
        say "root: host / over 9p, tmpfs overlay (writes stay in the VM)"
    fi
fi
[ $root = /newroot ] ||
    say "root: host / over 9p, read-only; tmpfs on /tmp /run /var/tmp"
mount -t proc proc $root/proc
mount -t sysfs sysfs $root/sys
mount -t devtmpfs devtmpfs $root/dev
mkdir -p $root/dev/pts $root/dev/shm $root/dev/hugepages 2>/dev/null
mount -t devpts devpts $root/dev/pts
mount -t tmpfs -o mode=1777 tmpfs $root/dev/shm
mount -t hugetlbfs hugetlbfs $root/dev/hugepages 2>/dev/null
. /check-vm.env
# The repository may itself live below /tmp, /run or /var/tmp (a CI
# checkout, say): keep its view aside before the fresh tmpfs hides it,
# and put it back on top afterwards.
keep=""
for d in /tmp /run /var/tmp; do
    case "$CHECK_VM_TOP/" in "$d"/*) keep=$d ;; esac
done
if [ -n "$keep" ] && [ -d "$root$CHECK_VM_TOP" ]; then
    mkdir -p /keep && mount -o bind "$root$CHECK_VM_TOP" /keep
fi
for d in /tmp /run /var/tmp; do
    [ -d $root$d ] && mount -t tmpfs -o mode=1777 tmpfs $root$d
done
if [ -n "$keep" ] && [ -d /keep/scripts ]; then
    mkdir -p "$root$CHECK_VM_TOP" && mount -o bind /keep "$root$CHECK_VM_TOP"
fi
if [ -d $root/sys/kernel/debug ]; then
    mount -t debugfs debugfs $root/sys/kernel/debug 2>/dev/null
fi
[ -d "$root$CHECK_VM_TOP" ] ||
    fail "$CHECK_VM_TOP is not visible in the VM"
if [ -d "$root$CHECK_VM_TOP/.cache" ]; then
    mkdir -p "$root$CHECK_VM_TOP/.cache/vm-scratch" 2>/dev/null
    [ -d "$root$CHECK_VM_TOP/.cache/vm-scratch" ] &&
        mount -t tmpfs tmpfs "$root$CHECK_VM_TOP/.cache/vm-scratch"
fi
cp /check-vm.cmd /check-vm.env $root/run/ 2>/dev/null ||
    cp /check-vm.cmd /check-vm.env $root/tmp/

echo "CHECK-VM-STAGE command, $(cut -d' ' -f1 /proc/uptime) s after boot"
# The command runs under the host's bash, in the repository.
chroot $root /bin/bash -c '
    d=/run; [ -f /run/check-vm.cmd ] || d=/tmp
    . $d/check-vm.env
    cd "$CHECK_VM_TOP" || exit 125
    if [ -x "$CHECK_VM_PROBE" ]; then
        echo "CHECK-VM-PROBE-BEGIN"
        "$CHECK_VM_PROBE" 2>&1
        echo "CHECK-VM-PROBE-END $?"
    else
        echo "CHECK-VM-PROBE-NONE probe not built ($CHECK_VM_PROBE)"
    fi
    echo "CHECK-VM-CMD-BEGIN"
    bash $d/check-vm.cmd 2>&1
    rc=$?
    echo "CHECK-VM-CMD-END $rc"
    exit $rc
' < /dev/null
rc=$?
echo "CHECK-VM-STAGE done, $(cut -d' ' -f1 /proc/uptime) s after boot"
echo "CHECK-VM-EXIT $rc"
sync
# QEMU runs with -no-reboot: a reset ends it, with or without ACPI.
reboot -f
INIT
    chmod 755 "$1"
}

# The .ko files (from MODROOT) to load, in order, dependencies first.
module_list() {
    local m line
    [ -n "$MODROOT" ] || return 0
    for m in $MODS_WANTED; do
        modprobe -d "$MODROOT" -S "$KVER" --show-depends "$m" 2>/dev/null ||
            true
    done | while read -r line; do
        case $line in
            insmod\ *) line=${line#insmod }; echo "${line%% *}" ;;
        esac
    done | awk '!seen[$0]++'
}

build_base() {
    local out=$1 tmp f ko
    tmp=$VMDIR/.initramfs.$$
    rm -rf "$tmp"
    mkdir -p "$tmp"/{bin,dev,proc,sys,modules,run,tmp}
    cp "$BUSYBOX" "$tmp/bin/busybox"
    for a in $("$BUSYBOX" --list); do
        [ "$a" = busybox ] || ln -s busybox "$tmp/bin/$a"
    done
    write_init "$tmp/init"
    : > "$tmp/modules.list"
    for f in $(module_list); do
        ko=$(basename "$f")
        case $ko in
            *.ko.xz)  ko=${ko%.xz};  xz -dc "$f" > "$tmp/modules/$ko" ;;
            *.ko.zst) ko=${ko%.zst}; zstd -qdc "$f" > "$tmp/modules/$ko" ;;
            *.ko.gz)  ko=${ko%.gz};  gzip -dc "$f" > "$tmp/modules/$ko" ;;
            *.ko)     cp "$f" "$tmp/modules/$ko" ;;
            *) continue ;;
        esac
        echo "$ko" >> "$tmp/modules.list"
    done
    (cd "$tmp" && find . | LC_ALL=C sort | cpio -o -H newc --quiet) > "$out.tmp"
    mv "$out.tmp" "$out"
    rm -rf "$tmp"
}

key=$( { echo "$KIMAGE $KVER $MODROOT $BUSYBOX"
         stat -c '%s %Y' "$KIMAGE" "$BUSYBOX"
         [ -z "$MODROOT" ] ||
             stat -L -c '%s %Y' "$MODROOT/lib/modules/$KVER/modules.dep"
         cat "$0"; } | sha256sum | cut -c1-16)
tag=${KVER:-none}
[ "$MODROOT" = "$VMDIR/linux-$KVER" ] || tag=custom-$tag
BASE=$VMDIR/initramfs-$tag-$key.cpio
if [ ! -f "$BASE" ]; then
    vlog "building the initramfs"
    rm -f "$VMDIR/initramfs-$tag-"*.cpio
    build_base "$BASE"
fi
nmods=$(cpio -it --quiet < "$BASE" | grep -c '^modules/.*\.ko$' || true)
if [ -n "${CHECK_VM_PREPARE:-}" ]; then
    vlog "prepared: kernel $KIMAGE, initramfs $BASE; not booted"
    exit 0
fi

rm -rf "$RUN"
mkdir -p "$RUN/root"
printf '%s\n' "$CHECK_VM_CMD" > "$RUN/root/check-vm.cmd"
{
    # The inner shell is busybox sh first: keep the values plain.
    printf 'export CHECK_VM_TOP=%s\n' "'$TOP'"
    printf 'export CHECK_VM_PROBE=%s\n' "'$PROBE'"
    echo "export PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
    echo "export HOME=/tmp TMPDIR=/tmp LANG=C.UTF-8 TERM=dumb CHECK_VM=1"
    for v in CI V QEMU_GMEM_CACHE ${CHECK_VM_ENV:-}; do
        [ -n "${!v+set}" ] || continue
        case ${!v} in
            *"'"*) vlog "CHECK_VM_ENV: $v has a quote, not passed" ;;
            *) printf "export %s='%s'\n" "$v" "${!v}" ;;
        esac
    done
} > "$RUN/root/check-vm.env"
(cd "$RUN/root" && printf '%s\n' check-vm.cmd check-vm.env |
     cpio -o -H newc --quiet) > "$RUN/extra.cpio"
cat "$BASE" "$RUN/extra.cpio" > "$RUN/initramfs.cpio"

# ---------------------------------------------------------------- run
LOG=$VMDIR/console-$(date +%Y%m%d-%H%M%S).log
# Keep the last 20 console logs.
# Keep the 20 newest console logs.  (On a first run there are none, and
# ls fails: that must not end the script under pipefail.)
{ ls -t "$VMDIR"/console-*.log 2>/dev/null || true; } | tail -n +20 |
    while read -r f; do rm -f "$f"; done
append="console=ttyS0 panic=-1 mitigations=off"
[ "${CHECK_VM_VERBOSE:-0}" = 1 ] || append="$append quiet loglevel=3"
vlog "outer QEMU: $QEMU"
vlog "kernel:     $KIMAGE${KVER:+ ($KVER)}, $nmods modules in the initramfs"
ncmd=$(printf '%s\n' "$CHECK_VM_CMD" | wc -l)
if [ "$ncmd" -gt 1 ]; then
    vlog "command:    $(head -1 <<<"$CHECK_VM_CMD") ... ($ncmd lines)"
else
    vlog "command:    $CHECK_VM_CMD"
fi
vlog "timeout:    ${TIMEOUT}s; console log: $LOG"

# An uninstalled build looks for firmware under build/qemu-bundle only:
# name Debian's firmware folders (seabios, qemu-system-data) explicitly.
fwdirs=()
for d in /usr/share/seabios /usr/share/qemu /usr/lib/ipxe/qemu; do
    [ ! -d "$d" ] || fwdirs+=(-L "$d")
done

t_boot=$(date +%s.%N)
set +e
# --foreground: Ctrl-C at a terminal reaches QEMU too.
timeout --foreground -k 10 "$TIMEOUT" "$QEMU" \
    -accel tcg -cpu max -smp "$CHECK_VM_SMP" -m "$CHECK_VM_MEM" \
    "${fwdirs[@]}" -machine q35 -nodefaults -display none -no-reboot \
    -kernel "$KIMAGE" -initrd "$RUN/initramfs.cpio" -append "$append" \
    -chardev "stdio,id=con,signal=off,logfile=$LOG" -serial chardev:con \
    -virtfs local,path=/,mount_tag=host,security_model=none,readonly=on,multidevs=remap \
    < /dev/null
qrc=$?
set -e
t_end=$(date +%s.%N)

clean=""
[ ! -f "$LOG" ] || clean=$(tr -d '\r' < "$LOG")
marker=$(sed -n 's/^CHECK-VM-EXIT \([0-9]*\).*/\1/p' <<<"$clean" | tail -1)
kver_in=$(sed -n 's/^CHECK-VM-KERNEL //p' <<<"$clean" | tail -1)
echo
echo "==================== check-vm summary ===================="
echo "kernel:   ${kver_in:-unknown (the VM did not get that far)} ($KIMAGE)"
if grep -q '^CHECK-VM-WARNING: no /dev/kvm' <<<"$clean"; then
    echo "/dev/kvm: MISSING in the VM (see CHECK-VM-WARNING lines above)"
elif grep -q '^CHECK-VM: /dev/kvm present' <<<"$clean"; then
    echo "/dev/kvm: present"
fi
if grep -q '^CHECK-VM-PROBE-NONE' <<<"$clean"; then
    echo "probe:    not built ($PROBE)"
elif grep -q '^CHECK-VM-PROBE-BEGIN' <<<"$clean"; then
    # The probe's last lines are its summary.
    sed -n '/^CHECK-VM-PROBE-BEGIN/,/^CHECK-VM-PROBE-END/p' <<<"$clean" |
        { grep -v '^CHECK-VM-PROBE-' || true; } | { grep -v '^$' || true; } |
        tail -3 | sed 's/^/probe:    /'
    pst=$(sed -n 's/^CHECK-VM-PROBE-END //p' <<<"$clean" | tail -1)
    [ "${pst:-0}" = 0 ] || echo "probe:    exited with status ${pst:-?}"
fi
grep '^CHECK-VM-ERROR: ' <<<"$clean" | sed 's/^CHECK-VM-ERROR: /error:    /' || true
counts=$(grep -E '^([A-Za-z-]+: )?[0-9]+ passed, [0-9]+ failed' <<<"$clean" |
         tail -1 || true)
echo "tests:    ${counts:-no 'N passed, N failed' line}"
up_cmd=$(sed -n 's/^CHECK-VM-STAGE command, \([0-9.]*\) s.*/\1/p' <<<"$clean")
up_done=$(sed -n 's/^CHECK-VM-STAGE done, \([0-9.]*\) s.*/\1/p' <<<"$clean")
printf 'time:     kernel boot to command %s s, command %s s, VM %s s, total %s s\n' \
    "${up_cmd:-?}" \
    "$(awk -v a="$up_cmd" -v b="$up_done" 'BEGIN { if (a == "" || b == "") print "?"; else printf "%.1f", b - a }')" \
    "$(awk -v a="$t_boot" -v b="$t_end" 'BEGIN { printf "%.1f", b - a }')" \
    "$(awk -v a="$t_start" -v b="$t_end" 'BEGIN { printf "%.1f", b - a }')"
echo "log:      $LOG"
if [ $qrc = 124 ]; then
    echo "check-vm: TIMEOUT: the VM ran past TIMEOUT=${TIMEOUT}s and was" \
         "killed (last output in $LOG)"
    exit 124
fi
if [ -z "$marker" ]; then
    echo "check-vm: FAILED: the VM ended (QEMU status $qrc) without a" \
         "CHECK-VM-EXIT line: it crashed, panicked or never ran the command"
    exit 1
fi
if ! grep -q '^CHECK-VM-CMD-BEGIN' <<<"$clean"; then
    echo "check-vm: FAILED: the VM stopped before running the command" \
         "(status $marker)"
    [ "$marker" != 0 ] || exit 1
    exit "$marker"
fi
echo "check-vm: inner command exited with status $marker"
exit "$marker"
