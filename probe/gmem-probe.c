/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * gmem-probe: can this host run postcopy migration of guest RAM that
 * lives in a KVM guest_memfd, over userfaultfd?
 *
 * Every check is tried for real (no version guessing): /dev/kvm and a VM,
 * the guest_memfd capabilities, a guest_memfd created with
 * GUEST_MEMFD_FLAG_MMAP | GUEST_MEMFD_FLAG_INIT_SHARED and accessed through
 * a MAP_SHARED mapping, userfaultfd (syscall and /dev/userfaultfd),
 * UFFDIO_REGISTER in MISSING, MINOR and MISSING|MINOR on a guest_memfd and
 * on a memfd mapping, and real faults resolved with UFFDIO_COPY and
 * UFFDIO_CONTINUE.  The kernel has no feature bit for guest_memfd
 * userfaultfd support: a kernel without it answers UFFDIO_REGISTER with
 * EINVAL, so the only honest probe is to try.
 *
 * Copyright (c) 2026 The qemu-gmem authors
 */

#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <poll.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <sys/eventfd.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <sys/utsname.h>
#include <linux/kvm.h>
#include <linux/userfaultfd.h>

#include "hostcaps.h"

#ifdef HAVE_VALGRIND_H
#include <valgrind/valgrind.h>
#else
#define RUNNING_ON_VALGRIND 0
#endif

/*
 * KVM Userfault (KVM_MEM_USERFAULT memslots, KVM_CAP_USERFAULT) is an
 * out-of-tree series by James Houghton; it is not in mainline.  Its
 * capability number moved with every posting, each time because mainline
 * took the number first:
 *   RFC (2024-07)  236  (mainline: KVM_CAP_PRE_FAULT_MEMORY)
 *   v1  (2024-12)  239  (mainline: KVM_CAP_ARM_WRITABLE_IMP_ID_REGS)
 *   v2  (2025-01)  240  (mainline: KVM_CAP_ARM_EL2)
 *   v3  (2025-06)  243  (mainline 6.18: KVM_CAP_ARM_CACHEABLE_PFNMAP_SUPPORTED)
 * Source: the patch "KVM: Enable and advertise support for KVM userfault
 * exits" ([PATCH v3 07/15], linux-kernel, 2025-06-18) and the earlier
 * postings' include/uapi/linux/kvm.h hunks, found with the code search
 * (query "#define KVM_CAP_USERFAULT").  The newest number, 243, is
 * probed; in mainline 243 is an arm64-only capability, so on x86 a
 * non-zero answer can only come from the series.  Elsewhere the answer is
 * ambiguous and is reported as such.
 */
#define PROBE_KVM_CAP_USERFAULT_V3 243

#define PAGE 4096UL
#define REGION_PAGES 4
#define REGION_SIZE (REGION_PAGES * PAGE)
#define FAULT_TIMEOUT_MS 5000

enum {
    EXIT_POSSIBLE = 0,
    EXIT_USAGE = 1,
    EXIT_NO_KVM = 2,
    EXIT_NO_GMEM = 3,
    EXIT_NO_UFFD = 4,
    EXIT_GMEM_UFFD_REFUSED = 5,
    EXIT_GMEM_FAULT_FAILED = 6,
};

static const char usage_text[] =
"Usage: gmem-probe [--json | --reason] [--touch=cpu|syscall]\n"
"                  [--risky-copy-eexist]\n"
"\n"
"Probe whether this host can run postcopy live migration of guest RAM\n"
"backed by a KVM guest_memfd over userfaultfd, by trying every step.\n"
"\n"
"  --json           print one JSON object instead of the report\n"
"  --reason         print only the one-line reason guest_memfd postcopy\n"
"                   is not possible (nothing when it is)\n"
"  --touch=cpu      fault tests touch the page with a CPU load (default)\n"
"  --touch=syscall  fault tests touch the page from the kernel (write(2)\n"
"                   to a pipe); default under valgrind, which cannot run\n"
"                   another thread while one is blocked in a page fault\n"
"  --risky-copy-eexist  also run fault.gmem.copy_eexist (UFFDIO_COPY onto a\n"
"                   guest_memfd page in the page cache), which is not run\n"
"                   by default: on a kernel with the posted v2 series\n"
"                   \"KVM: guest_memfd: implement userfaultfd operations\"\n"
"                   it unlocks a folio twice, a kernel BUG with\n"
"                   CONFIG_DEBUG_VM; it always runs on memfd\n"
"  -h, --help       this text\n"
"\n"
"Exit status:\n"
"  0  guest_memfd postcopy possible: KVM ok, guest_memfd with\n"
"     MMAP|INIT_SHARED ok, userfaultfd ok, guest_memfd registers\n"
"     MISSING|MINOR with COPY and CONTINUE, and the fault tests pass\n"
"     (on guest_memfd, copy_eexist only with --risky-copy-eexist)\n"
"  1  usage error or internal error (out of memory, memfd failure)\n"
"  2  no usable /dev/kvm (open or KVM_CREATE_VM failed)\n"
"  3  no guest_memfd with MMAP|INIT_SHARED (capability, creation, mmap or\n"
"     access failed)\n"
"  4  no userfaultfd (syscall and /dev/userfaultfd failed, or UFFDIO_API)\n"
"  5  kernel refuses userfaultfd registration on guest_memfd (or does\n"
"     not offer UFFDIO_COPY/UFFDIO_CONTINUE on it)\n"
"  6  registration works but a guest_memfd fault test failed\n";

/* ------------------------------------------------------------------ */
/* Check records */

typedef enum {
    ST_OK,
    ST_FAIL,
    ST_SKIP,
} CheckState;

typedef struct {
    char name[48];
    CheckState state;
    bool required;      /* gates postcopy on guest_memfd */
    int err;            /* errno of the failing call, 0 if none */
    bool has_value;
    uint64_t value;     /* features, flags, ioctls masks, cap values */
    char detail[320];
} Check;

