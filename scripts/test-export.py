#!/usr/bin/env python3
# SPDX-License-Identifier: GPL-2.0-or-later
"""Test that `make export` signs both series as the poster (TAP).

scripts/export-series.sh and scripts/export-libvirt.sh run into a
temporary EXPORT_DIR (never .cache/export), with HOME an empty folder and
GIT_CONFIG_NOSYSTEM=1, so that no identity of this host's leaks in:

- no identity: both refuse, saying so, and write nothing;
- SIGNOFF, or git's global user.name/user.email, being the placeholder:
  both refuse;
- a global identity is what they sign with, also when run from the
  prepared tree, whose own configuration is the placeholder;
- SIGNOFF="Jane Doe <jane@example.org>": both export; every file is from
  Jane Doe, every patch has her Signed-off-by, the MAINTAINERS entry names
  her, and nothing names the placeholder.

The full exports take a minute or two (worktrees of QEMU and libvirt,
checkpatch); the refusals take no time.
"""

import email
import email.policy
import email.utils
import glob
import os
import re
import subprocess
import sys
import tempfile
import time

TOP = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CACHE = os.environ.get("QEMU_GMEM_CACHE", os.path.join(TOP, ".cache"))
SCRIPTS = {"qemu": os.path.join(TOP, "scripts", "export-series.sh"),
           "libvirt": os.path.join(TOP, "scripts", "export-libvirt.sh")}
PLACEHOLDER = "qemu-gmem developers <devel@qemu-gmem.invalid>"
JANE = "Jane Doe <jane@example.org>"
FORBIDDEN = re.compile(r"qemu-gmem\.invalid|qemu-gmem developers", re.I)

n = 0
failed = 0


def tap(ok, name, diag=""):
    global n, failed
    n += 1
    failed += not ok
    print(f"{'ok' if ok else 'not ok'} {n} {name}", flush=True)
    if diag and not ok:
        for line in diag.rstrip().splitlines()[-15:]:
            print(f"# {line}", flush=True)


def run(script, tmp, signoff=None, gitconfig=None, args=(), cwd=TOP):
    """Run an export script with no identity but the one given"""
    home = tempfile.mkdtemp(dir=tmp, prefix="home-")
    if gitconfig:
        with open(os.path.join(home, ".gitconfig"), "w") as f:
            f.write(gitconfig)
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("GIT_", "XDG_CONFIG")) and k != "SIGNOFF"}
    env.update(HOME=home, GIT_CONFIG_NOSYSTEM="1",
               EXPORT_DIR=os.path.join(tmp, "export"))
    if signoff is not None:
        env["SIGNOFF"] = signoff
    return subprocess.run([script, *args], env=env, cwd=cwd, text=True,
                          capture_output=True)


def refuses(tmp, what, why, **kw):
    for series, script in SCRIPTS.items():
        p = run(script, tmp, **kw)
        out = os.path.join(tmp, "export")
        tap(p.returncode != 0 and why in p.stderr and not os.path.exists(out),
            f"{series}: refuses to export with {what}",
            f"exit {p.returncode}, export dir there: {os.path.exists(out)}\n"
            + p.stdout + p.stderr)


def check_files(files, series, poster, count):
    problems = []
    patches = [f for f in files if not f.endswith("0000-cover-letter.patch")]
    if len(patches) != count:
        problems.append(f"{len(patches)} patches, the series has {count}")
    maintainers = False
    for f in files:
        raw = open(f, "rb").read()
        text = raw.decode("utf-8", "replace")
        name = os.path.basename(f)
        m = FORBIDDEN.search(text)
        if m:
            line = text[:m.start()].count("\n") + 1
            problems.append(f"{name}:{line}: names the placeholder")
        msg = email.message_from_bytes(raw, policy=email.policy.default)
        if (email.utils.parseaddr(str(msg["From"])) !=
                email.utils.parseaddr(poster)):
            problems.append(f"{name}: From: {msg['From']}")
        if f in patches:
            head = text.split("\n---\n")[0]
            sobs = re.findall(r"^Signed-off-by: (.*)$", head, re.M)
            if not sobs or sobs[-1] != poster:
                problems.append(f"{name}: Signed-off-by {sobs}")
        if f"\n+M: {poster}\n" in text:
            maintainers = True
    return problems, maintainers


def series_count(folder):
    with open(os.path.join(TOP, folder, "series")) as f:
        return sum(1 for line in f if re.sub(r"#.*", "", line).strip())


def repo_names_placeholder_in_maintainers():
    for p in glob.glob(os.path.join(TOP, "qemu-patches", "*.patch")):
        if f"\n+M: {PLACEHOLDER}\n" in open(p, errors="replace").read():
            return True
    return False


def main():
    with tempfile.TemporaryDirectory(prefix="qemu-gmem-export-") as tmp:
        refuses(tmp, "no identity", "no identity")
        refuses(tmp, "the placeholder as SIGNOFF", "placeholder",
                signoff=PLACEHOLDER)
        refuses(tmp, "a SIGNOFF without a mail", "not of the form",
                signoff="Jane Doe")
        refuses(tmp, "the placeholder as git's global identity",
                "placeholder", gitconfig="[user]\n\tname = qemu-gmem "
                "developers\n\temail = devel@qemu-gmem.invalid\n")

        john = "[user]\n\tname = John Roe\n\temail = john@example.org\n"
        tree = os.path.join(CACHE, "qemu")
        for cwd in (TOP, tree) if os.path.isdir(tree) else (TOP,):
            p = run(SCRIPTS["qemu"], tmp, gitconfig=john,
                    args=["--print-identity"], cwd=cwd)
            tap(p.returncode == 0 and
                p.stdout.strip() == "John Roe <john@example.org>",
                f"git's global identity is the poster's (run in {cwd})",
                p.stdout + p.stderr)
        p = run(SCRIPTS["qemu"], tmp, signoff=JANE, gitconfig=john,
                args=["--print-identity"])
        tap(p.returncode == 0 and p.stdout.strip() == JANE,
            "SIGNOFF wins over git's identity", p.stdout + p.stderr)

        out = os.path.join(tmp, "export")
        for series, folder, files in (
                ("qemu", "qemu-patches", lambda: glob.glob(out + "/*.patch")),
                ("libvirt", "libvirt-patches",
                 lambda: glob.glob(out + "/libvirt/*.patch"))):
            start = time.monotonic()
            p = run(SCRIPTS[series], tmp, signoff=JANE)
            took = time.monotonic() - start
            tap(p.returncode == 0,
                f"{series}: exports with SIGNOFF (in {took:.0f} s)",
                p.stdout + p.stderr)
            problems, maintainers = check_files(
                sorted(files()), series, JANE, series_count(folder))
            tap(not problems, f"{series}: every exported file is from "
                "Jane Doe, signed off by her, without the placeholder",
                "\n".join(problems))
            if series == "qemu":
                want = repo_names_placeholder_in_maintainers()
                tap(maintainers == want, "qemu: the MAINTAINERS entry "
                    "names Jane Doe" if want else
                    "qemu: no MAINTAINERS entry to rename # SKIP")
        # the QEMU export leaves libvirt's files alone and the other way
        tap(len(glob.glob(out + "/*.patch")) == series_count("qemu-patches")
            + 1, "both series side by side in EXPORT_DIR")
    print(f"1..{n}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
