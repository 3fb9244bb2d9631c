#!/usr/bin/env python3
# SPDX-License-Identifier: GPL-2.0-or-later
"""Where one thread's CPU time goes, from `perf script` output.

    perf record -a -g -e cpu-clock -F 4000 -o perf.data -- \\
        scripts/postcopy-bench.py --throughput --runs 1 --only "memfd ("
    perf script -i perf.data | scripts/perf-thread-profile.py mig/dst/listen

Reads samples with call chains (perf record -g) on standard input and
keeps those of the threads named THREAD (the comm: QEMU names its
threads with -name ...,debug-threads=on).  Each sample goes to the
first of these groups whose function appears in its kernel call chain:

  placement       ioctl(2): UFFDIO_COPY, _ZEROPAGE, _CONTINUE, the
                  system call's entry included (the placing threads make
                  no other ioctl)
  alias fault     a page fault or madvise(2) (minor placement's
                  writes through the alias, and its populate of the
                  alias ahead of them)
  socket receive  recvmsg and the TCP receive path
  other syscall   any other system call (the source's sendmsg, say)
  user space      the rest

(a function counts where a frame's name starts with it).

and, with --leaves N, the N functions most samples of the placement
group were in, with the function of the UFFDIO_* path that called them.
QEMU's own frames need no symbols here: only the kernel's call chain is
read, which the kernel's unwinder gives whatever QEMU was built with.
cpu-clock sampling works where the CPU has no performance counters (as
in this project's VMs).
"""

import argparse
import collections
import sys

GROUPS = [
    ("placement", ("userfaultfd_ioctl", "__x64_sys_ioctl", "__GI___ioctl")),
    ("alias fault", ("exc_page_fault", "do_madvise")),
    ("socket receive", ("tcp_recvmsg", "sock_recvmsg", "__sys_recvmsg")),
    ("other syscall", ("entry_SYSCALL_64",)),
]
UFFD_PATH = ("shmem_mfill_atomic_pte", "mfill_atomic_install_pte",
             "mfill_atomic_copy", "mfill_atomic_continue", "mfill_atomic",
             "hugetlb_mfill_atomic_pte", "userfaultfd_ioctl")


def samples(lines):
    """(comm, [function, ...]) per sample, innermost function first"""
    comm, stack = None, []
    for line in lines:
        if not line.strip():
            if comm is not None:
                yield comm, stack
            comm, stack = None, []
        elif not line[0].isspace():
            # "COMM PID [CPU] TIME: PERIOD EVENT:": a comm has no blank
            comm, stack = line.split(" ", 1)[0], []
        else:
            parts = line.split()
            if len(parts) >= 2:
                stack.append(parts[1].split("+", 1)[0])
    if comm is not None:
        yield comm, stack


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("thread", help="the thread's name (comm)")
    ap.add_argument("--leaves", type=int, default=0, metavar="N",
                    help="also the N functions placement spends most in")
    args = ap.parse_args()
    groups = collections.Counter()
    leaves = collections.Counter()
    total = 0
    for comm, stack in samples(sys.stdin):
        if comm != args.thread or not stack:
            continue
        total += 1
        group = next((g for g, funcs in GROUPS
                      if any(frame.startswith(f) for f in funcs
                             for frame in stack)), "user space")
        groups[group] += 1
        if group == "placement":
            caller = next((f for f in stack[1:] if f in UFFD_PATH), "-")
            leaves[f"{stack[0]} (in {caller})"] += 1
    if not total:
        print(f"no samples of {args.thread}")
        return 1
    print(f"{args.thread}: {total} samples")
    for group, _ in GROUPS + [("user space", ())]:
        print(f"  {group:16} {100 * groups[group] / total:5.1f}%")
    if args.leaves and groups["placement"]:
        print("  placement, by function (share of placement):")
        for leaf, n in leaves.most_common(args.leaves):
            print(f"    {leaf:60} "
                  f"{100 * n / groups['placement']:5.1f}%")
    return 0


if __name__ == "__main__":
    sys.exit(main())
