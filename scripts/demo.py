#!/usr/bin/env python3
# SPDX-License-Identifier: GPL-2.0-or-later
"""Postcopy live migration of a guest_memfd-backed VM on this host.

Prints what the host supports, starts a source VM whose RAM is
memory-backend-guest-memfd with a guest that keeps dirtying 100 MiB, and
migrates it over loopback with postcopy, reporting total time, downtime,
blocktime, page request latency and how many minor and missing faults
were resolved.  Where the kernel lacks userfaultfd for guest_memfd, the
destination refuses postcopy: the demo shows that refusal as a user sees
it, migrates the guest_memfd VM with precopy instead, and then runs the
same postcopy with minor placement (x-postcopy-minor) on memfd RAM, which
is the code path guest_memfd uses.  Exit status 0 when what it set out
to show worked.
"""

import json
import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import time

TOP = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CACHE = os.environ.get("QEMU_GMEM_CACHE", os.path.join(TOP, ".cache"))
QEMU = os.path.join(CACHE, "qemu", "build", "qemu-system-x86_64")
PROBE = os.path.join(CACHE, "tools-build", "gmem-probe")
BOOTBLOCK_H = os.path.join(CACHE, "qemu", "tests", "qtest", "migration",
                           "i386", "a-b-bootblock.h")
RAM = "150M"


# gmem-probe's exit statuses for which memory-backend-guest-memfd cannot
# start at all: no usable /dev/kvm (2), no guest_memfd MMAP|INIT_SHARED (3)
PROBE_NO_BACKEND = (2, 3)


def probe_reason():
    """gmem-probe --reason: (exit status, the one-line reason)"""
    probe = subprocess.run([PROBE, "--reason"], capture_output=True,
                           text=True)
    return probe.returncode, probe.stdout.strip()


class QMP:
    def __init__(self, path, timeout=30):
        deadline = time.monotonic() + timeout
        while True:
            try:
                self.sock = socket.socket(socket.AF_UNIX)
                self.sock.connect(path)
                break
            except OSError:
                self.sock.close()
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.05)
        self.f = self.sock.makefile("rw")
        self.events = []
        self._read()
        self.cmd("qmp_capabilities")

    def _read(self):
        line = self.f.readline()
        if not line:
            raise EOFError("QEMU closed the QMP connection")
        return json.loads(line)

    def cmd_raw(self, name, **args):
        msg = {"execute": name}
        if args:
            msg["arguments"] = args
        self.f.write(json.dumps(msg) + "\n")
        self.f.flush()
        while True:
            rsp = self._read()
            if "event" in rsp:
                self.events.append(rsp)
                continue
            return rsp

    def cmd(self, name, **args):
        rsp = self.cmd_raw(name, **args)
        if "error" in rsp:
            raise RuntimeError(f"{name}: {rsp['error']['desc']}")
        return rsp["return"]


def say(msg=""):
    print(msg, flush=True)


def bootsector(path):
    text = open(BOOTBLOCK_H).read()
    body = text[text.index("{") + 1:text.index("}")]
    data = bytes(int(x, 16) for x in re.findall(r"0x[0-9a-fA-F]{2}", body))
    assert len(data) == 512, len(data)
    with open(path, "wb") as f:
        f.write(data)


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


class VM:
    """A machine booting a boot sector (@disk, by default the demo's guest,
    @work/bootsect), its serial output in @work/@name.serial.  Machine "pc"
    by default: SeaBIOS boots the disk at once, where on q35 it spends
    about 30 s probing AHCI on this project's machines."""

    def __init__(self, work, name, backend, incoming=False, trace=False,
                 machine="pc", accels=("kvm", "tcg"), ram=RAM, disk=None,
                 qemu=None):
        self.name = name
        self.serial = os.path.join(work, f"{name}.serial")
        self.qmp_path = os.path.join(work, f"{name}.qmp")
        self.trace = os.path.join(work, f"{name}.trace")
        self.log = open(os.path.join(work, f"{name}.log"), "w")
        disk = disk or os.path.join(work, "bootsect")
        args = [qemu or QEMU]
        for accel in accels:
            args += ["-accel", accel]
        args += ["-machine", machine,
                 "-name", f"{name},debug-threads=on", "-m", ram,
                 "-object", f"{backend},id=mem,size={ram}",
                 "-machine", "memory-backend=mem",
                 "-drive", f"if=none,id=d0,file={disk},format=raw",
                 "-device", "ide-hd,drive=d0,secs=1,cyls=1,heads=1",
                 "-serial", f"file:{self.serial}", "-display", "none",
                 "-qmp", f"unix:{self.qmp_path},server=on,wait=off"]
        if incoming:
            args += ["-incoming", "defer"]
        if trace:
            args += ["-trace", "postcopy_ram_fault_minor_*",
                     "-trace", "postcopy_place_page_minor*",
                     "-D", self.trace]
        self.proc = subprocess.Popen(args, stdout=self.log,
                                     stderr=subprocess.STDOUT)
        self.qmp = QMP(self.qmp_path)

    def serial_count(self, ch="B"):
        try:
            return open(self.serial, "rb").read().count(ch.encode())
        except FileNotFoundError:
            return 0

    def stop(self):
        if self.proc.poll() is None:
            try:
                self.qmp.cmd_raw("quit")
            except (OSError, EOFError):
                pass
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.log.close()


