#!/usr/bin/env python3
# SPDX-License-Identifier: GPL-2.0-or-later
"""Run the qemu-gmem test suites against already-built binaries.

Every test program speaks TAP; each result line is counted.  The last
line printed is 'N passed, N failed, N skipped'; the exit status is 1 if
anything failed (or a program crashed or timed out without a result).
"""

import argparse
import collections
import json
import os
import queue
import re
import subprocess
import sys
import threading
import time

TOP = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CACHE = os.environ.get("QEMU_GMEM_CACHE", os.path.join(TOP, ".cache"))

# (name, qtest binary, [glib test paths]; empty list = every test in it)
# glib's -p on a test path also runs the tests directly below it (and on a
# path that is only a suite, nothing), so every entry names test paths,
# each run in a process of its own.  The upstream precopy/tcp/plain guard
# also runs precopy/tcp/plain/guest-memfd, which is registered below it.
MIG = "/x86_64/migration/"
UPSTREAM = [
    ("upstream", "migration-test", [MIG + "postcopy/plain"]),
    ("upstream (+ guest-memfd below it)", "migration-test",
     [MIG + "precopy/tcp/plain"]),
]
# (label, test binary, paths): binaries are in tests/qtest of the build,
# or below tests/ where the name has a folder (unit/test-uffd).
UNIT = [("unit", "unit/test-uffd", [])]
REFUSALS = ("postcopy", "migration-test",
            [MIG + "postcopy/guest-memfd/refusal",
             MIG + "postcopy/minor/vhost-user-refusal"])
# Postcopy of a real guest: the same five cases for memfd with
# x-postcopy-minor and for guest_memfd.
GUEST_CASES = ("plain", "preempt", "recovery", "recovery-double", "multifd")
GUEST_MEMFD_POSTCOPY = ("postcopy guest-memfd", "migration-test",
                        [MIG + "postcopy/guest-memfd/" + t
                         for t in GUEST_CASES])
PROJECT = UNIT + [
    ("backend", "guest-memfd-test", []),
    ("precopy", "migration-test",
     [MIG + "precopy/tcp/plain/guest-memfd/" + t
      for t in ("tcg", "from-memfd", "to-memfd")]),
    REFUSALS,
    ("postcopy minor", "migration-test",
     [MIG + "postcopy/minor/memfd/" + t for t in GUEST_CASES]),
    GUEST_MEMFD_POSTCOPY,
]
# Postcopy driven over qtest, no guest CPU: seconds each, also nested.
PQ = [MIG + "postcopy/qtest/" + t for t in (
    "anon/random", "anon/rewrite", "anon/two-readers", "minor/sequential",
    "minor/reverse", "minor/random", "minor/race", "minor/preempt-race",
    "minor/recovery", "minor/rewrite", "minor/rewrite-preempt-race",
    "minor/two-readers", "minor/two-readers-preempt",
    "hugetlb/random", "minor/hugetlb-random", "minor/hugetlb-preempt-race",
    "minor/hugetlb-rewrite", "minor/hugetlb-enomem", "minor/alias-attributes",
    "guest-memfd/random", "guest-memfd/race", "guest-memfd/preempt-race",
    "guest-memfd/recovery", "guest-memfd/rewrite",
    "guest-memfd/two-readers")]
# Other backends on the source, pc-dimms, virtio-mem: the guest_memfd ones
# run nested
PQ_MIXED = [MIG + "postcopy/qtest/" + t for t in (
    "mixed/guest-memfd-to-memfd", "mixed/guest-memfd-to-memfd-minor",
    "mixed/guest-memfd-to-anon",
    "mixed/memfd-to-guest-memfd", "mixed/anon-to-guest-memfd",
    "dimm/minor", "dimm/guest-memfd", "dimm/guest-memfd-boot-memfd-dimm",
    "virtio-mem/memfd", "virtio-mem/minor", "virtio-mem/guest-memfd")]
