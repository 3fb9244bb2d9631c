/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * uffd-place-bench: what does it cost to place one 4 KiB page into a
 * userfaultfd-registered shared mapping, by each of the ways postcopy can
 * do it, on memfd (shmem) and, where the kernel allows registration, on a
 * KVM guest_memfd?
 *
 * Variants (the region is registered MISSING|MINOR, as postcopy on
 * guest_memfd registers it; a second, unregistered MAP_SHARED mapping of
 * the same fd is the "alias"):
 *   copy           UFFDIO_COPY from a buffer                (MISSING)
 *   minor-cont     UFFDIO_CONTINUE, data filled through the alias before
 *                  the access, untimed                      (MINOR)
 *   alias-cont     memcpy into the alias + UFFDIO_CONTINUE  (MISSING)
 *   zeropage       UFFDIO_ZEROPAGE                          (MISSING)
 *   falloc-cont    fallocate(KEEP_SIZE) the page + UFFDIO_CONTINUE
 *                                                           (MISSING)
 *   populate-cont  MADV_POPULATE_WRITE on the alias + UFFDIO_CONTINUE
 *                                                           (MISSING)
 *   prealloc-cont  memcpy into the alias + UFFDIO_CONTINUE, the alias
 *                  populated (MADV_POPULATE_WRITE) before, untimed: what
 *                  placement costs when the file is allocated up front
 *                                                           (MINOR)
 *   stale-cont     memcpy into the alias + UFFDIO_CONTINUE, over pages that
 *                  are in the page cache with other data but mapped in
 *                  neither mapping (set up untimed): what QEMU's placement
 *                  costs after a postcopy discard that keeps the page
 *                  cache                                    (MINOR)
 *   pwrite-cont    pwrite(2) the data into the fd + UFFDIO_CONTINUE, the
 *                  alias-cont without the alias' own page fault; memfd
 *                  only (guest_memfd has no write(2): ESPIPE)  (MISSING)
 * Modes:
 *   fault  end to end: the toucher (main thread) timestamps, loads a byte
 *          of the page, a handler thread reads the fault and resolves it,
 *          the toucher timestamps again.  One sample per page.
 *   ioctl  no faults: resolve one page per call ahead of any access.
 *   batch  no faults: resolve --batch pages per call over a range; the
 *          sample is the call's time divided by the pages it placed.
 * Floor: a plain 4 KiB memcpy into a resident page, timed the same way.
 *
 * Copyright (c) 2026 The qemu-gmem authors
 */

#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <poll.h>
#include <pthread.h>
#include <sched.h>
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

#include "../probe/hostcaps.h"

#define PAGE 4096UL
#define DEFAULT_PAGES 20000
#define DEFAULT_BATCH 64

typedef enum {
    V_COPY,
    V_MINOR_CONT,
    V_ALIAS_CONT,
    V_ZEROPAGE,
    V_FALLOC_CONT,
    V_POPULATE_CONT,
    V_PREALLOC_CONT,
    V_STALE_CONT,
    V_PWRITE_CONT,
    V__MAX,
} Variant;

static const struct {
    const char *name;
    const char *fault;      /* the fault the access raises */
    int ioctl_bit;          /* the resolving ioctl */
    bool data;              /* page ends up holding the source data */
} variants[] = {
    [V_COPY] = { "copy", "MISSING", _UFFDIO_COPY, true },
    [V_MINOR_CONT] = { "minor-cont", "MINOR", _UFFDIO_CONTINUE, true },
    [V_ALIAS_CONT] = { "alias-cont", "MISSING", _UFFDIO_CONTINUE, true },
    [V_ZEROPAGE] = { "zeropage", "MISSING", _UFFDIO_ZEROPAGE, false },
    [V_FALLOC_CONT] = { "falloc-cont", "MISSING", _UFFDIO_CONTINUE, false },
    [V_POPULATE_CONT] = { "populate-cont", "MISSING", _UFFDIO_CONTINUE,
                          false },
    [V_PREALLOC_CONT] = { "prealloc-cont", "MINOR", _UFFDIO_CONTINUE,
                          true },
    [V_STALE_CONT] = { "stale-cont", "MINOR", _UFFDIO_CONTINUE, true },
    [V_PWRITE_CONT] = { "pwrite-cont", "MISSING", _UFFDIO_CONTINUE, true },
};

typedef enum {
    M_FAULT,
    M_IOCTL,
    M_BATCH,
    M__MAX,
} Mode;

static const char *const mode_name[] = {
    [M_FAULT] = "fault",
    [M_IOCTL] = "ioctl",
    [M_BATCH] = "batch",
};

typedef enum {
    PIN_SAME,               /* toucher and handler share one CPU */
    PIN_SPLIT,              /* toucher and handler on two CPUs */
    PIN_NONE,               /* the scheduler decides */
} Pin;