#define MAX_CHECKS 64
static Check checks[MAX_CHECKS];
static int nchecks;

static Check *check_add(const char *name, CheckState st, bool required,
                        int err, const char *fmt, ...)
    __attribute__((format(printf, 5, 6)));

static Check *check_add(const char *name, CheckState st, bool required,
                        int err, const char *fmt, ...)
{
    Check *c;
    va_list ap;

    if (nchecks == MAX_CHECKS) {
        fprintf(stderr, "gmem-probe: too many checks\n");
        exit(EXIT_USAGE);
    }
    c = &checks[nchecks++];
    snprintf(c->name, sizeof(c->name), "%s", name);
    c->state = st;
    c->required = required;
    c->err = err;
    va_start(ap, fmt);
    vsnprintf(c->detail, sizeof(c->detail), fmt, ap);
    va_end(ap);
    return c;
}

static void check_value(Check *c, uint64_t value)
{
    c->has_value = true;
    c->value = value;
}

/* ------------------------------------------------------------------ */
/* Bit decoding */

static void decode_bits(uint64_t v, const char *const *names, int n,
                        char *out, size_t len)
{
    size_t used = 0;
    int i;

    out[0] = '\0';
    for (i = 0; i < 64; i++) {
        const char *nm;
        char tmp[16];

        if (!(v & (1ULL << i))) {
            continue;
        }
        nm = (i < n && names[i]) ? names[i] : NULL;
        if (!nm) {
            snprintf(tmp, sizeof(tmp), "bit%d", i);
            nm = tmp;
        }
        used += snprintf(out + used, used < len ? len - used : 0, "%s%s",
                         used ? "," : "", nm);
    }
    if (!used) {
        snprintf(out, len, "none");
    }
}

static const char *const uffdio_names[64] = {
    [_UFFDIO_REGISTER] = "REGISTER",
    [_UFFDIO_UNREGISTER] = "UNREGISTER",
    [_UFFDIO_WAKE] = "WAKE",
    [_UFFDIO_COPY] = "COPY",
    [_UFFDIO_ZEROPAGE] = "ZEROPAGE",
    [_UFFDIO_MOVE] = "MOVE",
    [_UFFDIO_WRITEPROTECT] = "WRITEPROTECT",
    [_UFFDIO_CONTINUE] = "CONTINUE",
    [_UFFDIO_POISON] = "POISON",
    [_UFFDIO_API] = "API",
};

static const char *const feature_names[] = {
    "PAGEFAULT_FLAG_WP", "EVENT_FORK", "EVENT_REMAP", "EVENT_REMOVE",
    "MISSING_HUGETLBFS", "MISSING_SHMEM", "EVENT_UNMAP", "SIGBUS",
    "THREAD_ID", "MINOR_HUGETLBFS", "MINOR_SHMEM", "EXACT_ADDRESS",
    "WP_HUGETLBFS_SHMEM", "WP_UNPOPULATED", "POISON", "WP_ASYNC", "MOVE",
};

#define IOCTL_BIT(x) (1ULL << (x))

/* ------------------------------------------------------------------ */
/* Host resources */

typedef struct {
    int vm_fd;              /* -1 without a usable VM */
    bool kvm_ok;
    bool gmem_ok;
    bool uffd_ok;
    UffdVia uffd_via;
    bool touch_syscall;
    bool risky_copy_eexist; /* run copy_eexist on guest_memfd too */
    uint64_t uffd_features;
    /* guest_memfd registration and fault test outcome */
    bool gmem_reg_ok;
    int gmem_reg_err;
    const char *gmem_reg_step;  /* the call that failed */
    uint64_t gmem_reg_ioctls;
    bool gmem_faults_ok;
    char gmem_fault_fail[400];
    /* first failure of each gating step, for the reason line */
    char kvm_why[320];
    char gmem_why[320];
    char uffd_why[320];
} Probe;

/* ------------------------------------------------------------------ */
/* KVM and guest_memfd */