PROJECT.append(("postcopy qtest", "migration-test", PQ + PQ_MIXED))
# The same machines with precopy, and CPR of them (no userfaultfd needed:
# on the host); and CPR of a KVM guest with guest_memfd RAM, no RAM in the
# stream (about a minute each here: the guest's first pass over its 150 MB
# faults each page in under this host's nested KVM).
PRECOPY_QTEST = [MIG + "precopy/qtest/" + t for t in (
    "dimm/guest-memfd", "dimm/guest-memfd-boot-memfd-dimm",
    "dimm/memfd-boot-guest-memfd-dimm", "mixed/anon-to-guest-memfd",
    "mixed/guest-memfd-to-anon", "virtio-mem/guest-memfd")]
CPR_QTEST = [MIG + "mode/qtest/" + t for t in (
    "transfer/guest-memfd", "exec/guest-memfd",
    "transfer/guest-memfd-boot-memfd-dimm")]
CPR_KVM = [MIG + "mode/transfer/guest-memfd", MIG + "mode/exec/guest-memfd"]
PROJECT.append(("precopy and CPR qtest", "migration-test",
                PRECOPY_QTEST + CPR_QTEST))
PROJECT.append(("CPR guest-memfd", "migration-test", CPR_KVM))
# The test plays the source and writes bad streams: seconds for all.
STREAM = ("postcopy stream", "migration-test",
          [MIG + "postcopy/stream/" + p + "/" + t for p in ("copy", "minor")
           for t in ("valid", "discard-outside", "discard-at-end",
                     "discard-across-end", "discard-misaligned",
                     "discard-wrap", "page-twice", "run-held")] +
          [MIG + "postcopy/stream/minor/preempt-at-once"])
PROJECT.append(STREAM)
# What runs inside the nested VM (scripts/check-vm.sh): the tests without
# a guest CPU that need that kernel's userfaultfd for guest_memfd, and of
# the others one (minor/rewrite: shmem minor faults on that kernel).  The
# guest_memfd tests run the same placement code as the x-postcopy-minor
# ones, and the host runs those all.
VM = UNIT + [
    ("backend", "guest-memfd-test", []),
    REFUSALS,
    STREAM,
    ("postcopy qtest", "migration-test",
     [p for p in PQ + PQ_MIXED
      if p.endswith(("minor/rewrite", "guest-memfd/random", "guest-memfd/race",
                     "guest-memfd/preempt-race", "guest-memfd/recovery",
                     "guest-memfd/rewrite", "guest-memfd/two-readers",
                     "mixed/memfd-to-guest-memfd",
                     "mixed/anon-to-guest-memfd", "dimm/guest-memfd",
                     "dimm/guest-memfd-boot-memfd-dimm",
                     "virtio-mem/guest-memfd"))]),
]
# guest_memfd postcopy of a real guest under nested KVM, inside the VM on
# the check-vm-uffd kernel (make check-vm-uffd-guest, a one-CPU VM: about
# a minute a test).  Not in make check: in a two-CPU VM such a guest
# hung at boot in 5 starts of 35, nested SVM under TCG losing its state;
# in a one-CPU VM none has yet (see docs/check-vm.md).
VM_GUEST = [GUEST_MEMFD_POSTCOPY]
# On a stock kernel in the nested VM (make check-vm-stock): what the
# newest Debian kernel gives the backend, and the precise refusal.
VM_STOCK = [
    ("backend", "guest-memfd-test", []),
    REFUSALS,
]
# CPR (make check-cpr): every CPR test, guest-based ones under KVM (memfd
# and guest_memfd RAM) and TCG (guest_memfd), each checking that no RAM
# went through the stream and that the guest's memory is intact, and the
# qtest-driven ones.  About 35-60 s a guest-based test here.  make check
# runs the guest_memfd ones under KVM and the qtest-driven ones.
CPR = [("cpr", "migration-test",
        [MIG + "mode/" + t for t in (
            "transfer", "exec", "tcg/transfer/guest-memfd",
            "tcg/exec/guest-memfd")] + CPR_QTEST)]