static const char *const pin_name[] = {
    [PIN_SAME] = "same",
    [PIN_SPLIT] = "split",
    [PIN_NONE] = "none",
};

typedef struct {
    int vm_fd;
    UffdVia uffd_via;       /* how to get a userfaultfd here */
    size_t pages;
    size_t batch;
    bool json;
    bool json_first;
    Pin pin;
    int cpu_toucher;        /* -1: not pinned */
    int cpu_handler;
} Bench;

typedef struct {
    Backing b;
    int fd;
    int uffd;
    uint8_t *reg;           /* registered MISSING|MINOR */
    uint8_t *alias;         /* unregistered */
    size_t npages;
    uint64_t ioctls;
} Region;

static inline uint64_t now_ns(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec * 1000000000ULL + ts.tv_nsec;
}

/* ------------------------------------------------------------------ */
/* Setup */

/* Pick a way to get a userfaultfd; false with @why when there is none. */
static bool uffd_choose(Bench *bn, char *why, size_t len)
{
    int fd, err[UFFD_VIA__MAX] = { 0 };

    for (bn->uffd_via = 0; bn->uffd_via < UFFD_VIA__MAX; bn->uffd_via++) {
        fd = uffd_new(bn->uffd_via, &err[bn->uffd_via]);
        if (fd >= 0) {
            close(fd);
            return true;
        }
    }
    snprintf(why, len, "no userfaultfd: userfaultfd(2): %s; "
             "/dev/userfaultfd: %s", errtext(err[UFFD_VIA_SYSCALL]),
             errtext(err[UFFD_VIA_DEV]));
    return false;
}

static void region_close(Region *r)
{
    if (r->uffd >= 0) {
        close(r->uffd);
    }
    if (r->alias) {
        munmap(r->alias, r->npages * PAGE);
    }
    if (r->reg) {
        munmap(r->reg, r->npages * PAGE);
    }
    if (r->fd >= 0) {
        close(r->fd);
    }
    memset(r, 0, sizeof(*r));
    r->fd = r->uffd = -1;
}

/* A fresh region of @npages absent pages, registered MISSING|MINOR. */
static bool region_open(Bench *bn, Backing b, size_t npages, Region *r,
                        char *why, size_t len)
{
    struct uffdio_register reg = { 0 };
    size_t size = npages * PAGE;
    const char *step;
    int err = 0;

    memset(r, 0, sizeof(*r));
    r->fd = r->uffd = -1;
    r->b = b;
    r->npages = npages;

    step = b == BACK_MEMFD ? "memfd_create+ftruncate"
           : "KVM_CREATE_GUEST_MEMFD(MMAP|INIT_SHARED)";
    r->fd = backing_open(b, bn->vm_fd, size, &err);
    if (r->fd < 0) {
        goto fail;
    }
    step = "mmap MAP_SHARED";
    r->reg = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_SHARED, r->fd, 0);
    if (r->reg == MAP_FAILED) {
        r->reg = NULL;
        err = errno;
        goto fail;
    }
    r->alias = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_SHARED,
                    r->fd, 0);
    if (r->alias == MAP_FAILED) {
        r->alias = NULL;
        err = errno;
        goto fail;
    }
    step = "userfaultfd";
    r->uffd = uffd_new(bn->uffd_via, &err);
    if (r->uffd < 0) {
        goto fail;
    }
    step = "UFFDIO_REGISTER MISSING|MINOR";
    reg.range.start = (uintptr_t)r->reg;
    reg.range.len = size;
    reg.mode = UFFDIO_REGISTER_MODE_MISSING | UFFDIO_REGISTER_MODE_MINOR;
    if (ioctl(r->uffd, UFFDIO_REGISTER, &reg) < 0) {
        err = errno;
        goto fail;
    }
    r->ioctls = reg.ioctls;
    return true;

fail:
    snprintf(why, len, "%s on %s: %s", step, backing_name[b],
             errtext(err));
    region_close(r);
    return false;
}

/* ------------------------------------------------------------------ */
/* Placement */

/* Stamp page @idx's source buffer so the result can be verified. */
static inline void stamp(uint8_t *src, uint64_t idx)
{
    memcpy(src, &idx, sizeof(idx));
}

/*
 * Place pages [first, first + n) with variant @v; @src holds n pages of
 * data for the variants that copy.  Returns 0 or an errno.
 */
