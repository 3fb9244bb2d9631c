/*
 * Postcopy minor placement
 *
 * Copyright (c) 2026 qemu-gmem developers
 *
 * SPDX-License-Identifier: GPL-2.0-or-later
 *
 * A block placed this way (guest_memfd RAM, and with x-postcopy-minor
 * other shared, fd-backed RAM) is registered for missing and minor
 * userfaults.  A received page is written into the page cache through a
 * second, unregistered mapping of the block's fd (rb->postcopy_alias) and
 * then mapped with UFFDIO_CONTINUE, which wakes the threads that faulted
 * on it, whether their fault was missing or minor.  A minor fault on a
 * page that has been received is resolved by the fault thread with
 * UFFDIO_CONTINUE; every other fault is requested from the source.
 *
 * UFFDIO_COPY allocates, fills and maps a page atomically and fails with
 * EEXIST on a page that exists.  Here the kernel only does the last step,
 * so the rest of that guarantee is kept by these invariants:
 *
 * - A page is written through the alias by one placer, once: the first
 *   placer sets the page's bit in rb->postcopy_claimmap before it writes.
 *   The source sends each page once during postcopy, so a page whose
 *   claim bit or receivedmap bit is already set has arrived twice, and
 *   placement fails without writing it: it may be mapped already and in
 *   use by the guest.
 * - The receivedmap bit is set, under page_request_mutex, only once the
 *   page is complete and mapped.  The fault thread maps a page on a minor
 *   fault only if its receivedmap bit is set, and otherwise requests it,
 *   testing the bit under the same lock.  So no page is mapped before all
 *   of its contents have arrived, and UFFDIO_CONTINUE in the placer can
 *   only fail with EEXIST if something mapped a page that had not
 *   arrived: placement then fails, naming the page.
 * - The claim map is allocated with the alias, before any page is
 *   placed, and freed with it at the end of incoming postcopy.  A placer
 *   that fails for any other reason than EEXIST clears its claim bit
 *   again, so that the page is taken when the source sends it again
 *   after recovery.
 *
 * The copy and the ioctl run outside page_request_mutex, as UFFDIO_COPY
 * does, so that the fault thread never waits for a placement to check a
 * page.
 */

#include "qemu/osdep.h"
#include "qemu/atomic.h"
#include "qemu/bitops.h"
#include "qemu/error-report.h"
#include "qemu/lockable.h"
#include "qemu/madvise.h"
#include "qapi/error.h"
#include "exec/target_page.h"
#include "system/ramblock.h"
#include "migration.h"
#include "postcopy-ram.h"
#include "postcopy-minor.h"
#include "ram.h"
#include "trace.h"

#ifdef CONFIG_LINUX

#include <sys/syscall.h>
#include <linux/mempolicy.h>
#include "qemu/userfaultfd.h"

/* Enough for every node a Linux kernel can have (CONFIG_NODES_SHIFT 10) */
#define ALIAS_MAX_NODES 1024

/*
 * Give the alias the memory policy of the block's mapping: on hugetlbfs
 * the policy is the VMA's, so pages allocated through the alias would
 * otherwise ignore the backend's host-nodes and policy.
 */
static int postcopy_minor_copy_mempolicy(RAMBlock *rb, void *alias,
                                         Error **errp)
{
    unsigned long nodes[ALIAS_MAX_NODES / BITS_PER_LONG + 1] = { 0 };
    int mode;

    if (syscall(SYS_get_mempolicy, &mode, nodes, ALIAS_MAX_NODES,
                qemu_ram_get_host_addr(rb), MPOL_F_ADDR)) {
        int err = errno;

        if (err == ENOSYS) {
            return 0;
        }
        error_setg_errno(errp, err, "cannot read the memory policy of "
                         "RAM block %s", qemu_ram_get_idstr(rb));
        return -err;
    }
    if (mode == MPOL_DEFAULT) {
        return 0;
    }
    /* mbind() takes one bit more than get_mempolicy() gives back */
    if (syscall(SYS_mbind, alias, rb->postcopy_length, mode, nodes,
                ALIAS_MAX_NODES + 1, 0)) {
        int err = errno;

        error_setg_errno(errp, err, "cannot apply the memory policy of "
                         "RAM block %s to its second mapping",
                         qemu_ram_get_idstr(rb));
        return -err;
    }
    return 0;
}

int postcopy_minor_alias_map(RAMBlock *rb, Error **errp)
{
    size_t length = rb->postcopy_length;
    void *alias;
    int flags = MAP_SHARED;
    int ret;

    if (rb->postcopy_alias) {
        return 0;
    }
    /* hugetlbfs with reserve=off must not fail when pages are placed */
    if (qemu_ram_is_noreserve(rb)) {
        flags |= MAP_NORESERVE;
    }
    alias = mmap(NULL, length, PROT_READ | PROT_WRITE, flags, rb->fd,
                 rb->fd_offset);
    if (alias == MAP_FAILED) {
        int err = errno;

        error_setg_errno(errp, err, "cannot map RAM block %s a second "
                         "time for postcopy", qemu_ram_get_idstr(rb));
        return -err;
    }
    ret = postcopy_minor_copy_mempolicy(rb, alias, errp);
    if (ret) {
        munmap(alias, length);
        return ret;
    }
    /*
     * As guest RAM itself: not inherited by children, not in core dumps
     * (it is guest RAM a second time), and no transparent huge pages,
     * which postcopy turns off on the block's mapping (nhp_range()).
     */
    qemu_madvise(alias, length, QEMU_MADV_DONTFORK);
    qemu_madvise(alias, length, QEMU_MADV_DONTDUMP);
    qemu_madvise(alias, length, QEMU_MADV_NOHUGEPAGE);

    rb->postcopy_alias = alias;
    rb->postcopy_claimmap = bitmap_new(length / qemu_ram_pagesize(rb));
    trace_postcopy_alias_map(qemu_ram_get_idstr(rb), alias, length);
    return 0;
}