static void probe_kvm(Probe *p)
{
    int kvm_fd, vm_fd, api, r;
    bool flags_ok;
    Check *c;

    kvm_fd = open("/dev/kvm", O_RDWR | O_CLOEXEC);
    if (kvm_fd < 0) {
        int e = errno;

        check_add("kvm.open", ST_FAIL, true, e, "open /dev/kvm: %s",
                  errtext(e));
        snprintf(p->kvm_why, sizeof(p->kvm_why),
                 "no usable /dev/kvm: open: %s", errtext(e));
        return;
    }
    api = ioctl(kvm_fd, KVM_GET_API_VERSION, 0);
    check_add("kvm.open", ST_OK, true, 0,
              "/dev/kvm opened, KVM_GET_API_VERSION %d", api);

    vm_fd = ioctl(kvm_fd, KVM_CREATE_VM, 0);
    if (vm_fd < 0) {
        int e = errno;

        check_add("kvm.create_vm", ST_FAIL, true, e,
                  "KVM_CREATE_VM (type 0): %s", errtext(e));
        snprintf(p->kvm_why, sizeof(p->kvm_why),
                 "no usable /dev/kvm: KVM_CREATE_VM: %s", errtext(e));
        close(kvm_fd);
        return;
    }
    close(kvm_fd);
    fcntl(vm_fd, F_SETFD, FD_CLOEXEC);
    check_add("kvm.create_vm", ST_OK, true, 0, "KVM_CREATE_VM (type 0)");
    p->vm_fd = vm_fd;
    p->kvm_ok = true;

    r = ioctl(vm_fd, KVM_CHECK_EXTENSION, KVM_CAP_GUEST_MEMFD);
    c = check_add("kvm.cap_guest_memfd", r > 0 ? ST_OK : ST_FAIL, true,
                  r < 0 ? errno : 0,
                  "KVM_CHECK_EXTENSION(KVM_CAP_GUEST_MEMFD = %d) = %d",
                  KVM_CAP_GUEST_MEMFD, r);
    check_value(c, r < 0 ? 0 : r);
    if (r <= 0) {
        snprintf(p->gmem_why, sizeof(p->gmem_why),
                 "no guest_memfd: KVM_CAP_GUEST_MEMFD (%d) not supported",
                 KVM_CAP_GUEST_MEMFD);
    }

    r = ioctl(vm_fd, KVM_CHECK_EXTENSION, KVM_CAP_GUEST_MEMFD_FLAGS);
    flags_ok = r > 0 &&
        (r & (GUEST_MEMFD_FLAG_MMAP | GUEST_MEMFD_FLAG_INIT_SHARED)) ==
        (GUEST_MEMFD_FLAG_MMAP | GUEST_MEMFD_FLAG_INIT_SHARED);
    c = check_add("kvm.cap_guest_memfd_flags", flags_ok ? ST_OK : ST_FAIL,
                  true, r < 0 ? errno : 0,
                  "KVM_CHECK_EXTENSION(KVM_CAP_GUEST_MEMFD_FLAGS = %d) = "
                  "0x%x: MMAP %s, INIT_SHARED %s",
                  KVM_CAP_GUEST_MEMFD_FLAGS, r < 0 ? 0 : r,
                  r > 0 && (r & GUEST_MEMFD_FLAG_MMAP) ? "yes" : "no",
                  r > 0 && (r & GUEST_MEMFD_FLAG_INIT_SHARED) ? "yes" : "no");
    check_value(c, r < 0 ? 0 : r);
    if (!flags_ok && !p->gmem_why[0]) {
        snprintf(p->gmem_why, sizeof(p->gmem_why),
                 "no guest_memfd with MMAP|INIT_SHARED: "
                 "KVM_CAP_GUEST_MEMFD_FLAGS (%d) = 0x%x, 0x3 needed",
                 KVM_CAP_GUEST_MEMFD_FLAGS, r < 0 ? 0 : r);
    }

#if defined(__x86_64__) || defined(__i386__)
    r = ioctl(vm_fd, KVM_CHECK_EXTENSION, PROBE_KVM_CAP_USERFAULT_V3);
    c = check_add("kvm.cap_userfault", r > 0 ? ST_OK : ST_FAIL, false, 0,
                  "KVM Userfault (out-of-tree series): "
                  "KVM_CHECK_EXTENSION(%d, KVM_CAP_USERFAULT as numbered "
                  "in v3) = %d; earlier postings used 236/239/240, now "
                  "mainline capabilities, not probed",
                  PROBE_KVM_CAP_USERFAULT_V3, r);
    check_value(c, r < 0 ? 0 : r);
#else
    check_add("kvm.cap_userfault", ST_SKIP, false, 0,
              "unknown number: KVM_CAP_USERFAULT is not in mainline and "
              "its last posted number (%d) is a mainline arm64 capability",
              PROBE_KVM_CAP_USERFAULT_V3);
#endif
}

static void probe_gmem(Probe *p)
{
    int fd, err = 0;
    uint8_t *a;
    size_t i;
    bool same = true, zero = true;

    if (!p->kvm_ok) {
        check_add("gmem.create", ST_SKIP, true, 0, "no usable /dev/kvm");
        return;
    }
    fd = backing_open(BACK_GMEM, p->vm_fd, REGION_SIZE, &err);
    if (fd < 0) {
        check_add("gmem.create", ST_FAIL, true, err,
                  "KVM_CREATE_GUEST_MEMFD(size %lu, MMAP|INIT_SHARED): %s",
                  REGION_SIZE, errtext(err));
        if (!p->gmem_why[0]) {
            snprintf(p->gmem_why, sizeof(p->gmem_why),
                     "no guest_memfd with MMAP|INIT_SHARED: "
                     "KVM_CREATE_GUEST_MEMFD: %s", errtext(err));
        }
        return;
    }
    check_add("gmem.create", ST_OK, true, 0,
              "KVM_CREATE_GUEST_MEMFD(size %lu, flags MMAP|INIT_SHARED)",
              REGION_SIZE);

    a = map_shared(fd, REGION_SIZE, &err);
    if (!a) {
        check_add("gmem.mmap", ST_FAIL, true, err, "mmap MAP_SHARED: %s",
                  errtext(err));
        snprintf(p->gmem_why, sizeof(p->gmem_why),
                 "no guest_memfd with MMAP|INIT_SHARED: mmap: %s",
                 errtext(err));
        close(fd);
        return;
    }
    check_add("gmem.mmap", ST_OK, true, 0, "mmap MAP_SHARED, %lu bytes",
              REGION_SIZE);

    for (i = 0; i < REGION_SIZE; i++) {
        a[i] = (uint8_t)(i * 7 + 1);
    }
    for (i = 0; i < REGION_SIZE; i++) {
        if (a[i] != (uint8_t)(i * 7 + 1)) {
            same = false;
            break;
        }
    }
    check_add("gmem.rw", same ? ST_OK : ST_FAIL, true, 0,
              same ? "write and read back %lu bytes through the mapping"
                   : "read back through the mapping differs (%lu bytes)",
              REGION_SIZE);

    if (fallocate(fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, 0,
                  REGION_SIZE) < 0) {
        err = errno;
        check_add("gmem.punch_hole", ST_FAIL, true, err,
                  "fallocate(PUNCH_HOLE|KEEP_SIZE): %s", errtext(err));
        zero = false;
    } else {
        for (i = 0; i < REGION_SIZE; i++) {
            if (a[i]) {
                zero = false;
                break;
            }
        }
        check_add("gmem.punch_hole", zero ? ST_OK : ST_FAIL, true, 0,
                  zero ? "fallocate(PUNCH_HOLE|KEEP_SIZE), reads back zeros"
                       : "fallocate(PUNCH_HOLE|KEEP_SIZE) succeeded but "
                         "data is still there");
    }
    if ((!same || !zero) && !p->gmem_why[0]) {
        snprintf(p->gmem_why, sizeof(p->gmem_why),
                 "guest_memfd mapping misbehaves: %s",
                 !same ? "data written is not read back"
                       : "punched hole does not read back as zeros");
    }
    munmap(a, REGION_SIZE);
    close(fd);
    p->gmem_ok = same && zero && !p->gmem_why[0];
}