static int place(Region *r, Variant v, size_t first, size_t n,
                 uint8_t *src)
{
    uint64_t start = (uintptr_t)r->reg + first * PAGE;
    uint64_t len = n * PAGE;
    size_t k;

    switch (v) {
    case V_COPY: {
        struct uffdio_copy cp = {
            .dst = start, .src = (uintptr_t)src, .len = len,
        };

        for (k = 0; k < n; k++) {
            stamp(src + k * PAGE, first + k);
        }
        if (ioctl(r->uffd, UFFDIO_COPY, &cp) < 0) {
            return errno;
        }
        return cp.copy == (int64_t)len ? 0 : EIO;
    }
    case V_ZEROPAGE: {
        struct uffdio_zeropage zp = {
            .range = { .start = start, .len = len },
        };

        if (ioctl(r->uffd, UFFDIO_ZEROPAGE, &zp) < 0) {
            return errno;
        }
        return zp.zeropage == (int64_t)len ? 0 : EIO;
    }
    case V_ALIAS_CONT:
    case V_PREALLOC_CONT:
    case V_STALE_CONT:
        for (k = 0; k < n; k++) {
            stamp(src + k * PAGE, first + k);
            memcpy(r->alias + (first + k) * PAGE, src + k * PAGE, PAGE);
        }
        break;
    case V_FALLOC_CONT:
        /* guest_memfd allocates only with KEEP_SIZE (EOPNOTSUPP without) */
        if (fallocate(r->fd, FALLOC_FL_KEEP_SIZE, first * PAGE, len) < 0) {
            return errno;
        }
        break;
    case V_POPULATE_CONT:
        if (madvise(r->alias + first * PAGE, len, MADV_POPULATE_WRITE) < 0) {
            return errno;
        }
        break;
    case V_PWRITE_CONT:
        for (k = 0; k < n; k++) {
            stamp(src + k * PAGE, first + k);
        }
        if (pwrite(r->fd, src, len, first * PAGE) != (ssize_t)len) {
            return errno ? errno : EIO;
        }
        break;
    case V_MINOR_CONT:
    default:
        break;
    }
    {
        struct uffdio_continue cont = {
            .range = { .start = start, .len = len },
        };

        if (ioctl(r->uffd, UFFDIO_CONTINUE, &cont) < 0) {
            return errno;
        }
        return cont.mapped == (int64_t)len ? 0 : EIO;
    }
}

/*
 * minor-cont: put the data into the page cache through the alias.
 * prealloc-cont: only allocate the pages and map them in the alias.
 * stale-cont: fill the pages with other data, then unmap them from the
 * alias (MADV_DONTNEED on a shared mapping keeps the page cache).
 */
static int prefill(Region *r, Variant v, size_t npages, uint8_t *src)
{
    size_t i;

    if (v == V_PREALLOC_CONT) {
        return madvise(r->alias, npages * PAGE, MADV_POPULATE_WRITE) < 0
               ? errno : 0;
    }
    if (v == V_STALE_CONT) {
        memset(r->alias, 0x5a, npages * PAGE);
        return madvise(r->alias, npages * PAGE, MADV_DONTNEED) < 0
               ? errno : 0;
    }
    for (i = 0; i < npages; i++) {
        stamp(src, i);
        memcpy(r->alias + i * PAGE, src, PAGE);
    }
    return 0;
}

/*
 * Every page mapped in the registered mapping (pagemap present bit, so
 * nothing is touched that could fault) and holding what it should.
 */
static bool verify(Region *r, Variant v, size_t npages, char *why,
                   size_t len)
{
    int pm = open("/proc/self/pagemap", O_RDONLY | O_CLOEXEC);
    uint64_t *ents = calloc(npages, sizeof(uint64_t));
    off_t off = (uintptr_t)r->reg / PAGE * sizeof(uint64_t);
    bool ok = false;
    size_t i;

    if (pm < 0 || !ents) {
        snprintf(why, len, "pagemap: %s", errtext(pm < 0 ? errno : ENOMEM));
        goto out;
    }
    if (pread(pm, ents, npages * sizeof(uint64_t), off) !=
        (ssize_t)(npages * sizeof(uint64_t))) {
        snprintf(why, len, "pagemap read failed");
        goto out;
    }
    for (i = 0; i < npages; i++) {
        if (!(ents[i] >> 63)) {
            snprintf(why, len, "page %zu not mapped", i);
            goto out;
        }
    }
    for (i = 0; i < npages; i++) {
        uint64_t got, want = variants[v].data ? i : 0;

        memcpy(&got, r->reg + i * PAGE, sizeof(got));
        if (got != want) {
            snprintf(why, len, "page %zu holds %" PRIu64 ", want %" PRIu64,
                     i, got, want);
            goto out;
        }
    }
    ok = true;
out:
    if (pm >= 0) {
        close(pm);
    }
    free(ents);
    return ok;
}

/* ------------------------------------------------------------------ */
/* Fault mode: handler thread */

typedef struct {
    Region *r;
    Variant v;
    int cpu;                /* -1: not pinned */
    int stop_efd;
    uint8_t *src;
    int err;                /* first placement error */
    size_t faults;
    size_t wrong_kind;      /* MINOR where MISSING expected or vice versa */
} Handler;

