#!/usr/bin/env python3
# SPDX-License-Identifier: GPL-2.0-or-later
#
# TAP test of gmem-probe, plus a smoke run of uffd-place-bench.
#
# Asserts what is known of every host (the exit status table, --reason and
# --json agree, JSON well-formed) and what is known of this project's hosts
# (memfd MISSING/MINOR registration and fault handling work).  The
# guest_memfd assertions hold either way a kernel can answer: registration
# works and the fault tests pass (exit 0), or registration is refused with
# EINVAL (exit 5, reason says so).  Tests are skipped only where /dev/kvm or
# userfaultfd is absent (or not permitted to this user).
#
# fault.gmem.copy_eexist (UFFDIO_COPY onto a cached guest_memfd page) brings
# down a debug kernel carrying the posted v2 series "KVM: guest_memfd:
# implement userfaultfd operations": the probe runs it only when given
# --risky-copy-eexist, and this test passes that option only where the
# guest_memfd fault tests cannot run at all.
#
# Usage: test-gmem-probe.py --probe PATH [--bench PATH]

import argparse
import json
import os
import re
import subprocess
import sys

EXIT_CODES = {
    0: "ok",
    2: "no-kvm",
    3: "no-guest-memfd",
    4: "no-userfaultfd",
    5: "guest-memfd-uffd-refused",
    6: "guest-memfd-fault-test-failed",
}
UFFDIO_COPY_BIT = 1 << 3
UFFDIO_CONTINUE_BIT = 1 << 7
UFFD_FEATURE_MINOR_SHMEM = 1 << 10
FAULT_TESTS = ("missing_copy", "minor_continue", "missing_alias_continue",
               "copy_eexist")
# Not run on guest_memfd without --risky-copy-eexist
GMEM_RISKY = ("copy_eexist",)
BENCH_ROWS = 9 * 3     # variants x modes per backing
ABSENT_ERRNOS = ("ENOENT", "ENODEV", "ENXIO", "ENOSYS", "EACCES", "EPERM")


class Tap:
    def __init__(self):
        self.results = []

    def ok(self, cond, desc, diag=None):
        self.results.append(("ok" if cond else "not ok", desc, None,
                             None if cond else diag))

    def skip(self, desc, reason):
        self.results.append(("ok", desc, reason, None))

    def finish(self):
        print("1..%d" % len(self.results))
        failed = 0
        for i, (st, desc, skip, diag) in enumerate(self.results, 1):
            line = "%s %d - %s" % (st, i, desc)
            if skip is not None:
                line = "ok %d - %s # SKIP %s" % (i, desc, skip)
            print(line)
            if diag:
                for d in str(diag).splitlines():
                    print("# " + d)
            failed += st != "ok"
        sys.stdout.flush()
        return 1 if failed else 0


def run(cmd, timeout=120):
    p = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                       universal_newlines=True, timeout=timeout)
    return p.returncode, p.stdout, p.stderr


def expected_status(checks, risky=False):
    """The exit status the documented rules give for these checks."""
    def bad(name):
        c = checks.get(name)
        return c is None or not c["ok"]

    if bad("kvm.open") or bad("kvm.create_vm"):
        return 2
    for n in ("kvm.cap_guest_memfd", "kvm.cap_guest_memfd_flags",
              "gmem.create", "gmem.mmap", "gmem.rw", "gmem.punch_hole"):
        if bad(n):
            return 3
    if bad("uffd.api"):
        return 4
    if bad("uffd.register.gmem.missing_minor"):
        return 5
    reg = int(checks["uffd.register.gmem.missing_minor"]["value"], 16)
    if (reg & (UFFDIO_COPY_BIT | UFFDIO_CONTINUE_BIT)) != \
            (UFFDIO_COPY_BIT | UFFDIO_CONTINUE_BIT):
        return 5
    for t in FAULT_TESTS:
        if (risky or t not in GMEM_RISKY) and bad("fault.gmem." + t):
            return 6
    return 0


def not_run_risky(c):
    """Whether check @c says it was not run for the kernel bug, and how."""
    return c["skipped"] and not c["ok"] and not c["required"] and \
        c["detail"].startswith("not run, because ") and \
        "kvm_gmem_filemap_add()" in c["detail"] and \
        "--risky-copy-eexist" in c["detail"]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--probe", required=True)
    ap.add_argument("--bench")
    args = ap.parse_args()
    probe = args.probe
    tap = Tap()

    try:
        body(tap, probe, args.bench)
    except Exception as e:  # report, do not lose the plan
        tap.ok(False, "test script raised", repr(e))
    return tap.finish()


