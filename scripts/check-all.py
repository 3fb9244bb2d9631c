#!/usr/bin/env python3
# SPDX-License-Identifier: GPL-2.0-or-later
"""Run several test commands and add up their counts.

Each argument is a shell command that ends its output with a line
'N passed, N failed[, N skipped]'.  Output is streamed; a command that
fails without such a line counts as one failure.  The last line printed is
the total; the exit status is 1 if anything failed.  Each command's time
is printed after it.

--background CMD runs CMD at the lowest CPU priority (nice 19) while the
first command runs, its output in a log file, and waits for it before the
second: builds the later commands need go on in the CPU time the first
one leaves idle.  Its failure is reported, not counted: the command that
needs what it builds builds it again and fails with the real error.
"""

import argparse
import os
import re
import subprocess
import sys
import time

COUNTS = re.compile(r"(\d+) passed, (\d+) failed(?:, (\d+) skipped)?\s*$")


def start_background(cmd):
    """@cmd at nice 19, output to a log; (process, log path, start)"""
    path = os.path.join(os.environ.get("TMPDIR", "/tmp"),
                        "qemu-gmem-check-background.log")
    print(f"==== in the background (nice 19, log {path}): {cmd}",
          flush=True)
    with open(path, "w") as log:
        proc = subprocess.Popen(["nice", "-n", "19", "sh", "-c", cmd],
                                stdout=log, stderr=subprocess.STDOUT)
    return proc, path, time.monotonic()


def wait_background(bg):
    proc, path, start = bg
    print("==== waiting for the background command", flush=True)
    rc = proc.wait()
    print(f"==== background command: exit status {rc}, "
          f"{time.monotonic() - start:.0f} s", flush=True)
    if rc:
        with open(path, errors="replace") as log:
            tail = log.readlines()[-20:]
        sys.stdout.write("".join(tail))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--background", metavar="CMD")
    ap.add_argument("cmds", nargs="+")
    args = ap.parse_args()
    total = [0, 0, 0]
    failed_cmds = []
    bg = None
    t0 = time.monotonic()
    for n, cmd in enumerate(args.cmds):
        if n == 0 and args.background:
            bg = start_background(args.background)
        elif bg:
            wait_background(bg)
            bg = None
        start = time.monotonic()
        print(f"==== {cmd}", flush=True)
        proc = subprocess.Popen(cmd, shell=True, stdout=subprocess.PIPE,
                                stderr=subprocess.STDOUT, text=True,
                                errors="replace")
        last = None
        for line in proc.stdout:
            sys.stdout.write(line)
            sys.stdout.flush()
            m = COUNTS.search(line)
            if m:
                last = [int(m.group(1)), int(m.group(2)),
                        int(m.group(3) or 0)]
        rc = proc.wait()
        print(f"==== {cmd}: {time.monotonic() - start:.0f} s", flush=True)
        if last is None:
            last = [0, 1 if rc else 0, 0]
        elif rc and last[1] == 0:
            last[1] = 1
        if rc:
            failed_cmds.append(f"{cmd} (exit status {rc})")
        total = [a + b for a, b in zip(total, last)]
    if bg:
        wait_background(bg)
    print(f"==== all: {time.monotonic() - t0:.0f} s", flush=True)
    if failed_cmds:
        print("failed: " + "; ".join(failed_cmds))
    print(f"{total[0]} passed, {total[1]} failed, {total[2]} skipped")
    return 1 if total[1] else 0


if __name__ == "__main__":
    sys.exit(main())