static void *handler_fn(void *opaque)
{
    Handler *h = opaque;
    bool want_minor = !strcmp(variants[h->v].fault, "MINOR");
    struct pollfd pfd[2] = {
        { .fd = h->r->uffd, .events = POLLIN },
        { .fd = h->stop_efd, .events = POLLIN },
    };

    if (h->cpu >= 0) {
        cpu_set_t set;

        CPU_ZERO(&set);
        CPU_SET(h->cpu, &set);
        pthread_setaffinity_np(pthread_self(), sizeof(set), &set);
    }
    for (;;) {
        struct uffd_msg msg[16];
        ssize_t n;
        int i;

        if (poll(pfd, 2, -1) < 0) {
            if (errno == EINTR) {
                continue;
            }
            h->err = errno;
            break;
        }
        if (pfd[1].revents & POLLIN) {
            break;
        }
        n = read(h->r->uffd, msg, sizeof(msg));
        if (n < 0) {
            if (errno == EAGAIN || errno == EINTR) {
                continue;
            }
            h->err = errno;
            break;
        }
        for (i = 0; i < n / (ssize_t)sizeof(msg[0]); i++) {
            uint64_t addr = msg[i].arg.pagefault.address;
            size_t page;
            int e;

            if (msg[i].event != UFFD_EVENT_PAGEFAULT) {
                continue;
            }
            h->faults++;
            if (!!(msg[i].arg.pagefault.flags & UFFD_PAGEFAULT_FLAG_MINOR)
                != want_minor) {
                h->wrong_kind++;
            }
            page = (addr - (uintptr_t)h->r->reg) / PAGE;
            e = place(h->r, h->v, page, 1, h->src);
            if (e == EEXIST) {
                /* a repeated event for a page already placed: wake only */
                struct uffdio_range range = {
                    .start = (uintptr_t)h->r->reg + page * PAGE,
                    .len = PAGE,
                };

                ioctl(h->r->uffd, UFFDIO_WAKE, &range);
            } else if (e && !h->err) {
                /*
                 * Do not leave the toucher blocked forever: drop the
                 * registration, which wakes it and serves the rest of
                 * the run without userfaults.  The row shows the error.
                 */
                struct uffdio_range range = {
                    .start = (uintptr_t)h->r->reg,
                    .len = h->r->npages * PAGE,
                };

                h->err = e;
                ioctl(h->r->uffd, UFFDIO_UNREGISTER, &range);
            }
        }
    }
    return NULL;
}

/* ------------------------------------------------------------------ */
/* Rows: samples gathered over the rounds */

#define MAX_ROUNDS 64

typedef struct {
    const char *backing;
    const char *variant;
    const char *mode;
    const char *fault;
    double *s;              /* samples, ns per page */
    size_t n;
    size_t cap;
    double round_median[MAX_ROUNDS];
    int rounds;
    bool failed;
    char note[400];         /* "ok", the failure, or the skip reason */
} Row;

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;

    return x < y ? -1 : x > y;
}

/* Sorts @s; the median of n > 0 values. */
static double median_of(double *s, size_t n)
{
    qsort(s, n, sizeof(double), cmp_double);
    return n % 2 ? s[n / 2] : (s[n / 2 - 1] + s[n / 2]) / 2;
}

static void row_init(Row *row, const char *backing, const char *variant,
                     const char *mode, const char *fault, size_t cap)
{
    memset(row, 0, sizeof(*row));
    row->backing = backing;
    row->variant = variant;
    row->mode = mode;
    row->fault = fault;
    row->cap = cap;
    row->s = calloc(cap ? cap : 1, sizeof(double));
    if (!row->s) {
        fprintf(stderr, "uffd-place-bench: out of memory\n");
        exit(1);
    }
    snprintf(row->note, sizeof(row->note), "ok");
}

/* Account the @n samples just appended at the end of @row as a round. */
static void row_round(Row *row, size_t n)
{
    double *tmp;

    if (!n || row->rounds == MAX_ROUNDS) {
        return;
    }
    tmp = malloc(n * sizeof(double));
    if (!tmp) {
        fprintf(stderr, "uffd-place-bench: out of memory\n");
        exit(1);
    }
    memcpy(tmp, row->s + row->n - n, n * sizeof(double));
    row->round_median[row->rounds++] = median_of(tmp, n);
    free(tmp);
}

static void row_fail(Row *row, const char *fmt, const char *what)
{
    row->failed = true;
    snprintf(row->note, sizeof(row->note), fmt, what);
}

static double floor_median;

