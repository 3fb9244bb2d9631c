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
 * - The receivedmap bit is set, with page_request_mutex held, only once
 *   the page is complete and mapped.  The fault thread maps a page on a
 *   minor fault only if it finds that bit set; it reads it without the
 *   lock, as the bit is only ever set while the page is placed: a bit
 *   read clear just before it is set costs a request for a page that its
 *   placer maps, waking the thread, anyway.  So no page is mapped before
 *   all of its contents have arrived, and UFFDIO_CONTINUE in the placer
 *   can only fail with EEXIST if something mapped a page that had not
 *   arrived: placement then fails, naming the page.
 * - The claim map is allocated with the alias, before any page is
 *   placed, and freed with it at the end of incoming postcopy.  A placer
 *   that fails clears the claim bits of the pages it did not map (but for
 *   a page that arrived twice, whose bit is its first placer's), so that
 *   they are taken when the source sends them again after a recovery.
 *
 * The copy and the ioctl run outside page_request_mutex, as UFFDIO_COPY
 * does, so that the fault thread never waits for a placement to check a
 * page.
 *
 * The thread that reads the background stream (ram_load_postcopy() on the
 * main channel) does not map each page it writes through the alias at
 * once: it keeps the run of contiguous pages it has written in the
 * channel's PostcopyTmpPage, and
 * maps the run with one UFFDIO_CONTINUE when a page does not extend it,
 * and before any read from the channel of data that has not arrived yet.
 * The receivedmap bits are set then, so the invariants above hold as they
 * are.  A thread that faults on a page of a run meanwhile is requested
 * like any page not received; the source, which sent the page already,
 * does not send it again, so the thread waits for the run to be mapped:
 * at most for the data already received to be placed, never for the
 * network.  The preempt channel, which carries the pages that threads
 * wait for, maps each page as soon as it is complete.
 *
 * Writing through the alias costs a page fault there, which allocates the
 * page, on top of the copy and the ioctl: a page that is not in the page
 * cache yet is cheaper to place with UFFDIO_COPY (or UFFDIO_ZEROPAGE),
 * which allocates, fills and maps it in one call, as for any other block,
 * and fails with an error where the page cannot be allocated.  Only pages
 * that are in the page cache go through the alias, marked in
 * rb->postcopy_cachedmap: those received during precopy and then
 * discarded, which postcopy_minor_discard() keeps.  Postcopy starts from
 * an empty block (init_range()), so UFFDIO_COPY never meets a page in the
 * page cache; if it does (EEXIST), placement fails, naming the page.
 * That also keeps UFFDIO_COPY off cached guest_memfd pages, which the
 * posted kernel series mishandles (docs/system/guest-memfd.rst).  Before
 * a page is written through the alias, it is populated there with
 * MADV_POPULATE_WRITE, whose failure is an error, never a SIGBUS.
 */

#include "qemu/osdep.h"
#include "qemu/atomic.h"
#include "qemu/bitops.h"
#include "qemu/error-report.h"
#include "qemu/lockable.h"
#include "qemu/madvise.h"
#include "qemu/stats64.h"
#include "qemu/units.h"
#include "qapi/error.h"
#include "exec/target_page.h"
#include "system/ramblock.h"
#include "migration.h"
#include "postcopy-ram.h"
#include "postcopy-minor.h"
#include "ram.h"
#include "trace.h"

#ifdef CONFIG_LINUX

#include <sys/ioctl.h>
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
     * As guest RAM itself: not inherited by children and not in core dumps
     * (it is guest RAM a second time).
     */
    if (qemu_madvise(alias, length, QEMU_MADV_DONTFORK) ||
        qemu_madvise(alias, length, QEMU_MADV_DONTDUMP)) {
        int err = errno;

        error_setg_errno(errp, err, "cannot set the attributes of the "
                         "second mapping of RAM block %s",
                         qemu_ram_get_idstr(rb));
        munmap(alias, length);
        return -err;
    }
    /*
     * No transparent huge pages, as postcopy turns them off on the
     * block's mapping (nhp_range()), which also ignores a failure: a
     * kernel without them, and hugetlbfs, refuse the advice.
     */
    qemu_madvise(alias, length, QEMU_MADV_NOHUGEPAGE);

    rb->postcopy_alias = alias;
    rb->postcopy_claimmap = bitmap_new(length / qemu_ram_pagesize(rb));
    rb->postcopy_cachedmap = bitmap_new(length / qemu_ram_pagesize(rb));
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
        g_free(rb->postcopy_cachedmap);
        rb->postcopy_cachedmap = NULL;
    }
}