# (-p .../mode/transfer runs transfer/defer and transfer/guest-memfd too,
# and .../mode/exec exec/guest-memfd)

# Every qtest-driven postcopy test 20 times in a row (make stress).
STRESS = [("postcopy qtest x20", "migration-test",
           [p for p in PQ + PQ_MIXED for _ in range(20)])]

# The qtest-driven tests under ASan: each code path of the series once,
# about 30 s a test there.  Left out, as running the same code as one
# kept: anon/rewrite and anon/two-readers (anon/random covers the
# UFFDIO_COPY bookkeeping), minor/sequential and minor/reverse (the order
# of reads only; minor/random), minor/two-readers (two-readers-preempt),
# hugetlb/random and minor/hugetlb-random (the hugetlb preempt-race and
# rewrite tests).  make stress and the host suite run them all.
ASAN_LEFT_OUT = ("anon/rewrite", "anon/two-readers", "minor/sequential",
                 "minor/reverse", "minor/two-readers", "hugetlb/random",
                 "minor/hugetlb-random")
ASAN_PQ = [p for p in PQ if not p.endswith(ASAN_LEFT_OUT)]
# Each name left out is one test of PQ (a renamed test must not slip in)
assert len(ASAN_PQ) == len(PQ) - len(ASAN_LEFT_OUT)

# Under ASan/UBSan (make check-asan): the backend, the postcopy paths the
# project adds, driven over qtest and with a guest.
ASAN = UNIT + [
    ("backend", "guest-memfd-test", []),
    ("postcopy", "migration-test", [MIG + "postcopy/guest-memfd/refusal",
                                    MIG + "postcopy/minor/vhost-user-refusal",
                                    MIG + "postcopy/minor/memfd/plain"]),
    ("postcopy qtest", "migration-test", ASAN_PQ),
    STREAM,
]

# The examples of docs/system/guest-memfd.rst, run by scripts/test-docs.py
# as they are written ("docs"), or with -accel qtest in place of -accel kvm
# ("docs-qtest": in the nested VM, where a KVM guest whose RAM is a
# guest_memfd can hang at boot, see docs/check-vm.md).
DOCS = ("docs", "docs-qtest")
# scripts/test-export.py: make export signs both series as the poster and
# refuses without one (host suite only: it exports from the prepared trees)
EXPORT = "export"

SUITES = {"host": ["tools", "docs", EXPORT] + UPSTREAM + PROJECT,
          "vm": ["tools", "docs-qtest"] + VM,
          "vm-stock": ["tools", "docs-qtest"] + VM_STOCK, "vm-guest": VM_GUEST,
          "project": ["tools"] + PROJECT, "upstream": UPSTREAM,
          "stress": STRESS, "asan": ASAN, "cpr": CPR}

# The hugetlb tests need both sides' 64 MiB of RAM in free 2 MiB pages.
HUGEPAGES = "/sys/kernel/mm/hugepages/hugepages-2048kB"
HUGEPAGES_NEEDED = 64


def reserve_hugepages(items):
    """Make HUGEPAGES_NEEDED 2 MiB pages free for the hugetlb tests in
    @items, where the host has none to spare and we may add them (root).
    Returns a function that gives back what was added."""
    def nothing():
        pass

    if not any("hugetlb" in p for item in items
               if item != "tools" and item not in DOCS for p in item[2]):
        return nothing
    try:
        with open(f"{HUGEPAGES}/free_hugepages") as f:
            free = int(f.read())
        with open(f"{HUGEPAGES}/nr_hugepages") as f:
            total = int(f.read())
    except OSError as e:
        print(f"hugetlb tests: no 2 MiB huge pages on this kernel ({e})")
        return nothing
    if free >= HUGEPAGES_NEEDED or os.geteuid() != 0:
        return nothing
    want = total + HUGEPAGES_NEEDED - free

    def set_total(n):
        with open(f"{HUGEPAGES}/nr_hugepages", "w") as f:
            f.write(f"{n}\n")

    try:
        set_total(want)
        with open(f"{HUGEPAGES}/nr_hugepages") as f:
            got = int(f.read())
    except OSError as e:
        print(f"hugetlb tests: cannot reserve huge pages ({e})")
        return nothing
    print(f"hugetlb tests: 2 MiB huge pages {total} -> {got} "
          f"(asked for {want}); given back at the end", flush=True)
    return lambda: set_total(total)