static void print_row(Bench *bn, Row *row)
{
    double med = 0, p99 = 0, lo = 0, hi = 0;
    bool have = row->n > 0 && !row->failed;
    int i;

    if (have) {
        med = median_of(row->s, row->n);
        p99 = row->s[(size_t)((row->n - 1) * 0.99 + 0.5)];
        lo = hi = row->round_median[0];
        for (i = 1; i < row->rounds; i++) {
            lo = row->round_median[i] < lo ? row->round_median[i] : lo;
            hi = row->round_median[i] > hi ? row->round_median[i] : hi;
        }
        if (!floor_median && !strcmp(row->variant, "memcpy-4k")) {
            floor_median = med;
        }
    }
    if (bn->json) {
        printf("%s\n  {\"backing\": \"%s\", \"variant\": \"%s\", "
               "\"mode\": \"%s\", \"fault\": \"%s\", ",
               bn->json_first ? "" : ",", row->backing, row->variant,
               row->mode, row->fault);
        if (have) {
            printf("\"samples\": %zu, \"median_ns\": %.1f, "
                   "\"p99_ns\": %.1f, \"ratio\": %.2f, "
                   "\"round_median_min_ns\": %.1f, "
                   "\"round_median_max_ns\": %.1f, ", row->n, med, p99,
                   floor_median > 0 ? med / floor_median : 0.0, lo, hi);
        } else {
            printf("\"samples\": 0, \"median_ns\": null, \"p99_ns\": null, "
                   "\"ratio\": null, \"round_median_min_ns\": null, "
                   "\"round_median_max_ns\": null, ");
        }
        printf("\"ok\": %s, \"note\": ", have ? "true" : "false");
        json_str(row->note);
        printf("}");
        bn->json_first = false;
        return;
    }
    if (have) {
        printf("%-6s %-14s %-6s %-8s %9.0f %9.0f %7.2f %6.2f  %s\n",
               row->backing, row->variant, row->mode, row->fault, med, p99,
               floor_median > 0 ? med / floor_median : 0.0,
               lo > 0 ? hi / lo : 0.0, row->note);
    } else {
        printf("%-6s %-14s %-6s %-8s %9s %9s %7s %6s  %s\n", row->backing,
               row->variant, row->mode, row->fault, "-", "-", "-", "-",
               row->note);
    }
}

/* ------------------------------------------------------------------ */
/* Runs */

enum {
    F_CLOCK,
    F_MEMCPY,
    F_MEMCPY_BATCH,
    F__MAX,
};

/* The floor rows, one round of @n pages. */
static void run_floor(Bench *bn, Row *rows, size_t n)
{
    size_t i, nb = n / bn->batch;
    uint8_t *dst = mmap(NULL, n * PAGE, PROT_READ | PROT_WRITE,
                        MAP_PRIVATE | MAP_ANONYMOUS | MAP_POPULATE, -1, 0);
    uint8_t *src = aligned_alloc(PAGE, PAGE);
    Row *row;

    if (dst == MAP_FAILED || !src) {
        fprintf(stderr, "uffd-place-bench: out of memory\n");
        exit(1);
    }
    memset(src, 0x5a, PAGE);
    memset(dst, 1, n * PAGE);

    row = &rows[F_CLOCK];
    for (i = 0; i < n; i++) {
        uint64_t t0 = now_ns();

        row->s[row->n++] = now_ns() - t0;
    }
    row_round(row, n);

    row = &rows[F_MEMCPY];
    for (i = 0; i < n; i++) {
        uint64_t t0 = now_ns();

        memcpy(dst + i * PAGE, src, PAGE);
        __asm__ volatile("" : : "r"(dst) : "memory");
        row->s[row->n++] = now_ns() - t0;
    }
    row_round(row, n);

    row = &rows[F_MEMCPY_BATCH];
    for (i = 0; i < nb; i++) {
        uint64_t t0 = now_ns();
        size_t k;

        for (k = 0; k < bn->batch; k++) {
            memcpy(dst + (i * bn->batch + k) * PAGE, src, PAGE);
        }
        __asm__ volatile("" : : "r"(dst) : "memory");
        row->s[row->n++] = (double)(now_ns() - t0) / bn->batch;
    }
    row_round(row, nb);

    munmap(dst, n * PAGE);
    free(src);
}