/* ------------------------------------------------------------------ */
/* userfaultfd */

static void probe_uffd(Probe *p)
{
    struct uffdio_api api = { .api = UFFD_API, .features = 0 };
    int fd, e_sys = 0, e_dev = 0, e_user = 0;
    bool sys_ok = false, user_ok = false, dev_ok = false;
    char names[512];
    Check *c;

    fd = uffd_open_via(UFFD_VIA_SYSCALL, &e_sys);
    if (fd >= 0) {
        sys_ok = true;
        close(fd);
        check_add("uffd.syscall", ST_OK, false, 0,
                  "userfaultfd(O_CLOEXEC|O_NONBLOCK): kernel and user "
                  "faults");
    } else {
        fd = uffd_open_via(UFFD_VIA_SYSCALL_USER_ONLY, &e_user);
        if (fd >= 0) {
            user_ok = true;
            close(fd);
        }
        check_add("uffd.syscall", user_ok ? ST_OK : ST_FAIL, false,
                  user_ok ? 0 : e_user,
                  "userfaultfd(O_CLOEXEC|O_NONBLOCK): %s; with "
                  "UFFD_USER_MODE_ONLY: %s",
                  errtext(e_sys), user_ok ? "ok (user faults only)"
                                          : errtext(e_user));
    }

    fd = uffd_open_via(UFFD_VIA_DEV, &e_dev);
    if (fd >= 0) {
        dev_ok = true;
        close(fd);
        check_add("uffd.dev", ST_OK, false, 0,
                  "/dev/userfaultfd USERFAULTFD_IOC_NEW: kernel and user "
                  "faults");
    } else {
        check_add("uffd.dev", ST_FAIL, false, e_dev,
                  "/dev/userfaultfd USERFAULTFD_IOC_NEW: %s",
                  errtext(e_dev));
    }

    if (!sys_ok && !dev_ok && !user_ok) {
        snprintf(p->uffd_why, sizeof(p->uffd_why),
                 "no userfaultfd: userfaultfd(2): %s; /dev/userfaultfd: %s",
                 errtext(e_user ? e_user : e_sys), errtext(e_dev));
        check_add("uffd.api", ST_FAIL, true, e_user ? e_user : e_sys,
                  "no userfaultfd descriptor to try UFFDIO_API on");
        return;
    }
    /* prefer descriptors that also see kernel-mode faults */
    p->uffd_via = sys_ok ? UFFD_VIA_SYSCALL
                : dev_ok ? UFFD_VIA_DEV : UFFD_VIA_SYSCALL_USER_ONLY;
    if (p->touch_syscall && p->uffd_via == UFFD_VIA_SYSCALL_USER_ONLY) {
        /* a user-mode-only uffd cannot see faults taken in write(2) */
        p->touch_syscall = false;
    }

    fd = uffd_open_via(p->uffd_via, &e_dev);
    if (fd < 0 || ioctl(fd, UFFDIO_API, &api) < 0) {
        int e = fd < 0 ? e_dev : errno;

        check_add("uffd.api", ST_FAIL, true, e, "UFFDIO_API: %s",
                  errtext(e));
        snprintf(p->uffd_why, sizeof(p->uffd_why),
                 "no userfaultfd: UFFDIO_API: %s", errtext(e));
        if (fd >= 0) {
            close(fd);
        }
        return;
    }
    close(fd);
    p->uffd_features = api.features;
    decode_bits(api.features, feature_names,
                sizeof(feature_names) / sizeof(feature_names[0]),
                names, sizeof(names));
    c = check_add("uffd.api", ST_OK, true, 0,
                  "via %s: UFFDIO_API features 0x%" PRIx64 " (%s)",
                  p->uffd_via == UFFD_VIA_SYSCALL ? "userfaultfd(2)"
                  : p->uffd_via == UFFD_VIA_DEV ? "/dev/userfaultfd"
                  : "userfaultfd(2) UFFD_USER_MODE_ONLY",
                  (uint64_t)api.features, names);
    check_value(c, api.features);
    p->uffd_ok = true;
}

static const struct {
    const char *name;
    uint64_t mode;
} reg_modes[] = {
    { "missing", UFFDIO_REGISTER_MODE_MISSING },
    { "minor", UFFDIO_REGISTER_MODE_MINOR },
    { "missing_minor",
      UFFDIO_REGISTER_MODE_MISSING | UFFDIO_REGISTER_MODE_MINOR },
};

static const char *mode_text(uint64_t mode)
{
    if (mode == (UFFDIO_REGISTER_MODE_MISSING | UFFDIO_REGISTER_MODE_MINOR)) {
        return "MISSING|MINOR";
    }
    return mode == UFFDIO_REGISTER_MODE_MISSING ? "MISSING" : "MINOR";
}

/*
 * UFFDIO_REGISTER a fresh MAP_SHARED mapping of @b in @mode.  Returns
 * true on success with the ioctls mask in *ioctls, else false with *err.
 */
static bool try_register(Probe *p, Backing b, uint64_t mode,
                         uint64_t *ioctls, int *err, const char **step)
{
    struct uffdio_register reg = { 0 };
    struct uffdio_range range;
    int fd, uffd;
    void *a;
    bool ok = false;

    *step = "create";
    fd = backing_open(b, p->vm_fd, REGION_SIZE, err);
    if (fd < 0) {
        return false;
    }
    *step = "mmap";
    a = map_shared(fd, REGION_SIZE, err);
    if (!a) {
        close(fd);
        return false;
    }
    *step = "userfaultfd";
    uffd = uffd_new(p->uffd_via, err);
    if (uffd >= 0) {
        *step = "UFFDIO_REGISTER";
        reg.range.start = (uintptr_t)a;
        reg.range.len = REGION_SIZE;
        reg.mode = mode;
        if (ioctl(uffd, UFFDIO_REGISTER, &reg) == 0) {
            ok = true;
            *ioctls = reg.ioctls;
            range = reg.range;
            ioctl(uffd, UFFDIO_UNREGISTER, &range);
        } else {
            *err = errno;
        }
        close(uffd);
    }
    munmap(a, REGION_SIZE);
    close(fd);
    return ok;
}

