#!/usr/bin/env python3
# SPDX-License-Identifier: GPL-2.0-or-later
"""Postcopy benchmark: the same guest, four kinds of RAM, in one run.

Migrates one guest over loopback with postcopy, for anonymous RAM
(upstream UFFDIO_COPY path), memfd (upstream UFFDIO_COPY path), memfd with
minor placement (x-postcopy-minor: alias fill + UFFDIO_CONTINUE, the
guest_memfd path) and guest_memfd where the kernel supports it.  Variants
are interleaved, --runs times each (each round in an order of its own,
shuffled), and for each the median of QEMU's own numbers is printed: total migration time, postcopy blocktime, mean page
request latency, and the p99 bucket of the page request latency
distribution; plus the ratio of minor placement (and of guest_memfd,
where it ran) to the upstream memfd path, both as the ratio of the
medians and run by run (the median and range of the ratios of the runs
that ran next to each other: on a noisy machine, runs of one variant can
differ 2x).  A benchmark, not a test: it prints numbers.

The guest (bench/reader-bootblock.S) fills 64 MiB and then reads every page
of it in the same pseudo-random order, pass after pass, checking what it
reads.  Postcopy starts as soon as the migration does, with
postcopy-preempt and the background stream capped at 8 MiB/s until the
guest has read all of its memory on the destination, so its one vCPU
faults on thousands of pages in the same order in every run: blocktime and
request latency then compare placement, not where a guest happened to be
when postcopy started.  (Without preempt, an urgent page waits behind the
background stream or its rate limiter, 10 to 100 ms, which is all such a
benchmark would measure.)  --accel picks the vCPU's accelerator.

--qtest drives the same kind of fault sequence over qtest instead: both
sides are -accel qtest machines with 64 MiB of RAM, the source's RAM is
filled with random data over qtest, and every page of the destination is
read once over qtest in a fixed random order.  No vCPU faults there, so
blocktime is 0; it adds the reader's own time, the median and p99 time of
one read, and how many reads took longer than 5 ms.
"""

import argparse
import base64
import math
import os
import random
import socket
import statistics
import subprocess
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import demo  # noqa: E402

VARIANTS = [
    ("anon (UFFDIO_COPY)", "memory-backend-ram,share=off", False),
    ("memfd (UFFDIO_COPY)", "memory-backend-memfd", False),
    ("memfd minor placement", "memory-backend-memfd", True),
    ("guest_memfd (minor)", "memory-backend-guest-memfd", False),
]
KEYS = [("total-time ms", "total ms"),
        ("postcopy blocktime ms", "blocktime ms"),
        ("page request latency, mean us", "req mean us"),
        ("page request latency, p99 us (< bucket bound)", "req p99 us <"),
        ("page requests", "requests")]
QT_KEYS = [("reader ms", "reader ms"), ("read median us", "read med us"),
           ("read p99 us", "read p99 us"), ("reads > 5 ms", "reads > 5ms")]


READER = os.path.join(demo.CACHE, "tools-build", "reader-bootblock.bin")
QT_RAM_MB = 64
QT_START = 1 << 20          # below is BIOS and VGA space
QT_PAGE = 4096
QT_SLOW = 8 << 20           # background stream during postcopy, bytes/s


class QtestVM:
    """An -accel qtest machine whose memory is read and written over qtest"""

    def __init__(self, work, name, backend, incoming=False,
                 ram_mb=QT_RAM_MB, qemu=None):
        qpath = os.path.join(work, f"{name}.qtest")
        qmp_path = os.path.join(work, f"{name}.qmp")
        srv = socket.socket(socket.AF_UNIX)
        srv.bind(qpath)
        srv.listen(1)
        srv.settimeout(30)
        self.log = open(os.path.join(work, f"{name}.log"), "w")
        args = [qemu or demo.QEMU, "-accel", "qtest", "-machine", "q35",
                "-m", f"{ram_mb}M", "-name", f"{name},debug-threads=on",
                "-object", f"{backend},id=mem,size={ram_mb}M",
                "-machine", "memory-backend=mem", "-display", "none",
                "-qtest", f"unix:{qpath}",
                "-qmp", f"unix:{qmp_path},server=on,wait=off"]
        if incoming:
            args += ["-incoming", "defer"]
        self.proc = subprocess.Popen(args, stdout=self.log,
                                     stderr=subprocess.STDOUT)
        try:
            conn, _ = srv.accept()
        finally:
            srv.close()
        self.q = conn.makefile("rw")
        self.qmp = demo.QMP(qmp_path)

    def qtest(self, line):
        self.q.write(line + "\n")
        self.q.flush()
        while True:
            rsp = self.q.readline()
            if not rsp:
                raise EOFError("QEMU closed the qtest connection")
            if rsp.startswith("IRQ"):
                continue
            if not rsp.startswith("OK"):
                raise RuntimeError(f"qtest {line.split()[0]}: {rsp.strip()}")
            return rsp.split()[1:]

    def stop(self):
        demo.VM.stop(self)