/* One round of variant @v in mode @m on @b over @pages pages. */
static void run_one(Bench *bn, Backing b, Variant v, Mode m, size_t pages,
                    Row *row)
{
    size_t batch = m == M_BATCH ? bn->batch : 1;
    size_t nsamples = pages / batch, npages = nsamples * batch, i;
    size_t first = row->n;
    char why[320] = "";
    uint8_t *src;
    Region r;
    int err = 0;

    if (row->failed || !nsamples) {
        return;
    }
    src = aligned_alloc(PAGE, batch * PAGE);
    if (!src) {
        fprintf(stderr, "uffd-place-bench: out of memory\n");
        exit(1);
    }
    memset(src, 0xa5, batch * PAGE);
    if (!region_open(bn, b, npages, &r, why, sizeof(why))) {
        row_fail(row, "FAILED: %s", why);
        goto out;
    }
    if (!(r.ioctls & (1ULL << variants[v].ioctl_bit))) {
        snprintf(why, sizeof(why), "the registration does not offer this "
                 "ioctl (ioctls 0x%" PRIx64 ")", r.ioctls);
        row_fail(row, "skipped: %s", why);
        region_close(&r);
        goto out;
    }
    if (v == V_MINOR_CONT || v == V_PREALLOC_CONT || v == V_STALE_CONT) {
        err = prefill(&r, v, npages, src);
        if (err) {
            row_fail(row, "FAILED: prefill: %s", errtext(err));
            region_close(&r);
            goto out;
        }
    }

    if (m == M_FAULT) {
        Handler h = {
            .r = &r, .v = v, .src = src, .cpu = bn->cpu_handler,
        };
        uint64_t one = 1;
        pthread_t thr;

        h.stop_efd = eventfd(0, EFD_CLOEXEC);
        if (h.stop_efd < 0 ||
            pthread_create(&thr, NULL, handler_fn, &h) != 0) {
            fprintf(stderr, "uffd-place-bench: handler thread: %s\n",
                    errtext(errno));
            exit(1);
        }
        for (i = 0; i < npages; i++) {
            uint64_t t0 = now_ns();

            /* volatile: the load must happen, it is what faults */
            (void)*(volatile uint8_t *)(r.reg + i * PAGE);
            row->s[row->n++] = now_ns() - t0;
        }
        if (write(h.stop_efd, &one, sizeof(one)) != sizeof(one)) {
            fprintf(stderr, "uffd-place-bench: eventfd write: %s\n",
                    errtext(errno));
            exit(1);
        }
        pthread_join(thr, NULL);
        close(h.stop_efd);
        err = h.err;
        if (!err && h.faults != npages) {
            snprintf(why, sizeof(why), "%zu faults for %zu pages",
                     h.faults, npages);
        } else if (!err && h.wrong_kind) {
            snprintf(why, sizeof(why), "%zu faults of the wrong kind",
                     h.wrong_kind);
        }
    } else {
        for (i = 0; i < nsamples && !err; i++) {
            uint64_t t0 = now_ns();

            err = place(&r, v, i * batch, batch, src);
            row->s[row->n++] = (double)(now_ns() - t0) / batch;
        }
    }

    if (err) {
        row_fail(row, "FAILED: %s", errtext(err));
    } else if (why[0]) {
        row_fail(row, "FAILED: %s", why);
    } else if (!verify(&r, v, npages, why, sizeof(why))) {
        row_fail(row, "FAILED verify: %s", why);
    } else {
        row_round(row, row->n - first);
    }
    region_close(&r);
out:
    free(src);
}

/*
 * Can @b be benchmarked?  false with @why otherwise.  *@pwrite_err: 0 if
 * the fd takes pwrite(2), else its errno.
 */
static bool backing_usable(Bench *bn, Backing b, char *why, size_t len,
                           int *pwrite_err)
{
    uint8_t page[64] = { 0 };
    Region r;

    if (b == BACK_GMEM && bn->vm_fd < 0) {
        return false;       /* @why filled by main */
    }
    if (!region_open(bn, b, 1, &r, why, len)) {
        return false;
    }
    *pwrite_err = pwrite(r.fd, page, sizeof(page), 0) < 0 ? errno : 0;
    region_close(&r);
    return true;
}

/*
 * Pin the toucher (this thread) and choose the handler's CPU.  On a
 * virtual machine whose idle vCPUs halt (haltpoll with
 * guest_halt_poll_ns=0, as here), waking a thread on the other, idle CPU
 * costs tens of microseconds of host scheduling, and that would swamp
 * what is being measured; --pin split shows it.
 */
static void pin_threads(Bench *bn)
{
    cpu_set_t set;
    int cpus[2], n = 0, c;

    bn->cpu_toucher = bn->cpu_handler = -1;
    if (bn->pin == PIN_NONE ||
        sched_getaffinity(0, sizeof(set), &set) < 0) {
        return;
    }
    for (c = 0; c < CPU_SETSIZE && n < 2; c++) {
        if (CPU_ISSET(c, &set)) {
            cpus[n++] = c;
        }
    }
    if (!n) {
        return;
    }
    if (bn->pin == PIN_SPLIT && n < 2) {
        fprintf(stderr, "uffd-place-bench: --pin split needs two CPUs, "
                "using one\n");
        bn->pin = PIN_SAME;
    }
    bn->cpu_toucher = cpus[0];
    bn->cpu_handler = bn->pin == PIN_SPLIT ? cpus[1] : cpus[0];
    CPU_ZERO(&set);
    CPU_SET(bn->cpu_toucher, &set);
    if (sched_setaffinity(0, sizeof(set), &set) < 0) {
        bn->cpu_toucher = bn->cpu_handler = -1;
        bn->pin = PIN_NONE;
    }
}