void postcopy_minor_registered(RAMBlock *rb, uint64_t ioctls)
{
    if (ioctls & (1ULL << _UFFDIO_ZEROPAGE)) {
        qemu_ram_set_uf_zeroable(rb);
    }
    if (!(ioctls & (1ULL << _UFFDIO_COPY))) {
        /* Every page through the alias */
        bitmap_fill(rb->postcopy_cachedmap,
                    rb->postcopy_length / qemu_ram_pagesize(rb));
    }
}

/*
 * Place a page with UFFDIO_COPY, or UFFDIO_ZEROPAGE for zeroes (@from
 * NULL) where the block has it: -EEXIST, quietly, if the page is in the
 * page cache.
 */
static int postcopy_minor_copy(MigrationIncomingState *mis, void *host,
                               void *from, RAMBlock *rb)
{
    size_t pagesize = qemu_ram_pagesize(rb);

    if (!from && qemu_ram_is_uf_zeroable(rb)) {
        struct uffdio_zeropage zero = {
            .range = { .start = (uintptr_t)host, .len = pagesize },
        };

        return ioctl(mis->userfault_fd, UFFDIO_ZEROPAGE, &zero) ? -errno : 0;
    } else {
        struct uffdio_copy copy = {
            .dst = (uintptr_t)host,
            .src = (uintptr_t)(from ? from : mis->postcopy_tmp_zero_page),
            .len = pagesize,
        };

        return ioctl(mis->userfault_fd, UFFDIO_COPY, &copy) ? -errno : 0;
    }
}

/* Pages of the alias populated at once, ahead of the stream */
#define ALIAS_POPULATE_PAGES 64

/*
 * What the placing thread populated last: host pages [start, end) of the
 * alias at @alias.  Each thread that places pages (one per channel) has
 * its own, so it is exact.
 */
typedef struct {
    uint8_t *alias;
    unsigned long start, end;
} AliasPopulated;

static __thread AliasPopulated alias_populated;

/*
 * Make sure that the page at @offset of @rb is in the page cache and
 * mapped in the alias before it is written there: a write that has to
 * allocate the page raises SIGBUS where the allocation fails (an empty
 * hugetlb pool, a hugetlbfs or tmpfs size limit, a memcg limit), which
 * would kill the destination while the guest runs on it.
 * MADV_POPULATE_WRITE allocates the same way, but fails with an error.
 *
 * Writing a page through the alias also faults there first, even where
 * the page is in the page cache, which costs more than the copy: the
 * stream sends runs of contiguous pages, so the pages from @offset on
 * that are in the page cache (rb->postcopy_cachedmap), up to
 * ALIAS_POPULATE_PAGES, are populated in one call, which saves a fault
 * for most of them.
 */
static int postcopy_minor_populate_alias(RAMBlock *rb, ram_addr_t offset)
{
    size_t pagesize = qemu_ram_pagesize(rb);
    unsigned long nr = offset / pagesize;
    unsigned long last = rb->postcopy_length / pagesize;
    AliasPopulated *done = &alias_populated;
    unsigned long end;
    int ret;

    if (done->alias == rb->postcopy_alias &&
        nr >= done->start && nr < done->end) {
        return 0;
    }
    done->alias = NULL;
    end = MAX(nr + 1, find_next_zero_bit(rb->postcopy_cachedmap,
                                         MIN(last, nr + ALIAS_POPULATE_PAGES),
                                         nr));
    ret = qemu_madvise(rb->postcopy_alias + offset, (end - nr) * pagesize,
                       QEMU_MADV_POPULATE_WRITE);
    if (ret && end > nr + 1) {
        /* A later page may be the one that fails: this one alone */
        end = nr + 1;
        ret = qemu_madvise(rb->postcopy_alias + offset, pagesize,
                           QEMU_MADV_POPULATE_WRITE);
    }
    if (ret) {
        ret = -errno;
        error_report("postcopy: cannot allocate page of RAM block %s at "
                     "offset 0x" RAM_ADDR_FMT ": %s", qemu_ram_get_idstr(rb),
                     offset, strerror(-ret));
        return ret;
    }
    *done = (AliasPopulated) {
        .alias = rb->postcopy_alias, .start = nr, .end = end,
    };
    return 0;
}

/* The longest run of pages mapped with one UFFDIO_CONTINUE */
#define MINOR_RUN_MAX (256 * KiB)

/*
 * Account for the pages of [@host, @host + @length) of @rb, just mapped:
 * received, no longer requested, and the shared-memory clients told.
 */