static void probe_register(Probe *p, Backing b)
{
    const uint64_t need = IOCTL_BIT(_UFFDIO_COPY) |
                          IOCTL_BIT(_UFFDIO_CONTINUE);
    size_t i;

    for (i = 0; i < sizeof(reg_modes) / sizeof(reg_modes[0]); i++) {
        char name[48], names[256];
        uint64_t ioctls = 0;
        int err = 0;
        const char *step;
        bool last = i == sizeof(reg_modes) / sizeof(reg_modes[0]) - 1;
        /* MISSING|MINOR is what postcopy on guest_memfd registers */
        bool required = b == BACK_GMEM && last;
        Check *c;

        snprintf(name, sizeof(name), "uffd.register.%s.%s",
                 backing_name[b], reg_modes[i].name);
        if (!p->uffd_ok || (b == BACK_GMEM && !p->gmem_ok)) {
            check_add(name, ST_SKIP, required, 0, "%s",
                      !p->uffd_ok ? "no userfaultfd" : "no guest_memfd");
            continue;
        }
        if (try_register(p, b, reg_modes[i].mode, &ioctls, &err, &step)) {
            decode_bits(ioctls, uffdio_names, 64, names, sizeof(names));
            c = check_add(name, ST_OK, required, 0,
                          "UFFDIO_REGISTER %s: ioctls 0x%" PRIx64 " (%s)",
                          mode_text(reg_modes[i].mode), ioctls, names);
            check_value(c, ioctls);
            if (required) {
                p->gmem_reg_ok = (ioctls & need) == need;
                p->gmem_reg_ioctls = ioctls;
            }
        } else {
            check_add(name, ST_FAIL, required, err, "%s %s: %s", step,
                      mode_text(reg_modes[i].mode), errtext(err));
            if (required) {
                p->gmem_reg_err = err;
                p->gmem_reg_step = step;
            }
        }
    }
}

/* ------------------------------------------------------------------ */
/* Fault tests */

typedef enum {
    FT_MISSING_COPY,
    FT_MINOR_CONTINUE,
    FT_MISSING_ALIAS_CONTINUE,
    FT_COPY_EEXIST,
    FT__MAX,
} FaultTest;

static const char *const fault_test_name[] = {
    [FT_MISSING_COPY] = "missing_copy",
    [FT_MINOR_CONTINUE] = "minor_continue",
    [FT_MISSING_ALIAS_CONTINUE] = "missing_alias_continue",
    [FT_COPY_EEXIST] = "copy_eexist",
};

typedef struct {
    const uint8_t *page;    /* in the registered mapping */
    const uint8_t *expect;  /* PAGE bytes the toucher must see */
    bool touch_syscall;
    int done_efd;
    bool match;
    int err;
} Toucher;

static void *toucher_fn(void *opaque)
{
    Toucher *t = opaque;
    uint8_t *buf = malloc(PAGE);
    uint64_t one = 1;

    if (!buf) {
        t->err = ENOMEM;
    } else if (t->touch_syscall) {
        /* the kernel reads the page (copy_from_user) and takes the fault */
        int pfd[2];

        if (pipe2(pfd, O_CLOEXEC) < 0) {
            t->err = errno;
        } else {
            if (write(pfd[1], t->page, PAGE) != (ssize_t)PAGE ||
                read(pfd[0], buf, PAGE) != (ssize_t)PAGE) {
                t->err = errno ? errno : EIO;
            }
            close(pfd[0]);
            close(pfd[1]);
        }
    } else {
        /* a CPU load from the page takes the fault */
        memcpy(buf, t->page, PAGE);
    }
    if (buf && !t->err) {
        t->match = memcmp(buf, t->expect, PAGE) == 0;
    }
    free(buf);
    if (write(t->done_efd, &one, sizeof(one)) != sizeof(one)) {
        t->err = t->err ? t->err : errno;
    }
    return NULL;
}

static void fill_pattern(uint8_t *buf, unsigned seed)
{
    size_t i;

    for (i = 0; i < PAGE; i++) {
        buf[i] = (uint8_t)(seed * 31 + i * 13 + (i >> 8));
    }
}

/*
 * Wait for the toucher's fault.  Returns 1 with *msg for a page fault, 0
 * with @why filled otherwise.
 */
static int wait_fault(int uffd, int done_efd, struct uffd_msg *msg,
                      char *why, size_t len)
{
    struct pollfd pfd[2] = {
        { .fd = uffd, .events = POLLIN },
        { .fd = done_efd, .events = POLLIN },
    };
    int r;

    do {
        r = poll(pfd, 2, FAULT_TIMEOUT_MS);
    } while (r < 0 && errno == EINTR);
    if (r < 0) {
        snprintf(why, len, "poll: %s", errtext(errno));
        return 0;
    }
    if (r == 0) {
        snprintf(why, len, "no userfault event within %d ms",
                 FAULT_TIMEOUT_MS);
        return 0;
    }
    if (pfd[0].revents & POLLIN) {
        ssize_t n = read(uffd, msg, sizeof(*msg));

        if (n != sizeof(*msg)) {
            snprintf(why, len, "read uffd_msg: %s",
                     n < 0 ? errtext(errno) : "short read");
            return 0;
        }
        if (msg->event != UFFD_EVENT_PAGEFAULT) {
            snprintf(why, len, "unexpected uffd event 0x%x", msg->event);
            return 0;
        }
        return 1;
    }
    snprintf(why, len, "the access completed without a userfault event");
    return 0;
}

