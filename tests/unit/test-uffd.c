/*
 * Tests for the userfaultfd helpers, on memfd
 *
 * Copyright (c) 2026 qemu-gmem developers
 *
 * SPDX-License-Identifier: GPL-2.0-or-later
 *
 * Postcopy's minor placement (migration/postcopy-ram.c) writes a page into
 * the page cache through a second, unregistered mapping and then maps it
 * with uffd_continue(), for missing and minor faults alike; the fault
 * thread resolves a minor fault on a received page with uffd_continue(),
 * and treats -EEXIST as "mapped meanwhile" followed by uffd_wakeup().
 * The placer maps a run of pages with one UFFDIO_CONTINUE and relies on
 * .mapped when the kernel stops inside the run; and it places pages not
 * in the page cache with UFFDIO_COPY or UFFDIO_ZEROPAGE, and falls back
 * to the alias when they fail with EEXIST because the page is in the
 * page cache after all.
 * These tests pin that contract down on shared memory, where a thread
 * really waits in a userfault, so that a kernel (or a helper) that broke
 * it fails here rather than in a migration.
 */

#include "qemu/osdep.h"
#include "qemu/atomic.h"
#include "qemu/bitops.h"
#include "qemu/memfd.h"
#include "qemu/thread.h"
#include "qemu/userfaultfd.h"
#include "qapi/error.h"
#include <poll.h>
#include <sys/ioctl.h>
#include <sys/mman.h>

/* Pages of the memfd; the run tests stop the kernel inside them */
#define NPAGES 4

typedef struct {
    int ufd;
    int fd;
    size_t page;
    size_t size;        /* NPAGES pages */
    uint8_t *ram;       /* registered for missing and minor faults */
    uint8_t *alias;     /* the same memory, not registered */
} Fixture;

typedef struct {
    uint8_t *addr;
    uint8_t value;
    bool done;          /* the load returned */
} Reader;

/* The reasons a host cannot run these tests, or NULL */
static char *fixture_init(Fixture *f)
{
    Error *err = NULL;
    uint64_t ioctls = 0;

    f->page = qemu_real_host_page_size();
    f->size = NPAGES * f->page;
    f->ufd = uffd_create_fd(0, true);
    if (f->ufd < 0) {
        return g_strdup_printf("no userfaultfd for this process: %s",
                               strerror(errno));
    }
    f->fd = qemu_memfd_create("test-uffd", f->size, false, 0, 0, &err);
    if (f->fd < 0) {
        char *reason = g_strdup(error_get_pretty(err));

        error_free(err);
        uffd_close_fd(f->ufd);
        return reason;
    }
    f->ram = mmap(NULL, f->size, PROT_READ | PROT_WRITE, MAP_SHARED, f->fd, 0);
    f->alias = mmap(NULL, f->size, PROT_READ | PROT_WRITE, MAP_SHARED, f->fd,
                    0);
    g_assert(f->ram != MAP_FAILED && f->alias != MAP_FAILED);
    if (uffd_register_memory(f->ufd, f->ram, f->size,
                             UFFDIO_REGISTER_MODE_MISSING |
                             UFFDIO_REGISTER_MODE_MINOR, &ioctls)) {
        char *reason = g_strdup_printf("no minor userfaults on shmem: %s",
                                       strerror(errno));

        munmap(f->ram, f->size);
        munmap(f->alias, f->size);
        close(f->fd);
        uffd_close_fd(f->ufd);
        return reason;
    }
    g_assert(ioctls & BIT_ULL(_UFFDIO_CONTINUE));
    g_assert(ioctls & BIT_ULL(_UFFDIO_WAKE));
    return NULL;
}

static bool fixture_setup(Fixture *f)
{
    g_autofree char *reason = fixture_init(f);

    if (reason) {
        g_test_skip(reason);
        return false;
    }
    return true;
}

static void fixture_teardown(Fixture *f)
{
    munmap(f->ram, f->size);
    munmap(f->alias, f->size);
    close(f->fd);
    uffd_close_fd(f->ufd);
}

/*
 * UFFDIO_CONTINUE on pages [@first, @first + @n), without the helper,
 * which hides how far the kernel got: returns 0 or -errno, and what the
 * kernel put in .mapped.
 */
static int continue_pages(Fixture *f, size_t first, size_t n, int64_t *mapped)
{
    struct uffdio_continue cont = {
        .range = { .start = (uintptr_t)f->ram + first * f->page,
                   .len = n * f->page },
    };
    int ret = ioctl(f->ufd, UFFDIO_CONTINUE, &cont) ? -errno : 0;

    *mapped = cont.mapped;
    return ret;
}

/* Whether page @i of RAM is mapped, asked without touching it */
static bool page_mapped(Fixture *f, size_t i)
{
    int64_t mapped;
    int ret = continue_pages(f, i, 1, &mapped);

    /* A page that was not mapped is now: only ask about cached pages */
    g_assert(ret == 0 || ret == -EEXIST);
    return ret == -EEXIST;
}

