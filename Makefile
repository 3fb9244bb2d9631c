# SPDX-License-Identifier: GPL-2.0-or-later
#
# qemu-gmem: the two commands a user needs are `make` and `make check`.
# Everything is built and cached under .cache/ (git-ignored).

SHELL := /bin/bash
S := scripts
# The cache the scripts use (scripts/common.sh): QEMU_GMEM_CACHE, if set
CACHE := $(or $(QEMU_GMEM_CACHE),.cache)

.PHONY: all demo deps qemu tools check check-host check-vm check-vm-uffd \
        check-vm-uffd-guest check-vm-stock kernel export bench bench-latency \
        stress check-asan check-series check-libvirt check-vm-libvirt check-cpr \
        clean

all: demo

demo: qemu tools
	$(S)/demo.sh

deps:
	$(S)/install-deps.sh

qemu: deps
	$(S)/build-qemu.sh >/dev/null

tools: deps
	@[ -f $(CACHE)/tools-build/build.ninja ] || \
	    meson setup $(CACHE)/tools-build . >/dev/null
	meson compile -C $(CACHE)/tools-build >/dev/null

# The test suite: the host suite; the nested-VM suite on a kernel with
# userfaultfd for guest_memfd (check-vm-uffd) and the refusal on the newest
# stock Debian kernel (check-vm-stock); the sanitizer build (check-asan);
# virsh migrate between two libvirt daemons (check-libvirt).
# Counts added up.  While the host suite runs, what the later suites
# need is built at nice 19 (check-all.py --background): the test kernel,
# sid's kernel and initramfs, the sanitizer build.
check: qemu tools
	$(S)/check-all.py --background "$(S)/build-kernel.sh >/dev/null && \
	    CHECK_VM_PREPARE=1 $(S)/check-vm.sh && \
	    $(S)/build-qemu.sh --asan >/dev/null" \
	    "$(S)/run-tests.sh --suite host" \
	    "$(MAKE) --no-print-directory check-vm-uffd" \
	    "$(MAKE) --no-print-directory check-vm-stock" \
	    "$(MAKE) --no-print-directory check-asan" \
	    "$(MAKE) --no-print-directory check-libvirt"

check-host: qemu tools
	$(S)/run-tests.sh --suite host

check-vm: qemu tools
	$(S)/check-vm.sh

# Linux 7.3 with kernel/uffd-guest-memfd.patch (scripts/build-kernel.sh)
kernel: deps
	$(S)/build-kernel.sh >/dev/null

# The vm suite on that kernel, where guest_memfd postcopy runs: a postcopy
# test that skips there is a failure.  About 20 minutes under TCG, hence
# a longer TIMEOUT than check-vm's default.
check-vm-uffd: qemu tools
	k=$$($(S)/build-kernel.sh) && KERNEL=$$k TIMEOUT=$${TIMEOUT:-2400} \
	CHECK_VM_CMD="scripts/run-tests.sh --suite vm --fail-skips postcopy --timeout 300" \
	    $(S)/check-vm.sh

# guest_memfd postcopy of a real guest (nested KVM) on that kernel; not in
# make check (see docs/check-vm.md: with two emulated CPUs such guests
# sometimes hang at boot there, none has with one yet, hence -smp 1)
check-vm-uffd-guest: qemu tools
	k=$$($(S)/build-kernel.sh) && KERNEL=$$k \
	CHECK_VM_SMP=$${CHECK_VM_SMP:-1} \
	CHECK_VM_CMD="scripts/run-tests.sh --suite vm-guest --fail-skips postcopy --timeout 400" \
	    $(S)/check-vm.sh

# The newest Debian kernel (debian:sid): the backend, and postcopy refused.
check-vm-stock: qemu tools
	CHECK_VM_CMD="scripts/run-tests.sh --suite vm-stock" $(S)/check-vm.sh

# virsh migrate of guest_memfd and memfd domains between two libvirtd on
# this host (bookworm's libvirt 9.0.0, installed on first use)
check-libvirt: qemu tools
	$(S)/install-libvirt.sh
	$(S)/check-libvirt.py

# check-libvirt inside a VM on the check-vm-uffd kernel, with the host's
# libvirt (the VM's root is the host's): there guest_memfd postcopy must
# complete and its recovery run, and a skip or the refusal is a failure
# (--fail-skips).  Not in make check (its time).  One vCPU, as
# check-vm-uffd-guest; longer timeouts, the guests run under nested KVM
# on TCG (docs/check-vm.md).  CHECK_LIBVIRT_BREAK reaches the harness.
check-vm-libvirt: qemu tools
	$(S)/install-libvirt.sh
	k=$$($(S)/build-kernel.sh) && KERNEL=$$k \
	CHECK_VM_SMP=$${CHECK_VM_SMP:-1} TIMEOUT=$${TIMEOUT:-1800} \
	CHECK_VM_ENV="CHECK_LIBVIRT_BREAK $${CHECK_VM_ENV:-}" \
	CHECK_VM_CMD="scripts/check-libvirt.py --fail-skips --timeout 1500 \
	    --guest-timeout 180 --migrate-timeout 600" \
	    $(S)/check-vm.sh