static int postcopy_minor_mapped(MigrationIncomingState *mis, RAMBlock *rb,
                                 void *host, uint64_t length)
{
    size_t pagesize = qemu_ram_pagesize(rb);
    uint64_t off;
    int ret = 0;

    WITH_QEMU_LOCK_GUARD(&mis->page_request_mutex) {
        for (off = 0; off < length; off += pagesize) {
            postcopy_page_placed_locked(mis, host + off, pagesize, rb);
        }
    }
    stat64_add(&mis->postcopy_continued, length / pagesize);
    for (off = 0; off < length; off += pagesize) {
        trace_postcopy_place_page(host + off);
        ret = ret ? ret :
            postcopy_notify_shared_wake(rb,
                                        qemu_ram_block_host_offset(rb, host) +
                                        off);
    }
    return ret;
}

/*
 * Map [@host, @host + @length) of @rb, every page of it written whole
 * through the alias, with as few UFFDIO_CONTINUE calls as the kernel
 * allows: it maps a range up to the first page it cannot map.  That
 * page fails the placement, named; if it was mapped already, it was
 * mapped before it arrived.  After any other failure the pages from it
 * on are not placed, and their claim bits are cleared so that the copies
 * the source sends again after recovery are taken.
 */
static int postcopy_minor_map(MigrationIncomingState *mis, RAMBlock *rb,
                              void *host, uint64_t length)
{
    size_t pagesize = qemu_ram_pagesize(rb);
    uint64_t done = 0, off;
    ram_addr_t offset;
    int ret = 0, wake;

    while (done < length) {
        struct uffdio_continue cont = {
            .range = { .start = (uintptr_t)host + done,
                       .len = length - done },
        };
        uint64_t mapped;

        ret = ioctl(mis->userfault_fd, UFFDIO_CONTINUE, &cont) ? -errno : 0;
        stat64_add(&mis->postcopy_continue_calls, 1);
        /* On a failure, .mapped is what was mapped before it, or -errno */
        mapped = ret ? MAX(cont.mapped, 0) : length - done;
        if (!mapped) {
            break;
        }
        trace_postcopy_place_run_minor(qemu_ram_get_idstr(rb),
                                       qemu_ram_block_host_offset(rb, host) +
                                       done, mapped);
        wake = postcopy_minor_mapped(mis, rb, host + done, mapped);
        done += mapped;
        if (wake) {
            ret = wake;
            break;
        }
    }
    if (done == length) {
        return ret;
    }
    offset = qemu_ram_block_host_offset(rb, host) + done;
    if (ret == -EEXIST) {
        error_report("postcopy: page of RAM block %s at offset 0x"
                     RAM_ADDR_FMT " was mapped before it arrived",
                     qemu_ram_get_idstr(rb), offset);
    } else {
        error_report("postcopy: cannot map page of RAM block %s at offset "
                     "0x" RAM_ADDR_FMT ": %s", qemu_ram_get_idstr(rb), offset,
                     strerror(-ret));
    }
    /*
     * None of the pages from @offset on is received: the source sends them
     * again after a recovery, and each must be taken then, the later pages
     * of a run as much as the one that failed.
     */
    for (off = offset; off < offset + length - done; off += pagesize) {
        clear_bit_atomic(off / pagesize, rb->postcopy_claimmap);
    }
    return ret;
}

int postcopy_minor_flush(MigrationIncomingState *mis, PostcopyTmpPage *tmp)
{
    uint64_t length = tmp->run_len;

    tmp->run_len = 0;
    return length ? postcopy_minor_map(mis, tmp->run_block, tmp->run_host,
                                       length) : 0;
}

