#!/usr/bin/env python3
# SPDX-License-Identifier: GPL-2.0-or-later
"""Run several test commands and add up their counts.

Each argument is a shell command that ends its output with a line
'N passed, N failed[, N skipped]'.  Output is streamed; a command that
fails without such a line counts as one failure.  The last line printed is
the total; the exit status is 1 if anything failed.
"""

import re
import subprocess
import sys

COUNTS = re.compile(r"(\d+) passed, (\d+) failed(?:, (\d+) skipped)?\s*$")


def main():
    total = [0, 0, 0]
    failed_cmds = []
    for cmd in sys.argv[1:]:
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
        if last is None:
            last = [0, 1 if rc else 0, 0]
        elif rc and last[1] == 0:
            last[1] = 1
        if rc:
            failed_cmds.append(f"{cmd} (exit status {rc})")
        total = [a + b for a, b in zip(total, last)]
    if failed_cmds:
        print("failed: " + "; ".join(failed_cmds))
    print(f"{total[0]} passed, {total[1]} failed, {total[2]} skipped")
    return 1 if total[1] else 0


if __name__ == "__main__":
    sys.exit(main())
