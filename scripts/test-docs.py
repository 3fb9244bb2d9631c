#!/usr/bin/env python3
# SPDX-License-Identifier: GPL-2.0-or-later
"""Run the examples of docs/system/guest-memfd.rst with the project's QEMU.

The examples to run are marked in the rst with a comment right before a
code block:

    .. test: NAME[,NAME...] [start=ROLE] [qmp=ROLE] [requires=WHAT]

    .. code-block:: shell|console|text

Blocks with the same NAME make one scenario, run in the order they appear
in the file and reported as one TAP result ("ok N - NAME").  A block may
belong to several scenarios.  Kinds of blocks:

- ``shell`` with ``start=ROLE``: a QEMU command line (``\\`` continues a
  line), started in the background in a fresh folder shared by the
  scenario's processes, where relative socket paths land.  The first word
  (``qemu-system-x86_64``) is replaced by the binary under test.  If it
  has no ``-qmp`` option, one is added, and the test itself checks that
  the VM runs (``query-status``) and quits it.
- ``console``: ``$ COMMAND`` lines, run; every other line is output that
  must appear (as a whole line) in what the command prints.
- ``text`` with ``qmp=ROLE``: a QMP conversation with the process ROLE.
  ``-> JSON`` is sent; the ``<- JSON`` that follows is the reply it must
  get: ``return`` or ``error`` as documented; for an error the same
  ``class`` and ``desc``; for a return every documented key must be
  there, with the documented value for strings (numbers, booleans and
  lists are only checked to be of the same kind).  ``postcopy-placement``
  is only checked if QEMU reports it (a note is printed otherwise).  A
  ``<- {"event": ...}`` line not after a command waits for that event
  with that data (earlier events are skipped).  JSON may span lines.

``requires=`` on a block applies to every scenario of the block:
``guest-memfd-uffd`` (gmem-probe --json says guest_memfd postcopy is
possible) or ``no-guest-memfd-uffd`` (it says it is not).  A scenario that
needs guest_memfd userfaultfd on a kernel without it runs instead with
memfd RAM and ``x-postcopy-minor`` on the destination: the same sequence
through the same placement code.  Scenarios that use
memory-backend-guest-memfd skip where gmem-probe says the backend cannot
work; those that use ``-accel kvm`` skip without a usable /dev/kvm.

``--accel qtest`` replaces ``-accel kvm`` in every command line (for
nested VMs, where a KVM guest whose RAM is a guest_memfd can hang at boot,
see docs/check-vm.md).

Prints TAP, for scripts/run-tests.py.
"""

import argparse
import json
import os
import re
import shlex
import shutil
import socket
import subprocess
import sys
import tempfile
import time

TOP = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CACHE = os.environ.get("QEMU_GMEM_CACHE", os.path.join(TOP, ".cache"))
RST = os.path.join(TOP, "docs", "system", "guest-memfd.rst")
# Members of replies that the binary under test may not have yet
OPTIONAL = {"postcopy-placement"}
TIMEOUT = 60


class Failure(Exception):
    pass


class Skip(Exception):
    pass


def note(msg):
    for line in str(msg).splitlines():
        print(f"# {line}", flush=True)


# ---------------------------------------------------------------- parsing

class Block:
    def __init__(self, names, opts, lang, text, line):
        self.names, self.opts, self.lang = names, opts, lang
        self.text, self.line = text, line

    def __repr__(self):
        return f"<block line {self.line} {self.lang} {self.opts}>"


