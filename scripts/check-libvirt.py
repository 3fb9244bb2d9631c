#!/usr/bin/env python3
# SPDX-License-Identifier: GPL-2.0-or-later
"""Migrate guest_memfd and memfd domains between two libvirt daemons.

Two libvirtd run on this host, each in a mount namespace of its own with
its own /etc/libvirt, /var/lib/libvirt, /var/log/libvirt,
/var/cache/libvirt and /run/libvirt (bind mounts of folders under the
work folder) and its own host_uuid, so libvirt sees two hosts.  Each
domain's <emulator> is the project's QEMU; guest RAM is a guest_memfd
(through <qemu:commandline>, the way stock libvirt allows today) or a
memfd (libvirt's own <memoryBacking>).

With --libvirt DIR (a build folder of the patched libvirt,
scripts/build-libvirt.sh) every case runs twice: first with the stock
libvirt (libvirtd and virsh on PATH), then with DIR's libvirtd and virsh
(cases named patched/...), where the guest_memfd domains say
<memoryBacking><source type='guest_memfd'/></memoryBacking> and nothing
goes through <qemu:commandline> (QEMU's trace option is added by a
wrapper script as <emulator>).  There, after each start: the domain is
not tainted custom-argv (its log's "Domain id=N is tainted: ..." lines;
high-privileges, from user = "root", is the only taint allowed), virsh
dumpxml shows the source type, and QEMU's command line has libvirt's own
memory-backend-guest-memfd for pc.ram; after a migration the
destination's dumpxml shows the source type too.  With the stock libvirt
the same check must find custom-argv.  A postcopy refusal must give
QEMU's text through virsh exactly as the stock pass did (the RAM block's
name aside: gmem0 there, pc.ram here).  One more case, domcapabilities:
virsh domcapabilities lists the guest_memfd source type for the project's
QEMU and not for a QEMU without the backend (10.2.2 without the series,
scripts/build-qemu.sh --stock), and virsh define of a guest_memfd domain
on that QEMU fails with libvirt's validation error.

The guest is
bench/writer-bootblock.S on a one-sector IDE disk: it checks all of its
memory over and over while it keeps changing it, and prints 'E' on its
serial port if a page does not hold what it must.

Cases, each migrated with virsh and checked with virsh and QMP
(virsh qemu-monitor-command):
  gmem-precopy     precopy of a guest_memfd domain
  memfd-postcopy   --postcopy --postcopy-after-precopy of a memfd domain
  gmem-postcopy    the same for guest_memfd: refused by the destination's
                   QEMU (its text in virsh's error, the guest still running
                   on the source) where gmem-probe says the kernel lacks
                   userfaultfd for guest_memfd, completed where it has it
  memfd-recovery   postcopy, the migration stream cut with migrate-pause
                   on the source, then virsh migrate --postcopy-resume
  gmem-recovery    the same on guest_memfd, where the kernel has it
After every completed migration the destination's guest must be running,
keep checking its memory without an error, and show the source's data at
sampled pages (HMP xp).  In a postcopy case the source's downtime limit
is 1 ms, so that precopy cannot converge first; the source must have
gone into postcopy (libvirt's lifecycle events, virsh event) and the
destination must have placed pages in it, guest_memfd ones through
minor placement (UFFDIO_CONTINUE, or UFFDIO_COPY where precopy had not
sent the page; QEMU's trace of each page placed, in the destination's
domain log).

--fail-skips is for a host known to have everything, guest_memfd
postcopy included (make check-vm-libvirt, on the check-vm-uffd kernel):
there a case that skips fails, and so does gmem-postcopy where the probe
says it would only show the refusal.

Every daemon and QEMU started is stopped by PID at the end, failure and
timeout included; the mounts live only in the daemons' namespaces.

Output: one line per case, then 'N passed, N failed, N skipped'; exit
status 1 if any case failed.

--only-libvirt stock|patched runs one of the two passes only.

Negative proof, CHECK_LIBVIRT_BREAK=
  corrupt    change one page of each destination guest (gdbstub, HMP
             gdbserver) after the migration, before it is checked
  no-resume  skip the --postcopy-resume of the recovery cases
Either must make the run fail.
"""

import argparse
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import uuid

TOP = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CACHE = os.environ.get("QEMU_GMEM_CACHE", os.path.join(TOP, ".cache"))

# What the guest uses: 64 MiB from 1 MiB up (bench/writer-bootblock.S)
MEM_START = 1 << 20
PAGES = 16384
GUEST_MIB = 128

# Held bind-mounted in each daemon's namespace: host path -> subfolder
BINDS = [("/etc/libvirt", "etc"), ("/var/lib/libvirt", "lib"),
         ("/var/log/libvirt", "log"), ("/var/cache/libvirt", "cache"),
         ("/run/libvirt", "run")]

REFUSAL = re.compile(r"RAM block \S+ is a guest_memfd, and this kernel lacks "
                     r"userfaultfd support for guest_memfd")


class Failure(Exception):
    pass


class Skip(Exception):
    pass


class Timeout(BaseException):
    pass


T0 = time.monotonic()


def log(msg):
    print(f"[check-libvirt] {time.monotonic() - T0:6.1f} s: {msg}",
          file=sys.stderr, flush=True)


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def run(cmd, timeout, check=False):
    """Run cmd; (rc, stdout, stderr).  A command past its timeout is
    killed and counts as a failure."""
    try:
        p = subprocess.run(cmd, capture_output=True, text=True,
                           timeout=timeout, errors="replace")
    except subprocess.TimeoutExpired:
        raise Failure(f"timed out after {timeout} s: {' '.join(cmd)}")
    if check and p.returncode:
        raise Failure(f"{' '.join(cmd)}: exit {p.returncode}: "
                      f"{(p.stderr or p.stdout).strip()}")
    return p.returncode, p.stdout, p.stderr


def wait_for(what, cond, timeout, step=0.2):
    end = time.monotonic() + timeout
    while True:
        v = cond()
        if v:
            return v
        if time.monotonic() > end:
            raise Failure(f"timed out after {timeout} s waiting for {what}")
        time.sleep(step)