static void *reader_thread(void *opaque)
{
    Reader *r = opaque;

    /* One load, which faults: the compiler may not drop or move it */
    r->value = qatomic_read(r->addr);
    qatomic_set(&r->done, true);
    return NULL;
}

/* Whether the reader's load returned within @ms milliseconds */
static bool reader_done_within(Reader *r, unsigned ms)
{
    while (!qatomic_read(&r->done) && ms--) {
        g_usleep(1000);
    }
    return qatomic_read(&r->done);
}

/* Start a thread reading RAM and wait for its fault; returns its flags */
static uint64_t start_faulting_reader(Fixture *f, QemuThread *thread,
                                      Reader *r)
{
    struct pollfd pfd = { .fd = f->ufd, .events = POLLIN };
    struct uffd_msg msg;

    r->addr = f->ram;
    r->done = false;
    qemu_thread_create(thread, "reader", reader_thread, r,
                       QEMU_THREAD_JOINABLE);
    g_assert_cmpint(poll(&pfd, 1, 10 * 1000), ==, 1);
    g_assert_cmpint(uffd_read_events(f->ufd, &msg, 1), ==, 1);
    g_assert_cmpint(msg.event, ==, UFFD_EVENT_PAGEFAULT);
    g_assert_cmphex(msg.arg.pagefault.address & ~(f->page - 1), ==,
                    (uintptr_t)f->ram);
    return msg.arg.pagefault.flags;
}

/* A page in the page cache, not mapped: minor fault, mapped by CONTINUE */
static void test_continue_minor(void)
{
    Fixture f;
    QemuThread thread;
    Reader r;

    if (!fixture_setup(&f)) {
        return;
    }
    memset(f.alias, 0xa5, f.page);
    g_assert(start_faulting_reader(&f, &thread, &r) &
             UFFD_PAGEFAULT_FLAG_MINOR);
    g_assert_cmpint(uffd_continue(f.ufd, f.ram, f.page, false), ==, 0);
    qemu_thread_join(&thread);
    g_assert_cmpint(r.value, ==, 0xa5);
    /* A second CONTINUE finds it mapped: the race postcopy tolerates */
    g_assert_cmpint(uffd_continue(f.ufd, f.ram, f.page, false), ==, -EEXIST);
    fixture_teardown(&f);
}

/*
 * A hole: missing fault.  Filling the page through the alias and mapping
 * it with CONTINUE releases the waiting thread, with the data: the one
 * placement path serves missing faults too.
 */
static void test_continue_missing(void)
{
    Fixture f;
    QemuThread thread;
    Reader r;

    if (!fixture_setup(&f)) {
        return;
    }
    g_assert(!(start_faulting_reader(&f, &thread, &r) &
               UFFD_PAGEFAULT_FLAG_MINOR));
    memset(f.alias, 0x5a, f.page);
    g_assert_cmpint(uffd_continue(f.ufd, f.ram, f.page, false), ==, 0);
    qemu_thread_join(&thread);
    g_assert_cmpint(r.value, ==, 0x5a);
    fixture_teardown(&f);
}

/* CONTINUE cannot map what is not in the page cache */
static void test_continue_hole(void)
{
    Fixture f;

    if (!fixture_setup(&f)) {
        return;
    }
    g_assert_cmpint(uffd_continue(f.ufd, f.ram, f.page, false), ==, -EFAULT);
    fixture_teardown(&f);
}

/*
 * Whoever maps a page second gets -EEXIST and must wake, in case the one
 * that mapped it did not: neither a DONTWAKE CONTINUE nor the -EEXIST
 * after it releases the reader, and after uffd_wakeup() nobody waits.
 */
static void test_continue_eexist_wake(void)
{
    Fixture f;
    QemuThread thread;
    Reader r;

    if (!fixture_setup(&f)) {
        return;
    }
    start_faulting_reader(&f, &thread, &r);
    memset(f.alias, 0x3c, f.page);
    g_assert_cmpint(uffd_continue(f.ufd, f.ram, f.page, true), ==, 0);
    g_assert_false(reader_done_within(&r, 200));
    g_assert_cmpint(uffd_continue(f.ufd, f.ram, f.page, false), ==, -EEXIST);
    g_assert_false(reader_done_within(&r, 100));
    g_assert_cmpint(uffd_wakeup(f.ufd, f.ram, f.page), ==, 0);
    g_assert_true(reader_done_within(&r, 10 * 1000));
    qemu_thread_join(&thread);
    g_assert_cmpint(r.value, ==, 0x3c);
    fixture_teardown(&f);
}

/*
 * A run whose page @k is not in the page cache: the kernel maps the @k
 * pages before it, says so in .mapped and fails with -EAGAIN; the next
 * call, from page @k, fails with -EFAULT and maps nothing.  The pages
 * after @k are left unmapped.
 */