int postcopy_minor_place_page(MigrationIncomingState *mis, void *host,
                              void *from, RAMBlock *rb, PostcopyTmpPage *tmp)
{
    size_t pagesize = qemu_ram_pagesize(rb);
    ram_addr_t offset = qemu_ram_block_host_offset(rb, host);
    unsigned long nr = offset / pagesize;
    unsigned long *word = &rb->postcopy_claimmap[BIT_WORD(nr)];
    int ret;

    /* A run that this page does not extend is mapped first */
    if (tmp && tmp->run_len &&
        (tmp->run_block != rb || tmp->run_host + tmp->run_len != host ||
         tmp->run_len + pagesize > MINOR_RUN_MAX)) {
        ret = postcopy_minor_flush(mis, tmp);
        if (ret) {
            return ret;
        }
    }
    /* Before anything is written: see the top of this file */
    if ((qatomic_fetch_or(word, BIT_MASK(nr)) & BIT_MASK(nr)) ||
        ramblock_recv_bitmap_test_byte_offset(rb, offset)) {
        error_report("postcopy: page of RAM block %s at offset 0x"
                     RAM_ADDR_FMT " arrived twice", qemu_ram_get_idstr(rb),
                     offset);
        return -EEXIST;
    }
    if (!test_bit(nr, rb->postcopy_cachedmap)) {
        ret = postcopy_minor_copy(mis, host, from, rb);
        if (!ret) {
            WITH_QEMU_LOCK_GUARD(&mis->page_request_mutex) {
                postcopy_page_placed_locked(mis, host, pagesize, rb);
            }
            stat64_add(&mis->postcopy_copied, 1);
            trace_postcopy_place_page_minor_copy(qemu_ram_get_idstr(rb),
                                                 offset, !from);
            trace_postcopy_place_page(host);
            return postcopy_notify_shared_wake(rb, offset);
        }
        if (ret == -EEXIST) {
            /*
             * postcopy_ram_incoming_init() emptied the block (init_range())
             * and only pages that arrived entered its page cache since;
             * those sent again were discarded first and are in the cached
             * map.  So this page was in the page cache before it arrived.
             */
            error_report("postcopy: page of RAM block %s at offset 0x"
                         RAM_ADDR_FMT " was in the page cache before it "
                         "arrived", qemu_ram_get_idstr(rb), offset);
            return ret;
        }
        error_report("postcopy: cannot place page of RAM block %s at "
                     "offset 0x" RAM_ADDR_FMT ": %s",
                     qemu_ram_get_idstr(rb), offset, strerror(-ret));
        clear_bit_atomic(nr, rb->postcopy_claimmap);
        return ret;
    }
    ret = postcopy_minor_populate_alias(rb, offset);
    if (ret) {
        clear_bit_atomic(nr, rb->postcopy_claimmap);
        return ret;
    }
    /* What the page held before it arrived is of no use: write all of it */
    if (from) {
        memcpy(rb->postcopy_alias + offset, from, pagesize);
    } else {
        memset(rb->postcopy_alias + offset, 0, pagesize);
    }
    trace_postcopy_place_page_minor(qemu_ram_get_idstr(rb), offset, !from);
    if (tmp) {
        /* Mapped with the pages around it, by postcopy_minor_flush() */
        if (!tmp->run_len) {
            tmp->run_block = rb;
            tmp->run_host = host;
        }
        tmp->run_len += pagesize;
        return 0;
    }
    return postcopy_minor_map(mis, rb, host, pagesize);
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

void postcopy_minor_unreceive(MigrationIncomingState *mis, RAMBlock *rb,
                              ram_addr_t offset)
{
    size_t pagesize = qemu_ram_pagesize(rb);
    unsigned long nr = offset / pagesize;
    unsigned char incore = 0;

    /* Whether the page is still in the page cache decides how it is placed */
    if (mincore(rb->postcopy_alias + offset, pagesize, &incore) == 0 &&
        (incore & 1)) {
        set_bit_atomic(nr, rb->postcopy_cachedmap);
    } else {
        clear_bit_atomic(nr, rb->postcopy_cachedmap);
    }
    WITH_QEMU_LOCK_GUARD(&mis->page_request_mutex) {
        bitmap_clear(rb->receivedmap, offset >> qemu_target_page_bits(),
                     pagesize >> qemu_target_page_bits());
    }
    clear_bit_atomic(nr, rb->postcopy_claimmap);
    trace_postcopy_minor_unreceive(qemu_ram_get_idstr(rb), offset, incore & 1);
}

int postcopy_minor_discard(RAMBlock *rb, uint64_t start, size_t length)
{
    unsigned int shift = qemu_target_page_bits();
    unsigned long first = start >> shift;
    unsigned long end = (start + length) >> shift;
    unsigned long tp;

    trace_postcopy_ram_discard_minor(qemu_ram_get_idstr(rb), start, length);
    /*
     * A page received before is in the page cache, and stays there: it
     * must not be placed with UFFDIO_COPY when the source sends it again.
     * The range was checked against the block (ram_postcopy_discard_range)
     * and the receivedmap is cleared after this.
     */
    for (tp = rb->receivedmap ? find_next_bit(rb->receivedmap, end, first)
                              : end;
         tp < end;
         tp = find_next_bit(rb->receivedmap, end, tp + 1)) {
        set_bit((tp << shift) / qemu_ram_pagesize(rb), rb->postcopy_cachedmap);
    }
    if (qemu_madvise(qemu_ram_get_host_addr(rb) + start, length,
                     QEMU_MADV_DONTNEED)) {
        return ram_block_discard_range(rb, start, length);
    }
    return 0;
}

#else

int postcopy_minor_discard(RAMBlock *rb, uint64_t start, size_t length)
{
    g_assert_not_reached();
}

#endif