class Libvirt:
    """Which libvirtd and virsh a pass runs: the stock ones on PATH, or
    those of a patched libvirt's build folder (run from there, libvirt
    takes its driver modules and data from the build and source trees)."""

    def __init__(self, name, build=None):
        self.name = name
        self.patched = build is not None
        if build:
            self.libvirtd = os.path.join(build, "src", "libvirtd")
            self.virsh = os.path.join(build, "tools", "virsh")
        else:
            self.libvirtd = shutil.which("libvirtd") or "libvirtd"
            self.virsh = shutil.which("virsh") or "virsh"


class Daemon:
    """One libvirtd in a mount namespace of its own."""

    def __init__(self, name, work, img_dir, lv):
        self.name = name
        self.lv = lv
        self.dir = os.path.join(work, lv.name, name)
        self.sock_dir = os.path.join(self.dir, "sock")
        self.uri = ("qemu+unix:///system?socket="
                    f"{self.sock_dir}/libvirt-sock")
        self.proc = None
        self.ns = None
        for _, sub in BINDS:
            os.makedirs(os.path.join(self.dir, sub), exist_ok=True)
        os.makedirs(self.sock_dir, exist_ok=True)
        os.makedirs(os.path.join(self.dir, "log", "qemu"), exist_ok=True)
        etc = os.path.join(self.dir, "etc")
        with open(os.path.join(etc, "libvirtd.conf"), "w") as f:
            f.write(f'unix_sock_dir = "{self.sock_dir}"\n'
                    'auth_unix_rw = "none"\n'
                    'auth_unix_ro = "none"\n'
                    f'host_uuid = "{uuid.uuid4()}"\n'
                    'log_outputs = "3:file:/var/log/libvirt/libvirtd.log"\n')
        with open(os.path.join(etc, "qemu.conf"), "w") as f:
            f.write('user = "root"\n'
                    'group = "root"\n'
                    'dynamic_ownership = 0\n'
                    'remember_owner = 0\n'
                    'security_driver = "none"\n'
                    'cgroup_controllers = [ ]\n'
                    'namespaces = [ ]\n'
                    'stdio_handler = "file"\n'
                    f'shared_filesystems = [ "{img_dir}" ]\n')

    def host_path(self, path):
        """Where path, as this daemon's processes see it, is from here."""
        for target, sub in BINDS:
            if path == target or path.startswith(target + "/"):
                return os.path.join(self.dir, sub) + path[len(target):]
        return path

    def start(self):
        mounts = "".join(f"mount --bind {os.path.join(self.dir, sub)} {t}; "
                         for t, sub in BINDS)
        script = ("set -e; mount --make-rprivate /; " + mounts +
                  f"exec {self.lv.libvirtd} --config "
                  f"{self.dir}/etc/libvirtd.conf "
                  f"--pid-file {self.dir}/libvirtd.pid")
        for t, _ in BINDS:
            os.makedirs(t, exist_ok=True)     # mount points
        out = open(os.path.join(self.dir, "libvirtd.out"), "w")
        # unshare and sh exec: self.proc.pid ends up being libvirtd's
        self.proc = subprocess.Popen(["unshare", "-m", "--propagation",
                                      "private", "sh", "-c", script],
                                     stdout=out, stderr=subprocess.STDOUT,
                                     stdin=subprocess.DEVNULL)
        out.close()

        def up():
            if self.proc.poll() is not None:
                raise Failure(f"libvirtd ({self.name}) exited with "
                              f"{self.proc.returncode}: "
                              f"{self.tail('libvirtd.out')}")
            if not os.path.exists(f"{self.sock_dir}/libvirt-sock"):
                return False
            # Not "virsh version": that wants a default emulator
            # (/usr/bin/qemu-system-x86_64), which the harness never uses
            rc = run([self.lv.virsh, "-c", self.uri, "list", "--all"],
                     30)[0]
            return rc == 0
        wait_for(f"libvirtd ({self.name})", up, 60, 0.3)
        self.ns = os.readlink(f"/proc/{self.proc.pid}/ns/mnt")

    def tail(self, name, n=800):
        try:
            with open(os.path.join(self.dir, name), errors="replace") as f:
                return f.read()[-n:].strip()
        except OSError:
            return ""

    def virsh(self, *args, timeout=60, check=True):
        return run([self.lv.virsh, "-q", "-c", self.uri] + list(args),
                   timeout, check)

    def qmp(self, dom, cmd, **arguments):
        c = {"execute": cmd}
        if arguments:
            c["arguments"] = arguments
        out = self.virsh("qemu-monitor-command", dom, json.dumps(c),
                         timeout=30)[1]
        return json.loads(out)["return"]

    def hmp(self, dom, line):
        return self.virsh("qemu-monitor-command", dom, "--hmp", line,
                          timeout=30)[1]

    def domains(self):
        rc, out, _ = self.virsh("list", "--all", "--name", check=False,
                                timeout=30)
        return [d for d in out.split() if d] if rc == 0 else []

    def ns_pids(self):
        """Every process in this daemon's mount namespace: libvirtd and
        the QEMUs it started, nothing else lives there."""
        pids = []
        if not self.ns:
            return pids
        for p in os.listdir("/proc"):
            if p.isdigit():
                try:
                    if os.readlink(f"/proc/{p}/ns/mnt") == self.ns:
                        pids.append(int(p))
                except OSError:
                    pass
        return pids

    def stop(self):
        if self.proc is None:
            return
        if self.proc.poll() is None:
            for d in self.domains():
                self.virsh("destroy", d, check=False, timeout=20)
                self.virsh("undefine", d, check=False, timeout=20)
        main = self.proc.pid
        others = [p for p in self.ns_pids() if p != main]
        for sig, pids in ((signal.SIGTERM, others), (signal.SIGTERM, [main])):
            for p in pids:
                try:
                    os.kill(p, sig)
                except ProcessLookupError:
                    pass
            end = time.monotonic() + 10
            while time.monotonic() < end and \
                    any(os.path.exists(f"/proc/{p}") and
                        not is_zombie(p) for p in pids if p != main):
                time.sleep(0.1)
            if main in pids:
                try:
                    self.proc.wait(10)
                except subprocess.TimeoutExpired:
                    pass
        for p in self.ns_pids():
            log(f"{self.name}: pid {p} still there, SIGKILL")
            try:
                os.kill(p, signal.SIGKILL)
            except ProcessLookupError:
                pass
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            log(f"{self.name}: libvirtd pid {main} did not exit")
        self.proc = None


