#!/usr/bin/env python3
# SPDX-License-Identifier: GPL-2.0-or-later
"""Postcopy benchmark: the same guest, four kinds of RAM, in one run.

Migrates the demo's guest (dirtying 100 MiB under KVM) over loopback with
postcopy, for anonymous RAM (upstream UFFDIO_COPY path), memfd (upstream
UFFDIO_COPY path), memfd with minor placement (x-postcopy-minor: alias
fill + UFFDIO_CONTINUE, the guest_memfd path) and guest_memfd where the
kernel supports it.  Variants are interleaved, --runs times each, and for
each the median of QEMU's own numbers is printed: total migration time,
postcopy blocktime, mean page request latency, and the p99 bucket of the
page request latency distribution; plus the ratio of minor placement to
the upstream memfd path.  A benchmark, not a test: it prints numbers.
"""

import argparse
import os
import statistics
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import demo  # noqa: E402

VARIANTS = [
    ("anon (UFFDIO_COPY)", "memory-backend-ram,share=off", False),
    ("memfd (UFFDIO_COPY)", "memory-backend-memfd", False),
    ("memfd minor (CONTINUE)", "memory-backend-memfd", True),
    ("guest_memfd (CONTINUE)", "memory-backend-guest-memfd", False),
]
KEYS = [("total-time ms", "total ms"),
        ("postcopy blocktime ms", "blocktime ms"),
        ("page request latency, mean us", "req mean us"),
        ("page request latency, p99 us (< bucket bound)", "req p99 us <"),
        ("page requests", "requests")]


def main():
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--trace", action="store_true",
                    help="log the minor placement trace events on the "
                    "destination as the demo does (a write(2) per placed "
                    "page, which only the minor variants pay)")
    args = ap.parse_args()

    import tempfile
    work = tempfile.mkdtemp(prefix="qemu-gmem-bench-")
    demo.bootsector(os.path.join(work, "bootsect"))
    results = {v[0]: [] for v in VARIANTS}
    skipped = {}
    for run in range(args.runs):
        for name, backend, minor in VARIANTS:
            if name in skipped:
                continue
            demo.say(f"run {run + 1}/{args.runs}: {name}")
            ok, rep = demo.migrate(work, name, backend, backend, True,
                                   minor=minor, trace=args.trace)
            if isinstance(rep, str):
                skipped[name] = rep
                continue
            if not ok:
                demo.say(f"  {name}: the destination did not run")
                return 1
            results[name].append(rep)

    demo.say()
    head = f"{'variant':26}" + "".join(f"{k[1]:>14}" for k in KEYS)
    demo.say(f"medians over {args.runs} runs (machine: {os.cpu_count()} "
             "CPUs; noisy)")
    demo.say(head)
    med = {}
    for name, _, _ in VARIANTS:
        if name in skipped:
            demo.say(f"{name:26}  skipped: {skipped[name]}")
            continue
        row = {}
        for key, _ in KEYS:
            vals = [r[key] for r in results[name] if r.get(key) is not None]
            row[key] = statistics.median(vals) if vals else None
        med[name] = row
        demo.say(f"{name:26}" + "".join(
            f"{row[k] if row[k] is not None else '-':>14}" for k, _ in KEYS))
    a, b = med.get("memfd minor (CONTINUE)"), med.get("memfd (UFFDIO_COPY)")
    if a and b:
        demo.say()
        demo.say("minor placement / upstream memfd path (target <= 1.1):")
        for key, short in KEYS[:4]:
            if a[key] and b[key]:
                demo.say(f"  {short:14} {a[key] / b[key]:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