static void test_continue_run_hole(void)
{
    const size_t k = 2;
    Fixture f;
    int64_t mapped;
    size_t i;

    if (!fixture_setup(&f)) {
        return;
    }
    for (i = 0; i < NPAGES; i++) {
        if (i != k) {
            memset(f.alias + i * f.page, 0x10 + i, f.page);
        }
    }
    g_assert_cmpint(continue_pages(&f, 0, NPAGES, &mapped), ==, -EAGAIN);
    g_assert_cmpint(mapped, ==, k * f.page);
    g_assert_cmpint(continue_pages(&f, k, NPAGES - k, &mapped), ==, -EFAULT);
    g_assert_cmpint(mapped, ==, -EFAULT);
    for (i = 0; i < k; i++) {
        g_assert_true(page_mapped(&f, i));
        g_assert_cmpint(f.ram[i * f.page], ==, 0x10 + i);
    }
    for (i = k + 1; i < NPAGES; i++) {
        g_assert_false(page_mapped(&f, i));
    }
    fixture_teardown(&f);
}

/*
 * A run whose page @k is mapped already: the kernel maps the @k pages
 * before it, says so in .mapped and fails with -EAGAIN; the next call,
 * from page @k, fails with -EEXIST and maps nothing.
 */
static void test_continue_run_mapped(void)
{
    const size_t k = 1;
    Fixture f;
    int64_t mapped;
    size_t i;

    if (!fixture_setup(&f)) {
        return;
    }
    memset(f.alias, 0x42, f.size);
    g_assert_cmpint(continue_pages(&f, k, 1, &mapped), ==, 0);
    g_assert_cmpint(mapped, ==, f.page);
    g_assert_cmpint(continue_pages(&f, 0, NPAGES, &mapped), ==, -EAGAIN);
    g_assert_cmpint(mapped, ==, k * f.page);
    g_assert_cmpint(continue_pages(&f, k, NPAGES - k, &mapped), ==, -EEXIST);
    g_assert_cmpint(mapped, ==, -EEXIST);
    for (i = 0; i < NPAGES; i++) {
        g_assert_cmpint(page_mapped(&f, i), ==, i <= k);
    }
    fixture_teardown(&f);
}

/*
 * UFFDIO_COPY and UFFDIO_ZEROPAGE onto a page that is in the page cache
 * but not mapped fail with -EEXIST, and change neither its contents nor
 * its mapping: the placer then writes it through the alias and maps it
 * with CONTINUE.  On a hole, the same UFFDIO_COPY fills the page.
 */
static void test_copy_cached(void)
{
    g_autofree uint8_t *src = NULL;
    struct uffdio_copy copy;
    struct uffdio_zeropage zero;
    Fixture f;
    size_t i;

    if (!fixture_setup(&f)) {
        return;
    }
    src = g_malloc(f.page);
    memset(src, 0xee, f.page);
    memset(f.alias, 0x77, f.page);

    copy = (struct uffdio_copy) {
        .dst = (uintptr_t)f.ram, .src = (uintptr_t)src, .len = f.page,
    };
    g_assert_cmpint(ioctl(f.ufd, UFFDIO_COPY, &copy), ==, -1);
    g_assert_cmpint(errno, ==, EEXIST);
    g_assert_cmpint(copy.copy, ==, -EEXIST);
    zero = (struct uffdio_zeropage) {
        .range = { .start = (uintptr_t)f.ram, .len = f.page },
    };
    g_assert_cmpint(ioctl(f.ufd, UFFDIO_ZEROPAGE, &zero), ==, -1);
    g_assert_cmpint(errno, ==, EEXIST);
    g_assert_cmpint(zero.zeropage, ==, -EEXIST);
    for (i = 0; i < f.page; i++) {
        g_assert_cmpint(f.alias[i], ==, 0x77);
    }
    g_assert_false(page_mapped(&f, 0));
    g_assert_cmpint(f.ram[f.page - 1], ==, 0x77);

    /* Page 1 is a hole: the copy fills it, as seen through the alias */
    copy = (struct uffdio_copy) {
        .dst = (uintptr_t)f.ram + f.page, .src = (uintptr_t)src,
        .len = f.page,
    };
    g_assert_cmpint(ioctl(f.ufd, UFFDIO_COPY, &copy), ==, 0);
    g_assert_cmpint(copy.copy, ==, f.page);
    g_assert_cmpint(f.alias[f.page], ==, 0xee);
    fixture_teardown(&f);
}

int main(int argc, char **argv)
{
    g_test_init(&argc, &argv, NULL);
    g_test_add_func("/uffd/continue/minor", test_continue_minor);
    g_test_add_func("/uffd/continue/missing", test_continue_missing);
    g_test_add_func("/uffd/continue/hole", test_continue_hole);
    g_test_add_func("/uffd/continue/eexist-wake", test_continue_eexist_wake);
    g_test_add_func("/uffd/continue/run-hole", test_continue_run_hole);
    g_test_add_func("/uffd/continue/run-mapped", test_continue_run_mapped);
    g_test_add_func("/uffd/copy/cached", test_copy_cached);
    return g_test_run();
}