def parse_rst(path):
    """The marked code blocks of @path, in order"""
    lines = open(path, encoding="utf-8").read().splitlines()
    blocks = []
    i = 0
    while i < len(lines):
        m = re.match(r"^\.\. test:\s*(\S+)(.*)$", lines[i])
        if not m:
            i += 1
            continue
        marker_line = i + 1
        names = m.group(1).split(",")
        opts = dict(o.split("=", 1) for o in m.group(2).split())
        i += 1
        while i < len(lines) and not lines[i].strip():
            i += 1
        cb = re.match(r"^\.\. code-block::\s*(\S+)\s*$", lines[i]) \
            if i < len(lines) else None
        if not cb:
            raise SystemExit(f"{path}:{marker_line}: '.. test:' is not "
                             "followed by a code-block")
        lang = cb.group(1)
        i += 1
        body = []
        while i < len(lines) and (not lines[i].strip() or
                                  lines[i].startswith((" ", "\t"))):
            body.append(lines[i])
            i += 1
        while body and not body[-1].strip():
            body.pop()
        while body and not body[0].strip():
            body.pop(0)
        indent = min(len(b) - len(b.lstrip()) for b in body if b.strip())
        text = "\n".join(b[indent:] for b in body)
        blocks.append(Block(names, opts, lang, text, marker_line))
    return blocks


def join_continuations(text):
    out, cur = [], ""
    for line in text.splitlines():
        if line.rstrip().endswith("\\"):
            cur += line.rstrip()[:-1] + " "
        else:
            out.append(cur + line)
            cur = ""
    if cur:
        out.append(cur)
    return [o for o in out if o.strip()]


def parse_qmp(text):
    """[(dir, obj)] from '-> ...' and '<- ...' lines"""
    items, cur = [], None
    for line in text.splitlines():
        m = re.match(r"^(->|<-)\s?(.*)$", line)
        if m:
            if cur:
                items.append(cur)
            cur = [m.group(1), m.group(2)]
        elif cur:
            cur[1] += "\n" + line
    if cur:
        items.append(cur)
    try:
        return [(d, json.loads(t)) for d, t in items]
    except json.JSONDecodeError as e:
        raise SystemExit(f"bad JSON in a QMP block: {e}: {items}")


# ------------------------------------------------------------------- QMP

class QMP:
    def __init__(self, path, proc, role):
        self.proc, self.role = proc, role
        deadline = time.monotonic() + TIMEOUT
        while True:
            self.sock = socket.socket(socket.AF_UNIX)
            try:
                self.sock.connect(path)
                break
            except OSError:
                self.sock.close()
                if proc.poll() is not None:
                    raise Failure(f"{role}: QEMU exited with status "
                                  f"{proc.returncode} before its QMP "
                                  "socket appeared")
                if time.monotonic() > deadline:
                    raise Failure(f"{role}: no QMP socket {path}")
                time.sleep(0.05)
        self.sock.settimeout(TIMEOUT)
        self.f = self.sock.makefile("rw")
        self.events = []
        self.read()     # greeting

    def read(self):
        try:
            line = self.f.readline()
        except socket.timeout:
            raise Failure(f"{self.role}: no answer in {TIMEOUT} s")
        if not line:
            raise Failure(f"{self.role}: QEMU closed QMP (exit status "
                          f"{self.proc.poll()})")
        return json.loads(line)

    def send(self, obj):
        self.f.write(json.dumps(obj) + "\n")
        self.f.flush()
        while True:
            r = self.read()
            if "event" in r:
                self.events.append(r)
                continue
            return r

    def wait_event(self, want):
        deadline = time.monotonic() + TIMEOUT
        while True:
            while self.events:
                ev = self.events.pop(0)
                if ev["event"] == want["event"] and \
                   subset(want.get("data", {}), ev.get("data", {})):
                    return ev
            if time.monotonic() > deadline:
                raise Failure(f"{self.role}: no event {json.dumps(want)}")
            self.events.append(self.read())


def subset(want, got):
    """Do the strings of @want appear in @got at the same places?"""
    if isinstance(want, dict):
        return isinstance(got, dict) and all(
            k in got and subset(v, got[k]) for k, v in want.items())
    if isinstance(want, str):
        return want == got
    return True