/* A whole decimal or 0x number, or false. */
static bool parse_count(const char *arg, size_t *out)
{
    unsigned long long v;
    char *end;

    if (!arg[0] || arg[0] == '-') {
        return false;
    }
    errno = 0;
    v = strtoull(arg, &end, 0);
    if (errno || *end || v > SIZE_MAX) {
        return false;
    }
    *out = v;
    return true;
}

static const char usage_text[] =
"Usage: uffd-place-bench [--pages N] [--batch N] [--rounds N]\n"
"                        [--pin same|split|none] [--json]\n"
"\n"
"Per-4KiB-page cost of placing pages into a userfaultfd-registered\n"
"(MISSING|MINOR) shared mapping of a memfd and, where the kernel allows\n"
"it, a guest_memfd: UFFDIO_COPY, alias memcpy + UFFDIO_CONTINUE,\n"
"UFFDIO_ZEROPAGE, fallocate/MADV_POPULATE_WRITE + UFFDIO_CONTINUE, each\n"
"end to end through a real fault (mode 'fault'), per page without a\n"
"fault ('ioctl') and over ranges ('batch').\n"
"\n"
"  --pages N   pages per variant and mode, over all rounds (default 20000)\n"
"  --batch N   pages per call in batch mode (default 64)\n"
"  --rounds N  interleave all rows over N rounds, so load that comes and\n"
"              goes hits every row alike (default 5)\n"
"  --pin P     fault mode: toucher and handler threads on the same CPU\n"
"              (same, default), on two CPUs (split) or unpinned (none);\n"
"              split adds the cost of waking a thread on another CPU\n"
"  --json      one JSON object instead of the table\n"
"\n"
"Columns: median and p99 of the per-page samples over all rounds; ratio =\n"
"median / median of a plain 4 KiB memcpy (row memcpy-4k/page); spread =\n"
"largest / smallest per-round median (1.00 = stable).  Exits 0 once it\n"
"has run, failed rows included (they say FAILED); 1 on bad arguments.\n";

