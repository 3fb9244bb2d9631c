# SPDX-License-Identifier: GPL-2.0-or-later
#
# qemu-gmem: the two commands a user needs are `make` and `make check`.
# Everything is built and cached under .cache/ (git-ignored).

SHELL := /bin/bash
S := scripts

.PHONY: all demo deps qemu tools check check-vm export bench stress \
        check-asan clean

all: demo

demo: qemu tools
	$(S)/demo.sh

deps:
	$(S)/install-deps.sh

qemu: deps
	$(S)/build-qemu.sh >/dev/null

tools: deps
	@[ -f .cache/tools-build/build.ninja ] || \
	    meson setup .cache/tools-build . >/dev/null
	meson compile -C .cache/tools-build >/dev/null

check: qemu tools
	$(S)/run-tests.sh --suite host

check-vm: qemu tools
	$(S)/check-vm.sh

export: deps
	$(S)/export-series.sh

bench: qemu tools
	.cache/tools-build/uffd-place-bench
	$(S)/postcopy-bench.py

stress: qemu tools
	$(S)/run-tests.sh --suite stress

clean:
	rm -rf .cache/qemu/build .cache/tools-build