def check_return(want, got, where, notes):
    if isinstance(want, dict):
        if not isinstance(got, dict):
            raise Failure(f"{where}: expected an object, got {got!r}")
        for k, v in want.items():
            if k not in got:
                if k in OPTIONAL:
                    notes.append(f"{where}: no '{k}' in this QEMU's reply "
                                 "(not checked)")
                    continue
                raise Failure(f"{where}: no '{k}' in {json.dumps(got)}")
            check_return(v, got[k], f"{where}.{k}", notes)
    elif isinstance(want, str):
        if want != got:
            raise Failure(f"{where}: expected {want!r}, got {got!r}")
    elif isinstance(want, bool):
        if not isinstance(got, bool):
            raise Failure(f"{where}: expected a boolean, got {got!r}")
    elif isinstance(want, (int, float)):
        if isinstance(got, bool) or not isinstance(got, (int, float)):
            raise Failure(f"{where}: expected a number, got {got!r}")
    elif isinstance(want, list):
        if not isinstance(got, list):
            raise Failure(f"{where}: expected a list, got {got!r}")


# -------------------------------------------------------------- scenarios

class Host:
    def __init__(self, probe):
        self.kvm = os.access("/dev/kvm", os.R_OK | os.W_OK)
        self.probe = None
        if probe and os.access(probe, os.X_OK):
            r = subprocess.run([probe, "--json"], capture_output=True,
                               text=True, timeout=120)
            try:
                self.probe = json.loads(r.stdout)
            except json.JSONDecodeError:
                note(f"gmem-probe --json printed no JSON: {r.stderr}")

    def backend_missing(self):
        """Why the backend cannot work here, or None"""
        if not self.probe:
            return None if self.kvm else "no usable /dev/kvm"
        if self.probe["reason_code"] in ("no-kvm", "no-guest-memfd"):
            return self.probe["reason"]
        return None

    def gmem_uffd(self):
        if not self.probe:
            raise Skip("gmem-probe is not built: cannot tell whether this "
                       "kernel has userfaultfd for guest_memfd")
        return bool(self.probe["postcopy_guest_memfd"])


class Scenario:
    def __init__(self, name):
        self.name = name
        self.blocks = []


def to_minor(blocks, dst_roles):
    """The blocks with memfd RAM in place of guest_memfd, and
    x-postcopy-minor set with postcopy-ram on the destination"""
    out = []
    for b in blocks:
        text = b.text
        if b.lang == "shell":
            text = text.replace("memory-backend-guest-memfd,",
                                "memory-backend-memfd,share=on,")
        elif b.opts.get("qmp") in dst_roles:
            items = parse_qmp(text)
            for d, obj in items:
                caps = obj.get("arguments", {}).get("capabilities", [])
                if obj.get("execute") == "migrate-set-capabilities" and \
                   any(c["capability"] == "postcopy-ram" for c in caps):
                    caps.append({"capability": "x-postcopy-minor",
                                 "state": True})
            text = "\n".join(f"{d} {json.dumps(o)}" for d, o in items)
        out.append(Block(b.names, b.opts, b.lang, text, b.line))
    return out