def wait_for(cond, timeout, what):
    deadline = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out waiting for {what}")
        time.sleep(0.05)


def set_caps(vm, caps):
    vm.qmp.cmd("migrate-set-capabilities", capabilities=[
        {"capability": c, "state": True} for c in caps])


def migrate(work, label, backend_src, backend_dst, postcopy, minor=False,
            trace=True):
    """Run one migration; return (ok, report dict or refusal text).

    With trace, the destination logs the minor placement trace events,
    from which the fault counts are reported; that costs a write(2) per
    placed page, so benchmarks turn it off.
    """
    clean_work(work)
    src = VM(work, "source", backend_src)
    dst = None
    try:
        dst = VM(work, "target", backend_dst, incoming=True, trace=trace)
        # The guest prints 'A' once, then 'B' after every 64 passes over
        # its 100 MiB: wait until it is really dirtying memory (the first
        # 'B' comes about 7 s after the start on this project's machines).
        t0 = time.monotonic()
        wait_for(lambda: src.serial_count("B") >= 1, 90, "the guest to run")
        say(f"    (guest running after {time.monotonic() - t0:.1f} s)")
        caps = ["events"]
        if postcopy:
            caps += ["postcopy-ram", "postcopy-blocktime"]
        set_caps(src, caps)
        dst_caps = caps + (["x-postcopy-minor"] if minor else [])
        rsp = dst.qmp.cmd_raw("migrate-set-capabilities", capabilities=[
            {"capability": c, "state": True} for c in dst_caps])
        if "error" in rsp:
            return False, rsp["error"]["desc"]
        # For postcopy, keep precopy from converging (the guest dirties
        # all of its 100 MiB all the time), so that the switch happens.
        src.qmp.cmd("migrate-set-parameters", **{
            "max-bandwidth": 10 * 1024 ** 3,
            "downtime-limit": 1 if postcopy else 300})
        port = free_port()
        dst.qmp.cmd("migrate-incoming", uri=f"tcp:127.0.0.1:{port}")
        before = dst.serial_count("B")
        src.qmp.cmd("migrate", uri=f"tcp:127.0.0.1:{port}")
        if postcopy:
            # One full pass of precopy, then switch: the guest keeps
            # dirtying, so most of its RAM is fetched on demand.
            wait_for(lambda: src.qmp.cmd("query-migrate").get(
                "ram", {}).get("dirty-sync-count", 0) >= 2, 120,
                "the first precopy pass")
            src.qmp.cmd("migrate-start-postcopy")

        def done():
            st = src.qmp.cmd("query-migrate").get("status")
            if st in ("failed", "cancelled"):
                raise RuntimeError(f"migration {st}: " + json.dumps(
                    src.qmp.cmd("query-migrate")))
            return st == "completed"
        wait_for(done, 300, "the migration to complete")
        info = src.qmp.cmd("query-migrate")
        wait_for(lambda: dst.qmp.cmd("query-migrate").get("status") ==
                 "completed", 60, "the destination to complete")
        dinfo = dst.qmp.cmd("query-migrate")
        # The guest must go on running on the destination
        wait_for(lambda: dst.serial_count("B") > before + 2, 60,
                 "the guest to run on the destination")
        status = dst.qmp.cmd("query-status")["status"]
        report = {
            "total-time ms": info.get("total-time"),
            "downtime ms": info.get("downtime"),
            "RAM transferred MiB": round(
                info["ram"]["transferred"] / 2 ** 20, 1),
            "destination": status,
        }
        if postcopy:
            report.update(postcopy_report(dinfo))
        dst.stop()
        if not postcopy:
            return status == "running", report
        if not trace:
            return status == "running", report
        trace = open(dst.trace).read() if os.path.exists(dst.trace) else ""
        report["minor faults"] = len(re.findall(r" minor fault", trace))
        report["missing faults"] = len(re.findall(r" missing fault", trace))
        return status == "running", report
    finally:
        src.stop()
        if dst:
            dst.stop()


def clean_work(work):
    """Remove what the last migration left in @work, but the boot sector"""
    for f in os.listdir(work):
        if f != "bootsect":
            os.unlink(os.path.join(work, f))