int main(int argc, char **argv)
{
    Bench bn = {
        .vm_fd = -1, .pages = DEFAULT_PAGES, .batch = DEFAULT_BATCH,
        .json_first = true,
    };
    char why[BACK__MAX][320] = { "", "" };
    bool usable[BACK__MAX] = { false, false };
    int pwrite_err[BACK__MAX] = { 0, 0 };
    Row floor_rows[F__MAX], rows[BACK__MAX][V__MAX][M__MAX];
    Row skip_rows[BACK__MAX];
    size_t rounds = 5, per_round;
    struct utsname u;
    int i, b, v, m, kvm_fd;
    size_t rd;

    for (i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--pages") && i + 1 < argc &&
            parse_count(argv[i + 1], &bn.pages)) {
            i++;
        } else if (!strcmp(argv[i], "--batch") && i + 1 < argc &&
                   parse_count(argv[i + 1], &bn.batch)) {
            i++;
        } else if (!strcmp(argv[i], "--rounds") && i + 1 < argc &&
                   parse_count(argv[i + 1], &rounds)) {
            i++;
        } else if (!strcmp(argv[i], "--pin") && i + 1 < argc) {
            for (bn.pin = 0; bn.pin <= PIN_NONE; bn.pin++) {
                if (!strcmp(argv[i + 1], pin_name[bn.pin])) {
                    break;
                }
            }
            if (bn.pin > PIN_NONE) {
                fprintf(stderr, "uffd-place-bench: --pin same|split|none\n");
                return 1;
            }
            i++;
        } else if (!strcmp(argv[i], "--json")) {
            bn.json = true;
        } else if (!strcmp(argv[i], "-h") || !strcmp(argv[i], "--help")) {
            fputs(usage_text, stdout);
            return 0;
        } else {
            fprintf(stderr, "uffd-place-bench: bad argument '%s'\n\n%s",
                    argv[i], usage_text);
            return 1;
        }
    }
    if (rounds < 1 || rounds > MAX_ROUNDS || bn.batch < 1 ||
        bn.batch > 4096 || bn.pages / rounds < bn.batch ||
        bn.pages / rounds < 16) {
        fprintf(stderr, "uffd-place-bench: need 1 <= --rounds <= %d, "
                "1 <= --batch <= 4096 and --pages / --rounds >= "
                "max(16, --batch)\n", MAX_ROUNDS);
        return 1;
    }
    per_round = bn.pages / rounds;
    pin_threads(&bn);

    kvm_fd = open("/dev/kvm", O_RDWR | O_CLOEXEC);
    if (kvm_fd < 0) {
        snprintf(why[BACK_GMEM], sizeof(why[0]), "/dev/kvm: %s",
                 errtext(errno));
    } else {
        bn.vm_fd = ioctl(kvm_fd, KVM_CREATE_VM, 0);
        if (bn.vm_fd < 0) {
            snprintf(why[BACK_GMEM], sizeof(why[0]), "KVM_CREATE_VM: %s",
                     errtext(errno));
        }
        close(kvm_fd);
    }

    if (!uffd_choose(&bn, why[BACK_MEMFD], sizeof(why[0]))) {
        snprintf(why[BACK_GMEM], sizeof(why[0]), "%s", why[BACK_MEMFD]);
    } else {
        for (b = 0; b < BACK__MAX; b++) {
            usable[b] = backing_usable(&bn, b, why[b], sizeof(why[0]),
                                       &pwrite_err[b]);
        }
    }

    row_init(&floor_rows[F_CLOCK], "-", "clock", "page", "-",
             per_round * rounds);
    snprintf(floor_rows[F_CLOCK].note, sizeof(floor_rows[0].note),
             "two clock_gettime calls, nothing between");
    row_init(&floor_rows[F_MEMCPY], "-", "memcpy-4k", "page", "-",
             per_round * rounds);
    snprintf(floor_rows[F_MEMCPY].note, sizeof(floor_rows[0].note),
             "floor");
    row_init(&floor_rows[F_MEMCPY_BATCH], "-", "memcpy-4k", "batch", "-",
             per_round / bn.batch * rounds);
    snprintf(floor_rows[F_MEMCPY_BATCH].note, sizeof(floor_rows[0].note),
             "floor, batched");
    for (b = 0; b < BACK__MAX; b++) {
        row_init(&skip_rows[b], backing_name[b], "*", "*", "-", 0);
        snprintf(skip_rows[b].note, sizeof(skip_rows[b].note),
                 "skipped: %s", why[b]);
        for (v = 0; v < V__MAX; v++) {
            for (m = 0; m < M__MAX; m++) {
                size_t per = m == M_BATCH ? per_round / bn.batch
                                          : per_round;

                row_init(&rows[b][v][m], backing_name[b], variants[v].name,
                         mode_name[m], variants[v].fault,
                         usable[b] ? per * rounds : 0);
                if (v == V_PWRITE_CONT && pwrite_err[b]) {
                    row_fail(&rows[b][v][m], "skipped: pwrite(2) on the "
                             "fd: %s", errtext(pwrite_err[b]));
                }
            }
        }
    }

    for (rd = 0; rd < rounds; rd++) {
        run_floor(&bn, floor_rows, per_round);
        for (b = 0; b < BACK__MAX; b++) {
            if (!usable[b]) {
                continue;
            }
            for (v = 0; v < V__MAX; v++) {
                for (m = 0; m < M__MAX; m++) {
                    run_one(&bn, b, v, m, per_round, &rows[b][v][m]);
                }
            }
        }
    }

    if (uname(&u) < 0) {
        memset(&u, 0, sizeof(u));
    }
    if (bn.json) {
        printf("{\"tool\": \"uffd-place-bench\", \"kernel\": ");
        json_str(u.release);
        printf(", \"pages\": %zu, \"batch\": %zu, \"rounds\": %zu, "
               "\"pin\": \"%s\", \"rows\": [", per_round * rounds,
               bn.batch, rounds, pin_name[bn.pin]);
    } else {
        printf("uffd-place-bench: %zu pages per row in %zu rounds, batch "
               "%zu, pin %s, kernel %s %s\n", per_round * rounds, rounds,
               bn.batch, pin_name[bn.pin], u.release, u.machine);
        printf("%-6s %-14s %-6s %-8s %9s %9s %7s %6s  %s\n", "back",
               "variant", "mode", "fault", "median_ns", "p99_ns", "ratio",
               "spread", "check");
    }
    for (i = 0; i < F__MAX; i++) {
        /* memcpy-4k/page first: it sets the ratio's reference */
        print_row(&bn, &floor_rows[(i + F_MEMCPY) % F__MAX]);
        free(floor_rows[(i + F_MEMCPY) % F__MAX].s);
    }
    for (b = 0; b < BACK__MAX; b++) {
        if (!usable[b]) {
            print_row(&bn, &skip_rows[b]);
        }
        free(skip_rows[b].s);
        for (v = 0; v < V__MAX; v++) {
            for (m = 0; m < M__MAX; m++) {
                if (usable[b]) {
                    print_row(&bn, &rows[b][v][m]);
                }
                free(rows[b][v][m].s);
            }
        }
    }
    if (bn.json) {
        printf("\n]}\n");
    }
    if (bn.vm_fd >= 0) {
        close(bn.vm_fd);
    }
    return 0;
}
