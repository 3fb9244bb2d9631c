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
#include <sys/mman.h>

typedef struct {
    int ufd;
    int fd;
    size_t page;
    uint8_t *ram;       /* registered for missing and minor faults */
    uint8_t *alias;     /* the same memory, not registered */
} Fixture;

typedef struct {
    uint8_t *addr;
    uint8_t value;
} Reader;

/* The reasons a host cannot run these tests, or NULL */
static char *fixture_init(Fixture *f)
{
    Error *err = NULL;
    uint64_t ioctls = 0;

    f->page = qemu_real_host_page_size();
    f->ufd = uffd_create_fd(0, true);
    if (f->ufd < 0) {
        return g_strdup_printf("no userfaultfd for this process: %s",
                               strerror(errno));
    }
    f->fd = qemu_memfd_create("test-uffd", f->page, false, 0, 0, &err);
    if (f->fd < 0) {
        char *reason = g_strdup(error_get_pretty(err));

        error_free(err);
        uffd_close_fd(f->ufd);
        return reason;
    }
    f->ram = mmap(NULL, f->page, PROT_READ | PROT_WRITE, MAP_SHARED, f->fd, 0);
    f->alias = mmap(NULL, f->page, PROT_READ | PROT_WRITE, MAP_SHARED, f->fd,
                    0);
    g_assert(f->ram != MAP_FAILED && f->alias != MAP_FAILED);
    if (uffd_register_memory(f->ufd, f->ram, f->page,
                             UFFDIO_REGISTER_MODE_MISSING |
                             UFFDIO_REGISTER_MODE_MINOR, &ioctls)) {
        char *reason = g_strdup_printf("no minor userfaults on shmem: %s",
                                       strerror(errno));

        munmap(f->ram, f->page);
        munmap(f->alias, f->page);
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
    munmap(f->ram, f->page);
    munmap(f->alias, f->page);
    close(f->fd);
    uffd_close_fd(f->ufd);
}

static void *reader_thread(void *opaque)
{
    Reader *r = opaque;

    /* One load, which faults: the compiler may not drop or move it */
    r->value = qatomic_read(r->addr);
    return NULL;
}

/* Start a thread reading RAM and wait for its fault; returns its flags */
static uint64_t start_faulting_reader(Fixture *f, QemuThread *thread,
                                      Reader *r)
{
    struct pollfd pfd = { .fd = f->ufd, .events = POLLIN };
    struct uffd_msg msg;

    r->addr = f->ram;
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
 * that mapped it did not: after -EEXIST and uffd_wakeup() nobody waits.
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
    g_assert_cmpint(uffd_continue(f.ufd, f.ram, f.page, false), ==, -EEXIST);
    g_assert_cmpint(uffd_wakeup(f.ufd, f.ram, f.page), ==, 0);
    qemu_thread_join(&thread);
    g_assert_cmpint(r.value, ==, 0x3c);
    fixture_teardown(&f);
}

int main(int argc, char **argv)
{
    g_test_init(&argc, &argv, NULL);
    g_test_add_func("/uffd/continue/minor", test_continue_minor);
    g_test_add_func("/uffd/continue/missing", test_continue_missing);
    g_test_add_func("/uffd/continue/hole", test_continue_hole);
    g_test_add_func("/uffd/continue/eexist-wake", test_continue_eexist_wake);
    return g_test_run();
}