class Events:
    """What one daemon reports with virsh event --all --loop while a case
    runs.  Started before the domain is, so that virsh has registered
    long before the migration begins."""

    def __init__(self, daemon):
        self.proc = subprocess.Popen([daemon.lv.virsh, "-c", daemon.uri,
                                      "event",
                                      "--all", "--loop"],
                                     stdout=subprocess.PIPE,
                                     stderr=subprocess.STDOUT, text=True,
                                     errors="replace")
        self.text = None

    def stop(self):
        if self.text is None:
            self.proc.terminate()
            try:
                self.text = self.proc.communicate(timeout=10)[0]
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.text = self.proc.communicate()[0]
        return self.text

    def lifecycle(self, name):
        """name's lifecycle events, as virsh words them ('Resumed
        Post-copy')"""
        return re.findall(r"^event 'lifecycle' for domain "
                          rf"'{re.escape(name)}': (.*)$", self.stop(), re.M)

    def job_stat(self, name, stat):
        """One statistic of name's last job-completed event, or None"""
        jobs = re.findall(r"^event 'job-completed' for domain "
                          rf"'{re.escape(name)}':\n((?:\t.*\n)*)",
                          self.stop(), re.M)
        m = re.search(rf"^\t{stat}: (\S+)$", jobs[-1], re.M) if jobs else None
        return m.group(1) if m else None


def is_zombie(pid):
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] == "Z"
    except OSError:
        return True