# Lines of a failed test program's output printed with its failure
TAIL_LINES = 40
TAP_RE = re.compile(r"^(not ok|ok)\b\s*\d*\s*-?\s*(.*?)\s*(#\s*(SKIP|TODO)\b\s*(.*))?$",
                    re.IGNORECASE)


class Counts:
    def __init__(self, fail_skips=None):
        self.passed = self.failed = self.skipped = 0
        self.failures = []
        self.fail_skips = fail_skips

    def add(self, status, name, reason=""):
        if status == "skip" and self.fail_skips and self.fail_skips in name:
            # This host is known to have what these tests need.
            status = "fail"
            reason = f"skipped, but --fail-skips {self.fail_skips}: {reason}"
        if status == "pass":
            self.passed += 1
        elif status == "skip":
            self.skipped += 1
        else:
            self.failed += 1
            self.failures.append(name)
        tag = {"pass": "PASS", "skip": "SKIP", "fail": "FAIL"}[status]
        print(f"{tag}: {name}{(' (' + reason + ')') if reason else ''}",
              flush=True)


def run_tap(label, cmd, env, counts, timeout, log):
    start = time.monotonic()
    failed_before = counts.failed
    tail = collections.deque(maxlen=TAIL_LINES)
    log.write(f"=== {label}: {' '.join(cmd)}\n")
    log.flush()
    try:
        proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE,
                                stderr=subprocess.STDOUT, text=True,
                                errors="replace", cwd=TOP)
    except OSError as e:
        counts.add("fail", label, f"cannot run: {e}")
        return
    try:
        read_tap(label, proc, counts, start + timeout, log, tail)
    except subprocess.TimeoutExpired:
        # A test that hangs may print nothing: the deadline is kept by
        # read_tap(), not by the end of the output.
        proc.kill()
        proc.wait()
        counts.add("fail", label, f"timed out after {timeout} s")
    if counts.failed > failed_before and tail:
        # The log may not outlive the run (check-vm): show where it ended.
        print(f"    last {len(tail)} lines of its output:", flush=True)
        for line in tail:
            print("    | " + line[:300], flush=True)
    print(f"    ({label}: {time.monotonic() - start:.1f} s)", flush=True)


def read_tap(label, proc, counts, deadline, log, tail):
    """Count the TAP results of @proc until it ends; TimeoutExpired if it
    has not ended by @deadline."""
    lines = queue.Queue()

    def reader():
        for line in proc.stdout:
            lines.put(line)
        lines.put(None)

    threading.Thread(target=reader, daemon=True).start()
    results = 0
    while True:
        try:
            line = lines.get(timeout=max(0.01, deadline - time.monotonic()))
        except queue.Empty:
            raise subprocess.TimeoutExpired(proc.args, 0)
        if line is None:
            break
        log.write(line)
        line = line.rstrip("\n")
        if not line.startswith("# starting QEMU"):
            tail.append(line)
        m = TAP_RE.match(line)
        if not m:
            if line.startswith("Bail out!"):
                counts.add("fail", label, line)
                results += 1
            elif line.startswith("# ") and os.environ.get("V"):
                print("    " + line, flush=True)
            continue
        results += 1
        name = f"{label}: {m.group(2)}"
        if m.group(4) and m.group(4).upper() == "SKIP":
            counts.add("skip", name, m.group(5))
        elif m.group(1) == "ok":
            counts.add("pass", name)
        else:
            counts.add("fail", name)
    proc.wait(timeout=max(1, deadline - time.monotonic()))
    if proc.returncode != 0 and (results == 0 or counts.failed == 0):
        counts.add("fail", label, f"exit status {proc.returncode}")
    elif results == 0:
        counts.add("fail", label, "no test result")