static bool wait_done(int done_efd)
{
    struct pollfd pfd = { .fd = done_efd, .events = POLLIN };
    int r;

    do {
        r = poll(&pfd, 1, FAULT_TIMEOUT_MS);
    } while (r < 0 && errno == EINTR);
    return r > 0;
}

/*
 * Run one fault test on a fresh @b region registered MISSING|MINOR (as
 * postcopy registers it).  Page 0 of the region is used.  Returns true on
 * success; @why says what went wrong otherwise.
 */
static bool run_fault_test(Probe *p, Backing b, FaultTest t, char *why,
                           size_t len)
{
    struct uffdio_register reg = { 0 };
    struct uffd_msg msg;
    uint8_t *want = NULL, *other = NULL, *reg_map = NULL, *alias = NULL;
    int fd = -1, uffd = -1, done_efd = -1, err = 0;
    bool minor_expected, ok = false, started = false;
    pthread_t thr;
    Toucher tt = { 0 };
    uint64_t fault_addr;

    why[0] = '\0';
    want = aligned_alloc(PAGE, PAGE);
    other = aligned_alloc(PAGE, PAGE);
    if (!want || !other) {
        snprintf(why, len, "out of memory");
        goto out;
    }
    fill_pattern(want, t + 1 + 16 * b);
    fill_pattern(other, t + 101 + 16 * b);

    fd = backing_open(b, p->vm_fd, REGION_SIZE, &err);
    if (fd < 0) {
        snprintf(why, len, "create: %s", errtext(err));
        goto out;
    }
    reg_map = map_shared(fd, REGION_SIZE, &err);
    alias = reg_map ? map_shared(fd, REGION_SIZE, &err) : NULL;
    if (!alias) {
        snprintf(why, len, "mmap: %s", errtext(err));
        goto out;
    }
    uffd = uffd_new(p->uffd_via, &err);
    if (uffd < 0) {
        snprintf(why, len, "userfaultfd: %s", errtext(err));
        goto out;
    }
    reg.range.start = (uintptr_t)reg_map;
    reg.range.len = REGION_SIZE;
    reg.mode = UFFDIO_REGISTER_MODE_MISSING | UFFDIO_REGISTER_MODE_MINOR;
    if (ioctl(uffd, UFFDIO_REGISTER, &reg) < 0) {
        snprintf(why, len, "UFFDIO_REGISTER MISSING|MINOR: %s",
                 errtext(errno));
        goto out;
    }
    done_efd = eventfd(0, EFD_CLOEXEC);
    if (done_efd < 0) {
        snprintf(why, len, "eventfd: %s", errtext(errno));
        goto out;
    }

    /* set up the page state before the access */
    minor_expected = t == FT_MINOR_CONTINUE || t == FT_COPY_EEXIST;
    if (minor_expected) {
        /* in the page cache, not mapped in the registered VMA */
        memcpy(alias, want, PAGE);
    }
    if (t == FT_COPY_EEXIST) {
        struct uffdio_copy cp = {
            .dst = (uintptr_t)reg_map,
            .src = (uintptr_t)other,
            .len = PAGE,
        };

        if (ioctl(uffd, UFFDIO_COPY, &cp) == 0) {
            snprintf(why, len, "UFFDIO_COPY onto a page already in the "
                     "page cache succeeded (copied %lld), EEXIST expected",
                     (long long)cp.copy);
            goto out;
        }
        if (errno != EEXIST) {
            snprintf(why, len, "UFFDIO_COPY onto a present page: %s, "
                     "EEXIST expected", errtext(errno));
            goto out;
        }
    }

    tt.page = reg_map;
    tt.expect = want;
    tt.touch_syscall = p->touch_syscall;
    tt.done_efd = done_efd;
    if (pthread_create(&thr, NULL, toucher_fn, &tt) != 0) {
        snprintf(why, len, "pthread_create failed");
        goto out;
    }
    started = true;

    if (!wait_fault(uffd, done_efd, &msg, why, len)) {
        goto out;
    }
    fault_addr = msg.arg.pagefault.address & ~(uint64_t)(PAGE - 1);
    if (fault_addr != (uintptr_t)reg_map) {
        snprintf(why, len, "fault at 0x%" PRIx64 ", expected %p",
                 fault_addr, (void *)reg_map);
        goto out;
    }
    if (!!(msg.arg.pagefault.flags & UFFD_PAGEFAULT_FLAG_MINOR) !=
        minor_expected) {
        snprintf(why, len, "got a %s fault, expected %s",
                 msg.arg.pagefault.flags & UFFD_PAGEFAULT_FLAG_MINOR
                 ? "MINOR" : "MISSING",
                 minor_expected ? "MINOR" : "MISSING");
        goto out;
    }

    if (t == FT_MISSING_COPY) {
        struct uffdio_copy cp = {
            .dst = fault_addr,
            .src = (uintptr_t)want,
            .len = PAGE,
        };

        if (ioctl(uffd, UFFDIO_COPY, &cp) < 0 || cp.copy != (long)PAGE) {
            snprintf(why, len, "UFFDIO_COPY: %s (copy %lld)",
                     errtext(errno), (long long)cp.copy);
            goto out;
        }
    } else {
        struct uffdio_continue cont = {
            .range = { .start = fault_addr, .len = PAGE },
        };

        if (t == FT_MISSING_ALIAS_CONTINUE) {
            /* place the page through the unregistered mapping */
            memcpy(alias, want, PAGE);
        }
        if (ioctl(uffd, UFFDIO_CONTINUE, &cont) < 0 ||
            cont.mapped != (long)PAGE) {
            snprintf(why, len, "UFFDIO_CONTINUE: %s (mapped %lld)",
                     errtext(errno), (long long)cont.mapped);
            goto out;
        }
    }
    if (!wait_done(done_efd)) {
        snprintf(why, len, "the faulting thread was not released within "
                 "%d ms", FAULT_TIMEOUT_MS);
        goto out;
    }
    pthread_join(thr, NULL);
    started = false;
    if (tt.err) {
        snprintf(why, len, "faulting thread: %s", errtext(tt.err));
        goto out;
    }
    if (!tt.match) {
        snprintf(why, len, "the faulting thread read wrong data");
        goto out;
    }
    ok = true;

out:
    if (started) {
        /*
         * Release a thread still blocked in the fault: unregistering wakes
         * it and the retried fault is served normally.
         */
        struct uffdio_range range = {
            .start = (uintptr_t)reg_map,
            .len = REGION_SIZE,
        };

        ioctl(uffd, UFFDIO_UNREGISTER, &range);
        close(uffd);
        uffd = -1;
        pthread_join(thr, NULL);
    }
    if (uffd >= 0) {
        close(uffd);
    }
    if (done_efd >= 0) {
        close(done_efd);
    }
    if (alias) {
        munmap(alias, REGION_SIZE);
    }
    if (reg_map) {
        munmap(reg_map, REGION_SIZE);
    }
    if (fd >= 0) {
        close(fd);
    }
    free(want);
    free(other);
    return ok;
}