class Harness:
    def __init__(self, args):
        self.args = args
        self.qemu = args.qemu
        self.brk = os.environ.get("CHECK_LIBVIRT_BREAK", "")
        self.work = tempfile.mkdtemp(prefix="qemu-gmem-libvirt.",
                                     dir=args.workdir)
        self.img_dir = os.path.join(self.work, "img")
        os.makedirs(self.img_dir)
        self.passes = [Libvirt("stock")]
        if args.libvirt:
            self.passes.append(Libvirt("patched", args.libvirt))
        if args.only_libvirt:
            self.passes = [lv for lv in self.passes
                           if lv.name == args.only_libvirt]
        # QEMU's trace option for the patched pass: <emulator> is this
        # wrapper, so that no <qemu:commandline> taints the domains
        self.traced_qemu = os.path.join(self.work, "qemu-traced")
        with open(self.traced_qemu, "w") as f:
            f.write(f"#!/bin/sh\nexec {self.qemu} \"$@\" "
                    "-trace 'postcopy_place_page*'\n")
        os.chmod(self.traced_qemu, 0o755)
        self.lv = None
        self.src = self.dst = None
        self.refusals = {}
        self.mem_of = {}
        self.results = []
        self.gmem_postcopy = None
        self.gmem_reason = ""

    # ------------------------------------------------------------ guests
    @property
    def gmem_block(self):
        """The guest_memfd RAM block's name: our own backend's id through
        <qemu:commandline>, libvirt's default RAM id with its
        <source type='guest_memfd'/>"""
        return "pc.ram" if self.lv.patched else "gmem0"

    def domain_xml(self, name, mem, emulator=None):
        img = os.path.join(self.img_dir, name + ".img")
        shutil.copyfile(self.args.guest, img)
        backing, args = "", []
        if mem == "memfd":
            backing = ("  <memoryBacking><source type='memfd'/>"
                       "<access mode='shared'/></memoryBacking>\n")
        elif self.lv.patched:
            backing = ("  <memoryBacking><source type='guest_memfd'/>"
                       "</memoryBacking>\n")
        else:
            args = ["-object", "memory-backend-guest-memfd,id=gmem0,"
                    f"size={GUEST_MIB}M", "-machine", "memory-backend=gmem0"]
        # Each page a postcopy destination places, traced to the domain's
        # log (QEMU's stderr): how it placed them (placed_pages()).  The
        # patched pass's emulator is a wrapper that adds the option.
        if self.lv.patched:
            emulator = emulator or self.traced_qemu
        else:
            args += ["-trace", "postcopy_place_page*"]
        cmdline = ("  <qemu:commandline>\n" +
                   "".join(f"    <qemu:arg value='{a}'/>\n" for a in args) +
                   "  </qemu:commandline>\n") if args else ""
        # <acpi/>: without it libvirt 9.0 passes -no-acpi, which QEMU 9.0
        # removed (newer libvirt passes -machine acpi=off); the guest does
        # not use ACPI either way.
        return f"""<domain type='kvm'
        xmlns:qemu='http://libvirt.org/schemas/domain/qemu/1.0'>
  <name>{name}</name>
  <memory unit='MiB'>{GUEST_MIB}</memory>
{backing}  <vcpu>1</vcpu>
  <os><type arch='x86_64' machine='pc'>hvm</type><boot dev='hd'/></os>
  <features><acpi/></features>
  <on_poweroff>destroy</on_poweroff>
  <on_crash>destroy</on_crash>
  <devices>
    <emulator>{emulator or self.qemu}</emulator>
    <disk type='file' device='disk'>
      <driver name='qemu' type='raw'/>
      <source file='{img}'/>
      <target dev='hda' bus='ide'/>
    </disk>
    <serial type='file'>
      <source path='{self.serial(name)}'/>
      <target port='0'/>
    </serial>
    <controller type='usb' model='none'/>
    <memballoon model='none'/>
  </devices>
{cmdline}</domain>
"""

    @staticmethod
    def serial(name):
        # Per daemon: /var/log/libvirt is each namespace's own folder
        return f"/var/log/libvirt/qemu/{name}-serial.txt"

    def serial_text(self, side, name):
        try:
            with open(side.host_path(self.serial(name)),
                      errors="replace") as f:
                return f.read()
        except OSError:
            return ""

    def start_domain(self, name, mem):
        if mem == "gmem" and self.gmem_backend_missing:
            raise Skip("memory-backend-guest-memfd cannot start on this "
                       f"host: {self.gmem_backend_missing}")
        self.mem_of[name] = mem
        xml = os.path.join(self.work, self.lv.name, name + ".xml")
        with open(xml, "w") as f:
            f.write(self.domain_xml(name, mem))
        self.src.virsh("define", xml)
        t0 = time.monotonic()
        self.src.virsh("start", name, timeout=90)
        t1 = time.monotonic()
        # Memory filled ('A') and checked a few times ('B')
        wait_for(f"{name} to start checking its memory",
                 lambda: self.guest_progress(self.src, name, 0) >=
                 self.args.marks,
                 self.args.guest_timeout)
        log(f"{name}: started in {t1 - t0:.1f} s, guest checking its memory "
            f"{time.monotonic() - t1:.1f} s later")
        self.check_libvirt_view(self.src, name, mem, started=True)

    def domain_log(self, side, name):
        try:
            with open(side.host_path(f"/var/log/libvirt/qemu/{name}.log"),
                      errors="replace") as f:
                return f.read()
        except OSError as e:
            raise Failure(f"{name}: the domain log on {side.name}: {e}")

    def check_libvirt_view(self, side, name, mem, started):
        """What libvirt makes of the domain on side.  Patched libvirt: not
        tainted custom-argv (high-privileges, QEMU running as root, is the
        only taint allowed when it starts: the harness's own
        qemu-monitor-command adds custom-monitor later), <source
        type='guest_memfd'/> in virsh dumpxml, and on start QEMU's command
        line with libvirt's memory-backend-guest-memfd for pc.ram.  Stock
        libvirt: tainted custom-argv, the <qemu:commandline> that gives
        guest_memfd (and the trace option) there."""
        text = self.domain_log(side, name)
        taints = set(re.findall(r"Domain id=\d+ is tainted: (\S+)", text))
        if not self.lv.patched:
            if started and "custom-argv" not in taints:
                raise Failure(f"{name}: stock libvirt with <qemu:commandline>"
                              f", but its log shows no custom-argv taint "
                              f"(taints {sorted(taints)})")
            return
        if "custom-argv" in taints:
            raise Failure(f"{name} on {side.name}: tainted custom-argv")
        if started and taints - {"high-privileges"}:
            raise Failure(f"{name} on {side.name}: tainted "
                          f"{sorted(taints)} when it started")
        if mem != "gmem":
            return
        xml = side.virsh("dumpxml", name)[1]
        if not re.search(r"<memoryBacking>\s*<source type='guest_memfd'/>",
                         xml):
            raise Failure(f"{name} on {side.name}: virsh dumpxml has no "
                          "<source type='guest_memfd'/> in <memoryBacking>")
        if started:
            if not re.search(r'"qom-type":"memory-backend-guest-memfd",'
                             r'"id":"pc\.ram"', text):
                raise Failure(f"{name}: QEMU's command line (its log) has "
                              "no memory-backend-guest-memfd for pc.ram")
            if "memory-backend-ram" in text or "qemu:commandline" in xml:
                raise Failure(f"{name}: memory-backend-ram or "
                              "<qemu:commandline> besides guest_memfd")

    def guest_progress(self, side, name, since):
        """'B's printed after offset since; a Failure on an 'E'."""
        text = self.serial_text(side, name)
        if "E" in text:
            raise Failure(f"the guest on {side.name} found a page that does "
                          "not hold what it wrote (serial 'E')")
        return text[since:].count("B")

    def check_running(self, side, name, since):
        """name runs on side, keeps checking its memory, and its pages
        hold their own addresses (HMP xp)."""
        rc, out, err = side.virsh("domstate", name, "--reason", check=False)
        if rc or not out.startswith("running"):
            raise Failure(f"{name} on {side.name}: {(out or err).strip()}")
        st = side.qmp(name, "query-status")
        if st.get("status") != "running":
            raise Failure(f"{name} on {side.name}: QMP query-status {st}")
        if self.brk == "corrupt" and side is self.dst:
            self.corrupt(side, name)
        wait_for(f"{name} on {side.name} to keep checking its memory",
                 lambda: self.guest_progress(side, name, since) >=
                 self.args.marks,
                 self.args.guest_timeout)
        for i in (0, 1, PAGES // 3, PAGES // 2, PAGES - 1):
            a = MEM_START + i * 4096
            out = side.hmp(name, f"xp /1wx {a:#x}")
            m = re.search(r":\s*(0x[0-9a-f]+)", out)
            if not m or int(m.group(1), 16) != a:
                raise Failure(f"{name} on {side.name}: page at {a:#x} "
                              f"holds {out.strip()!r}, not its address")

    def corrupt(self, side, name):
        """CHECK_LIBVIRT_BREAK=corrupt: change the first word of one page
        through QEMU's gdbstub, as a bad migration would have left it."""
        port = free_port()
        side.hmp(name, f"gdbserver tcp:127.0.0.1:{port}")
        addr = MEM_START + 1234 * 4096
        with socket.create_connection(("127.0.0.1", port), timeout=10) as g:
            def packet(data):
                g.sendall(b"$%s#%02x" % (data.encode(),
                                        sum(data.encode()) & 0xff))
                buf = b""
                while not re.search(rb"\$[^#]*#..", buf):
                    chunk = g.recv(4096)
                    if not chunk:
                        raise Failure("gdbstub closed the connection")
                    buf += chunk
                g.sendall(b"+")
                return re.search(rb"\$([^#]*)#", buf).group(1).decode()
            packet("?")
            if packet(f"M{addr:x},4:efbeadde") != "OK":
                raise Failure("gdbstub refused the memory write")
            g.sendall(b"$D#44")
            time.sleep(0.3)
        side.hmp(name, "gdbserver none")
        log(f"CHECK_LIBVIRT_BREAK=corrupt: wrote 0xdeadbeef at {addr:#x} "
            f"of {name} on {side.name}")

    # --------------------------------------------------------- migration
    def migrate_args(self, name, *extra):
        port = free_port()
        # --unsafe: both daemons use the very same image file (one host),
        # but libvirt 9.0 cannot be told so (qemu.conf shared_filesystems
        # came later and is ignored there) and refuses a local-filesystem
        # disk: "Migration without shared storage is unsafe".
        return (["migrate", "--live", "--persistent", "--undefinesource",
                 "--unsafe"] +
                list(extra) +
                [name, self.dst.uri, "--migrateuri",
                 f"tcp://127.0.0.1:{port}", "--listen-address", "127.0.0.1"])

    def watch_source(self, name, seen, stop):
        """Record every migration status the source's QEMU reports."""
        while not stop.is_set():
            try:
                seen.add(self.src.qmp(name, "query-migrate").get("status"))
            except (Failure, ValueError, KeyError):
                pass
            stop.wait(0.1)

    def migrate(self, name, *extra, timeout=None, seen=None):
        """virsh migrate with a thread watching the source's status."""
        timeout = timeout or self.args.migrate_timeout
        seen = seen if seen is not None else set()
        stop = threading.Event()
        t = threading.Thread(target=self.watch_source,
                             args=(name, seen, stop), daemon=True)
        t.start()
        t0 = time.monotonic()
        try:
            rc, out, err = self.src.virsh(*self.migrate_args(name, *extra),
                                          timeout=timeout, check=False)
        finally:
            stop.set()
            t.join(35)
        log(f"{name}: virsh migrate {' '.join(extra)}: exit {rc} after "
            f"{time.monotonic() - t0:.1f} s")
        return rc, (out + err).strip(), seen

    def daemons_dead(self):
        """Why a virsh call may have failed: a daemon that died."""
        dead = ""
        for d in (self.src, self.dst):
            rc = d.proc.poll() if d.proc else None
            if rc is not None:
                how = (f"signal {signal.Signals(-rc).name}" if rc < 0
                       else f"exit status {rc}")
                dead += f"; libvirtd ({d.name}) died: {how}"
        return dead

    def migrated(self, name):
        """After a completed migration: gone from the source, checked on
        the destination."""
        if name in self.src.domains():
            raise Failure(f"{name} still defined on the source")
        self.check_running(self.dst, name, 0)
        self.check_libvirt_view(self.dst, name, self.mem_of.get(name),
                                started=False)

    def finish(self, name):
        for side in (self.src, self.dst):
            if name in side.domains():
                side.virsh("destroy", name, check=False, timeout=20)
                side.virsh("undefine", name, check=False, timeout=20)

    # ------------------------------------------------------------- cases
    def case_precopy(self, name, mem):
        self.start_domain(name, mem)
        rc, out, seen = self.migrate(name)
        if rc:
            raise Failure(f"virsh migrate: {out}{self.daemons_dead()}")
        self.migrated(name)
        return "completed, guest checked on the destination"

    def case_postcopy(self, name, mem):
        if mem == "gmem" and not self.gmem_postcopy:
            if self.args.fail_skips:
                raise Failure("--fail-skips: guest_memfd postcopy must run "
                              f"here, but gmem-probe says: {self.gmem_reason}")
            return self.case_refusal(name)
        events = (Events(self.src), Events(self.dst))
        try:
            self.start_domain(name, mem)
            self.postcopy_only(name)
            rc, out, seen = self.migrate(
                name, "--postcopy", "--postcopy-after-precopy",
                "--bandwidth", str(self.args.bandwidth),
                "--postcopy-bandwidth", str(self.args.postcopy_bandwidth))
            if rc:
                raise Failure(f"virsh migrate --postcopy: {out}"
                              f"{self.daemons_dead()}")
        finally:
            for e in events:
                e.stop()
        how = self.check_postcopy(name, mem, *events, seen)
        self.migrated(name)
        return f"completed through postcopy ({how}), guest checked"

    def postcopy_only(self, name):
        """A downtime limit of 1 ms: with the guest writing, precopy cannot
        converge, and the migration can only complete through postcopy.
        (Otherwise a precopy that converges before migrate-start-postcopy
        arrives completes without it: seen on a loaded host.)"""
        self.src.virsh("migrate-setmaxdowntime", name, "1")
        limit = self.src.qmp(name, "query-migrate-parameters").get(
            "downtime-limit")
        if limit != 1:
            raise Failure(f"{name}: downtime-limit {limit} after virsh "
                          "migrate-setmaxdowntime 1")

    def placed_pages(self, name):
        """How the destination placed the pages it received in postcopy,
        counted from its trace (the postcopy-placement statistics of its
        query-migrate are gone once the migration ends: libvirt resets
        the migration capabilities then, and it holds the monitor until
        then).  'placed': pages placed, any block, any way (the host
        addresses of postcopy_place_page and postcopy_place_page_zero,
        which a zero page can give both); 'continued' and 'copied': those
        that minor placement put into the guest_memfd RAM block (gmem0,
        or pc.ram with the patched libvirt),
        with UFFDIO_CONTINUE where precopy had left the page in its page
        cache, with UFFDIO_COPY where not."""
        text = self.domain_log(self.dst, name)
        block = re.escape(self.gmem_block)
        return {"placed": len(set(re.findall(
                    r"postcopy_place_page(?:_zero)? host=(0x[0-9a-f]+)",
                    text))),
                "continued": len(re.findall(
                    rf"postcopy_place_page_minor {block} ", text)),
                "copied": len(re.findall(
                    rf"postcopy_place_page_minor_copy {block} ", text))}

    def check_postcopy(self, name, mem, src_events, dst_events, seen):
        """The source went into postcopy (libvirt's lifecycle event
        'Suspended Post-copy', raised on QEMU's postcopy-active: events,
        since the statuses the watcher samples miss a short postcopy on a
        busy host), and the destination placed pages in it, guest_memfd
        ones through minor placement.  The page requests (libvirt's
        statistics of the source's job) are reported only: a guest as
        slow as a nested one may touch no missing page before the stream
        brings it (seen once with guest_memfd in the nested VM)."""
        src = src_events.lifecycle(name)
        where = (f"{name}'s events on the source {src}, on the destination "
                 f"{dst_events.lifecycle(name)}; source statuses seen "
                 f"{sorted(s for s in seen if s)}")
        if "Suspended Post-copy" not in src:
            raise Failure(f"the source never went into postcopy: {where}")
        placed = self.placed_pages(name)
        if not placed["placed"]:
            raise Failure("postcopy, but the destination's trace shows no "
                          f"page placed: {where}")
        gmem = placed["continued"] + placed["copied"]
        if mem == "gmem" and not gmem:
            raise Failure("postcopy, but the destination's trace shows no "
                          f"page placed into {self.gmem_block} by minor "
                          "placement "
                          f"({placed['placed']} placed otherwise): {where}")
        reqs = src_events.job_stat(name, "memory_postcopy_requests")
        into = (f", {gmem} of them into {self.gmem_block} "
                f"({placed['continued']} with "
                f"UFFDIO_CONTINUE, {placed['copied']} with UFFDIO_COPY)"
                if mem == "gmem" else "")
        return (f"{placed['placed']} pages placed on the destination{into}; "
                f"{reqs} page requests")

    def case_refusal(self, name):
        self.start_domain(name, "gmem")
        t0 = time.monotonic()
        rc, out, seen = self.migrate(name, "--postcopy",
                                     "--postcopy-after-precopy", timeout=90)
        took = time.monotonic() - t0
        if rc == 0:
            raise Failure("virsh migrate --postcopy succeeded on a kernel "
                          "that gmem-probe says cannot do it")
        m = REFUSAL.search(out)
        if not m:
            raise Failure(f"virsh's error lacks QEMU's refusal: {out}")
        if name in self.dst.domains():
            raise Failure(f"{name} left behind on the destination")
        before = len(self.serial_text(self.src, name))
        self.check_running(self.src, name, before)
        line = out.splitlines()[-1]
        # QEMU's text, the block's name aside (gmem0 or pc.ram)
        text = re.search(r"Postcopy is not supported: .*", out)
        text = re.sub(r"RAM block \S+ is", "RAM block * is",
                      text.group(0)) if text else line
        self.refusals[self.lv.name] = text
        stock = self.refusals.get("stock")
        same = ""
        if self.lv.patched and stock is not None:
            if text != stock:
                raise Failure(f"QEMU's text differs from the stock pass's: "
                              f"{text!r}, stock {stock!r}")
            same = " (QEMU's text as in the stock pass)"
        return (f"refused in {took:.1f} s, guest still running and checked "
                f"on the source; virsh: {line}{same}")

    def case_recovery(self, name, mem):
        if mem == "gmem" and not self.gmem_postcopy:
            raise Skip(f"no guest_memfd postcopy here: {self.gmem_reason}")
        events = (Events(self.src), Events(self.dst))
        try:
            self.start_domain(name, mem)
            self.postcopy_only(name)
            seen = self.pause_postcopy(name)
            if self.brk == "no-resume":
                log("CHECK_LIBVIRT_BREAK=no-resume: not resuming")
            else:
                rc, out, _ = self.migrate(name, *self.recovery_args(),
                                          "--postcopy-resume", seen=seen)
                if rc:
                    raise Failure(f"virsh migrate --postcopy-resume: {out}"
                                  f"{self.daemons_dead()}")
        finally:
            for e in events:
                e.stop()
        how = self.check_postcopy(name, mem, *events, seen)
        self.migrated(name)
        return ("paused by migrate-pause during postcopy, resumed with "
                f"--postcopy-resume ({how}), guest checked")

    def recovery_args(self):
        return ("--postcopy", "--bandwidth", str(self.args.bandwidth),
                "--postcopy-bandwidth", str(self.args.postcopy_bandwidth))

    def pause_postcopy(self, name):
        """virsh migrate --postcopy, migrate-postcopy once it runs, and
        migrate-pause on the source in postcopy: both sides must end up
        paused ('post-copy failed').  The source's statuses seen."""
        seen = set()
        mig = subprocess.Popen([self.src.lv.virsh, "-q", "-c",
                                self.src.uri] +
                               self.migrate_args(name, *self.recovery_args()),
                               stdout=subprocess.PIPE,
                               stderr=subprocess.STDOUT, text=True)
        try:
            def status():
                s = self.src.qmp(name, "query-migrate").get("status")
                seen.add(s)
                return s
            # The destination's start is part of this: its QEMU under
            # nested KVM in the VM took close to 30 s once (the limit
            # before), hence the limit of one virsh migrate.
            t0 = time.monotonic()
            try:
                wait_for("the migration to start",
                         lambda: status() == "active",
                         self.args.migrate_timeout, 0.1)
            except Failure as e:
                out = ""
                if mig.poll() is not None:
                    out = f"; virsh migrate: {mig.communicate()[0].strip()}"
                raise Failure(f"{e}: statuses seen {sorted(map(str, seen))}"
                              f"{out}{self.daemons_dead()}")
            log(f"{name}: migration active "
                f"{time.monotonic() - t0:.1f} s after virsh migrate")
            self.src.virsh("migrate-postcopy", name)
            wait_for("postcopy-active", lambda: status() ==
                     "postcopy-active", 30, 0.1)
            time.sleep(0.5)
            self.src.qmp(name, "migrate-pause")
            wait_for("postcopy-paused on the source", lambda: status() ==
                     "postcopy-paused", 30, 0.1)
            try:
                out = mig.communicate(timeout=60)[0]
            except subprocess.TimeoutExpired:
                raise Failure("virsh migrate did not return after "
                              "migrate-pause")
            if mig.returncode == 0:
                raise Failure("virsh migrate succeeded although the stream "
                              "was cut (status "
                              f"{self.src.qmp(name, 'query-migrate')})")
        finally:
            if mig.poll() is None:
                mig.kill()
                mig.wait()
        log(f"{name}: paused, virsh said: {out.strip().splitlines()[-1:]}")
        # libvirt holds the destination's migration job (and with it the
        # monitor) until the resume: ask libvirt, not QMP, there.
        st = {}
        for side in (self.src, self.dst):
            st[side.name] = side.virsh("domstate", name,
                                       "--reason")[1].strip()
            if "post-copy failed" not in st[side.name]:
                raise Failure(f"{name} on {side.name}: {st[side.name]}, "
                              "not post-copy failed")
        log(f"{name}: source {st['src']}, destination {st['dst']}")
        return seen

    def case_domcaps(self, name):
        """virsh domcapabilities: guest_memfd among the memory source types
        for the project's QEMU, not for one without the backend; and
        libvirt's validation refuses a guest_memfd domain on the latter."""
        def source_types(emulator):
            out = self.src.virsh("domcapabilities", "--emulatorbin", emulator,
                                 "--arch", "x86_64", "--virttype", "kvm",
                                 "--machine", "pc", timeout=120)[1]
            m = re.search(r"<memoryBacking supported='yes'>\s*"
                          r"<enum name='sourceType'>(.*?)</enum>", out, re.S)
            if not m:
                raise Failure(f"virsh domcapabilities --emulatorbin {emulator}"
                              ": no memoryBacking sourceType enum")
            return re.findall(r"<value>([^<]+)</value>", m.group(1))
        have = source_types(self.qemu)
        if "guest_memfd" not in have or "memfd" not in have:
            raise Failure(f"{self.qemu}: memoryBacking sourceType {have}, "
                          "not guest_memfd and memfd")
        old = self.args.qemu_without_gmem
        if not os.access(old, os.X_OK):
            raise Skip(f"no {old}, a QEMU without memory-backend-guest-memfd"
                       " (scripts/build-qemu.sh --stock)")
        lack = source_types(old)
        if "guest_memfd" in lack or "memfd" not in lack:
            raise Failure(f"{old}: memoryBacking sourceType {lack}; want "
                          "memfd without guest_memfd")
        xml = os.path.join(self.work, self.lv.name, name + ".xml")
        with open(xml, "w") as f:
            f.write(self.domain_xml(name, "gmem", emulator=old))
        rc, out, err = self.src.virsh("define", xml, check=False)
        want = "guest_memfd memory source is not supported by this QEMU"
        if rc == 0 or want not in err:
            raise Failure(f"virsh define of a guest_memfd domain on {old}: "
                          f"exit {rc}, {(err or out).strip()!r}; want "
                          f"{want!r}")
        return (f"sourceType {have} with {os.path.basename(self.qemu)}, "
                f"{lack} with {old}; virsh define there: "
                f"{err.strip().splitlines()[-1]}")

    # ------------------------------------------------------------ driver
    def probe(self):
        rc, out, _ = run([self.args.probe, "--json"], 60)
        j = json.loads(out)
        self.gmem_postcopy = bool(j.get("postcopy_guest_memfd"))
        self.gmem_reason = j.get("reason", "")
        # 2, 3: no /dev/kvm, or KVM without guest_memfd MMAP|INIT_SHARED
        self.gmem_backend_missing = (self.gmem_reason
                                     if j.get("exit_status") in (2, 3)
                                     else None)
        print(f"gmem-probe: guest_memfd postcopy "
              f"{'possible' if self.gmem_postcopy else 'not possible'}"
              f"{'' if self.gmem_postcopy else ': ' + self.gmem_reason}",
              flush=True)

    def run_case(self, name, fn, *a):
        t0 = time.monotonic()
        try:
            detail = fn(name, *a)
            res = "PASS"
        except Skip as e:
            res, detail = "SKIP", str(e)
            if self.args.fail_skips:
                res, detail = "FAIL", f"skipped, but --fail-skips: {e}"
        except Failure as e:
            res, detail = "FAIL", str(e)
        finally:
            try:
                self.finish(name)
                for d in (self.src, self.dst):
                    if d.proc.poll() is not None:
                        log(f"libvirtd ({d.name}) died (exit "
                            f"{d.proc.returncode}); restarting it")
                        d.stop()
                        d.start()
            except Failure as e:
                log(f"cleaning up {name}: {e}")
        self.results.append(res)
        shown = f"{self.lv.name}/{name}" if self.lv.patched else name
        print(f"{res}: {shown} ({time.monotonic() - t0:.1f} s): {detail}",
              flush=True)

    def main(self):
        t0 = time.monotonic()
        cases = [("gmem-precopy", self.case_precopy, "gmem"),
                 ("memfd-postcopy", self.case_postcopy, "memfd"),
                 ("gmem-postcopy", self.case_postcopy, "gmem"),
                 ("memfd-recovery", self.case_recovery, "memfd"),
                 ("gmem-recovery", self.case_recovery, "gmem")]
        try:
            self.probe()
            for lv in self.passes:
                self.run_pass(lv, cases)
        finally:
            self.check_mounts()
            if not self.args.keep:
                shutil.rmtree(self.work, ignore_errors=True)
        log(f"{time.monotonic() - t0:.0f} s in all")

    def run_pass(self, lv, cases):
        """The cases with one libvirt, in daemons of its own."""
        self.lv = lv
        if lv.patched:
            cases = cases + [("domcapabilities", self.case_domcaps)]
        if self.args.only:
            cases = [c for c in cases if c[0] in self.args.only]
        self.src = Daemon("src", self.work, self.img_dir, lv)
        self.dst = Daemon("dst", self.work, self.img_dir, lv)
        try:
            for d in (self.src, self.dst):
                d.start()
            log(f"{lv.name} libvirt ({lv.libvirtd}): libvirtd src pid "
                f"{self.src.proc.pid}, dst pid {self.dst.proc.pid}, work "
                f"folder {self.work}")
            for c in cases:
                self.run_case(*c)
        except Failure as e:
            print(f"FAIL: {lv.name} libvirt: setup: {e}", flush=True)
            self.results.append("FAIL")
        finally:
            for d in (self.src, self.dst):
                try:
                    d.stop()
                except Exception as e:      # keep stopping the other one
                    log(f"stopping {d.name}: {e}")

    def check_mounts(self):
        with open("/proc/self/mountinfo") as f:
            left = [ln for ln in f if self.work in ln]
        if left:
            print(f"FAIL: mounts left behind: {left}", flush=True)
            self.results.append("FAIL")


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--qemu", default=os.path.join(
        CACHE, "qemu/build/qemu-system-x86_64"))
    ap.add_argument("--guest", default=os.path.join(
        CACHE, "tools-build/writer-bootblock.bin"))
    ap.add_argument("--probe", default=os.path.join(
        CACHE, "tools-build/gmem-probe"))
    ap.add_argument("--workdir", default="/tmp")
    ap.add_argument("--timeout", type=int, default=int(
        os.environ.get("CHECK_LIBVIRT_TIMEOUT", 600)),
        help="seconds for the whole run (default 600)")
    ap.add_argument("--guest-timeout", type=int, default=int(
        os.environ.get("CHECK_LIBVIRT_GUEST_TIMEOUT", 60)),
        help="seconds for a guest to show progress")
    ap.add_argument("--migrate-timeout", type=int, default=180,
                    help="seconds for one virsh migrate (default 180)")
    ap.add_argument("--marks", type=int, default=3,
                    help="'B's (8 checked passes each) a guest must print "
                    "to count as running (default 3)")
    ap.add_argument("--bandwidth", type=int, default=32,
                    help="precopy bandwidth of the postcopy cases, MiB/s")
    ap.add_argument("--postcopy-bandwidth", type=int, default=16,
                    help="postcopy bandwidth, MiB/s")
    ap.add_argument("--only", action="append",
                    help="run only this case (repeatable)")
    ap.add_argument("--libvirt", default=os.environ.get("CHECK_LIBVIRT_DIR"),
                    help="build folder of the patched libvirt "
                    "(scripts/build-libvirt.sh): run every case with it "
                    "too, guest_memfd as <source type='guest_memfd'/> "
                    "(default: $CHECK_LIBVIRT_DIR)")
    ap.add_argument("--only-libvirt", choices=("stock", "patched"),
                    help="run the pass with this libvirt only")
    ap.add_argument("--qemu-without-gmem", default=os.path.join(
        CACHE, "qemu-stock/build/qemu-system-x86_64"),
                    help="a QEMU without memory-backend-guest-memfd, for "
                    "the domcapabilities case (default: QEMU 10.2.2 without "
                    "the series, scripts/build-qemu.sh --stock)")
    ap.add_argument("--keep", action="store_true",
                    help="keep the work folder (logs)")
    ap.add_argument("--fail-skips", action="store_true",
                    help="this host has all the cases need, guest_memfd "
                    "postcopy included (make check-vm-libvirt): a case "
                    "that skips fails, and so does gmem-postcopy where it "
                    "would only show the refusal")
    args = ap.parse_args()

    def skip_all(why):
        if args.fail_skips:
            print(f"FAIL: libvirt: skipped, but --fail-skips: {why}")
            print("0 passed, 1 failed, 0 skipped")
            return 1
        print(f"SKIP: libvirt: {why}")
        print("0 passed, 0 failed, 1 skipped")
        return 0

    if args.only_libvirt == "patched" and not args.libvirt:
        ap.error("--only-libvirt patched needs --libvirt DIR")
    if args.only_libvirt != "patched":
        for what, path in (("libvirtd", shutil.which("libvirtd")),
                           ("virsh", shutil.which("virsh"))):
            if not path:
                return skip_all(f"no {what} (scripts/install-libvirt.sh)")
    if args.libvirt:
        args.libvirt = os.path.abspath(args.libvirt)
        for sub in ("src/libvirtd", "tools/virsh"):
            if not os.access(os.path.join(args.libvirt, sub), os.X_OK):
                print(f"FAIL: libvirt: no {sub} in {args.libvirt} "
                      "(scripts/build-libvirt.sh)")
                print("0 passed, 1 failed, 0 skipped")
                return 1
    if not os.access("/dev/kvm", os.R_OK | os.W_OK):
        return skip_all("no usable /dev/kvm")
    if os.getuid() != 0:
        print("FAIL: libvirt: must run as root (mount namespaces, libvirtd)")
        print("0 passed, 1 failed, 0 skipped")
        return 1
    for path in (args.qemu, args.guest, args.probe):
        if not os.path.exists(path):       # the build may be re-linking
            time.sleep(5)
        if not os.path.exists(path):
            print(f"FAIL: libvirt: {path} missing (make qemu tools)")
            print("0 passed, 1 failed, 0 skipped")
            return 1

    h = Harness(args)

    def expire(signum, frame):
        raise Timeout(f"signal {signum}")
    signal.signal(signal.SIGALRM, expire)
    signal.signal(signal.SIGTERM, expire)
    signal.alarm(args.timeout)
    try:
        h.main()
    except Timeout as e:
        signal.alarm(0)
        print(f"FAIL: timeout ({args.timeout} s) or signal: {e}", flush=True)
        h.results.append("FAIL")
        for d in (h.src, h.dst):
            if d is not None:
                d.stop()
        h.check_mounts()
    signal.alarm(0)
    n = {r: h.results.count(r) for r in ("PASS", "FAIL", "SKIP")}
    print(f"{n['PASS']} passed, {n['FAIL']} failed, {n['SKIP']} skipped")
    return 1 if n["FAIL"] else 0


if __name__ == "__main__":
    sys.exit(main())