def start_postcopy(src, dst, minor):
    """Migrate @src to @dst and switch to postcopy at once, with preempt
    and the background stream capped; the refusal's text, if refused"""
    caps = ["postcopy-ram", "postcopy-blocktime", "postcopy-preempt"]
    demo.set_caps(src, caps)
    rsp = dst.qmp.cmd_raw("migrate-set-capabilities", capabilities=[
        {"capability": c, "state": True}
        for c in caps + (["x-postcopy-minor"] if minor else [])])
    if "error" in rsp:
        return rsp["error"]["desc"]
    src.qmp.cmd("migrate-set-parameters", **{
        "max-bandwidth": 1 << 20, "max-postcopy-bandwidth": QT_SLOW})
    port = demo.free_port()
    dst.qmp.cmd("migrate-incoming", uri=f"tcp:127.0.0.1:{port}")
    src.qmp.cmd("migrate", uri=f"tcp:127.0.0.1:{port}")
    demo.wait_for(lambda: src.qmp.cmd("query-migrate")["status"] ==
                  "active", 30, "precopy to start")
    src.qmp.cmd("migrate-start-postcopy")
    return None


def finish_postcopy(src, dst):
    """Lift the cap, let the migration complete; QEMU's figures"""
    src.qmp.cmd("migrate-set-parameters", **{"max-postcopy-bandwidth": 0})
    demo.wait_for(lambda: src.qmp.cmd("query-migrate")["status"] ==
                  "completed", 120, "the migration to complete")
    demo.wait_for(lambda: dst.qmp.cmd("query-migrate")["status"] ==
                  "completed", 60, "the destination to complete")
    return {
        "total-time ms": src.qmp.cmd("query-migrate").get("total-time"),
        **demo.postcopy_report(dst.qmp.cmd("query-migrate")),
    }