void postcopy_minor_alias_unmap(RAMBlock *rb)
{
    if (rb->postcopy_alias) {
        munmap(rb->postcopy_alias, rb->postcopy_length);
        rb->postcopy_alias = NULL;
        g_free(rb->postcopy_claimmap);
        rb->postcopy_claimmap = NULL;
    }
}

int postcopy_minor_place_page(MigrationIncomingState *mis, void *host,
                              void *from, RAMBlock *rb)
{
    size_t pagesize = qemu_ram_pagesize(rb);
    ram_addr_t offset = qemu_ram_block_host_offset(rb, host);
    unsigned long nr = offset / pagesize;
    unsigned long *word = &rb->postcopy_claimmap[BIT_WORD(nr)];
    int ret;

    /* Before anything is written: see the top of this file */
    if ((qatomic_fetch_or(word, BIT_MASK(nr)) & BIT_MASK(nr)) ||
        ramblock_recv_bitmap_test_byte_offset(rb, offset)) {
        error_report("postcopy: page of RAM block %s at offset 0x"
                     RAM_ADDR_FMT " arrived twice", qemu_ram_get_idstr(rb),
                     offset);
        return -EEXIST;
    }
    /* What the page held before it arrived is of no use: write all of it */
    if (from) {
        memcpy(rb->postcopy_alias + offset, from, pagesize);
    } else {
        memset(rb->postcopy_alias + offset, 0, pagesize);
    }
    ret = uffd_continue(mis->userfault_fd, host, pagesize, false);
    if (ret == -EEXIST) {
        error_report("postcopy: page of RAM block %s at offset 0x"
                     RAM_ADDR_FMT " was mapped before it arrived",
                     qemu_ram_get_idstr(rb), offset);
        return ret;
    }
    if (ret) {
        error_report("postcopy: cannot map page of RAM block %s at offset "
                     "0x" RAM_ADDR_FMT ": %s", qemu_ram_get_idstr(rb),
                     offset, strerror(-ret));
        /* Not placed: a copy sent again after recovery must be taken */
        clear_bit_atomic(nr, rb->postcopy_claimmap);
        return ret;
    }
    WITH_QEMU_LOCK_GUARD(&mis->page_request_mutex) {
        postcopy_page_placed_locked(mis, host, pagesize, rb);
    }
    trace_postcopy_place_page_minor(qemu_ram_get_idstr(rb), offset, !from);
    return 0;
}

int postcopy_minor_resolve_fault(MigrationIncomingState *mis, RAMBlock *rb,
                                 ram_addr_t offset)
{
    size_t pagesize = qemu_ram_pagesize(rb);
    void *host = qemu_ram_get_host_addr(rb) + offset;
    int ret;

    /* The bit is set only once the page is complete and mapped */
    if (!ramblock_recv_bitmap_test_byte_offset(rb, offset)) {
        return 0;
    }
    ret = uffd_continue(mis->userfault_fd, host, pagesize, false);
    if (ret == -EEXIST) {
        /*
         * Another thread's fault or the placement mapped it first: the
         * only race there is, as two threads can fault on one page.
         */
        ret = uffd_wakeup(mis->userfault_fd, host, pagesize);
    }
    trace_postcopy_ram_fault_minor_resolved(qemu_ram_get_idstr(rb), offset,
                                            ret);
    return ret ? ret : 1;
}

int postcopy_minor_discard(RAMBlock *rb, uint64_t start, size_t length)
{
    trace_postcopy_ram_discard_minor(qemu_ram_get_idstr(rb), start, length);
    if (qemu_madvise(qemu_ram_get_host_addr(rb) + start, length,
                     QEMU_MADV_DONTNEED)) {
        return ram_block_discard_range(rb, start, length);
    }
    return 0;
}

void postcopy_minor_prefault(RAMBlock *rb, ram_addr_t offset)
{
    size_t pagesize = qemu_ram_pagesize(rb);
    int err = 0;

    if (pagesize != qemu_real_host_page_size()) {
        return;
    }
    if (qemu_madvise(rb->postcopy_alias + offset, pagesize,
                     QEMU_MADV_POPULATE_WRITE)) {
        /* Only a missed optimisation (e.g. Linux before 5.14) */
        err = errno;
    }
    trace_postcopy_ram_fault_prefault(qemu_ram_get_idstr(rb), offset, err);
}

#else

int postcopy_minor_discard(RAMBlock *rb, uint64_t start, size_t length)
{
    g_assert_not_reached();
}

#endif