def postcopy_report(dinfo):
    """The destination's postcopy figures from its query-migrate answer"""
    lat = dinfo.get("postcopy-latency")
    dist = dinfo.get("postcopy-latency-dist") or []
    return {
        "postcopy blocktime ms": dinfo.get("postcopy-blocktime"),
        "page request latency, mean us":
            round(lat / 1000, 1) if lat is not None else None,
        "page requests": sum(dist),
        "page request latency, p99 us (< bucket bound)": p99_bucket(dist),
        **placement_report(dinfo),
    }


def placement_report(dinfo):
    """How the destination placed pages (query-migrate postcopy-placement)"""
    p = dinfo.get("postcopy-placement") or {}
    return {
        "pages placed with UFFDIO_COPY": p.get("copied"),
        "pages placed with UFFDIO_CONTINUE": p.get("continued"),
        "minor faults resolved by the fault thread": p.get("minor-faults"),
        "received pages discarded": p.get("discarded"),
    }


def p99_bucket(dist):
    total = sum(dist)
    if not total:
        return None
    acc = 0
    for i, n in enumerate(dist):
        acc += n
        if acc >= 0.99 * total:
            return 2 ** (i + 1)
    return None


def show(report):
    for k, v in report.items():
        say(f"    {k:58} {v}")


def main():
    for path in (QEMU, BOOTBLOCK_H):
        if not os.path.exists(path):
            say(f"demo: {path} is missing; run `make` (it builds first)")
            return 1
    say("== What this host supports (gmem-probe)")
    gmem_uffd = False
    no_backend = None
    if os.path.exists(PROBE):
        subprocess.run([PROBE])
        status, reason = probe_reason()
        gmem_uffd = status == 0
        if status in PROBE_NO_BACKEND:
            no_backend = reason
    else:
        say("    gmem-probe is not built; asking QEMU instead")
    work = tempfile.mkdtemp(prefix="qemu-gmem-demo-")
    bootsector(os.path.join(work, "bootsect"))
    gmem = "memory-backend-guest-memfd"
    memfd = "memory-backend-memfd"
    ok = True
    try:
        say()
        say("== Postcopy of a guest_memfd-backed VM (guest dirtying "
            "100 MiB), over loopback")
        if no_backend:
            say("    Not possible on this host: " + no_backend)
            say("    QEMU says so too:")
            say("      " + backend_error(gmem))
            say()
            return finish(memfd_minor(work), work)
        good, res = migrate(work, "guest_memfd postcopy", gmem, gmem, True)
        if isinstance(res, str):
            say("    The destination refused postcopy, as "
                "`migrate-set-capabilities postcopy-ram=on` reports it:")
            say(f"      error: {res}")
            expected = "lacks userfaultfd support for guest_memfd"
            if gmem_uffd or expected not in res:
                say("    FAILED: that is not the refusal this host calls for")
                ok = False
            say()
            say("== So: precopy of the same guest_memfd VM")
            good, rep = migrate(work, "guest_memfd precopy", gmem, gmem,
                                False)
            show(rep)
            ok &= good
            say()
            ok &= memfd_minor(work)
        else:
            show(res)
            ok &= good and bool(res["pages placed with UFFDIO_CONTINUE"])
    except (RuntimeError, TimeoutError, EOFError, OSError) as e:
        say(f"    FAILED: {e} (logs in {work})")
        return 1
    return finish(ok, work)


def finish(ok, work):
    """The demo's last line and exit status"""
    say()
    if ok:
        shutil.rmtree(work, ignore_errors=True)
        say("demo: OK")
        return 0
    say(f"demo: FAILED (logs in {work})")
    return 1


def backend_error(backend):
    """What QEMU prints when a machine with @backend RAM cannot start"""
    run = subprocess.run(
        [QEMU, "-machine", "pc", "-accel", "kvm", "-accel", "tcg",
         "-object", f"{backend},id=mem,size=16M", "-m", "16M",
         "-machine", "memory-backend=mem", "-display", "none", "-S",
         "-qmp", "stdio"], input='{"execute": "qmp_capabilities"}\n'
        '{"execute": "quit"}\n', capture_output=True, text=True,
        timeout=60)
    lines = run.stderr.strip().splitlines()
    return lines[-1] if lines else f"(QEMU started: exit {run.returncode})"


def memfd_minor(work):
    """Postcopy with minor placement on memfd RAM; True if it worked"""
    say("== And the same postcopy with minor placement on memfd RAM "
        "(x-postcopy-minor),")
    say("   the placement path guest_memfd uses: pages written "
        "through a second mapping,")
    say("   mapped with UFFDIO_CONTINUE")
    memfd = "memory-backend-memfd"
    good, rep = migrate(work, "memfd minor postcopy", memfd, memfd, True,
                        minor=True)
    if isinstance(rep, str):
        say(f"    FAILED: refused: {rep}")
        return False
    show(rep)
    return good and bool(rep["pages placed with UFFDIO_CONTINUE"])


if __name__ == "__main__":
    sys.exit(main())