class Runner:
    def __init__(self, qemu, accel, host, keep):
        self.qemu, self.accel, self.host, self.keep = qemu, accel, host, keep

    def argv(self, text):
        lines = join_continuations(text)
        if len(lines) != 1:
            raise SystemExit(f"expected one command, got {lines}")
        args = shlex.split(lines[0])
        if args[0] == "$":
            args = args[1:]
        if args[0] == "qemu-system-x86_64":
            args[0] = self.qemu
        if self.accel:
            for i in range(len(args) - 1):
                if args[i] == "-accel" and args[i + 1] == "kvm":
                    args[i + 1] = self.accel
        return args

    def needs(self, blocks):
        """Raise Skip if this host lacks what @blocks use"""
        text = " ".join(b.text for b in blocks)
        if "memory-backend-guest-memfd" in text and \
           "memory-backend-guest-memfd,help" not in text:
            why = self.host.backend_missing()
            if why:
                raise Skip(f"memory-backend-guest-memfd cannot work here: "
                           f"{why}")
        if any(b.lang == "shell" and "-accel kvm" in b.text
               for b in blocks) and not self.accel and not self.host.kvm:
            raise Skip("no usable /dev/kvm for -accel kvm")

    def run(self, sc):
        blocks = sc.blocks
        name = sc.name
        for b in blocks:
            req = b.opts.get("requires")
            if req == "guest-memfd-uffd" and not self.host.gmem_uffd():
                dst = {b2.opts["start"] for b2 in blocks
                       if b2.lang == "shell" and "-incoming" in b2.text}
                blocks = to_minor(blocks, dst)
                name = (f"{sc.name} (as memfd RAM with x-postcopy-minor: "
                        "this kernel lacks userfaultfd for guest_memfd)")
                break
            if req == "no-guest-memfd-uffd" and self.host.gmem_uffd():
                raise Skip("this kernel has userfaultfd for guest_memfd, "
                           "so postcopy is not refused")
        self.needs(blocks)
        work = tempfile.mkdtemp(prefix="qemu-gmem-docs-")
        procs, qmps, notes = {}, {}, []
        try:
            for b in blocks:
                where = f"{sc.name}, rst line {b.line}"
                if b.lang == "shell" and "start" in b.opts:
                    self.start(b, work, procs, qmps)
                elif b.lang == "console":
                    self.console(b, where)
                elif b.lang == "text" and "qmp" in b.opts:
                    role = b.opts["qmp"]
                    if role not in qmps:
                        raise Failure(f"{where}: no process '{role}' started")
                    self.converse(qmps[role][0], parse_qmp(b.text), where,
                                  notes)
                else:
                    raise SystemExit(f"rst line {b.line}: cannot run a "
                                     f"'{b.lang}' block with {b.opts}")
            for role, (q, ours) in qmps.items():
                if ours:
                    r = q.send({"execute": "query-status"})
                    if r.get("return", {}).get("status") not in (
                            "running", "prelaunch", "paused"):
                        raise Failure(f"{role}: query-status: {r}")
        except Failure as e:
            self.stop(procs, qmps)
            for role in procs:
                err = open(os.path.join(work, f"{role}.log")).read()
                note(f"{role}'s output:\n{err.strip()}")
            raise Failure(f"{name}: {e}")
        finally:
            self.stop(procs, qmps)
            if not self.keep:
                shutil.rmtree(work, ignore_errors=True)
        for n in notes:
            note(f"note: {n}")
        return name

    def start(self, b, work, procs, qmps):
        role = b.opts["start"]
        args = self.argv(b.text)
        ours = "-qmp" not in args
        if ours:
            args += ["-qmp", f"unix:{role}.qmp,server=on,wait=off"]
        sock = None
        for i, a in enumerate(args[:-1]):
            if a == "-qmp":
                m = re.match(r"unix:([^,]+)", args[i + 1])
                sock = m and m.group(1)
        if not sock:
            raise SystemExit(f"rst line {b.line}: no '-qmp unix:PATH'")
        log = open(os.path.join(work, f"{role}.log"), "w")
        procs[role] = subprocess.Popen(args, cwd=work, stdin=subprocess.DEVNULL,
                                       stdout=log, stderr=subprocess.STDOUT)
        q = QMP(os.path.join(work, sock), procs[role], role)
        if ours:
            q.send({"execute": "qmp_capabilities"})
        qmps[role] = (q, ours)

    def console(self, b, where):
        lines = join_continuations(b.text)
        cmds = [i for i, l in enumerate(lines) if l.startswith("$ ")]
        for n, i in enumerate(cmds):
            end = cmds[n + 1] if n + 1 < len(cmds) else len(lines)
            want = lines[i + 1:end]
            r = subprocess.run(self.argv(lines[i]), capture_output=True,
                               text=True, timeout=TIMEOUT)
            if r.returncode != 0:
                raise Failure(f"{where}: exit status {r.returncode}: "
                              f"{r.stderr.strip()}")
            got = [l.rstrip() for l in r.stdout.splitlines()]
            for w in want:
                if w.rstrip() not in got:
                    raise Failure(f"{where}: no line {w.strip()!r} in:\n"
                                  + r.stdout)

    def converse(self, q, items, where, notes):
        i = 0
        while i < len(items):
            d, obj = items[i]
            if d == "->":
                if i + 1 >= len(items) or items[i + 1][0] != "<-" or \
                   "event" in items[i + 1][1]:
                    raise SystemExit(f"{where}: command without a reply")
                want = items[i + 1][1]
                got = q.send(obj)
                what = f"{where}: {obj['execute']}"
                if "error" in want:
                    if "error" not in got:
                        raise Failure(f"{what}: expected error "
                                      f"{want['error']['desc']!r}, got "
                                      f"{json.dumps(got)}")
                    for k in ("class", "desc"):
                        if want["error"].get(k) != got["error"].get(k):
                            raise Failure(f"{what}: expected error {k} "
                                          f"{want['error'].get(k)!r}, got "
                                          f"{got['error'].get(k)!r}")
                else:
                    if "return" not in got:
                        raise Failure(f"{what}: expected a return, got "
                                      f"{json.dumps(got)}")
                    check_return(want["return"], got["return"], what, notes)
                i += 2
            elif "event" in obj:
                q.wait_event(obj)
                i += 1
            else:
                raise SystemExit(f"{where}: reply without a command: {obj}")

    def stop(self, procs, qmps):
        for role, p in procs.items():
            if p.poll() is None and role in qmps:
                try:
                    qmps[role][0].f.write('{"execute": "quit"}\n')
                    qmps[role][0].f.flush()
                except OSError:
                    pass
        for role, p in procs.items():
            try:
                p.wait(10)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()
        for q, _ in qmps.values():
            q.sock.close()
        qmps.clear()