def tools_tests(builddir):
    out = subprocess.run(["meson", "introspect", builddir, "--tests"],
                         check=True, capture_output=True, text=True).stdout
    return json.loads(out)


def suite_items(args):
    """The suite's items, with --only applied to their test paths"""
    for item in SUITES[args.suite]:
        if args.only is None:
            yield item
        elif item != "tools" and item not in DOCS and item != EXPORT:
            paths = [p for p in item[2] if any(o in p for o in args.only)]
            if paths:
                yield (item[0], item[1], paths)


def run_suite(args, counts, env, log):
    for item in suite_items(args):
        if item == "tools":
            if not os.path.isdir(args.tools_build):
                counts.add("fail", "project tools", "not built")
                continue
            for t in tools_tests(args.tools_build):
                tenv = dict(env)
                tenv.update(t.get("env") or {})
                run_tap(f"tools {t['name']}", t["cmd"], tenv, counts,
                        args.timeout, log)
            continue
        if item == EXPORT:
            cmd = [sys.executable,
                   os.path.join(TOP, "scripts", "test-export.py")]
            run_tap("export", cmd, env, counts, args.timeout, log)
            continue
        if item in DOCS:
            cmd = [sys.executable, os.path.join(TOP, "scripts", "test-docs.py"),
                   "--qemu", os.path.join(args.build, "qemu-system-x86_64"),
                   "--probe", os.path.join(args.tools_build, "gmem-probe")]
            if item == "docs-qtest":
                cmd += ["--accel", "qtest"]
            run_tap("docs guest-memfd.rst", cmd, env, counts, args.timeout,
                    log)
            continue
        label, binary, paths = item
        folder = [] if "/" in binary else ["qtest"]
        cmd = [os.path.join(args.build, "tests", *folder, binary), "--tap",
               "-k"]
        if binary == "migration-test":
            cmd.append("--full")
        for p in paths or [None]:
            run_tap(label, cmd + (["-p", p] if p else []), env, counts,
                    args.timeout, log)


def main():
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--suite", default="host", choices=sorted(SUITES))
    ap.add_argument("--build", default=os.path.join(CACHE, "qemu", "build"))
    ap.add_argument("--tools-build",
                    default=os.path.join(CACHE, "tools-build"))
    ap.add_argument("--timeout", type=int, default=600)
    ap.add_argument("--log", default=None)
    ap.add_argument("--only", default=None, metavar="TEXT", action="append",
                    help="run only the test paths that contain TEXT "
                         "(repeat it for several)")
    ap.add_argument("--fail-skips", default=None, metavar="TEXT",
                    help="count a test whose name contains TEXT and that "
                         "skips as failed (for a host known to have all "
                         "those tests need)")
    args = ap.parse_args()

    logpath = args.log or os.path.join(
        os.environ.get("TMPDIR", "/tmp"), f"qemu-gmem-{args.suite}.log")
    counts = Counts(args.fail_skips)
    qemu = os.path.join(args.build, "qemu-system-x86_64")
    env = dict(os.environ)
    env["QTEST_QEMU_BINARY"] = qemu
    env["QTEST_QEMU_STORAGE_DAEMON_BINARY"] = os.path.join(
        args.build, "storage-daemon", "qemu-storage-daemon")
    env.setdefault("MALLOC_PERTURB_", "0")
    give_back = reserve_hugepages(list(suite_items(args)))
    with open(logpath, "w") as log:
        print(f"suite {args.suite}; full output in {logpath}", flush=True)
        try:
            run_suite(args, counts, env, log)
        finally:
            give_back()
    if counts.failures:
        print("failed:")
        for f in counts.failures:
            print(f"  {f}")
    print(f"{counts.passed} passed, {counts.failed} failed, "
          f"{counts.skipped} skipped")
    return 1 if counts.failed else 0


if __name__ == "__main__":
    sys.exit(main())