static const char *const fault_test_text[] = {
    [FT_MISSING_COPY] = "MISSING fault resolved with UFFDIO_COPY",
    [FT_MINOR_CONTINUE] = "MINOR fault (page filled through an "
                          "unregistered alias) resolved with "
                          "UFFDIO_CONTINUE",
    [FT_MISSING_ALIAS_CONTINUE] = "MISSING fault resolved by filling "
                                  "through the alias and UFFDIO_CONTINUE",
    [FT_COPY_EEXIST] = "UFFDIO_COPY onto a page in the page cache gives "
                       "EEXIST, the old data stays",
};

/*
 * Why fault test @t is not run on @b unless asked, or NULL.
 *
 * copy_eexist on guest_memfd: in the posted v2 series "KVM: guest_memfd:
 * implement userfaultfd operations", kvm_gmem_filemap_add() locks the new
 * folio, calls filemap_add_folio() and, when that fails, folio_unlock();
 * but filemap_add_folio() has already unlocked the folio when it fails.
 * A UFFDIO_COPY that meets a page already in the page cache, which is
 * what this test does, so unlocks the folio twice: "kernel BUG at
 * mm/filemap.c" with CONFIG_DEBUG_VM, the lock bit set again on a freed
 * folio without it.  On memfd (shmem) the same call is safe.
 */
static const char *fault_test_risky(Probe *p, Backing b, FaultTest t)
{
    if (b == BACK_GMEM && t == FT_COPY_EEXIST && !p->risky_copy_eexist) {
        return "not run, because UFFDIO_COPY onto a guest_memfd page in the "
               "page cache unlocks the new folio twice in "
               "kvm_gmem_filemap_add() of the posted v2 series \"KVM: "
               "guest_memfd: implement userfaultfd operations\" (kernel BUG "
               "with CONFIG_DEBUG_VM); --risky-copy-eexist runs it";
    }
    return NULL;
}

static void probe_faults(Probe *p, Backing b)
{
    bool can = b == BACK_MEMFD ? p->uffd_ok : p->gmem_reg_ok;
    bool all = true;
    int t;

    for (t = 0; t < FT__MAX; t++) {
        char name[48], why[320];
        const char *risky = fault_test_risky(p, b, t);
        bool required = b == BACK_GMEM && !risky;

        snprintf(name, sizeof(name), "fault.%s.%s", backing_name[b],
                 fault_test_name[t]);
        if (risky) {
            /* whatever the host offers: it is not run, and does not gate */
            check_add(name, ST_SKIP, required, 0, "%s", risky);
            continue;
        }
        if (!can) {
            check_add(name, ST_SKIP, required, 0, "%s",
                      !p->uffd_ok ? "no userfaultfd"
                      : b == BACK_GMEM && !p->gmem_ok ? "no guest_memfd"
                      : "UFFDIO_REGISTER MISSING|MINOR refused");
            all = false;
            continue;
        }
        if (run_fault_test(p, b, t, why, sizeof(why))) {
            check_add(name, ST_OK, required, 0, "%s (touch: %s)",
                      fault_test_text[t],
                      p->touch_syscall ? "write(2) from the page"
                                       : "CPU load");
        } else {
            check_add(name, ST_FAIL, required, 0, "%s", why);
            if (b == BACK_GMEM && all) {
                snprintf(p->gmem_fault_fail, sizeof(p->gmem_fault_fail),
                         "%s: %s", name, why);
            }
            all = false;
        }
    }
    if (b == BACK_GMEM) {
        p->gmem_faults_ok = all;
    }
}

/* ------------------------------------------------------------------ */
/* Verdict and output */

static int verdict(Probe *p, char *reason, size_t len)
{
    reason[0] = '\0';
    if (!p->kvm_ok) {
        snprintf(reason, len, "%s", p->kvm_why);
        return EXIT_NO_KVM;
    }
    if (!p->gmem_ok) {
        snprintf(reason, len, "%s", p->gmem_why);
        return EXIT_NO_GMEM;
    }
    if (!p->uffd_ok) {
        snprintf(reason, len, "%s", p->uffd_why);
        return EXIT_NO_UFFD;
    }
    if (!p->gmem_reg_ok) {
        if (p->gmem_reg_err &&
            strcmp(p->gmem_reg_step, "UFFDIO_REGISTER") != 0) {
            snprintf(reason, len, "userfaultfd registration on guest_memfd "
                     "not tried: %s failed: %s", p->gmem_reg_step,
                     errtext(p->gmem_reg_err));
        } else if (p->gmem_reg_err) {
            snprintf(reason, len, "kernel refuses userfaultfd registration "
                     "on guest_memfd: UFFDIO_REGISTER MISSING|MINOR: %s; "
                     "kernels without the \"userfaultfd: support for "
                     "guest_memfd\" series answer EINVAL",
                     errtext(p->gmem_reg_err));
        } else {
            snprintf(reason, len, "kernel refuses userfaultfd placement on "
                     "guest_memfd: UFFDIO_REGISTER MISSING|MINOR offers "
                     "ioctls 0x%" PRIx64 ", without UFFDIO_COPY and "
                     "UFFDIO_CONTINUE", p->gmem_reg_ioctls);
        }
        return EXIT_GMEM_UFFD_REFUSED;
    }
    if (!p->gmem_faults_ok) {
        snprintf(reason, len, "guest_memfd userfaultfd fault test failed: "
                 "%s", p->gmem_fault_fail);
        return EXIT_GMEM_FAULT_FAILED;
    }
    return EXIT_POSSIBLE;
}