def main():
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--qemu", default=os.environ.get(
        "QTEST_QEMU_BINARY",
        os.path.join(CACHE, "qemu", "build", "qemu-system-x86_64")),
        help="QEMU binary (default: $QTEST_QEMU_BINARY, else "
             "<cache>/qemu/build/qemu-system-x86_64)")
    ap.add_argument("--probe",
                    default=os.path.join(CACHE, "tools-build", "gmem-probe"))
    ap.add_argument("--rst", default=RST)
    ap.add_argument("--accel", default=None,
                    help="run '-accel kvm' command lines with this "
                         "accelerator instead")
    ap.add_argument("--only", action="append", default=None,
                    help="run only the scenarios of this name (repeat it)")
    ap.add_argument("--keep", action="store_true",
                    help="keep each scenario's folder (QEMU's output)")
    args = ap.parse_args()

    scenarios = {}
    for b in parse_rst(args.rst):
        for n in b.names:
            scenarios.setdefault(n, Scenario(n)).blocks.append(b)
    todo = [s for n, s in scenarios.items()
            if args.only is None or n in args.only]
    print(f"1..{len(todo)}", flush=True)
    args.qemu = os.path.abspath(args.qemu)
    if not os.access(args.qemu, os.X_OK):
        for n, s in enumerate(todo, 1):
            print(f"not ok {n} - {s.name}: no QEMU binary {args.qemu}")
        return 1
    note(f"QEMU {args.qemu}; examples from {args.rst}")
    runner = Runner(args.qemu, args.accel, Host(args.probe), args.keep)
    failed = 0
    for n, s in enumerate(todo, 1):
        start = time.monotonic()
        try:
            name = runner.run(s)
            print(f"ok {n} - {name}", flush=True)
        except Skip as e:
            print(f"ok {n} - {s.name} # SKIP {e}", flush=True)
        except Failure as e:
            note(str(e))
            print(f"not ok {n} - {s.name}", flush=True)
            failed += 1
        note(f"{s.name}: {time.monotonic() - start:.1f} s")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