def qtest_migrate(work, name, backend, minor, qemu=None):
    """One postcopy migration driven over qtest; (ok, report or refusal)"""
    demo.clean_work(work)
    size = (QT_RAM_MB << 20) - QT_START
    data = random.Random(0x5eed).randbytes(size)
    order = list(range(size // QT_PAGE))
    random.Random(0x0de7).shuffle(order)
    src = QtestVM(work, "source", backend, qemu=qemu)
    dst = None
    try:
        dst = QtestVM(work, "target", backend, incoming=True, qemu=qemu)
        for off in range(0, size, 1 << 20):
            chunk = base64.b64encode(data[off:off + (1 << 20)]).decode()
            src.qtest(f"b64write 0x{QT_START + off:x} 0x{1 << 20:x} {chunk}")
        refusal = start_postcopy(src, dst, minor)
        if refusal:
            return False, refusal
        demo.wait_for(lambda: src.qmp.cmd("query-migrate")["status"] ==
                      "postcopy-active", 30, "postcopy to start")
        reads = []
        t0 = time.monotonic()
        for page in order:
            off = page * QT_PAGE
            t = time.perf_counter()
            got = int(dst.qtest(f"readq 0x{QT_START + off:x}")[0], 16)
            reads.append(time.perf_counter() - t)
            want = int.from_bytes(data[off:off + 8], "little")
            if got != want:
                raise RuntimeError(f"{name}: page 0x{QT_START + off:x} "
                                   f"reads 0x{got:x}, not 0x{want:x}")
        reader = time.monotonic() - t0
        reads.sort()
        return True, {
            **finish_postcopy(src, dst),
            "reader ms": round(reader * 1000),
            "read median us": round(reads[len(reads) // 2] * 1e6, 1),
            "read p99 us": round(reads[len(reads) * 99 // 100] * 1e6, 1),
            "reads > 5 ms": sum(r > 0.005 for r in reads),
        }
    finally:
        src.stop()
        if dst:
            dst.stop()


TP_RAM_MB = 1024
TP_FILL = (0x5a, 0xa5)      # the source's RAM, before and after a rewrite
STOCK_QEMU = os.path.join(demo.CACHE, "qemu-stock", "build",
                          "qemu-system-x86_64")


class ThreadCPU(threading.Thread):
    """Polls the CPU time of the threads of @pid named @comms, every 5 ms,
    and keeps the last value read: a thread's time is still there after it
    exits, 5 ms at most short."""

    def __init__(self, pid, comms):
        super().__init__(daemon=True)
        self.pid, self.comms = pid, comms
        self.ns = {c: 0 for c in comms}
        self.halt = threading.Event()
        self.tick = 1e9 / os.sysconf("SC_CLK_TCK")

    def read(self, task):
        try:
            return int(open(f"{task}/schedstat").read().split()[0])
        except (OSError, ValueError, IndexError):
            pass
        f = open(f"{task}/stat").read().rsplit(")", 1)[1].split()
        return int((int(f[11]) + int(f[12])) * self.tick)

    def run(self):
        while not self.halt.is_set():
            try:
                tids = os.listdir(f"/proc/{self.pid}/task")
            except OSError:
                return
            for tid in tids:
                task = f"/proc/{self.pid}/task/{tid}"
                try:
                    comm = open(f"{task}/comm").read().strip()
                    if comm in self.ns:
                        self.ns[comm] = max(self.ns[comm], self.read(task))
                except OSError:
                    continue
            time.sleep(0.005)

    def stop(self):
        self.halt.set()
        self.join()
        return self.ns


def throughput_migrate(work, name, backend, minor, qemu, preempt, rewrite):
    """Postcopy of TP_RAM_MB of RAM, nearly all of it on the background
    stream; (ok, report or refusal)"""
    demo.clean_work(work)
    size = (TP_RAM_MB << 20) - QT_START
    src = QtestVM(work, "source", backend, ram_mb=TP_RAM_MB, qemu=qemu)
    dst = None
    try:
        dst = QtestVM(work, "target", backend, incoming=True,
                      ram_mb=TP_RAM_MB, qemu=qemu)
        src.qtest(f"memset 0x{QT_START:x} 0x{size:x} 0x{TP_FILL[0]:x}")
        caps = ["postcopy-ram"] + (["postcopy-preempt"] if preempt else [])
        demo.set_caps(src, caps)
        rsp = dst.qmp.cmd_raw("migrate-set-capabilities", capabilities=[
            {"capability": c, "state": True}
            for c in caps + (["x-postcopy-minor"] if minor else [])])
        if "error" in rsp:
            return False, rsp["error"]["desc"]
        # rewrite: a slow precopy pass first, so that the destination
        # holds nearly every page when the source rewrites them all
        src.qmp.cmd("migrate-set-parameters", **{
            "max-bandwidth": (512 << 20) if rewrite else (1 << 40),
            "max-postcopy-bandwidth": 0})
        port = demo.free_port()
        dst.qmp.cmd("migrate-incoming", uri=f"tcp:127.0.0.1:{port}")
        cpu = ThreadCPU(dst.proc.pid, ("mig/dst/listen", "mig/dst/preempt",
                                       "mig/dst/fault"))
        cpu.start()
        scpu = ThreadCPU(src.proc.pid, ("mig/src/main",))
        scpu.start()
        src.qmp.cmd("migrate", uri=f"tcp:127.0.0.1:{port}")
        fill = TP_FILL[0]
        if rewrite:
            demo.wait_for(lambda: src.qmp.cmd("query-migrate").get(
                "ram", {}).get("transferred", 0) > size / 2, 60,
                "the precopy pass")
            fill = TP_FILL[1]
            src.qtest(f"memset 0x{QT_START:x} 0x{size:x} 0x{fill:x}")
            src.qmp.cmd("migrate-set-parameters", **{
                "max-bandwidth": 1 << 40})
        else:
            demo.wait_for(lambda: src.qmp.cmd("query-migrate")["status"] ==
                          "active", 30, "precopy to start")
        t0 = time.monotonic()
        src.qmp.cmd("migrate-start-postcopy")

        def done(vm):
            st = vm.qmp.cmd("query-migrate")["status"]
            if st in ("failed", "cancelled"):
                raise RuntimeError(f"{name}: migration {st}")
            return st == "completed"
        while not done(dst):
            if time.monotonic() - t0 > 120:
                raise TimeoutError(f"{name}: postcopy did not complete")
            time.sleep(0.002)
        postcopy_s = time.monotonic() - t0
        threads = cpu.stop()
        sthreads = scpu.stop()
        demo.wait_for(lambda: done(src), 30, "the source to complete")
        info = src.qmp.cmd("query-migrate")
        dinfo = dst.qmp.cmd("query-migrate")
        rng = random.Random(0x7e57)
        for off in [0, size - QT_PAGE] + [rng.randrange(0, size, QT_PAGE)
                                          for _ in range(64)]:
            got = int(dst.qtest(f"readb 0x{QT_START + off:x}")[0], 16)
            if got != fill:
                raise RuntimeError(f"{name}: page 0x{QT_START + off:x} "
                                   f"reads 0x{got:x}, not 0x{fill:x}")
        place = dinfo.get("postcopy-placement") or {}
        pages = place.get("copied", 0) + place.get("continued", 0)
        if not place:
            # stock QEMU: pages from the bytes sent in postcopy
            pages = info["ram"].get("postcopy-bytes", 0) // (QT_PAGE + 8)
        ram_pages = size // QT_PAGE
        listen = threads["mig/dst/listen"]
        return True, {
            "postcopy s": round(postcopy_s, 3),
            "GiB/s": round(size / postcopy_s / 2 ** 30, 2),
            "% postcopy": round(100 * pages / ram_pages),
            "listen ns/page": round(listen / pages) if pages else None,
            "source ns/page": (round(sthreads["mig/src/main"] / ram_pages)
                               if sthreads["mig/src/main"] else None),
            "placed COPY": place.get("copied"),
            "placed CONTINUE": place.get("continued"),
        }
    finally:
        src.stop()
        if dst:
            dst.stop()


TP_KEYS = [("postcopy s", "postcopy s"), ("GiB/s", "GiB/s"),
           ("% postcopy", "% postcopy"), ("listen ns/page", "ns/page"),
           ("source ns/page", "src ns/page"),
           ("placed COPY", "COPY"), ("placed CONTINUE", "CONTINUE")]


def all_variants(args):
    """VARIANTS on this build, then the UFFDIO_COPY ones on the stock
    QEMU where there is one; --only applied"""
    stock = args.stock or (STOCK_QEMU if os.path.exists(STOCK_QEMU)
                           else None)
    variants = [(n, b, m, None) for n, b, m in VARIANTS]
    if args.compare:
        variants += [("B " + n, b, m, args.compare) for n, b, m in VARIANTS]
    if stock:
        variants += [("stock " + n, b, m, stock)
                     for n, b, m in VARIANTS if not m and "guest" not in b]
    return [v for v in variants if not args.only or args.only in v[0]]


def gmem_backend_missing():
    """Why memory-backend-guest-memfd cannot start on this host (no
    /dev/kvm, or KVM without guest_memfd MMAP|INIT_SHARED), or None.
    A kernel that only refuses userfaultfd on guest_memfd is left to the
    destination, whose refusal the variant then reports."""
    status, reason = demo.probe_reason()
    if status in demo.PROBE_NO_BACKEND:
        return "the backend cannot start: " + reason
    return None


def run_interleaved(args, variants, migrate, keys):
    """Migrate every variant --runs times, the variants interleaved, with
    migrate(work, name, backend, minor, qemu) -> (ok, report or refusal);
    (reports by variant name, refusals by variant name).  Each round runs
    the variants in an order of its own, shuffled (the same orders every
    time the script runs), so that none always runs first or right after
    another: on these machines a run is faster or slower for what ran
    just before it."""
    import tempfile
    work = tempfile.mkdtemp(prefix="qemu-gmem-bench-")
    results = {v[0]: [] for v in variants}
    skipped = {}
    no_gmem = gmem_backend_missing()
    if no_gmem:
        skipped = {v[0]: no_gmem for v in variants if "guest-memfd" in v[1]}
    for run in range(args.runs):
        order = list(variants)
        random.Random(0x0de7 + run).shuffle(order)
        for name, backend, minor, qemu in order:
            if name in skipped:
                continue
            demo.say(f"run {run + 1}/{args.runs}: {name}")
            ok, rep = migrate(work, name, backend, minor, qemu)
            if not ok:
                skipped[name] = rep
                continue
            results[name].append(rep)
            demo.say("    " + ", ".join(f"{short} {rep.get(key)}"
                                          for key, short in keys))
    return results, skipped


def paired(results, name, base, key):
    """The ratios name/base of key, run by run (runs are interleaved, so
    run i of two variants ran close together): '1.03 (0.98-1.10), 7 of
    12 above 1', the median, the range and how many are above 1, or
    None.  On a noisy machine this says more than the ratio of the
    medians."""
    ratios = [a[key] / b[key]
              for a, b in zip(results.get(name, []), results.get(base, []))
              if a.get(key) and b.get(key)]
    if not ratios:
        return None
    return (f"{statistics.median(ratios):.2f} "
            f"({min(ratios):.2f}-{max(ratios):.2f}), "
            f"{sum(r > 1 for r in ratios)} of {len(ratios)} above 1")


def geomean(ratios):
    """'0.98 (0.96-1.01), 7 of 20 above 1': the geometric mean of
    ratios, an interval of about 95% around it (normal approximation,
    so for 10 or more ratios) and how many are above 1"""
    logs = [math.log(r) for r in ratios]
    mean = statistics.mean(logs)
    half = 1.96 * statistics.stdev(logs) / math.sqrt(len(logs))
    return (f"{math.exp(mean):.3f} ({math.exp(mean - half):.3f}-"
            f"{math.exp(mean + half):.3f}), "
            f"{sum(r > 1 for r in ratios)} of {len(ratios)} above 1")


def pooled(results, name, base, key):
    """With --compare naming the same build, each round ran name and base
    twice, once per copy: (name over base, copy B over copy A) run by run,
    each the geometric mean of the round's two ratios, summed up by
    geomean(); None where fewer than two rounds have all four runs"""
    runs = [results.get(v, []) for v in (name, base, "B " + name,
                                         "B " + base)]
    ratio, aa = [], []
    for na, ba, nb, bb in zip(*runs):
        vals = [r.get(key) for r in (na, ba, nb, bb)]
        if not all(vals):
            continue
        ratio.append(math.sqrt(vals[0] * vals[2] / (vals[1] * vals[3])))
        aa.append(math.sqrt(vals[2] * vals[3] / (vals[0] * vals[1])))
    if len(ratio) < 2:
        return None
    return geomean(ratio), geomean(aa)


def spread(results, name, key):
    """max/min of key over the runs of one variant"""
    vals = [r[key] for r in results.get(name, []) if r.get(key)]
    return f"{max(vals) / min(vals):.2f}" if vals else "-"


# (base, variant, what): the ratios printed after each table
COMPARISONS = [
    ("memfd (UFFDIO_COPY)", "memfd minor placement",
     "minor placement / memfd UFFDIO_COPY, this build"),
    ("memfd (UFFDIO_COPY)", "guest_memfd (minor)",
     "guest_memfd / memfd UFFDIO_COPY, this build"),
    ("memfd (UFFDIO_COPY)", "B memfd minor placement",
     "minor placement on B / memfd UFFDIO_COPY, this build"),
    ("B memfd (UFFDIO_COPY)", "B memfd minor placement",
     "minor placement / memfd UFFDIO_COPY, B"),
    ("memfd minor placement", "B memfd minor placement",
     "minor placement on B / on this build"),
    ("memfd (UFFDIO_COPY)", "B memfd (UFFDIO_COPY)",
     "memfd UFFDIO_COPY on B / on this build"),
    ("stock memfd (UFFDIO_COPY)", "memfd (UFFDIO_COPY)",
     "memfd UFFDIO_COPY, this build / stock QEMU"),
    ("stock memfd (UFFDIO_COPY)", "memfd minor placement",
     "minor placement, this build / memfd UFFDIO_COPY, stock QEMU"),
    ("stock memfd (UFFDIO_COPY)", "guest_memfd (minor)",
     "guest_memfd, this build / memfd UFFDIO_COPY, stock QEMU"),
]


# (base, variant, what): pooled over both copies where --compare ran them
POOLED = [
    ("memfd (UFFDIO_COPY)", "memfd minor placement",
     "minor placement / memfd UFFDIO_COPY"),
    ("memfd (UFFDIO_COPY)", "guest_memfd (minor)",
     "guest_memfd / memfd UFFDIO_COPY"),
]


def say_ratios(med, results, keys):
    """For each of COMPARISONS whose two variants ran, the ratio of the
    medians and the run by run ratios of each of keys [(key, short)]"""
    for base, name, what in COMPARISONS:
        a, b = med.get(name), med.get(base)
        if not a or not b:
            continue
        demo.say()
        demo.say(what + " (ratio of the medians; run by run: median "
                 "(range)):")
        for key, short in keys:
            if a[key] and b[key]:
                demo.say(f"  {short:14} {a[key] / b[key]:.2f}   "
                         f"{paired(results, name, base, key) or '-'}")
    for base, name, what in POOLED:
        if "B " + name not in med or "B " + base not in med:
            continue
        demo.say()
        demo.say(f"{what}, both copies (--compare) pooled, run by run: "
                 "geometric mean (about 95% interval), next to the A/A, "
                 "copy B over copy A:")
        for key, short in keys:
            both = pooled(results, name, base, key)
            if both:
                demo.say(f"  {short:14} {both[0]}   A/A {both[1]}")


def number(v):
    """A median for a table: '-' for none, whole numbers from 100 up,
    3 decimals below"""
    if v is None:
        return "-"
    if isinstance(v, float):
        if abs(v) >= 100:
            return str(round(v))
        return f"{v:.3f}".rstrip("0").rstrip(".")
    return str(v)


def throughput_main(args):
    """--throughput: the table, medians and ratios"""
    variants = all_variants(args)
    results, skipped = run_interleaved(
        args, variants,
        lambda work, name, backend, minor, qemu: throughput_migrate(
            work, name, backend, minor, qemu, args.preempt, args.rewrite),
        TP_KEYS)
    demo.say()
    demo.say(f"throughput: {TP_RAM_MB} MiB over loopback, "
             f"{'rewritten after a precopy pass' if args.rewrite else 'postcopy from the start'}"
             f"{', postcopy-preempt' if args.preempt else ''}; medians of "
             f"{args.runs} runs, variants interleaved (machine: "
             f"{os.cpu_count()} CPUs; noisy)")
    demo.say(f"{'variant':28}" + "".join(f"{k[1]:>12}" for k in TP_KEYS) +
             f"{'time ratio':>12}{'spread':>8}")
    med = {}
    for name, *_ in variants:
        if name in skipped:
            continue
        med[name] = {k: (statistics.median(v) if v else None)
                     for k, _ in TP_KEYS
                     for v in [[r[k] for r in results[name]
                                if r.get(k) is not None]]}
    base = med.get("memfd (UFFDIO_COPY)", {}).get("postcopy s")
    for name, *_ in variants:
        if name in skipped:
            demo.say(f"{name:28}  skipped: {skipped[name]}")
            continue
        row = med[name]
        ratio = f"{row['postcopy s'] / base:.2f}" if base else "-"
        demo.say(f"{name:28}" + "".join(
            f"{number(row[k]):>12}" for k, _ in TP_KEYS) + f"{ratio:>12}"
            f"{spread(results, name, 'postcopy s'):>8}")
    demo.say()
    demo.say("time ratio: postcopy time / that of memfd (UFFDIO_COPY) on "
             "this build (minor placement's goal: <= 0.66); spread: the "
             "slowest run's time / the fastest's")
    say_ratios(med, results, [("postcopy s", "postcopy s")])
    return 0


GUEST_RAM = "128M"


def reader_vm(work, name, backend, accel, incoming=False, qemu=None):
    """A machine booting bench/reader-bootblock.S"""
    return demo.VM(work, name, backend, incoming=incoming, accels=(accel,),
                   ram=GUEST_RAM, disk=READER, qemu=qemu)


def guest_migrate(work, name, backend, minor, accel, qemu=None):
    """One postcopy migration of the reader guest; (ok, report or refusal)"""
    demo.clean_work(work)
    src = reader_vm(work, "source", backend, accel, qemu=qemu)
    dst = None
    try:
        dst = reader_vm(work, "target", backend, accel, incoming=True,
                        qemu=qemu)
        demo.wait_for(lambda: src.serial_count("A"), 120,
                      "the guest to fill its memory")
        refusal = start_postcopy(src, dst, minor)
        if refusal:
            return False, refusal
        # Two 'B's on the destination: 64 whole passes there at least, so
        # the guest has read every page
        demo.wait_for(lambda: dst.serial_count("B") >= 2 or
                      dst.serial_count("E"), 120,
                      "the guest to read all of its memory")
        if dst.serial_count("E"):
            raise RuntimeError(f"{name}: the guest read a wrong page")
        return True, finish_postcopy(src, dst)
    finally:
        src.stop()
        if dst:
            dst.stop()


def main():
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--accel", default="kvm", choices=("kvm", "tcg"),
                    help="accelerator of the guest's vCPU (default kvm)")
    ap.add_argument("--qtest", action="store_true",
                    help="the same fault sequence every run, driven over "
                    "qtest, instead of the guest (see above)")
    ap.add_argument("--only", metavar="TEXT",
                    help="run only the variants whose name contains TEXT")
    ap.add_argument("--throughput", action="store_true",
                    help=f"{TP_RAM_MB} MiB of -accel qtest RAM, postcopy "
                    "from the start, no bandwidth cap: the background "
                    "stream's placement rate (see above)")
    ap.add_argument("--rewrite", action="store_true",
                    help="with --throughput: a precopy pass first, then "
                    "the source rewrites all of its RAM, so every page is "
                    "discarded and sent again in postcopy")
    ap.add_argument("--preempt", action="store_true",
                    help="with --throughput: with postcopy-preempt")
    ap.add_argument("--compare", metavar="QEMU",
                    help="every variant also on QEMU, another build of the "
                    "series (rows 'B ...'): an A/B of a change")
    ap.add_argument("--stock", metavar="QEMU",
                    help="with --throughput: the unpatched QEMU whose "
                    "UFFDIO_COPY variants are run too (default: "
                    f"{os.path.relpath(STOCK_QEMU, demo.TOP)} if built, "
                    "scripts/build-qemu.sh --stock)")
    args = ap.parse_args()
    if args.throughput:
        return throughput_main(args)
    variants = all_variants(args)
    keys = KEYS + QT_KEYS if args.qtest else KEYS

    if not args.qtest and not os.path.exists(READER):
        demo.say(f"{READER} is missing; run `make tools`")
        return 1
    if args.qtest:
        migrate = qtest_migrate
    else:
        def migrate(work, name, backend, minor, qemu):
            return guest_migrate(work, name, backend, minor, args.accel,
                                 qemu)
    results, skipped = run_interleaved(args, variants, migrate, keys)

    demo.say()
    head = f"{'variant':26}" + "".join(f"{k[1]:>14}" for k in keys)
    demo.say(f"medians over {args.runs} runs, "
             f"{'driven over qtest' if args.qtest else args.accel} (machine: "
             f"{os.cpu_count()} CPUs; noisy)")
    demo.say(head)
    med = {}
    for name, *_ in variants:
        if name in skipped:
            demo.say(f"{name:26}  skipped: {skipped[name]}")
            continue
        row = {}
        for key, _ in keys:
            vals = [r[key] for r in results[name] if r.get(key) is not None]
            row[key] = statistics.median(vals) if vals else None
        med[name] = row
        demo.say(f"{name:26}" + "".join(
            f"{number(row[k]):>14}" for k, _ in keys))
    demo.say()
    demo.say("target: minor placement and guest_memfd at or below 1.0 of "
             "memfd UFFDIO_COPY")
    say_ratios(med, results,
               KEYS[:4] + QT_KEYS[:2] if args.qtest else KEYS[:4])
    return 0


if __name__ == "__main__":
    sys.exit(main())