def body(tap, probe, bench):
    # --- options and the exit status table ---------------------------
    rc, out, _ = run([probe, "--help"])
    listed = set(int(m) for m in re.findall(r"^\s+([0-6])\s", out, re.M))
    tap.ok(rc == 0 and listed >= set(EXIT_CODES) | {1},
           "--help exits 0 and documents exit statuses 0-6",
           "rc %d, listed %s" % (rc, sorted(listed)))
    tap.ok("--risky-copy-eexist" in out and "CONFIG_DEBUG_VM" in out,
           "--help documents --risky-copy-eexist and why it is risky", out)

    rc, _, err = run([probe, "--no-such-option"])
    tap.ok(rc == 1 and "Usage" in err, "unknown option: exit 1 with usage",
           "rc %d" % rc)

    rc, _, _ = run([probe, "--json", "--reason"])
    tap.ok(rc == 1, "--json with --reason: exit 1", "rc %d" % rc)

    # --- JSON -----------------------------------------------------------
    rc, out, err = run([probe, "--json"])
    try:
        js = json.loads(out)
    except ValueError as e:
        tap.ok(False, "--json prints one well-formed JSON object",
               "%s\n%s" % (e, out[:2000]))
        return
    tap.ok(isinstance(js, dict), "--json prints one well-formed JSON object")
    status = rc

    keys_ok = all(k in js for k in ("kernel", "checks", "uffd_features",
                                    "postcopy_guest_memfd", "exit_status",
                                    "reason_code", "reason"))
    ck_keys = ("name", "ok", "skipped", "required", "errno", "errno_name",
               "value", "detail")
    checks_ok = isinstance(js.get("checks"), list) and all(
        isinstance(c, dict) and all(k in c for k in ck_keys) and
        isinstance(c["ok"], bool) and isinstance(c["detail"], str)
        for c in js["checks"])
    names = [c["name"] for c in js.get("checks", [])]
    tap.ok(keys_ok and checks_ok and len(names) == len(set(names)),
           "JSON has the stable keys, checks are unique",
           "keys %s" % sorted(js))
    checks = {c["name"]: c for c in js["checks"]}

    tap.ok(status in EXIT_CODES, "exit status is one of 0, 2-6",
           "rc %d, stderr %s" % (status, err))
    tap.ok(js["exit_status"] == status and
           js["postcopy_guest_memfd"] == (status == 0) and
           js["reason_code"] == EXIT_CODES.get(status) and
           (js["reason"] == "") == (status == 0),
           "JSON exit_status, reason_code, postcopy_guest_memfd and reason "
           "agree with the exit status",
           "rc %d, json %s/%s/%s" % (status, js["exit_status"],
                                     js["reason_code"], js["reason"]))
    exp = expected_status(checks)
    tap.ok(exp == status, "exit status follows the documented mapping "
           "from the checks", "expected %d, got %d" % (exp, status))

    # --- copy_eexist on guest_memfd: not run unless asked ----------------
    # Whatever the host offers: the probe decides before it looks
    cg = checks.get("fault.gmem.copy_eexist")
    tap.ok(js.get("risky_copy_eexist") is False and cg and not_run_risky(cg),
           "by default fault.gmem.copy_eexist is not run, not required, "
           "and says why (the posted series' double folio_unlock) and how "
           "to run it", cg)

    rc, out, _ = run([probe, "--reason"])
    want = js["reason"] + "\n" if js["reason"] else ""
    tap.ok(rc == status and out == want,
           "--reason prints exactly the JSON reason, same exit status",
           "rc %d, out %r, want %r" % (rc, out, want))

    rc, out, _ = run([probe])
    tap.ok(rc == status and
           ("reason: " + js["reason"] in out if status else
            "POSSIBLE (exit 0)" in out),
           "human report: same exit status and reason", out[-600:])
    tap.ok(re.search(r"^skip +fault\.gmem\.copy_eexist +not run, because "
                     r".*kvm_gmem_filemap_add\(\).*--risky-copy-eexist "
                     r"runs it \[info\]$", out, re.M) is not None,
           "human report: fault.gmem.copy_eexist is \"not run, because\" "
           "[info]", out[-2000:])

    # --- KVM and guest_memfd ------------------------------------------
    kvm = checks["kvm.open"]
    kvm_absent = not kvm["ok"] and kvm["errno_name"] in ABSENT_ERRNOS
    if kvm_absent:
        tap.skip("KVM and guest_memfd checks", "/dev/kvm: " + kvm["detail"])
    else:
        tap.ok(kvm["ok"] and checks["kvm.create_vm"]["ok"],
               "/dev/kvm opens and KVM_CREATE_VM works",
               kvm["detail"] + "; " + checks["kvm.create_vm"]["detail"])
    gmem_names = ("gmem.create", "gmem.mmap", "gmem.rw", "gmem.punch_hole")
    gmem_ok = all(checks.get(n, {}).get("ok") for n in gmem_names)
    if kvm_absent:
        tap.skip("guest_memfd MMAP|INIT_SHARED", "no /dev/kvm")
    else:
        flags = checks.get("kvm.cap_guest_memfd_flags", {}).get("value")
        flags = int(flags, 16) if flags else 0
        if (flags & 3) == 3:
            tap.ok(checks["kvm.cap_guest_memfd"]["ok"] and gmem_ok,
                   "guest_memfd with MMAP|INIT_SHARED: create, mmap, "
                   "read/write, PUNCH_HOLE reads zeros",
                   "; ".join(checks[n]["detail"] for n in gmem_names
                             if n in checks))
        elif not checks["kvm.cap_guest_memfd"]["ok"]:
            # KVM without guest_memfd at all (e.g. a kvm_pvm host)
            tap.ok(status == 3 and "KVM_CAP_GUEST_MEMFD (234)" in js["reason"],
                   "without KVM_CAP_GUEST_MEMFD the probe exits 3 and says "
                   "why", js["reason"])
        else:
            tap.ok(status == 3 and "MMAP|INIT_SHARED" in js["reason"],
                   "without guest_memfd MMAP|INIT_SHARED the probe exits 3 "
                   "and says why", js["reason"])

    # --- userfaultfd ----------------------------------------------------
    api = checks["uffd.api"]
    uffd_absent = not api["ok"] and api["errno_name"] in ABSENT_ERRNOS
    if uffd_absent:
        for d in ("userfaultfd features", "memfd registration",
                  "memfd fault tests", "guest_memfd registration"):
            tap.skip(d, "no userfaultfd: " + api["detail"])
        if bench:
            tap.skip("uffd-place-bench", "no userfaultfd")
        return
    feats = int(js["uffd_features"], 16)
    tap.ok(api["ok"] and feats & UFFD_FEATURE_MINOR_SHMEM,
           "UFFDIO_API works and offers UFFD_FEATURE_MINOR_SHMEM",
           api["detail"])

    def reg(backing, mode):
        c = checks["uffd.register.%s.%s" % (backing, mode)]
        return c["ok"], int(c["value"], 16) if c["value"] else 0, c

    ok1, io1, c1 = reg("memfd", "missing")
    ok2, io2, c2 = reg("memfd", "minor")
    ok3, io3, c3 = reg("memfd", "missing_minor")
    tap.ok(ok1 and io1 & UFFDIO_COPY_BIT,
           "memfd UFFDIO_REGISTER MISSING offers UFFDIO_COPY", c1["detail"])
    tap.ok(ok2 and io2 & UFFDIO_CONTINUE_BIT,
           "memfd UFFDIO_REGISTER MINOR offers UFFDIO_CONTINUE",
           c2["detail"])
    tap.ok(ok3 and io3 & UFFDIO_COPY_BIT and io3 & UFFDIO_CONTINUE_BIT,
           "memfd UFFDIO_REGISTER MISSING|MINOR offers COPY and CONTINUE",
           c3["detail"])
    for t in FAULT_TESTS:
        c = checks["fault.memfd." + t]
        tap.ok(c["ok"], "memfd fault test %s" % t, c["detail"])

    # the kernel-mode touch path (the one used under valgrind)
    if checks["uffd.syscall"]["ok"] and \
            "USER_MODE_ONLY" in checks["uffd.syscall"]["detail"] and \
            not checks["uffd.dev"]["ok"]:
        tap.skip("memfd fault tests, --touch=syscall",
                 "only user-mode userfaultfd available")
    else:
        rc2, out2, _ = run([probe, "--json", "--touch=syscall"])
        js2 = json.loads(out2)
        c2s = {c["name"]: c for c in js2["checks"]}
        bad = [t for t in FAULT_TESTS if not c2s["fault.memfd." + t]["ok"]]
        tap.ok(rc2 == status and not bad and js2["touch"] == "syscall",
               "memfd fault tests, --touch=syscall, same verdict",
               "rc %d, failed %s" % (rc2, bad))

    # --- guest_memfd userfaultfd: either answer, consistently ------------
    if kvm_absent or not gmem_ok:
        tap.skip("guest_memfd userfaultfd registration",
                 "no guest_memfd: " + js["reason"])
        tap.skip("guest_memfd registration modes agree", "no guest_memfd")
    else:
        okg, iog, cg = reg("gmem", "missing_minor")
        faults = [checks["fault.gmem." + t] for t in FAULT_TESTS]
        if okg:
            tap.ok(iog & UFFDIO_COPY_BIT and iog & UFFDIO_CONTINUE_BIT and
                   all(f["ok"] for f in faults
                       if f["name"].split(".")[-1] not in GMEM_RISKY) and
                   status == 0,
                   "guest_memfd registers MISSING|MINOR (COPY, CONTINUE) "
                   "and the fault tests run by default pass: exit 0",
                   "; ".join("%s: %s" % (f["name"], f["detail"])
                             for f in faults))
        else:
            tap.ok(cg["errno_name"] == "EINVAL" and status == 5 and
                   "refuses" in js["reason"] and "EINVAL" in js["reason"] and
                   all(f["skipped"] for f in faults),
                   "guest_memfd registration refused with EINVAL: exit 5, "
                   "reason says so, fault tests skipped",
                   "%s; rc %d; %s" % (cg["detail"], status, js["reason"]))
        okm, iom, cm = reg("gmem", "missing")
        okn, ion, cn = reg("gmem", "minor")
        if okg:
            agree = okm and okn and iom & UFFDIO_COPY_BIT and \
                ion & UFFDIO_CONTINUE_BIT
        else:
            agree = not okm and not okn and \
                cm["errno_name"] == cn["errno_name"] == "EINVAL"
        tap.ok(agree, "guest_memfd MISSING, MINOR and MISSING|MINOR "
               "registration agree", "%s; %s; %s" % (cm["detail"],
                                                    cn["detail"],
                                                    cg["detail"]))

    # --- --risky-copy-eexist, where it cannot reach the kernel bug -------
    if checks["fault.gmem.missing_copy"]["skipped"]:
        rc, out, _ = run([probe, "--json", "--risky-copy-eexist"])
        jr = json.loads(out)
        cr = {c["name"]: c for c in jr["checks"]}
        g, ref = cr["fault.gmem.copy_eexist"], cr["fault.gmem.missing_copy"]
        tap.ok(rc == status and jr["risky_copy_eexist"] is True and
               g["required"] and g["skipped"] and
               g["detail"] == ref["detail"] and
               cr["fault.memfd.copy_eexist"]["ok"] and
               expected_status(cr, risky=True) == rc,
               "--risky-copy-eexist makes fault.gmem.copy_eexist a required "
               "check like the others (skipped here for their reason), "
               "same verdict, memfd copy_eexist still runs",
               "rc %d; %s; %s" % (rc, g, ref["detail"]))
    else:
        tap.skip("--risky-copy-eexist", "guest_memfd fault tests run on "
                 "this host: UFFDIO_COPY onto a cached guest_memfd page "
                 "could hit the posted series' double folio_unlock")

    # --- uffd-place-bench smoke run --------------------------------------
    if not bench:
        return
    rc, out, err = run([bench, "--pages", "512", "--rounds", "2",
                        "--json"])
    try:
        bj = json.loads(out)
        rows = bj["rows"]
    except (ValueError, KeyError) as e:
        tap.ok(False, "uffd-place-bench --json: exit 0, well-formed",
               "%s rc %d %s" % (e, rc, err))
        return
    tap.ok(rc == 0, "uffd-place-bench --json: exit 0, well-formed",
           "rc %d" % rc)
    memfd = [r for r in rows if r["backing"] == "memfd"]
    bad = [r["variant"] + "/" + r["mode"] + ": " + r["note"]
           for r in memfd if not r["ok"]]
    tap.ok(len(memfd) == BENCH_ROWS and not bad,
           "uffd-place-bench: all %d memfd rows measured and verified" %
           BENCH_ROWS, "%d rows, failed: %s" % (len(memfd), bad))
    gm = [r for r in rows if r["backing"] == "gmem"]
    if status == 0:
        # guest_memfd has no write(2) in mainline: pwrite rows may skip
        bad = [r["variant"] + "/" + r["mode"] + ": " + r["note"]
               for r in gm if not r["ok"] and
               not (r["variant"] == "pwrite-cont" and
                    r["note"].startswith("skipped: "))]
        tap.ok(len(gm) == BENCH_ROWS and not bad,
               "uffd-place-bench: guest_memfd rows measured and verified",
               "%d rows, failed: %s" % (len(gm), bad))
    else:
        tap.ok(len(gm) == 1 and gm[0]["note"].startswith("skipped: "),
               "uffd-place-bench: guest_memfd row says skipped and why",
               str(gm)[:800])
    rc, out, _ = run([bench, "--pages", "64", "--rounds", "1"])
    tap.ok(rc == 0 and "median_ns" in out and "memcpy-4k" in out,
           "uffd-place-bench table output", "rc %d" % rc)


if __name__ == "__main__":
    sys.exit(main())