static const char *const reason_code[] = {
    [EXIT_POSSIBLE] = "ok",
    [EXIT_USAGE] = "error",
    [EXIT_NO_KVM] = "no-kvm",
    [EXIT_NO_GMEM] = "no-guest-memfd",
    [EXIT_NO_UFFD] = "no-userfaultfd",
    [EXIT_GMEM_UFFD_REFUSED] = "guest-memfd-uffd-refused",
    [EXIT_GMEM_FAULT_FAILED] = "guest-memfd-fault-test-failed",
};

static void print_json(Probe *p, const char *kernel, int status,
                       const char *reason)
{
    int i;

    printf("{\"tool\": \"gmem-probe\", \"format\": 1,\n \"kernel\": ");
    json_str(kernel);
    printf(",\n \"checks\": [\n");
    for (i = 0; i < nchecks; i++) {
        Check *c = &checks[i];

        printf("  {\"name\": ");
        json_str(c->name);
        printf(", \"ok\": %s, \"skipped\": %s, \"required\": %s, "
               "\"errno\": %d, \"errno_name\": ",
               c->state == ST_OK ? "true" : "false",
               c->state == ST_SKIP ? "true" : "false",
               c->required ? "true" : "false", c->err);
        json_str(c->err ? errname(c->err) : "");
        printf(", \"value\": ");
        if (c->has_value) {
            printf("\"0x%" PRIx64 "\"", c->value);
        } else {
            printf("null");
        }
        printf(", \"detail\": ");
        json_str(c->detail);
        printf("}%s\n", i + 1 < nchecks ? "," : "");
    }
    printf(" ],\n \"uffd_features\": \"0x%" PRIx64 "\",\n", p->uffd_features);
    printf(" \"touch\": \"%s\",\n", p->touch_syscall ? "syscall" : "cpu");
    printf(" \"risky_copy_eexist\": %s,\n",
           p->risky_copy_eexist ? "true" : "false");
    printf(" \"postcopy_guest_memfd\": %s,\n",
           status == EXIT_POSSIBLE ? "true" : "false");
    printf(" \"exit_status\": %d,\n \"reason_code\": \"%s\",\n", status,
           reason_code[status]);
    printf(" \"reason\": ");
    json_str(reason);
    printf("\n}\n");
}

static void print_human(const char *kernel, int status, const char *reason)
{
    int i;

    printf("gmem-probe: guest_memfd postcopy (userfaultfd) readiness\n");
    printf("kernel: %s\n", kernel);
    printf("(checks marked [info] do not decide the verdict)\n\n");
    for (i = 0; i < nchecks; i++) {
        Check *c = &checks[i];
        const char *st = c->state == ST_OK ? "yes"
                       : c->state == ST_SKIP ? "skip" : "no";

        printf("%-4s %-36s %s%s\n", st, c->name, c->detail,
               c->required ? "" : " [info]");
    }
    printf("\npostcopy on guest_memfd: %s (exit %d)\n",
           status == EXIT_POSSIBLE ? "POSSIBLE" : "NOT POSSIBLE", status);
    if (reason[0]) {
        printf("reason: %s\n", reason);
    }
}

int main(int argc, char **argv)
{
    Probe p = { .vm_fd = -1 };
    bool json = false, reason_only = false;
    int touch = -1;     /* -1 auto, 0 cpu, 1 syscall */
    struct utsname u;
    char kernel[400], reason[512];
    int i, status;

    for (i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--json")) {
            json = true;
        } else if (!strcmp(argv[i], "--reason")) {
            reason_only = true;
        } else if (!strcmp(argv[i], "--touch=cpu")) {
            touch = 0;
        } else if (!strcmp(argv[i], "--touch=syscall")) {
            touch = 1;
        } else if (!strcmp(argv[i], "--risky-copy-eexist")) {
            p.risky_copy_eexist = true;
        } else if (!strcmp(argv[i], "-h") || !strcmp(argv[i], "--help")) {
            fputs(usage_text, stdout);
            return 0;
        } else {
            fprintf(stderr, "gmem-probe: unknown option '%s'\n\n%s",
                    argv[i], usage_text);
            return EXIT_USAGE;
        }
    }
    if (json && reason_only) {
        fprintf(stderr, "gmem-probe: --json and --reason exclude each "
                "other\n");
        return EXIT_USAGE;
    }
    p.touch_syscall = touch < 0 ? RUNNING_ON_VALGRIND != 0 : touch == 1;

    if (uname(&u) == 0) {
        snprintf(kernel, sizeof(kernel), "%s %s %s %s", u.sysname,
                 u.release, u.version, u.machine);
    } else {
        snprintf(kernel, sizeof(kernel), "unknown");
    }

    probe_kvm(&p);
    probe_gmem(&p);
    probe_uffd(&p);
    probe_register(&p, BACK_MEMFD);
    probe_register(&p, BACK_GMEM);
    probe_faults(&p, BACK_MEMFD);
    probe_faults(&p, BACK_GMEM);
    if (p.vm_fd >= 0) {
        close(p.vm_fd);
    }

    status = verdict(&p, reason, sizeof(reason));
    if (reason_only) {
        if (reason[0]) {
            printf("%s\n", reason);
        }
    } else if (json) {
        print_json(&p, kernel, status, reason);
    } else {
        print_human(kernel, status, reason);
    }
    return status;
}