# The patched libvirt (libvirt-patches/ on 11.3.0, built in
# $(CACHE)/libvirt/build, its unit tests for what the series touches run),
# then check-libvirt's cases twice: with bookworm's libvirt and
# <qemu:commandline>, and with the patched one and <source
# type='guest_memfd'/>, plus virsh domcapabilities (against QEMU without
# the series too: build-qemu.sh --stock).  Not in make check: building
# libvirt takes minutes (docs/check-vm.md).
.PHONY: check-libvirt-patched check-vm-libvirt-patched
check-libvirt-patched: qemu tools
	$(S)/install-libvirt.sh
	$(S)/build-qemu.sh --stock >/dev/null
	$(S)/build-libvirt.sh --test >/dev/null
	$(S)/check-libvirt.py --libvirt $(CACHE)/libvirt/build

# The same in a one-CPU VM on the check-vm-uffd kernel, as
# check-vm-libvirt, where guest_memfd postcopy and its recovery must
# complete with both libvirts.
check-vm-libvirt-patched: qemu tools
	$(S)/install-libvirt.sh
	$(S)/build-qemu.sh --stock >/dev/null
	$(S)/build-libvirt.sh >/dev/null
	k=$$($(S)/build-kernel.sh) && KERNEL=$$k \
	CHECK_VM_SMP=$${CHECK_VM_SMP:-1} TIMEOUT=$${TIMEOUT:-3600} \
	CHECK_VM_ENV="CHECK_LIBVIRT_BREAK $${CHECK_VM_ENV:-}" \
	CHECK_VM_CMD="scripts/check-libvirt.py --fail-skips --timeout 3300 \
	    --guest-timeout 180 --migrate-timeout 600 \
	    --libvirt $(CACHE)/libvirt/build" \
	    $(S)/check-vm.sh

# Both series for upstream, signed by the poster (SIGNOFF="Name <mail>" or
# git's global user.name/user.email; refused without one): QEMU's into
# $(CACHE)/export/, libvirt's into $(CACHE)/export/libvirt/ (EXPORT_DIR)
.PHONY: export-libvirt
export: deps
	$(S)/export-series.sh
	$(S)/export-libvirt.sh

export-libvirt: deps
	$(S)/export-libvirt.sh

# The UFFDIO_COPY variants also on QEMU without the series (--stock)
bench: qemu tools
	$(S)/build-qemu.sh --stock >/dev/null
	$(CACHE)/tools-build/uffd-place-bench
	$(S)/postcopy-bench.py --throughput --runs 5
	$(S)/postcopy-bench.py --throughput --rewrite --runs 5
	$(S)/postcopy-bench.py --runs 5
	$(S)/postcopy-bench.py --runs 5 --accel tcg
	$(S)/postcopy-bench.py --qtest --runs 5

# Request latency and blocktime, minor placement against UFFDIO_COPY on
# memfd, each variant twice per round on this build (an A/A beside the
# comparison): about 30 minutes
SAME := $(abspath $(CACHE))/qemu/build/qemu-system-x86_64
bench-latency: qemu tools
	$(S)/build-qemu.sh --stock >/dev/null
	$(S)/postcopy-bench.py --qtest --runs 40 --only memfd --compare $(SAME)
	$(S)/postcopy-bench.py --runs 16 --only memfd --compare $(SAME)
	$(S)/postcopy-bench.py --accel tcg --runs 40 --only memfd \
	    --compare $(SAME)

# CPR of memfd and guest_memfd RAM (about 4 minutes; not in make check)
check-cpr: qemu tools
	$(S)/run-tests.sh --suite cpr

stress: qemu tools
	$(S)/run-tests.sh --suite stress $(foreach o,$(ONLY),--only "$(o)")

# QEMU with ASan and UBSan in its own build folder; any report fails.
check-asan: deps tools
	$(S)/build-qemu.sh --asan >/dev/null
	ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 \
	UBSAN_OPTIONS=halt_on_error=1:print_stacktrace=1 \
	    $(S)/run-tests.sh --suite asan --build $(CACHE)/qemu/build-asan \
	    --log /tmp/qemu-gmem-asan.log
	@! grep -n "runtime error:\|ERROR: AddressSanitizer\|ERROR: LeakSanitizer" \
	    /tmp/qemu-gmem-asan.log || { echo "sanitizer reports above"; exit 1; }

check-series: deps
	$(S)/check-series-builds.sh

clean:
	rm -rf $(CACHE)/qemu/build $(CACHE)/tools-build
