/*
 * Postcopy tests driven through the qtest protocol
 *
 * Copyright (c) 2026 qemu-gmem developers
 *
 * SPDX-License-Identifier: GPL-2.0-or-later
 *
 * No guest CPU runs: both sides are "-accel qtest" machines.  The source's
 * RAM is filled over qtest with a pattern that is different in every
 * 8 bytes of every page, postcopy starts before much of it has been sent,
 * and the destination's RAM is read back over qtest in a chosen order
 * while the background stream runs.  Each read faults through QEMU's
 * mapping exactly as a vCPU or a device would, so the missing and minor
 * fault handling, its races with page placement and recovery are driven
 * deterministically and in seconds, also inside a nested VM.  Every page
 * is checked, during postcopy and again once it has completed.
 *
 * The "rewrite" tests let precopy send the first part of RAM, then change
 * it on the source, a third of its pages to zeroes, so that postcopy
 * starts by discarding pages the destination holds and has to replace
 * them with data and zero pages.  With minor placement, only those pages
 * are in the page cache: they take minor faults and are placed with
 * UFFDIO_CONTINUE, every other page with UFFDIO_COPY.  So the minor and
 * guest_memfd tests whose point is a race with placement (race,
 * recovery, two-readers) rewrite as well.
 *
 * The "hugetlb" tests do the same on memfd RAM in 2 MiB hugetlbfs pages,
 * with minor placement and, as the reference, with UFFDIO_COPY; they need
 * 64 free 2 MiB pages on the host.  "hugetlb-enomem" takes the pages that
 * minor placement replaces away from the destination, on a hugetlbfs
 * mount of its own that is full: postcopy must pause, the destination
 * alive, and recover once there is room again.
 *
 * qtest is served by the main thread, one command at a time, so a second
 * reader has to be a thread of QEMU's own: the "two-readers" tests run a
 * detached dump-guest-memory on the destination, which reads all of RAM
 * in its dump thread, in the same order and at the same time as the
 * qtest reader.  Whichever of the two is ahead faults on a page first and
 * the other one faults on the same page while it is being requested or
 * placed, which is where a placement that woke only one waiter, or mapped
 * a page before its contents were complete, would show.  The dump is
 * checked against the pattern as well.
 *
 * The "virtio-mem" tests give both machines a virtio-mem device whose
 * memdev is the backend under test, and play its guest driver over qtest
 * (libqos virtio-pci): they plug blocks, fill them, unplug some (virtio-mem
 * discards them: a hole punched in the memdev's file) and migrate.  What
 * the device reports unplugged must neither be requested nor placed: the
 * test counts the pages of each block in the destination's page cache
 * (mincore() on a duplicate of the memdev's fd), with UFFDIO_COPY and
 * minor placement alike.
 */

#include "qemu/osdep.h"
#include "elf.h"
#include "libqtest.h"
#include "libqos/libqos-malloc.h"
#include "libqos/pci-pc.h"
#include "libqos/virtio.h"
#include "libqos/virtio-pci.h"
#include "migration/framework.h"
#include "migration/migration-qmp.h"
#include "migration/migration-util.h"
#include "qemu/bswap.h"
#include "qapi/error.h"
#include "qobject/qdict.h"
#include "qobject/qjson.h"
#include "qobject/qlist.h"
#include "qobject/qnum.h"
#include "qobject/qstring.h"
#include "standard-headers/linux/virtio_ids.h"
#include "standard-headers/linux/virtio_mem.h"
#include <linux/falloc.h>
#include <sys/mount.h>
#include <sys/statfs.h>
#include <sys/syscall.h>

#define PQ_RAM_MB    64
#define PQ_START     (1 * 1024 * 1024)      /* below is BIOS and VGA space */
#define PQ_END       (PQ_RAM_MB * 1024 * 1024)
#define PQ_PAGE      4096
#define PQ_PAGES     ((PQ_END - PQ_START) / PQ_PAGE)
#define PQ_CHUNK     (1024 * 1024)

/*
 * The rewrite tests: precopy at 8 MiB/s, and once 24 MiB have gone, the
 * first PQ_REWRITE_PAGES pages (16 MiB) have surely been sent.  Precopy
 * then slows to a crawl, so that it cannot complete (nothing is dirtied
 * on an -accel qtest machine) before the rewrite, which takes seconds
 * under ASan, is done and postcopy starts.
 */
#define PQ_REWRITE_BW (8 * 1024 * 1024)
#define PQ_REWRITE_SENT (24 * 1024 * 1024)
#define PQ_REWRITE_PAGES (16 * 1024 * 1024 / PQ_PAGE)
/*
 * The tests named for minor placement that are not rewrite tests rewrite
 * every PQ_SPARSE_STEP-th of those pages only: a page in the page cache
 * here and there, placed through the alias between pages placed with
 * UFFDIO_COPY.
 */
#define PQ_SPARSE_STEP 4
/*
 * The two-readers tests take PQ_PAGEOUT_PAGES pages received in precopy
 * and not rewritten, from PQ_PAGEOUT_FIRST on, out of the destination's
 * mapping while they stay in its page cache: reading them takes minor
 * faults on received pages, which the fault thread resolves itself.
 */
#define PQ_PAGEOUT_FIRST (PQ_REWRITE_PAGES + 256)
#define PQ_PAGEOUT_PAGES 64

/* 8 MiB/s: 64 MiB take seconds to stream, so most reads fault */
#define PQ_SLOW (8 * 1024 * 1024)
/*
 * The recovery tests must pause while postcopy is surely still running.
 * With the background stream capped, an urgent page also waits for the
 * rate limiter (about 100 ms), so at 4 KiB/s the migration cannot
 * complete during the few reads done before the pause.  The cap is
 * lifted once the migration has resumed.
 */
#define PQ_TRICKLE 4096
#define PQ_BEFORE_PAUSE 16

typedef enum {
    PQ_SEQUENTIAL,
    PQ_REVERSE,
    PQ_RANDOM,
} PQOrder;

typedef struct {
    MemType mem_type;
    bool minor_cap;         /* x-postcopy-minor on the destination */
    PQOrder order;
    /* background stream: 0 = unlimited (races the reads), else bytes/s */
    uint64_t postcopy_bandwidth;
    bool preempt;
    bool recover;           /* pause and recover after a few reads */
    bool rewrite;           /* change sent pages before postcopy starts */
    bool sparse;            /* the same, every PQ_SPARSE_STEP-th page */
    bool dump;              /* a second reader: dump-guest-memory */
    bool hugetlb;           /* memfd in 2 MiB hugetlbfs pages */
    bool bind;              /* RAM bound to host node 0 */
    /* the source's boot RAM, if not mem_type (the destination's) */
    bool src_differs;
    MemType src_mem_type;
    /*
     * A pc-dimm of PQ_DIMM_MB on dimm_mem_type: hotplugged on the
     * source (object-add, device_add) before the migration, on the
     * destination's command line
     */
    bool dimm;
    MemType dimm_mem_type;
    /* A virtio-mem device on vmem_mem_type, on both command lines */
    bool vmem;
    MemType vmem_mem_type;
    /* The destination's RAM: this file on hugetlbfs, not mem_type */
    const char *mem_path;
} PQArgs;

#define PQ_DIMM_MB 16
#define PQ_DIMM_PAGES (PQ_DIMM_MB * 1024 * 1024 / PQ_PAGE)

/*
 * A virtio-mem device of PQ_VMEM_BLOCKS blocks of 2 MiB at PCI slot 4;
 * its virtqueue and requests live in boot RAM from PQ_VMEM_ALLOC up,
 * the test's pattern below.  Its memdev is larger than boot RAM, so that
 * precopy sends it first: the postcopy tests let precopy send it, then
 * rewrite some of its pages.
 */
#define PQ_VMEM_MB 128
#define PQ_VMEM_BLOCK (2 * 1024 * 1024)
#define PQ_VMEM_BLOCKS (PQ_VMEM_MB * 1024 * 1024 / PQ_VMEM_BLOCK)
#define PQ_VMEM_BLOCK_PAGES (PQ_VMEM_BLOCK / PQ_PAGE)
#define PQ_VMEM_SLOT 4
#define PQ_VMEM_ALLOC (48 * 1024 * 1024)
#define PQ_VMEM_BOOT_PAGES ((PQ_VMEM_ALLOC - PQ_START) / PQ_PAGE)
#define PQ_VMEM_TIMEOUT_US (30 * G_USEC_PER_SEC)

static uint64_t pq_word(uint64_t page, uint64_t i)
{
    return (page << 20) ^ (i * 0x9e3779b97f4a7c15ULL) ^ 0xc0ffee;
}

static void pq_fill(uint8_t *buf)
{
    uint64_t *w = (uint64_t *)buf;
    uint64_t p, i;

    for (p = 0; p < PQ_PAGES; p++) {
        for (i = 0; i < PQ_PAGE / 8; i++) {
            w[p * (PQ_PAGE / 8) + i] = pq_word(p, i);
        }
    }
}

/*
 * Change every @step-th of the first PQ_REWRITE_PAGES pages on the
 * source, and in @want: every third page becomes zeroes, the others a
 * new pattern.  No other page is written.
 */
static void pq_rewrite(QTestState *from, uint8_t *want, uint64_t step)
{
    uint64_t *w = (uint64_t *)want;
    uint64_t p, i;

    for (p = 0; p < PQ_REWRITE_PAGES; p += step) {
        for (i = 0; i < PQ_PAGE / 8; i++) {
            w[p * (PQ_PAGE / 8) + i] = p % 3 ? ~pq_word(p, i) : 0;
        }
    }
    if (step > 1) {
        for (p = 0; p < PQ_REWRITE_PAGES; p += step) {
            qtest_bufwrite(from, PQ_START + p * PQ_PAGE, want + p * PQ_PAGE,
                           PQ_PAGE);
        }
        return;
    }
    for (p = 0; p < PQ_REWRITE_PAGES * PQ_PAGE; p += PQ_CHUNK) {
        qtest_bufwrite(from, PQ_START + p, want + p, PQ_CHUNK);
    }
}

/*
 * The host pages of @pagesize that pq_rewrite() changes with @step: each
 * was received in precopy and is discarded when postcopy starts.
 */
static uint64_t pq_rewritten(uint64_t step, uint64_t pagesize)
{
    uint64_t p, n = 0, last = UINT64_MAX;

    for (p = 0; p < PQ_REWRITE_PAGES; p += step) {
        uint64_t host = (PQ_START + p * PQ_PAGE) / pagesize;

        n += host != last;
        last = host;
    }
    return n;
}

static const char *pq_backend(MemType type)
{
    switch (type) {
    case MEM_TYPE_ANON:
        return "memory-backend-ram,share=off";
    case MEM_TYPE_MEMFD:
        return "memory-backend-memfd";
    case MEM_TYPE_GUEST_MEMFD:
        return "memory-backend-guest-memfd";
    default:
        g_assert_not_reached();
    }
}

#define PQ_HUGEPAGES "/sys/kernel/mm/hugepages/hugepages-2048kB/free_hugepages"

/* Both sides' RAM in 2 MiB pages, or a reason to skip */
static char *pq_hugepages_missing(void)
{
    g_autofree char *text = NULL;
    uint64_t need = 2 * PQ_RAM_MB / 2, have = 0;

    if (g_file_get_contents(PQ_HUGEPAGES, &text, NULL, NULL)) {
        have = g_ascii_strtoull(text, NULL, 10);
    }
    if (have >= need) {
        return NULL;
    }
    return g_strdup_printf("needs %" PRIu64 " free 2 MiB huge pages, the "
                           "host has %" PRIu64 " (%s; scripts/run-tests.py "
                           "reserves them when run as root)", need, have,
                           PQ_HUGEPAGES);
}

/*
 * The command line of a source or (@incoming) destination, @extra
 * appended.  The destination has the DIMM on it, after the virtio-mem
 * device: device memory is assigned in that order, and the source
 * hotplugs the DIMM.
 */
static char *pq_args(PQArgs *a, bool incoming, const char *extra)
{
    g_autofree char *dimm = NULL;
    g_autofree char *vmem = NULL;
    g_autofree char *backend = NULL;
    MemType type = !incoming && a->src_differs ? a->src_mem_type
                                                : a->mem_type;

    if (a->dimm && incoming) {
        dimm = g_strdup_printf("-object %s,id=dimm0,size=%dM "
                               "-device pc-dimm,id=d0,memdev=dimm0",
                               pq_backend(a->dimm_mem_type), PQ_DIMM_MB);
    }
    if (a->vmem) {
        vmem = g_strdup_printf("-object %s,id=vmem0,size=%dM "
                               "-device virtio-mem-pci,id=vm0,memdev=vmem0,"
                               "block-size=%d,addr=%d.0",
                               pq_backend(a->vmem_mem_type), PQ_VMEM_MB,
                               PQ_VMEM_BLOCK, PQ_VMEM_SLOT);
    }
    if (incoming && a->mem_path) {
        backend = g_strdup_printf("memory-backend-file,mem-path=%s,"
                                  "share=on,reserve=off", a->mem_path);
    } else {
        backend = g_strdup_printf("%s%s", pq_backend(type),
                                  a->hugetlb ? ",hugetlb=on,hugetlbsize=2M"
                                             : "");
    }
    return g_strdup_printf("-machine q35 -m %dM%s "
                           "-object %s%s,id=mem,size=%dM "
                           "-machine memory-backend=mem %s %s %s %s",
                           PQ_RAM_MB,
                           a->dimm || a->vmem ? ",slots=2,maxmem=1G" : "",
                           backend,
                           a->bind ? ",host-nodes=0,policy=bind" : "",
                           PQ_RAM_MB, vmem ? vmem : "", dimm ? dimm : "",
                           incoming ? "-incoming defer" : "", extra);
}

/* Without @connect, qtest_connect() and the QMP handshake come later */
static QTestState *pq_start_ext(PQArgs *a, bool incoming, const char *extra,
                                bool connect)
{
    g_autoptr(QList) caps = NULL;
    g_autofree char *args = pq_args(a, incoming, extra);

    if (connect) {
        caps = qlist_new();
        qlist_append_str(caps, "oob");
    }
    return qtest_init_ext(NULL, args, caps, connect);
}

static QTestState *pq_start(PQArgs *a, bool incoming)
{
    return pq_start_ext(a, incoming, "", true);
}

/*
 * Hotplug the DIMM on the source as a user would, and fill it: its
 * guest-physical address
 */
static uint64_t pq_dimm_plug(QTestState *from, PQArgs *a, uint8_t *want)
{
    g_auto(GStrv) words = g_strsplit(pq_backend(a->dimm_mem_type), ",", 2);
    QDict *rsp, *dev = NULL;
    QListEntry *e;
    QList *list;
    uint64_t addr, off;

    qtest_qmp_assert_success(from, "{ 'execute': 'object-add', 'arguments':"
                             " { 'qom-type': %s, 'id': 'dimm0', 'size': %d,"
                             "   'share': %i } }", words[0],
                             PQ_DIMM_MB * 1024 * 1024,
                             a->dimm_mem_type != MEM_TYPE_ANON);
    qtest_qmp_assert_success(from, "{ 'execute': 'device_add', 'arguments':"
                             " { 'driver': 'pc-dimm', 'id': 'd0',"
                             "   'memdev': 'dimm0' } }");
    rsp = qtest_qmp(from, "{ 'execute': 'query-memory-devices' }");
    list = qdict_get_qlist(rsp, "return");
    g_assert(list);
    QLIST_FOREACH_ENTRY(list, e) {
        QDict *info = qobject_to(QDict, qlist_entry_obj(e));

        if (!strcmp(qdict_get_str(info, "type"), "dimm")) {
            g_assert(!dev);
            dev = qdict_get_qdict(info, "data");
        }
    }
    g_assert(dev);
    g_assert_cmpstr(qdict_get_str(dev, "id"), ==, "d0");
    addr = qdict_get_uint(dev, "addr");
    g_assert_cmpstr(qdict_get_str(dev, "memdev"), ==, "/objects/dimm0");
    qobject_unref(rsp);
    for (off = 0; off < PQ_DIMM_MB * 1024 * 1024; off += PQ_CHUNK) {
        qtest_bufwrite(from, addr + off, want + off, PQ_CHUNK);
    }
    return addr;
}

/*
 * The DIMM holds the boot RAM's last PQ_DIMM_MB of @want, reversed:
 * hotplug it on the source and fill it.  Its contents, and in @addr its
 * guest-physical address.
 */
static uint8_t *pq_dimm_fill_plug(QTestState *from, PQArgs *a,
                                  const uint8_t *want, uint64_t *addr)
{
    uint8_t *dimm_want = g_malloc(PQ_DIMM_MB * 1024 * 1024);
    uint64_t i;

    for (i = 0; i < PQ_DIMM_PAGES; i++) {
        memcpy(dimm_want + i * PQ_PAGE, want + (PQ_PAGES - 1 - i) * PQ_PAGE,
               PQ_PAGE);
    }
    *addr = pq_dimm_plug(from, a, dimm_want);
    return dimm_want;
}

/* Every page of the DIMM at @addr holds what @dimm_want says */
static void pq_dimm_check(QTestState *to, uint64_t addr,
                          const uint8_t *dimm_want)
{
    uint8_t got[PQ_PAGE];
    uint64_t i;

    for (i = 0; i < PQ_DIMM_PAGES; i++) {
        qtest_bufread(to, addr + i * PQ_PAGE, got, PQ_PAGE);
        if (memcmp(got, dimm_want + i * PQ_PAGE, PQ_PAGE)) {
            g_test_message("DIMM page %" PRIu64 " differs", i);
            g_assert_not_reached();
        }
    }
}

static void pq_check_page(QTestState *to, const uint8_t *want, uint64_t p)
{
    uint8_t got[PQ_PAGE];

    qtest_bufread(to, PQ_START + p * PQ_PAGE, got, PQ_PAGE);
    if (memcmp(got, want + p * PQ_PAGE, PQ_PAGE)) {
        g_test_message("page %" PRIu64 " (0x%" PRIx64 ") differs", p,
                       (uint64_t)PQ_START + p * PQ_PAGE);
        g_assert_not_reached();
    }
}

static void pq_recover(QTestState *from, QTestState *to, const char *dir)
{
    g_autofree char *uri = g_strdup_printf("unix:%s/pq-recover", dir);

    migrate_pause(from);
    wait_for_migration_status(to, "postcopy-paused",
                              (const char * []) { "failed", NULL });
    wait_for_migration_status(from, "postcopy-paused",
                              (const char * []) { "failed", NULL });
    migrate_recover(to, uri);
    migrate_qmp(from, to, uri, NULL, "{'resume': true}");
    wait_for_migration_status(from, "postcopy-active",
                              (const char * []) { "failed", NULL });
    /* Most pages are still to come; let them come at full speed */
    migrate_set_parameter_int(from, "max-postcopy-bandwidth", 0);
}

static bool pq_running(QTestState *qts)
{
    QDict *rsp = qtest_qmp_assert_success_ref(qts,
                                              "{ 'execute': 'query-status' }");
    bool running = qdict_get_bool(rsp, "running");

    qobject_unref(rsp);
    return running;
}

/* Wait for a MIGRATION event with @status; a failure fails the test */
static void pq_wait_event(QTestState *who, const char *status)
{
    for (;;) {
        QDict *rsp = qtest_qmp_eventwait_ref(who, "MIGRATION");
        QDict *data = qdict_get_qdict(rsp, "data");
        bool done;

        g_assert(data);
        g_assert_cmpstr(qdict_get_str(data, "status"), !=, "failed");
        done = !strcmp(qdict_get_str(data, "status"), status);
        qobject_unref(rsp);
        if (done) {
            return;
        }
    }
}

/*
 * The second reader: dump all of the destination's RAM in a thread.  Not
 * before the destination runs: dump-guest-memory refuses an incoming VM.
 */
static void pq_dump_start(QTestState *to, const char *path)
{
    g_autofree char *protocol = g_strdup_printf("file:%s", path);

    while (!pq_running(to)) {
        g_usleep(10 * 1000);
    }
    qtest_qmp_assert_success(to, "{ 'execute': 'dump-guest-memory',"
                             "  'arguments': { 'paging': false,"
                             "                 'protocol': %s,"
                             "                 'detach': true } }",
                             protocol);
}

/*
 * A dump of @length bytes of guest RAM from @addr only, to @path, waited
 * for and removed: a reader of those pages in a thread of QEMU
 */
static void pq_dump_range(QTestState *to, const char *path, uint64_t addr,
                          uint64_t length)
{
    g_autofree char *protocol = g_strdup_printf("file:%s", path);

    while (!pq_running(to)) {
        g_usleep(10 * 1000);
    }
    qtest_qmp_assert_success(to, "{ 'execute': 'dump-guest-memory',"
                             "  'arguments': { 'paging': false,"
                             "                 'protocol': %s,"
                             "                 'detach': true,"
                             "                 'begin': %" PRIu64 ","
                             "                 'length': %" PRIu64 " } }",
                             protocol, addr, length);
}

static void pq_dump_wait(QTestState *to)
{
    for (;;) {
        QDict *rsp = qtest_qmp_assert_success_ref(to,
                                        "{ 'execute': 'query-dump' }");
        g_autofree char *status = g_strdup(qdict_get_str(rsp, "status"));

        qobject_unref(rsp);
        if (!strcmp(status, "completed")) {
            return;
        }
        g_assert_cmpstr(status, ==, "active");
        g_usleep(20 * 1000);
    }
}

/* Wait for the dump to complete, and check every page of it */
static void pq_dump_check(QTestState *to, const char *path,
                          const uint8_t *want)
{
    g_autofree char *buf = NULL;
    g_autoptr(GError) err = NULL;
    const Elf64_Ehdr *eh;
    gsize len;
    uint64_t p;

    for (;;) {
        QDict *rsp = qtest_qmp_assert_success_ref(to,
                                        "{ 'execute': 'query-dump' }");
        g_autofree char *status = g_strdup(qdict_get_str(rsp, "status"));

        qobject_unref(rsp);
        if (!strcmp(status, "completed")) {
            break;
        }
        g_assert_cmpstr(status, ==, "active");
        g_usleep(20 * 1000);
    }

    g_assert_true(g_file_get_contents(path, &buf, &len, &err));
    unlink(path);
    g_assert_cmpuint(len, >=, sizeof(*eh));
    eh = (const Elf64_Ehdr *)buf;
    g_assert_cmpmem(eh->e_ident, SELFMAG, ELFMAG, SELFMAG);
    g_assert_cmpuint(eh->e_ident[EI_CLASS], ==, ELFCLASS64);
    g_assert_cmpuint(eh->e_phoff + (uint64_t)eh->e_phnum * sizeof(Elf64_Phdr),
                     <=, len);

    for (p = 0; p < PQ_PAGES; p++) {
        uint64_t addr = PQ_START + p * PQ_PAGE;
        const uint8_t *got = NULL;
        unsigned i;

        for (i = 0; i < eh->e_phnum && !got; i++) {
            const Elf64_Phdr *ph =
                (const Elf64_Phdr *)(buf + eh->e_phoff) + i;

            if (ph->p_type == PT_LOAD && addr >= ph->p_paddr &&
                addr + PQ_PAGE <= ph->p_paddr + ph->p_filesz) {
                g_assert_cmpuint(ph->p_offset + ph->p_filesz, <=, len);
                got = (const uint8_t *)buf + ph->p_offset +
                      (addr - ph->p_paddr);
            }
        }
        if (!got) {
            g_test_message("page %" PRIu64 " (0x%" PRIx64 ") not in the dump",
                           p, addr);
            g_assert_not_reached();
        }
        if (memcmp(got, want + p * PQ_PAGE, PQ_PAGE)) {
            g_test_message("page %" PRIu64 " (0x%" PRIx64 ") differs in the "
                           "dump", p, addr);
            g_assert_not_reached();
        }
    }
}

/*
 * How many remote page faults the destination accounted in its latency
 * distribution (postcopy-blocktime counts the faults of every thread, so
 * the qtest reader's too).
 */
static uint64_t pq_latency_samples(QTestState *to)
{
    QDict *rsp = qtest_qmp_assert_success_ref(to,
                                               "{ 'execute': 'query-migrate' }");
    QList *dist = qdict_get_qlist(rsp, "postcopy-latency-dist");
    QListEntry *e;
    uint64_t n = 0;

    g_assert(dist);
    QLIST_FOREACH_ENTRY(dist, e) {
        n += qnum_get_uint(qobject_to(QNum, qlist_entry_obj(e)));
    }
    qobject_unref(rsp);
    return n;
}

/*
 * During postcopy, some mapping of the destination is registered with
 * userfaultfd for minor faults ("ui" in the VmFlags of /proc/PID/smaps)
 * if @minor, none if not.  A minor placement block that has never held a
 * page places every page with UFFDIO_COPY, as any other block: this is
 * what shows that it was set up for minor placement all the same.
 */
static void pq_check_minor_registered(QTestState *to, bool minor)
{
    g_autofree char *path = g_strdup_printf("/proc/%d/smaps", qtest_pid(to));
    g_autofree char *smaps = NULL;
    g_auto(GStrv) lines = NULL;
    int n = 0;
    size_t i;

    g_assert(g_file_get_contents(path, &smaps, NULL, NULL));
    lines = g_strsplit(smaps, "\n", -1);
    for (i = 0; lines[i]; i++) {
        if (g_str_has_prefix(lines[i], "VmFlags:") &&
            strstr(lines[i], " ui")) {
            n++;
        }
    }
    if (minor) {
        g_assert_cmpint(n, >, 0);
    } else {
        g_assert_cmpint(n, ==, 0);
    }
}

/*
 * The second mapping that minor placement writes pages through must have
 * the attributes of the block's own: its memory policy (the block is
 * bound to node 0) and no transparent huge pages; and, as a second copy
 * of guest RAM, it is neither dumped nor inherited by a child.  Both are
 * shared mappings of the block's memfd, found in the destination's
 * /proc/PID/smaps (the block's own is the one registered with
 * userfaultfd, "um") and numa_maps.
 */
static void pq_check_alias_attributes(QTestState *to)
{
    g_autofree char *smaps_path =
        g_strdup_printf("/proc/%d/smaps", qtest_pid(to));
    g_autofree char *numa_path =
        g_strdup_printf("/proc/%d/numa_maps", qtest_pid(to));
    g_autofree char *smaps = NULL, *numa = NULL;
    g_auto(GStrv) lines = NULL;
    uint64_t start = 0, end = 0;
    int registered = 0, aliases = 0;
    size_t i;

    g_assert(g_file_get_contents(smaps_path, &smaps, NULL, NULL));
    g_assert(g_file_get_contents(numa_path, &numa, NULL, NULL));
    lines = g_strsplit(smaps, "\n", -1);
    for (i = 0; lines[i]; i++) {
        if (g_ascii_isxdigit(lines[i][0]) && strchr(lines[i], '-')) {
            char *e;

            start = g_ascii_strtoull(lines[i], &e, 16);
            end = g_ascii_strtoull(e + 1, NULL, 16);
            if (!strstr(lines[i], "/memfd:") ||
                end - start != PQ_RAM_MB * 1024 * 1024) {
                start = end = 0;
            }
        } else if (end && g_str_has_prefix(lines[i], "VmFlags:")) {
            g_autofree char *key = g_strdup_printf("%" PRIx64 " ", start);
            const char *policy = strstr(numa, key);

            g_test_message("memfd mapping at 0x%" PRIx64 ": %s", start,
                           lines[i]);
            g_assert(strstr(lines[i], " sh"));
            g_assert(strstr(lines[i], " nh"));
            g_assert(policy);
            g_assert(g_str_has_prefix(policy + strlen(key), "bind:0 "));
            if (strstr(lines[i], " um")) {
                registered++;
            } else {
                aliases++;
                g_assert(strstr(lines[i], " dd"));
                g_assert(strstr(lines[i], " dc"));
            }
            start = end = 0;
        }
    }
    g_assert_cmpint(registered, ==, 1);
    g_assert_cmpint(aliases, ==, 1);
}

#ifndef MADV_PAGEOUT
#define MADV_PAGEOUT 21
#endif

/*
 * The address of guest RAM in the destination QEMU: the mapping of
 * PQ_RAM_MB registered with userfaultfd for missing faults ("um"), or 0
 * if none is yet
 */
static uint64_t pq_ram_host_registered(QTestState *to)
{
    g_autofree char *path = g_strdup_printf("/proc/%d/smaps", qtest_pid(to));
    g_autofree char *smaps = NULL;
    g_auto(GStrv) lines = NULL;
    uint64_t start = 0, end = 0, found = 0;
    size_t i;

    g_assert(g_file_get_contents(path, &smaps, NULL, NULL));
    lines = g_strsplit(smaps, "\n", -1);
    for (i = 0; lines[i]; i++) {
        if (g_ascii_isxdigit(lines[i][0]) && strchr(lines[i], '-')) {
            char *e;

            start = g_ascii_strtoull(lines[i], &e, 16);
            end = g_ascii_strtoull(e + 1, NULL, 16);
        } else if (g_str_has_prefix(lines[i], "VmFlags:") &&
                   end - start == PQ_RAM_MB * 1024 * 1024 &&
                   strstr(lines[i], " um")) {
            g_assert_cmphex(found, ==, 0);
            found = start;
        }
    }
    return found;
}

static uint64_t pq_ram_host(QTestState *to)
{
    uint64_t host;
    int tries;

    for (tries = 0; !(host = pq_ram_host_registered(to)); tries++) {
        g_assert_cmpint(tries, <, 1000);
        g_usleep(10 * 1000);
    }
    return host;
}

/*
 * Take @n pages of guest RAM from page @first out of the destination's
 * mapping, from outside: process_madvise(MADV_PAGEOUT) unmaps a page
 * that only this mapping maps and, with no swap to write a shmem page
 * to, leaves it in the page cache (with swap, its swap entry is there).
 * The next access is a minor fault.  How many of the pages
 * /proc/PID/pagemap shows unmapped then; 0 without CAP_SYS_NICE.
 */
static uint64_t pq_pageout(QTestState *to, uint64_t first, uint64_t n)
{
    uint64_t host = pq_ram_host(to) + PQ_START + first * PQ_PAGE;
    struct iovec iov = { .iov_base = (void *)(uintptr_t)host,
                         .iov_len = n * PQ_PAGE };
    g_autofree char *path = g_strdup_printf("/proc/%d/pagemap",
                                            qtest_pid(to));
    g_autofree uint64_t *entry = g_new(uint64_t, n);
    int pidfd = syscall(SYS_pidfd_open, qtest_pid(to), 0);
    uint64_t i, unmapped = 0;
    long ret;
    int fd;

    g_assert_cmpint(pidfd, >=, 0);
    ret = syscall(SYS_process_madvise, pidfd, &iov, 1, MADV_PAGEOUT, 0);
    close(pidfd);
    if (ret < 0 && errno == EPERM) {
        g_test_message("process_madvise: %s", strerror(errno));
        return 0;
    }
    g_assert_cmpint(ret, ==, n * PQ_PAGE);
    fd = open(path, O_RDONLY);
    g_assert_cmpint(fd, >=, 0);
    g_assert_cmpint(pread(fd, entry, n * sizeof(*entry),
                          host / PQ_PAGE * sizeof(*entry)),
                    ==, n * sizeof(*entry));
    close(fd);
    for (i = 0; i < n; i++) {
        unmapped += !(entry[i] & (1ULL << 63 | 1ULL << 62));
    }
    g_test_message("paged out %" PRIu64 " of %" PRIu64 " pages", unmapped, n);
    return unmapped;
}

/*
 * Which threads of a QEMU are blocked on a userfault, by the kernel
 * function they wait in (/proc/PID/task/TID/wchan), sampled until @stop
 */
typedef struct {
    pid_t pid;
    bool stop;
    /* samples where the main thread and another one were both blocked */
    uint64_t overlapped;
    uint64_t samples;
    /* a wchan named a function: without kallsyms, each reads "0" */
    bool named;
} PQWaiters;

static gpointer pq_waiters_poll(gpointer opaque)
{
    PQWaiters *w = opaque;
    g_autofree char *task = g_strdup_printf("/proc/%d/task", w->pid);

    while (!qatomic_read(&w->stop)) {
        g_autoptr(GDir) dir = g_dir_open(task, 0, NULL);
        const char *name;
        bool main_thread = false;
        int n = 0;

        g_assert(dir);
        while ((name = g_dir_read_name(dir))) {
            g_autofree char *path = g_strdup_printf("%s/%s/wchan", task, name);
            g_autofree char *wchan = NULL;

            if (!g_file_get_contents(path, &wchan, NULL, NULL)) {
                continue;
            }
            w->named |= wchan[0] && strcmp(wchan, "0");
            if (!strcmp(wchan, "handle_userfault")) {
                n++;
                main_thread |= atoi(name) == w->pid;
            }
        }
        w->samples++;
        w->overlapped += main_thread && n >= 2;
        g_usleep(100);
    }
    return NULL;
}

/* How long the dump may take to reach the pages taken out */
#define PQ_MINOR_FAULT_TIMEOUT_S 30

/* The fault thread resolved @n minor faults on received pages, in time */
static void pq_wait_minor_faults(QTestState *to, uint64_t n)
{
    gint64 deadline = g_get_monotonic_time() +
                      PQ_MINOR_FAULT_TIMEOUT_S * G_USEC_PER_SEC;
    uint64_t got;

    while ((got = read_postcopy_placement(to, "minor-faults")) < n &&
           g_get_monotonic_time() < deadline) {
        g_usleep(10 * 1000);
    }
    g_assert_cmpuint(got, >=, n);
}

static char *pq_dump_status(QTestState *to)
{
    QDict *rsp = qtest_qmp_assert_success_ref(to,
                                              "{ 'execute': 'query-dump' }");
    char *status = g_strdup(qdict_get_str(rsp, "status"));

    qobject_unref(rsp);
    return status;
}

static void pq_run(PQArgs *a)
{
    MigrationTestEnv *env = migration_get_env();
    g_autofree uint8_t *want = g_malloc(PQ_END - PQ_START);
    g_autofree uint64_t *order = g_new(uint64_t, PQ_PAGES);
    g_autoptr(GRand) rand = g_rand_new_with_seed(0x5eed);
    g_autofree char *dump_path = NULL;
    g_autofree char *no_hugepages = NULL;
    g_autofree uint8_t *dimm_want = NULL;
    uint64_t dimm_addr = 0;
    QTestState *from, *to;
    uint64_t i, off, paged_out = 0;
    uint64_t step = a->sparse ? PQ_SPARSE_STEP : 1;
    bool rewrite = a->rewrite || a->sparse;
    PQWaiters waiters = { 0 };
    GThread *poller = NULL;

    if (!env->has_uffd) {
        g_test_skip("userfaultfd not available");
        return;
    }
    if (a->mem_type == MEM_TYPE_GUEST_MEMFD ||
        (a->dimm && a->dimm_mem_type == MEM_TYPE_GUEST_MEMFD)) {
        if (!env->has_guest_memfd) {
            g_test_skip(env->guest_memfd_skip);
            return;
        }
        if (!env->has_guest_memfd_uffd) {
            g_test_skip(env->guest_memfd_uffd_skip);
            return;
        }
    }
    /* A guest_memfd source needs nothing of userfaultfd */
    if (a->src_differs && a->src_mem_type == MEM_TYPE_GUEST_MEMFD &&
        !env->has_guest_memfd) {
        g_test_skip(env->guest_memfd_skip);
        return;
    }
    if (a->hugetlb) {
        g_assert(a->mem_type == MEM_TYPE_MEMFD);
        no_hugepages = pq_hugepages_missing();
        if (no_hugepages) {
            g_test_skip(no_hugepages);
            return;
        }
    }

    pq_fill(want);
    from = pq_start(a, false);
    to = pq_start(a, true);
    for (off = 0; off < PQ_END - PQ_START; off += PQ_CHUNK) {
        qtest_bufwrite(from, PQ_START + off, want + off, PQ_CHUNK);
    }
    if (a->dimm) {
        dimm_want = pq_dimm_fill_plug(from, a, want, &dimm_addr);
    }

    migrate_set_capability(from, "events", true);
    migrate_set_capability(from, "postcopy-ram", true);
    migrate_set_capability(to, "postcopy-ram", true);
    migrate_set_capability(to, "postcopy-blocktime", true);
    if (a->minor_cap) {
        migrate_set_capability(to, "x-postcopy-minor", true);
    }
    if (a->preempt) {
        migrate_set_capability(from, "postcopy-preempt", true);
        migrate_set_capability(to, "postcopy-preempt", true);
    }
    /*
     * Precopy barely starts: nearly every page comes during postcopy.
     * Or, to rewrite, it gets far enough.
     */
    migrate_set_parameter_int(from, "max-bandwidth",
                              rewrite ? PQ_REWRITE_BW : 1024 * 1024);
    migrate_set_parameter_int(from, "max-postcopy-bandwidth",
                              a->postcopy_bandwidth);
    migrate_incoming_qmp(to, "tcp:127.0.0.1:0", NULL, "{}");
    migrate_qmp(from, to, NULL, NULL, "{}");
    wait_for_migration_status(from, "active", NULL);
    if (rewrite) {
        while (read_ram_property_int(from, "transferred") < PQ_REWRITE_SENT) {
            g_usleep(10 * 1000);
        }
        migrate_set_parameter_int(from, "max-bandwidth", 64 * 1024);
        pq_rewrite(from, want, step);
    }
    qtest_qmp_assert_success(from, "{ 'execute': 'migrate-start-postcopy' }");
    /*
     * Not by polling: with the background stream unlimited, postcopy can
     * be over before the first query-migrate
     */
    pq_wait_event(from, "postcopy-active");
    /*
     * Where the background stream is capped, postcopy lasts long enough
     * to look at the destination's mappings
     */
    if (a->postcopy_bandwidth) {
        wait_for_migration_status(to, "postcopy-active", NULL);
        pq_check_minor_registered(to, a->minor_cap ||
                                  a->mem_type == MEM_TYPE_GUEST_MEMFD ||
                                  (a->dimm && a->dimm_mem_type ==
                                   MEM_TYPE_GUEST_MEMFD));
    }
    if (a->bind) {
        wait_for_migration_status(to, "postcopy-active", NULL);
        pq_check_alias_attributes(to);
    }

    for (i = 0; i < PQ_PAGES; i++) {
        order[i] = a->order == PQ_REVERSE ? PQ_PAGES - 1 - i : i;
    }
    if (a->order == PQ_RANDOM) {
        for (i = PQ_PAGES - 1; i > 0; i--) {
            uint64_t j = g_rand_int_range(rand, 0, i + 1), t = order[i];

            order[i] = order[j];
            order[j] = t;
        }
    }

    if (a->dump) {
        /* Pages received in precopy, mapped: shmem ones can be paged out */
        if (a->rewrite && a->mem_type != MEM_TYPE_ANON) {
            paged_out = pq_pageout(to, PQ_PAGEOUT_FIRST, PQ_PAGEOUT_PAGES);
            /* guest_memfd pages are unevictable: none may be */
            if (a->mem_type == MEM_TYPE_MEMFD && paged_out) {
                g_assert_cmpuint(paged_out, ==, PQ_PAGEOUT_PAGES);
            }
        }
        dump_path = g_strdup_printf("%s/pq-dump", env->tmpfs);
        if (paged_out) {
            /*
             * First a dump of the pages taken out alone: only the fault
             * thread can map them.  Watched through QMP, so that a fault
             * left unresolved fails here instead of hanging a reader.
             */
            pq_dump_range(to, dump_path, PQ_START + PQ_PAGEOUT_FIRST * PQ_PAGE,
                          PQ_PAGEOUT_PAGES * PQ_PAGE);
            pq_wait_minor_faults(to, paged_out);
            pq_dump_wait(to);
            unlink(dump_path);
        }
        pq_dump_start(to, dump_path);
        waiters.pid = qtest_pid(to);
        poller = g_thread_new("pq-waiters", pq_waiters_poll, &waiters);
    }
    for (i = 0; i < PQ_PAGES; i++) {
        if (a->recover && i == PQ_BEFORE_PAUSE) {
            pq_recover(from, to, env->tmpfs);
        }
        pq_check_page(to, want, order[i]);
        if (a->dump && i == 0) {
            /* The qtest reader started before the dump finished */
            g_autofree char *status = pq_dump_status(to);

            g_assert_cmpstr(status, ==, "active");
        }
    }
    if (a->dump) {
        qatomic_set(&waiters.stop, true);
        g_thread_join(poller);
        /*
         * And both waited for faults at the same time: at some instant
         * the main thread (qtest's reader) and another thread (the dump's)
         * were both blocked on a userfault
         */
        g_test_message("both readers blocked on a userfault in %" PRIu64
                       " of %" PRIu64 " samples", waiters.overlapped,
                       waiters.samples);
        if (waiters.named && !a->preempt) {
            g_assert_cmpuint(waiters.overlapped, >, 0);
        } else if (waiters.named) {
            /*
             * With preempt, a requested page comes on its own channel
             * within microseconds, so the two readers' waits seldom
             * coincide at a sample (none in 3631 samples was seen on a
             * loaded host): not a property the test can require
             */
            g_test_message("overlap of the readers not required with "
                           "postcopy-preempt");
        } else {
            g_test_message("overlap of the readers not checked: this "
                           "kernel's /proc/PID/task/TID/wchan names no "
                           "function (no CONFIG_KALLSYMS)");
        }
        pq_dump_check(to, dump_path, want);
    }

    migrate_set_parameter_int(from, "max-postcopy-bandwidth", 0);
    wait_for_migration_complete(from);
    wait_for_migration_complete(to);
    if (a->recover) {
        /* The recovery socket is not removed by QEMU */
        g_autofree char *path = g_strdup_printf("%s/pq-recover", env->tmpfs);

        unlink(path);
    }
    /* Nothing changed once migration completed */
    for (i = 0; i < PQ_PAGES; i += 1) {
        pq_check_page(to, want, i);
    }
    /* The DIMM came whole, on the background stream */
    if (a->dimm) {
        pq_dimm_check(to, dimm_addr, dimm_want);
    }
    /*
     * With the background stream capped, the reads outran it: pages
     * were requested from the source, and their latency was accounted.
     */
    if (a->postcopy_bandwidth) {
        g_assert_cmpint(read_ram_property_int(from, "postcopy-requests"),
                        >, 0);
        g_assert_cmpuint(pq_latency_samples(to), >, 0);
    }
    /*
     * The placement the test names ran.  Without minor placement, every
     * page with UFFDIO_COPY.  With it, a page in the page cache through
     * the alias and UFFDIO_CONTINUE: each rewritten page (received, then
     * discarded), and no other; the others, never in the page cache,
     * with UFFDIO_COPY.  A rewrite started with discards of those pages,
     * and of no other received page.
     */
    {
        uint64_t pagesize = a->hugetlb ? 2 * 1024 * 1024 : PQ_PAGE;
        uint64_t pages = (PQ_END - PQ_START) / pagesize;
        uint64_t continued = read_postcopy_placement(to, "continued");
        uint64_t calls = read_postcopy_placement(to, "continue-calls");
        uint64_t copied = read_postcopy_placement(to, "copied");
        uint64_t minor_faults = read_postcopy_placement(to, "minor-faults");
        uint64_t rewritten = rewrite ? pq_rewritten(step, pagesize) : 0;

        g_test_message("placed: %" PRIu64 " with UFFDIO_COPY, %" PRIu64
                       " with UFFDIO_CONTINUE, %" PRIu64 " minor faults, %"
                       PRIu64 " pages discarded", copied, continued,
                       minor_faults,
                       read_postcopy_placement(to, "discarded"));

        if (a->minor_cap || a->mem_type == MEM_TYPE_GUEST_MEMFD) {
            g_assert_cmpuint(continued, ==, rewritten);
            if (rewrite) {
                /*
                 * The rewritten pages come in runs on the stream: 4 KiB
                 * ones are mapped a run at a time, as many pages as the
                 * destination had received (about 7 here, fewer where
                 * the stream trickles in), huge ones one by one, and so
                 * are pages rewritten one in PQ_SPARSE_STEP
                 */
                g_test_message("%" PRIu64 " UFFDIO_CONTINUE calls", calls);
                if (a->hugetlb || a->sparse) {
                    g_assert_cmpuint(calls, ==, continued);
                } else {
                    g_assert_cmpuint(calls, <, continued);
                }
            }
            g_assert_cmpuint(copied, >, pages / 4);
            /* Each page taken out was read, and its fault resolved */
            g_assert_cmpuint(minor_faults, >=, paged_out);
        } else {
            g_assert_cmpuint(continued, ==, 0);
            g_assert_cmpuint(minor_faults, ==, 0);
            g_assert_cmpuint(copied, >, pages / 4);
        }
        /* Every rewritten page had been received, and was discarded */
        g_assert_cmpuint(read_postcopy_placement(to, "discarded"), ==,
                         rewritten);
    }
    qtest_quit(from);
    qtest_quit(to);
}

/*
 * The same machines, RAM and DIMM migrated with precopy alone: the pages
 * go through the stream (not a single postcopy request) and every page
 * is checked on the destination.  Nothing of userfaultfd is needed.
 */
static void pq_run_precopy(PQArgs *a)
{
    MigrationTestEnv *env = migration_get_env();
    g_autofree uint8_t *want = g_malloc(PQ_END - PQ_START);
    g_autofree uint8_t *dimm_want = NULL;
    uint64_t dimm_addr = 0;
    QTestState *from, *to;
    QDict *rsp;
    uint64_t i, off;

    if ((a->mem_type == MEM_TYPE_GUEST_MEMFD ||
         (a->src_differs && a->src_mem_type == MEM_TYPE_GUEST_MEMFD) ||
         (a->dimm && a->dimm_mem_type == MEM_TYPE_GUEST_MEMFD)) &&
        !env->has_guest_memfd) {
        g_test_skip(env->guest_memfd_skip);
        return;
    }

    pq_fill(want);
    from = pq_start(a, false);
    to = pq_start(a, true);
    for (off = 0; off < PQ_END - PQ_START; off += PQ_CHUNK) {
        qtest_bufwrite(from, PQ_START + off, want + off, PQ_CHUNK);
    }
    if (a->dimm) {
        dimm_want = pq_dimm_fill_plug(from, a, want, &dimm_addr);
    }

    migrate_set_parameter_int(from, "max-bandwidth", 1ULL << 40);
    migrate_incoming_qmp(to, "tcp:127.0.0.1:0", NULL, "{}");
    migrate_qmp(from, to, NULL, NULL, "{}");
    wait_for_migration_complete(from);
    wait_for_migration_complete(to);

    /* Precopy, and nothing else, moved the pages */
    g_assert_cmpint(read_ram_property_int(from, "postcopy-requests"), ==, 0);
    g_assert_cmpint(read_ram_property_int(from, "normal"), >=,
                    PQ_PAGES + (a->dimm ? PQ_DIMM_PAGES : 0));
    rsp = qtest_qmp_assert_success_ref(to, "{ 'execute': 'query-migrate' }");
    g_assert(!qdict_haskey(rsp, "postcopy-placement"));
    qobject_unref(rsp);

    for (i = 0; i < PQ_PAGES; i++) {
        pq_check_page(to, want, i);
    }
    if (a->dimm) {
        pq_dimm_check(to, dimm_addr, dimm_want);
    }
    qtest_quit(from);
    qtest_quit(to);
}

/* The virtio-mem device's guest driver, played over qtest */
typedef struct {
    QGuestAllocator alloc;
    QPCIBus *bus;
    QVirtioPCIDevice dev;
    QVirtQueue *vq;
    uint64_t addr;          /* guest-physical address of the region */
    bool rewritten;         /* pq_vmem_rewrite() ran */
} PQVmem;

static void pq_vmem_init(QTestState *qts, PQVmem *v)
{
    QPCIAddress pci = { .devfn = QPCI_DEVFN(PQ_VMEM_SLOT, 0) };
    uint64_t want = (1ULL << VIRTIO_F_VERSION_1) |
                    (1ULL << VIRTIO_MEM_F_UNPLUGGED_INACCESSIBLE);

    v->rewritten = false;
    alloc_init(&v->alloc, 0, PQ_VMEM_ALLOC, PQ_END, PQ_PAGE);
    v->bus = qpci_new_pc(qts, &v->alloc);
    virtio_pci_init(&v->dev, v->bus, &pci);
    g_assert_cmphex(v->dev.vdev.device_type, ==, VIRTIO_ID_MEM);
    qvirtio_pci_device_enable(&v->dev);
    qvirtio_start_device(&v->dev.vdev);
    g_assert_cmphex(qvirtio_get_features(&v->dev.vdev) & want, ==, want);
    qvirtio_set_features(&v->dev.vdev, want);
    v->vq = qvirtqueue_setup(&v->dev.vdev, &v->alloc, 0);
    qvirtio_set_driver_ok(&v->dev.vdev);
    g_assert_cmphex(qvirtio_config_readq(&v->dev.vdev,
                        offsetof(struct virtio_mem_config, block_size)),
                    ==, PQ_VMEM_BLOCK);
    v->addr = qvirtio_config_readq(&v->dev.vdev,
                                   offsetof(struct virtio_mem_config, addr));
}

static void pq_vmem_cleanup(PQVmem *v)
{
    qvirtqueue_cleanup(v->dev.vdev.bus, v->vq, &v->alloc);
    qpci_free_pc(v->bus);
    alloc_destroy(&v->alloc);
}

/* Plug or unplug @nb blocks from block @first; the device's answer */
static uint16_t pq_vmem_request(QTestState *qts, PQVmem *v, uint16_t type,
                                uint64_t first, uint16_t nb)
{
    struct virtio_mem_req req = { .type = cpu_to_le16(type) };
    struct virtio_mem_resp resp;
    uint64_t req_addr = guest_alloc(&v->alloc, sizeof(req));
    uint64_t resp_addr = guest_alloc(&v->alloc, sizeof(resp));
    uint32_t head;

    /* plug and unplug requests have the same layout */
    req.u.plug.addr = cpu_to_le64(v->addr + first * PQ_VMEM_BLOCK);
    req.u.plug.nb_blocks = cpu_to_le16(nb);
    qtest_memwrite(qts, req_addr, &req, sizeof(req));
    head = qvirtqueue_add(qts, v->vq, req_addr, sizeof(req), false, true);
    qvirtqueue_add(qts, v->vq, resp_addr, sizeof(resp), true, false);
    qvirtqueue_kick(qts, &v->dev.vdev, v->vq, head);
    qvirtio_wait_used_elem(qts, &v->dev.vdev, v->vq, head, NULL,
                           PQ_VMEM_TIMEOUT_US);
    qtest_memread(qts, resp_addr, &resp, sizeof(resp));
    guest_free(&v->alloc, req_addr);
    guest_free(&v->alloc, resp_addr);
    return le16_to_cpu(resp.type);
}

/*
 * How many pages of each virtio-mem block the memdev of QEMU @qts holds
 * in its page cache: mincore() on our own mapping of its fd (the one fd
 * of PQ_VMEM_MB), which pidfd_getfd() duplicates.  Our mapping is never
 * touched, so it faults nothing in.
 */
static void pq_vmem_resident(QTestState *qts, uint64_t *pages)
{
    g_autofree char *dir_path = g_strdup_printf("/proc/%d/fd",
                                                qtest_pid(qts));
    g_autoptr(GDir) dir = g_dir_open(dir_path, 0, NULL);
    g_autofree unsigned char *vec = g_malloc(PQ_VMEM_MB * 256);
    int pidfd = syscall(SYS_pidfd_open, qtest_pid(qts), 0);
    const char *name;
    int fd = -1;
    void *map;
    uint64_t i;

    g_assert(dir);
    g_assert_cmpint(pidfd, >=, 0);
    while (fd < 0 && (name = g_dir_read_name(dir))) {
        struct stat st;
        int dup = syscall(SYS_pidfd_getfd, pidfd, atoi(name), 0);

        if (dup < 0) {
            continue;
        }
        if (!fstat(dup, &st) && st.st_size == PQ_VMEM_MB * 1024 * 1024) {
            fd = dup;
        } else {
            close(dup);
        }
    }
    close(pidfd);
    g_assert_cmpint(fd, >=, 0);
    map = mmap(NULL, PQ_VMEM_MB * 1024 * 1024, PROT_READ, MAP_SHARED, fd, 0);
    g_assert(map != MAP_FAILED);
    g_assert_cmpint(mincore(map, PQ_VMEM_MB * 1024 * 1024, vec), ==, 0);
    for (i = 0; i < PQ_VMEM_BLOCKS; i++) {
        uint64_t p;

        pages[i] = 0;
        for (p = 0; p < PQ_VMEM_BLOCK_PAGES; p++) {
            pages[i] += vec[i * PQ_VMEM_BLOCK_PAGES + p] & 1;
        }
    }
    munmap(map, PQ_VMEM_MB * 1024 * 1024);
    close(fd);
}

/*
 * The blocks the test plugs, fills and unplugs: plugged at the end are
 * 0-4 and 8-11; 5-7 were unplugged after they had been filled, 12-15
 * never plugged.  Block 4 was unplugged and plugged again, and must read
 * back as zeroes: its hole was punched.  It then gets the pattern in its
 * second half.
 */
static bool pq_vmem_plugged(uint64_t block)
{
    return block <= 4 || (block >= 8 && block <= 11);
}

/* What the virtio-mem device says is plugged, in bytes */
static uint64_t pq_vmem_size(QTestState *qts)
{
    QDict *rsp = qtest_qmp(qts, "{ 'execute': 'qom-get', 'arguments':"
                           " { 'path': 'vm0', 'property': 'size' } }");
    uint64_t size;

    g_assert(qdict_haskey(rsp, "return"));
    size = qdict_get_uint(rsp, "return");
    qobject_unref(rsp);
    return size;
}

/*
 * Every page of a plugged block is in @side's page cache, none of an
 * unplugged one.  Block 4's first half holds zeroes: it is in the page
 * cache if it was read or written, which a zero page need not be.
 */
static void pq_vmem_check_resident(QTestState *qts, const char *side)
{
    uint64_t resident[PQ_VMEM_BLOCKS];
    uint64_t i;

    pq_vmem_resident(qts, resident);
    for (i = 0; i < PQ_VMEM_BLOCKS; i++) {
        g_test_message("%s: virtio-mem block %" PRIu64 " (%s): %" PRIu64
                       " pages in the page cache", side, i,
                       pq_vmem_plugged(i) ? "plugged" : "unplugged",
                       resident[i]);
        if (!pq_vmem_plugged(i)) {
            g_assert_cmpuint(resident[i], ==, 0);
        } else if (i == 4) {
            g_assert_cmpuint(resident[i], >=, PQ_VMEM_BLOCK_PAGES / 2);
        } else {
            g_assert_cmpuint(resident[i], ==, PQ_VMEM_BLOCK_PAGES);
        }
    }
}

static uint64_t pq_vmem_word(uint64_t page, uint64_t i)
{
    return pq_word(page, i) ^ 0x76697274696f2dULL;
}

/*
 * The pages pq_vmem_rewrite() changes: the last PQ_VMEM_REWRITE_PAGES of
 * blocks 4 and 11, each followed by an unplugged block
 */
#define PQ_VMEM_REWRITE_PAGES 16

static bool pq_vmem_is_rewritten(uint64_t p)
{
    uint64_t block = p / PQ_VMEM_BLOCK_PAGES;

    return (block == 4 || block == 11) &&
           p % PQ_VMEM_BLOCK_PAGES >= PQ_VMEM_BLOCK_PAGES -
                                      PQ_VMEM_REWRITE_PAGES;
}

/* The contents of page @p of the region, at the end */
static void pq_vmem_page(PQVmem *v, uint64_t p, uint8_t *buf)
{
    uint64_t *w = (uint64_t *)buf;
    uint64_t i;

    for (i = 0; i < PQ_PAGE / 8; i++) {
        w[i] = p / PQ_VMEM_BLOCK_PAGES == 4 &&
               p % PQ_VMEM_BLOCK_PAGES < PQ_VMEM_BLOCK_PAGES / 2 ?
               0 : pq_vmem_word(p, i);
        if (v->rewritten && pq_vmem_is_rewritten(p)) {
            w[i] = ~w[i];
        }
    }
}

static void pq_vmem_fill(QTestState *qts, PQVmem *v, uint64_t block,
                         uint64_t first_page)
{
    uint8_t buf[PQ_PAGE];
    uint64_t p;

    for (p = first_page; p < PQ_VMEM_BLOCK_PAGES; p++) {
        uint64_t page = block * PQ_VMEM_BLOCK_PAGES + p;

        pq_vmem_page(v, page, buf);
        qtest_bufwrite(qts, v->addr + page * PQ_PAGE, buf, PQ_PAGE);
    }
}

static void pq_vmem_check_page(QTestState *qts, PQVmem *v, uint64_t page)
{
    uint8_t want[PQ_PAGE], got[PQ_PAGE];

    pq_vmem_page(v, page, want);
    qtest_bufread(qts, v->addr + page * PQ_PAGE, got, PQ_PAGE);
    if (memcmp(got, want, PQ_PAGE)) {
        g_test_message("virtio-mem page %" PRIu64 " (0x%" PRIx64 ") differs",
                       page, v->addr + page * PQ_PAGE);
        g_assert_not_reached();
    }
}

/*
 * On the source, once precopy has sent them: change the pages that
 * pq_vmem_is_rewritten() names, so that postcopy starts by discarding
 * them on the destination, where minor placement keeps them in the page
 * cache and places them through the alias when they come again.  The
 * alias is populated ahead over the pages that are in the page cache
 * only: not over the unplugged block after each of them.
 */
static void pq_vmem_rewrite(QTestState *from, PQVmem *v)
{
    uint8_t buf[PQ_PAGE];
    uint64_t p;

    v->rewritten = true;
    for (p = 0; p < PQ_VMEM_BLOCKS * PQ_VMEM_BLOCK_PAGES; p++) {
        if (pq_vmem_is_rewritten(p)) {
            pq_vmem_page(v, p, buf);
            qtest_bufwrite(from, v->addr + p * PQ_PAGE, buf, PQ_PAGE);
        }
    }
}

/*
 * Plug 12 blocks on the source, fill them, unplug 4-7 (checking that the
 * discard emptied them), plug 4 again (it reads back as zeroes) and fill
 * its second half: the pages plugged
 */
static uint64_t pq_vmem_setup(QTestState *from, PQVmem *v)
{
    uint8_t zero[PQ_PAGE] = { 0 }, got[PQ_PAGE];
    uint64_t resident[PQ_VMEM_BLOCKS];
    uint64_t i, plugged_pages = 0;

    pq_vmem_init(from, v);
    qtest_qmp_assert_success(from, "{ 'execute': 'qom-set', 'arguments':"
                             " { 'path': 'vm0', 'property': 'requested-size',"
                             "   'value': %d } }", 12 * PQ_VMEM_BLOCK);
    g_assert_cmpint(pq_vmem_request(from, v, VIRTIO_MEM_REQ_PLUG, 0, 12),
                    ==, VIRTIO_MEM_RESP_ACK);
    /* Never more than requested */
    g_assert_cmpint(pq_vmem_request(from, v, VIRTIO_MEM_REQ_PLUG, 12, 1),
                    ==, VIRTIO_MEM_RESP_NACK);
    for (i = 0; i < 12; i++) {
        pq_vmem_fill(from, v, i, 0);
    }
    pq_vmem_resident(from, resident);
    for (i = 0; i < 12; i++) {
        g_assert_cmpuint(resident[i], ==, PQ_VMEM_BLOCK_PAGES);
    }
    g_assert_cmpint(pq_vmem_request(from, v, VIRTIO_MEM_REQ_UNPLUG, 4, 4),
                    ==, VIRTIO_MEM_RESP_ACK);
    pq_vmem_resident(from, resident);
    for (i = 4; i < 8; i++) {
        /* The discard punched a hole: the pages are gone */
        g_assert_cmpuint(resident[i], ==, 0);
    }
    g_assert_cmpint(pq_vmem_request(from, v, VIRTIO_MEM_REQ_PLUG, 4, 1),
                    ==, VIRTIO_MEM_RESP_ACK);
    for (i = 0; i < PQ_VMEM_BLOCK_PAGES / 2; i++) {
        qtest_bufread(from, v->addr + (4 * PQ_VMEM_BLOCK_PAGES + i) * PQ_PAGE,
                      got, PQ_PAGE);
        g_assert(!memcmp(got, zero, PQ_PAGE));
    }
    pq_vmem_fill(from, v, 4, PQ_VMEM_BLOCK_PAGES / 2);
    pq_vmem_check_resident(from, "source");
    for (i = 0; i < PQ_VMEM_BLOCKS; i++) {
        plugged_pages += pq_vmem_plugged(i) ? PQ_VMEM_BLOCK_PAGES : 0;
    }
    return plugged_pages;
}

/*
 * Plug, fill, unplug on the source, then migrate with postcopy (or
 * precopy) and check: every plugged page arrived, and no page of an
 * unplugged block is in the destination's page cache, with UFFDIO_COPY
 * and minor placement alike.  Reads of plugged pages fault during
 * postcopy, and the background stream is capped so that they outrun it.
 */
static void pq_run_vmem(PQArgs *a, bool precopy)
{
    MigrationTestEnv *env = migration_get_env();
    g_autofree uint8_t *want = g_malloc(PQ_END - PQ_START);
    g_autofree uint64_t *order = NULL;
    g_autoptr(GRand) rand = g_rand_new_with_seed(0x5eed);
    uint64_t i, off, n = 0, plugged_pages;
    QTestState *from, *to;
    PQVmem v;

    g_assert(a->vmem);
    if (!precopy && !env->has_uffd) {
        g_test_skip("userfaultfd not available");
        return;
    }
    if (a->mem_type == MEM_TYPE_GUEST_MEMFD ||
        a->vmem_mem_type == MEM_TYPE_GUEST_MEMFD) {
        if (!env->has_guest_memfd) {
            g_test_skip(env->guest_memfd_skip);
            return;
        }
        if (!precopy && !env->has_guest_memfd_uffd) {
            g_test_skip(env->guest_memfd_uffd_skip);
            return;
        }
    }

    pq_fill(want);
    from = pq_start(a, false);
    to = pq_start(a, true);
    for (off = 0; off < PQ_VMEM_ALLOC - PQ_START; off += PQ_CHUNK) {
        qtest_bufwrite(from, PQ_START + off, want + off, PQ_CHUNK);
    }
    plugged_pages = pq_vmem_setup(from, &v);

    if (!precopy) {
        migrate_set_capability(from, "postcopy-ram", true);
        migrate_set_capability(to, "postcopy-ram", true);
        if (a->minor_cap) {
            migrate_set_capability(to, "x-postcopy-minor", true);
        }
        migrate_set_parameter_int(from, "max-bandwidth", PQ_REWRITE_BW);
        migrate_set_parameter_int(from, "max-postcopy-bandwidth", PQ_SLOW);
    } else {
        migrate_set_parameter_int(from, "max-bandwidth", 1ULL << 40);
    }
    migrate_incoming_qmp(to, "tcp:127.0.0.1:0", NULL, "{}");
    migrate_qmp(from, to, NULL, NULL, "{}");
    if (!precopy) {
        wait_for_migration_status(from, "active", NULL);
        /* The plugged blocks, 18 MiB, went first; then slow to a crawl */
        while (read_ram_property_int(from, "transferred") < PQ_REWRITE_SENT) {
            g_usleep(10 * 1000);
        }
        migrate_set_parameter_int(from, "max-bandwidth", 64 * 1024);
        pq_vmem_rewrite(from, &v);
        qtest_qmp_assert_success(from,
                                 "{ 'execute': 'migrate-start-postcopy' }");
        wait_for_migration_status(from, "postcopy-active", NULL);
        wait_for_migration_status(to, "postcopy-active", NULL);
        pq_check_minor_registered(to, a->minor_cap ||
                                  a->vmem_mem_type == MEM_TYPE_GUEST_MEMFD);
        /* The plugged pages, in a random order, faulting */
        order = g_new(uint64_t, plugged_pages);
        for (i = 0; i < PQ_VMEM_BLOCKS * PQ_VMEM_BLOCK_PAGES; i++) {
            if (pq_vmem_plugged(i / PQ_VMEM_BLOCK_PAGES)) {
                order[n++] = i;
            }
        }
        for (i = n - 1; i > 0; i--) {
            uint64_t j = g_rand_int_range(rand, 0, i + 1), t = order[i];

            order[i] = order[j];
            order[j] = t;
        }
        for (i = 0; i < n; i++) {
            pq_vmem_check_page(to, &v, order[i]);
        }
        migrate_set_parameter_int(from, "max-postcopy-bandwidth", 0);
    }
    wait_for_migration_complete(from);
    wait_for_migration_complete(to);

    /* Every plugged page arrived, and the boot RAM below the rings */
    for (i = 0; i < PQ_VMEM_BLOCKS * PQ_VMEM_BLOCK_PAGES; i++) {
        if (pq_vmem_plugged(i / PQ_VMEM_BLOCK_PAGES)) {
            pq_vmem_check_page(to, &v, i);
        }
    }
    for (i = 0; i < PQ_VMEM_BOOT_PAGES; i++) {
        pq_check_page(to, want, i);
    }
    /* The device state came along: what is plugged */
    g_assert_cmpuint(pq_vmem_size(to), ==, plugged_pages * PQ_PAGE);
    /*
     * Nothing unplugged was requested or placed: those blocks have no
     * page in the destination's page cache, the plugged ones all
     */
    pq_vmem_check_resident(to, "destination");
    if (precopy) {
        QDict *rsp = qtest_qmp_assert_success_ref(to,
                                        "{ 'execute': 'query-migrate' }");

        g_assert(!qdict_haskey(rsp, "postcopy-placement"));
        qobject_unref(rsp);
        g_assert_cmpint(read_ram_property_int(from, "postcopy-requests"),
                        ==, 0);
    } else {
        uint64_t continued = read_postcopy_placement(to, "continued");
        uint64_t copied = read_postcopy_placement(to, "copied");
        uint64_t rewritten = 2 * PQ_VMEM_REWRITE_PAGES;

        g_test_message("placed: %" PRIu64 " with UFFDIO_COPY, %" PRIu64
                       " with UFFDIO_CONTINUE", copied, continued);
        g_assert_cmpint(read_ram_property_int(from, "postcopy-requests"),
                        >, 0);
        /* Not more pages than there are outside the unplugged blocks */
        g_assert_cmpuint(copied + continued, <=,
                         read_ram_property_int(from, "total") / PQ_PAGE -
                         (PQ_VMEM_BLOCKS * PQ_VMEM_BLOCK_PAGES -
                          plugged_pages));
        g_assert_cmpuint(copied, >, plugged_pages / 4);
        /*
         * The rewritten pages were received, then discarded, and no
         * other page; with minor placement they stayed in the page cache
         * and were placed through the alias, every other page with
         * UFFDIO_COPY
         */
        g_assert_cmpuint(read_postcopy_placement(to, "discarded"), ==,
                         rewritten);
        if (a->minor_cap || a->vmem_mem_type == MEM_TYPE_GUEST_MEMFD) {
            g_assert_cmpuint(continued, ==, rewritten);
        } else {
            g_assert_cmpuint(continued, ==, 0);
        }
    }
    pq_vmem_cleanup(&v);
    qtest_quit(from);
    qtest_quit(to);
}

/*
 * CPR of the same machines, memory verified page by page on the new
 * QEMU: cpr-transfer (the new QEMU gets the backends' fds over its cpr
 * channel) or, with @exec, cpr-exec (the source exec()s the new QEMU,
 * which inherits them).  No guest RAM may go through the stream.  Under
 * -accel qtest, as under TCG, the guest_memfd backend creates its
 * guest_memfd on a KVM VM of its own; the new QEMU creates none.
 */
static void pq_run_cpr(PQArgs *a, bool exec)
{
    MigrationTestEnv *env = migration_get_env();
    g_autofree uint8_t *want = g_malloc(PQ_END - PQ_START);
    g_autofree uint8_t *dimm_want = NULL;
    g_autofree char *cpr_path = g_strdup_printf("%s/pq-cpr", env->tmpfs);
    g_autofree char *mig_path = g_strdup_printf("%s/pq-mig", env->tmpfs);
    g_autofree char *file = g_strdup_printf("%s/pq-cpr-exec", env->tmpfs);
    const char *opts = "-machine aux-ram-share=on";
    uint64_t boot_end = a->vmem ? PQ_VMEM_ALLOC : PQ_END;
    uint64_t dimm_addr = 0, plugged_pages = 0, i, off;
    QTestState *from, *to;
    PQVmem v;

    if ((a->mem_type == MEM_TYPE_GUEST_MEMFD ||
         (a->dimm && a->dimm_mem_type == MEM_TYPE_GUEST_MEMFD) ||
         (a->vmem && a->vmem_mem_type == MEM_TYPE_GUEST_MEMFD)) &&
        !env->has_guest_memfd) {
        g_test_skip(env->guest_memfd_skip);
        return;
    }

    pq_fill(want);
    from = pq_start_ext(a, false, opts, true);
    for (off = 0; off < boot_end - PQ_START; off += PQ_CHUNK) {
        qtest_bufwrite(from, PQ_START + off, want + off, PQ_CHUNK);
    }
    if (a->dimm) {
        dimm_want = pq_dimm_fill_plug(from, a, want, &dimm_addr);
    }
    if (a->vmem) {
        plugged_pages = pq_vmem_setup(from, &v);
    }

    if (exec) {
        /* The new QEMU: the destination's command line, on the same fds */
        g_autofree char *args = pq_args(a, true, opts);
        g_autofree char *qemu_args = qtest_qemu_args(args);
        g_autofree char *cmd = g_strconcat(qtest_qemu_binary(NULL), " ",
                                           qemu_args, NULL);
        g_auto(GStrv) words = g_strsplit(g_strstrip(cmd), " ", -1);
        g_autoptr(GPtrArray) argv = g_ptr_array_new();
        g_autofree char *uri = g_strdup_printf("file:%s", file);
        struct stat st;

        for (i = 0; words[i]; i++) {
            if (*words[i]) {
                g_ptr_array_add(argv, words[i]);
            }
        }
        g_ptr_array_add(argv, NULL);
        migrate_set_parameter_strv(from, "cpr-exec-command",
                                   (char **)argv->pdata);
        migrate_set_parameter_str(from, "mode", "cpr-exec");
        migrate_set_capability(from, "events", true);
        migrate_qmp(from, NULL, uri, NULL, "{}");
        pq_wait_event(from, "completed");
        to = qtest_init_after_exec(from);
        migrate_incoming_qmp(to, uri, NULL, "{}");
        wait_for_migration_complete(to);
        /* Device state only: RAM stayed in the inherited fds */
        g_assert_cmpint(stat(file, &st), ==, 0);
        g_test_message("cpr-exec stream: %lld bytes", (long long)st.st_size);
        g_assert_cmpint(st.st_size, <, 1024 * 1024);
        unlink(file);
    } else {
        int cpr_fd = qtest_socket_server(cpr_path);
        g_autofree char *extra = g_strdup_printf(
            "%s -incoming cpr,addr.transport=socket,addr.type=fd,"
            "addr.str=%d", opts, cpr_fd);
        g_autofree char *main_channel = g_strdup_printf(
            "{ 'channel-type': 'main', 'addr': { 'transport': 'socket',"
            "  'type': 'unix', 'path': '%s' } }", mig_path);
        g_autofree char *out = g_strdup_printf(
            "[ %s, { 'channel-type': 'cpr', 'addr': { 'transport': 'socket',"
            "  'type': 'unix', 'path': '%s' } } ]", main_channel, cpr_path);
        g_autofree char *in = g_strdup_printf("[ %s ]", main_channel);

        g_assert_cmpint(cpr_fd, >=, 0);
        /* It waits for the cpr channel before it serves QMP */
        to = pq_start_ext(a, true, extra, false);
        close(cpr_fd);
        migrate_set_parameter_str(from, "mode", "cpr-transfer");
        migrate_qmp(from, to, NULL, qobject_from_json(out, &error_abort),
                    "{}");
        qtest_connect(to);
        qtest_qmp_handshake(to, NULL);
        migrate_incoming_qmp(to, NULL, qobject_from_json(in, &error_abort),
                             "{}");
        wait_for_migration_complete(from);
        wait_for_migration_complete(to);
        /* Not a page of RAM went through the stream */
        g_assert_cmpint(read_ram_property_int(from, "normal"), ==, 0);
        g_assert_cmpint(read_ram_property_int(from, "duplicate"), ==, 0);
        unlink(cpr_path);
        unlink(mig_path);
    }

    for (i = 0; i < (boot_end - PQ_START) / PQ_PAGE; i++) {
        pq_check_page(to, want, i);
    }
    if (a->dimm) {
        pq_dimm_check(to, dimm_addr, dimm_want);
    }
    if (a->vmem) {
        g_assert_cmpuint(pq_vmem_size(to), ==, plugged_pages * PQ_PAGE);
        for (i = 0; i < PQ_VMEM_BLOCKS * PQ_VMEM_BLOCK_PAGES; i++) {
            if (pq_vmem_plugged(i / PQ_VMEM_BLOCK_PAGES)) {
                pq_vmem_check_page(to, &v, i);
            }
        }
        pq_vmem_check_resident(to, "new QEMU");
        pq_vmem_cleanup(&v);
    }
    qtest_quit(to);
    qtest_quit(from);
}

/*
 * The "hugetlb-enomem" test: the destination's RAM is a file on a
 * hugetlbfs mount of the test's own, whose size limit runs out during
 * postcopy.  Precopy sends the first part of RAM and the source rewrites
 * it, as in the rewrite tests; then the test punches the huge pages that
 * hold those pages out of the destination's file, and fills the mount
 * with another file, but for PQ_ENOMEM_SPARE huge pages.  The
 * destination's receivedmap still says that the pages were received, so
 * when postcopy starts it takes them to be in the page cache: it places
 * them through its second mapping of the file, and the first of them
 * that cannot be allocated must pause postcopy with an error naming it.
 * A write there that allocates the page would raise SIGBUS and kill the
 * destination instead, with the guest running on it.  It comes first
 * in the stream, before any page not received, which UFFDIO_COPY
 * places: postcopy starts from the beginning of RAM.  Once the filler
 * file is removed, the migration recovers and completes, every page
 * right.
 */
#define PQ_HUGE (2 * 1024 * 1024)
/* The huge pages that hold the rewritten pages: the ones punched */
#define PQ_ENOMEM_PUNCHED \
    (ROUND_UP(PQ_START + PQ_REWRITE_PAGES * PQ_PAGE, PQ_HUGE) / PQ_HUGE)
/*
 * Left free in the mount: precopy goes on at a crawl (a huge page takes
 * it half a minute) until postcopy starts, and must not need more
 * (writing a huge page that cannot be allocated in precopy is a SIGBUS
 * as well).  The alias then gets what is left of them, fewer than
 * PQ_ENOMEM_PUNCHED.
 *
 * The source pauses only a postcopy that it has seen the destination
 * start: until the destination has said so, it is in "postcopy-device",
 * where an error fails the migration.  It passes to "postcopy-active"
 * between two huge pages, so the background stream runs at PQ_SLOW: the
 * page that cannot be allocated comes a second after the start.
 */
#define PQ_ENOMEM_SPARE 4
#define PQ_ENOMEM_TIMEOUT 30    /* seconds, to pause */
#define PQ_ENOMEM_MSG "cannot allocate page of RAM block mem at offset 0x"

typedef struct {
    char *dir;                  /* the hugetlbfs mount */
    char *ram;                  /* the destination's RAM in it */
    char *filler;               /* what fills it */
    char *log;                  /* the destination's stderr */
} PQHugeMount;

static void pq_huge_umount(PQHugeMount *m)
{
    unlink(m->filler);
    unlink(m->ram);
    /* Detached even if a QEMU still has it: its pages go with QEMU */
    umount2(m->dir, MNT_DETACH);
    rmdir(m->dir);
}

static void pq_huge_abort(void *opaque)
{
    PQHugeMount *m = opaque;
    g_autofree char *text = NULL;

    if (g_file_get_contents(m->log, &text, NULL, NULL)) {
        fprintf(stderr, "destination stderr:\n%s\n", text);
    }
    pq_huge_umount(m);
}

/* Fail if the destination has died, saying how, its child status kept */
static void pq_assert_alive(QTestState *to)
{
    siginfo_t info = { 0 };

    if (waitid(P_PID, qtest_pid(to), &info,
               WEXITED | WNOHANG | WNOWAIT) || !info.si_pid) {
        return;
    }
    if (info.si_code == CLD_KILLED || info.si_code == CLD_DUMPED) {
        g_test_message("the destination was killed by signal %d (%s)",
                       info.si_status, strsignal(info.si_status));
    } else {
        g_test_message("the destination exited with status %d",
                       info.si_status);
    }
    g_assert_not_reached();
}

/* The destination pauses postcopy, alive, within PQ_ENOMEM_TIMEOUT */
static void pq_wait_paused(QTestState *to)
{
    gint64 end = g_get_monotonic_time() +
                 PQ_ENOMEM_TIMEOUT * G_TIME_SPAN_SECOND;

    for (;;) {
        g_autofree char *status = NULL;

        pq_assert_alive(to);
        status = migrate_query_status(to);
        if (!strcmp(status, "postcopy-paused")) {
            return;
        }
        /* postcopy-device until it has run the package's CMD_POSTCOPY_RUN */
        if (strcmp(status, "postcopy-device")) {
            g_assert_cmpstr(status, ==, "postcopy-active");
        }
        if (g_get_monotonic_time() > end) {
            g_test_message("the destination did not pause in %d s",
                           PQ_ENOMEM_TIMEOUT);
            g_assert_not_reached();
        }
        g_usleep(20 * 1000);
    }
}

static void test_pq_minor_hugetlb_enomem(void)
{
    MigrationTestEnv *env = migration_get_env();
    g_autofree uint8_t *want = g_malloc(PQ_END - PQ_START);
    g_autofree char *no_hugepages = NULL;
    g_autofree char *opts = NULL, *extra = NULL, *text = NULL, *uri = NULL;
    g_autofree char *sock = NULL, *line = NULL;
    g_autofree char *dir = NULL, *ram = NULL, *filler = NULL, *log = NULL;
    PQHugeMount m;
    PQArgs a = {
        .mem_type = MEM_TYPE_MEMFD, .hugetlb = true, .minor_cap = true,
    };
    QTestState *from, *to;
    struct statfs st;
    uint64_t i, off, free_pages, continued;
    const char *msg;
    int fd;

    if (!env->has_uffd) {
        g_test_skip("userfaultfd not available");
        return;
    }
    /* The source's 64 MiB, and the mount's limit of as many */
    no_hugepages = pq_hugepages_missing();
    if (no_hugepages) {
        g_test_skip(no_hugepages);
        return;
    }
    if (geteuid()) {
        g_test_skip("needs root, to mount a hugetlbfs with a size limit");
        return;
    }
    dir = g_strdup_printf("%s/pq-huge", env->tmpfs);
    ram = g_strdup_printf("%s/ram", dir);
    filler = g_strdup_printf("%s/filler", dir);
    log = g_strdup_printf("%s/pq-enomem.log", env->tmpfs);
    m = (PQHugeMount) { .dir = dir, .ram = ram, .filler = filler, .log = log };
    opts = g_strdup_printf("pagesize=2M,size=%dM", PQ_RAM_MB);
    g_assert_cmpint(mkdir(m.dir, 0700), ==, 0);
    if (mount("none", m.dir, "hugetlbfs", 0, opts)) {
        g_autofree char *why = g_strdup_printf("cannot mount hugetlbfs "
                                               "(%s): %s", opts,
                                               strerror(errno));

        rmdir(m.dir);
        g_test_skip(why);
        return;
    }
    qtest_add_abrt_handler(pq_huge_abort, &m);
    a.mem_path = m.ram;
    extra = g_strdup_printf("2>%s", m.log);

    pq_fill(want);
    from = pq_start(&a, false);
    to = pq_start_ext(&a, true, extra, true);
    for (off = 0; off < PQ_END - PQ_START; off += PQ_CHUNK) {
        qtest_bufwrite(from, PQ_START + off, want + off, PQ_CHUNK);
    }
    migrate_set_capability(from, "events", true);
    migrate_set_capability(from, "postcopy-ram", true);
    migrate_set_capability(to, "postcopy-ram", true);
    migrate_set_capability(to, "x-postcopy-minor", true);
    migrate_set_parameter_int(from, "max-bandwidth", PQ_REWRITE_BW);
    migrate_set_parameter_int(from, "max-postcopy-bandwidth", PQ_SLOW);
    migrate_incoming_qmp(to, "tcp:127.0.0.1:0", NULL, "{}");
    migrate_qmp(from, to, NULL, NULL, "{}");
    wait_for_migration_status(from, "active", NULL);
    while (read_ram_property_int(from, "transferred") < PQ_REWRITE_SENT) {
        g_usleep(10 * 1000);
    }
    migrate_set_parameter_int(from, "max-bandwidth", 64 * 1024);
    pq_rewrite(from, want, 1);

    /* The received huge pages that postcopy replaces are gone... */
    fd = open(m.ram, O_RDWR);
    g_assert_cmpint(fd, >=, 0);
    g_assert_cmpint(fallocate(fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE,
                              0, PQ_ENOMEM_PUNCHED * PQ_HUGE), ==, 0);
    close(fd);
    /* ...and cannot come back, but for PQ_ENOMEM_SPARE of them */
    g_assert_cmpint(statfs(m.dir, &st), ==, 0);
    free_pages = st.f_bfree;
    g_test_message("%" PRIu64 " huge pages punched, %" PRIu64 " of %" PRIu64
                   " free in the mount", (uint64_t)PQ_ENOMEM_PUNCHED,
                   free_pages, (uint64_t)st.f_blocks);
    g_assert_cmpuint(free_pages, >=, PQ_ENOMEM_PUNCHED);
    fd = open(m.filler, O_RDWR | O_CREAT | O_EXCL, 0600);
    g_assert_cmpint(fd, >=, 0);
    g_assert_cmpint(fallocate(fd, 0, 0,
                              (free_pages - PQ_ENOMEM_SPARE) * PQ_HUGE),
                    ==, 0);
    close(fd);
    g_assert_cmpint(statfs(m.dir, &st), ==, 0);
    g_assert_cmpuint(st.f_bfree, <=, PQ_ENOMEM_SPARE);

    /* Postcopy pauses on the first page that it cannot place */
    qtest_qmp_assert_success(from, "{ 'execute': 'migrate-start-postcopy' }");
    pq_wait_event(from, "postcopy-active");
    pq_wait_paused(to);
    /* Alive, the guest running on it, and it says why, naming a page */
    g_assert_true(pq_running(to));
    g_assert(g_file_get_contents(m.log, &text, NULL, NULL));
    msg = strstr(text, PQ_ENOMEM_MSG);
    if (!msg) {
        g_test_message("no \"%s\" on the destination's stderr", PQ_ENOMEM_MSG);
        g_assert_not_reached();
    }
    off = g_ascii_strtoull(msg + strlen(PQ_ENOMEM_MSG), NULL, 16);
    line = g_strndup(msg, strcspn(msg, "\n"));
    g_test_message("destination: %s", line);
    g_assert_cmpuint(off, <, PQ_ENOMEM_PUNCHED * PQ_HUGE);
    g_assert_cmpuint(off % PQ_HUGE, ==, 0);
    wait_for_migration_status(from, "postcopy-paused",
                              (const char * []) { "failed", NULL });

    /* With the memory back, the pause is recoverable */
    unlink(m.filler);
    migrate_set_parameter_int(from, "max-postcopy-bandwidth", 0);
    sock = g_strdup_printf("%s/pq-recover", env->tmpfs);
    uri = g_strdup_printf("unix:%s", sock);
    migrate_recover(to, uri);
    migrate_qmp(from, to, uri, NULL, "{'resume': true}");
    wait_for_migration_complete(from);
    wait_for_migration_complete(to);
    unlink(sock);
    for (i = 0; i < PQ_PAGES; i++) {
        pq_check_page(to, want, i);
    }
    /*
     * Each punched page went through the alias, and at most one other:
     * the one precopy was in the middle of
     */
    continued = read_postcopy_placement(to, "continued");
    g_test_message("placed: %" PRIu64 " with UFFDIO_COPY, %" PRIu64
                   " with UFFDIO_CONTINUE",
                   read_postcopy_placement(to, "copied"), continued);
    g_assert_cmpuint(continued, >=, PQ_ENOMEM_PUNCHED);
    g_assert_cmpuint(continued, <=, PQ_ENOMEM_PUNCHED + 1);
    pq_assert_alive(to);
    qtest_quit(from);
    qtest_quit(to);
    qtest_remove_abrt_handler(&m);
    pq_huge_umount(&m);
    unlink(m.log);
}

#define PQ_TEST(name, ...)                                                   \
static void test_pq_##name(void)                                             \
{                                                                            \
    PQArgs a = { __VA_ARGS__ };                                              \
    pq_run(&a);                                                              \
}

#define PQ_PRECOPY_TEST(name, ...)                                           \
static void test_pq_precopy_##name(void)                                     \
{                                                                            \
    PQArgs a = { __VA_ARGS__ };                                              \
    pq_run_precopy(&a);                                                      \
}

PQ_TEST(anon_random, .mem_type = MEM_TYPE_ANON, .order = PQ_RANDOM,
        .postcopy_bandwidth = PQ_SLOW)
PQ_TEST(minor_sequential, .mem_type = MEM_TYPE_MEMFD, .minor_cap = true,
        .order = PQ_SEQUENTIAL, .postcopy_bandwidth = PQ_SLOW,
        .sparse = true)
PQ_TEST(minor_reverse, .mem_type = MEM_TYPE_MEMFD, .minor_cap = true,
        .order = PQ_REVERSE, .postcopy_bandwidth = PQ_SLOW,
        .sparse = true)
PQ_TEST(minor_random, .mem_type = MEM_TYPE_MEMFD, .minor_cap = true,
        .order = PQ_RANDOM, .postcopy_bandwidth = PQ_SLOW,
        .sparse = true)
PQ_TEST(minor_race, .mem_type = MEM_TYPE_MEMFD, .minor_cap = true,
        .order = PQ_RANDOM, .postcopy_bandwidth = 0, .rewrite = true)
PQ_TEST(minor_preempt_race, .mem_type = MEM_TYPE_MEMFD, .minor_cap = true,
        .order = PQ_RANDOM, .postcopy_bandwidth = 0, .preempt = true,
        .sparse = true)
PQ_TEST(minor_recovery, .mem_type = MEM_TYPE_MEMFD, .minor_cap = true,
        .order = PQ_RANDOM, .postcopy_bandwidth = PQ_TRICKLE, .recover = true,
        .rewrite = true)
PQ_TEST(anon_rewrite, .mem_type = MEM_TYPE_ANON, .order = PQ_RANDOM,
        .postcopy_bandwidth = PQ_SLOW, .rewrite = true)
PQ_TEST(minor_rewrite, .mem_type = MEM_TYPE_MEMFD, .minor_cap = true,
        .order = PQ_RANDOM, .postcopy_bandwidth = PQ_SLOW, .rewrite = true)
PQ_TEST(minor_rewrite_race, .mem_type = MEM_TYPE_MEMFD, .minor_cap = true,
        .order = PQ_RANDOM, .postcopy_bandwidth = 0, .rewrite = true,
        .preempt = true)
PQ_TEST(anon_two_readers, .mem_type = MEM_TYPE_ANON,
        .order = PQ_SEQUENTIAL, .postcopy_bandwidth = PQ_SLOW, .dump = true)
PQ_TEST(minor_two_readers, .mem_type = MEM_TYPE_MEMFD, .minor_cap = true,
        .order = PQ_SEQUENTIAL, .postcopy_bandwidth = PQ_SLOW, .dump = true,
        .rewrite = true)
PQ_TEST(minor_two_readers_preempt, .mem_type = MEM_TYPE_MEMFD,
        .minor_cap = true, .order = PQ_SEQUENTIAL,
        .postcopy_bandwidth = PQ_SLOW, .dump = true, .preempt = true,
        .rewrite = true)
PQ_TEST(hugetlb_random, .mem_type = MEM_TYPE_MEMFD, .hugetlb = true,
        .order = PQ_RANDOM, .postcopy_bandwidth = PQ_SLOW)
PQ_TEST(minor_hugetlb_random, .mem_type = MEM_TYPE_MEMFD, .hugetlb = true,
        .minor_cap = true, .order = PQ_RANDOM, .postcopy_bandwidth = PQ_SLOW,
        .sparse = true)
PQ_TEST(minor_hugetlb_preempt_race, .mem_type = MEM_TYPE_MEMFD,
        .hugetlb = true, .minor_cap = true, .order = PQ_RANDOM,
        .postcopy_bandwidth = 0, .preempt = true,
        .sparse = true)
PQ_TEST(minor_hugetlb_rewrite, .mem_type = MEM_TYPE_MEMFD, .hugetlb = true,
        .minor_cap = true, .order = PQ_RANDOM, .postcopy_bandwidth = PQ_SLOW,
        .rewrite = true)
PQ_TEST(minor_bind, .mem_type = MEM_TYPE_MEMFD, .minor_cap = true,
        .order = PQ_RANDOM, .postcopy_bandwidth = PQ_SLOW, .bind = true,
        .sparse = true)
PQ_TEST(mixed_memfd_gmem, .mem_type = MEM_TYPE_GUEST_MEMFD,
        .src_differs = true, .src_mem_type = MEM_TYPE_MEMFD,
        .order = PQ_RANDOM, .postcopy_bandwidth = PQ_SLOW,
        .sparse = true)
PQ_TEST(mixed_anon_gmem, .mem_type = MEM_TYPE_GUEST_MEMFD,
        .src_differs = true, .src_mem_type = MEM_TYPE_ANON,
        .order = PQ_RANDOM, .postcopy_bandwidth = PQ_SLOW,
        .sparse = true)
PQ_TEST(mixed_gmem_memfd, .mem_type = MEM_TYPE_MEMFD,
        .src_differs = true, .src_mem_type = MEM_TYPE_GUEST_MEMFD,
        .order = PQ_RANDOM, .postcopy_bandwidth = PQ_SLOW,
        .sparse = true)
PQ_TEST(mixed_gmem_anon, .mem_type = MEM_TYPE_ANON,
        .src_differs = true, .src_mem_type = MEM_TYPE_GUEST_MEMFD,
        .order = PQ_RANDOM, .postcopy_bandwidth = PQ_SLOW,
        .sparse = true)
PQ_TEST(mixed_gmem_memfd_minor, .mem_type = MEM_TYPE_MEMFD,
        .minor_cap = true, .src_differs = true,
        .src_mem_type = MEM_TYPE_GUEST_MEMFD, .order = PQ_RANDOM,
        .postcopy_bandwidth = PQ_SLOW,
        .sparse = true)
PQ_TEST(dimm_minor, .mem_type = MEM_TYPE_MEMFD, .minor_cap = true,
        .dimm = true, .dimm_mem_type = MEM_TYPE_MEMFD, .order = PQ_RANDOM,
        .postcopy_bandwidth = PQ_SLOW, .rewrite = true)
PQ_TEST(dimm_gmem, .mem_type = MEM_TYPE_GUEST_MEMFD, .dimm = true,
        .dimm_mem_type = MEM_TYPE_GUEST_MEMFD, .order = PQ_RANDOM,
        .postcopy_bandwidth = PQ_SLOW, .rewrite = true)
PQ_TEST(dimm_gmem_memfd, .mem_type = MEM_TYPE_GUEST_MEMFD, .dimm = true,
        .dimm_mem_type = MEM_TYPE_MEMFD, .order = PQ_RANDOM,
        .postcopy_bandwidth = PQ_SLOW)
PQ_TEST(gmem_random, .mem_type = MEM_TYPE_GUEST_MEMFD,
        .order = PQ_RANDOM, .postcopy_bandwidth = PQ_SLOW,
        .sparse = true)
PQ_TEST(gmem_race, .mem_type = MEM_TYPE_GUEST_MEMFD,
        .order = PQ_RANDOM, .postcopy_bandwidth = 0, .rewrite = true)
PQ_TEST(gmem_preempt_race, .mem_type = MEM_TYPE_GUEST_MEMFD,
        .order = PQ_RANDOM, .postcopy_bandwidth = 0, .preempt = true,
        .sparse = true)
PQ_TEST(gmem_recovery, .mem_type = MEM_TYPE_GUEST_MEMFD,
        .order = PQ_RANDOM, .postcopy_bandwidth = PQ_TRICKLE, .recover = true,
        .rewrite = true)
PQ_TEST(gmem_rewrite, .mem_type = MEM_TYPE_GUEST_MEMFD,
        .order = PQ_RANDOM, .postcopy_bandwidth = PQ_SLOW, .rewrite = true)
PQ_TEST(gmem_two_readers, .mem_type = MEM_TYPE_GUEST_MEMFD,
        .order = PQ_SEQUENTIAL, .postcopy_bandwidth = PQ_SLOW, .dump = true,
        .rewrite = true)

#define PQ_VMEM_TEST(name, pre, ...)                                         \
static void test_pq_vmem_##name(void)                                        \
{                                                                            \
    PQArgs a = { .vmem = true, __VA_ARGS__ };                                \
    pq_run_vmem(&a, pre);                                                    \
}

PQ_VMEM_TEST(memfd, false, .mem_type = MEM_TYPE_MEMFD,
             .vmem_mem_type = MEM_TYPE_MEMFD)
PQ_VMEM_TEST(minor, false, .mem_type = MEM_TYPE_MEMFD, .minor_cap = true,
             .vmem_mem_type = MEM_TYPE_MEMFD)
PQ_VMEM_TEST(gmem, false, .mem_type = MEM_TYPE_GUEST_MEMFD,
             .vmem_mem_type = MEM_TYPE_GUEST_MEMFD)
PQ_VMEM_TEST(precopy_gmem, true, .mem_type = MEM_TYPE_GUEST_MEMFD,
             .vmem_mem_type = MEM_TYPE_GUEST_MEMFD)

#define PQ_CPR_TEST(name, exec, ...)                                         \
static void test_pq_cpr_##name(void)                                         \
{                                                                            \
    PQArgs a = { __VA_ARGS__ };                                              \
    pq_run_cpr(&a, exec);                                                    \
}

#define PQ_CPR_ALL .mem_type = MEM_TYPE_GUEST_MEMFD, .dimm = true,            \
    .dimm_mem_type = MEM_TYPE_GUEST_MEMFD, .vmem = true,                     \
    .vmem_mem_type = MEM_TYPE_GUEST_MEMFD
PQ_CPR_TEST(transfer_gmem, false, PQ_CPR_ALL)
PQ_CPR_TEST(exec_gmem, true, PQ_CPR_ALL)
PQ_CPR_TEST(transfer_gmem_memfd, false, .mem_type = MEM_TYPE_GUEST_MEMFD,
            .dimm = true, .dimm_mem_type = MEM_TYPE_MEMFD)

PQ_PRECOPY_TEST(dimm_gmem, .mem_type = MEM_TYPE_GUEST_MEMFD, .dimm = true,
                .dimm_mem_type = MEM_TYPE_GUEST_MEMFD)
PQ_PRECOPY_TEST(dimm_gmem_memfd, .mem_type = MEM_TYPE_GUEST_MEMFD,
                .dimm = true, .dimm_mem_type = MEM_TYPE_MEMFD)
PQ_PRECOPY_TEST(dimm_memfd_gmem, .mem_type = MEM_TYPE_MEMFD, .dimm = true,
                .dimm_mem_type = MEM_TYPE_GUEST_MEMFD)
PQ_PRECOPY_TEST(mixed_anon_gmem, .mem_type = MEM_TYPE_GUEST_MEMFD,
                .src_differs = true, .src_mem_type = MEM_TYPE_ANON)
PQ_PRECOPY_TEST(mixed_gmem_anon, .mem_type = MEM_TYPE_ANON,
                .src_differs = true, .src_mem_type = MEM_TYPE_GUEST_MEMFD)

void migration_test_add_postcopy_qtest(MigrationTestEnv *env)
{
    static const struct {
        const char *path;
        void (*fn)(void);
    } tests[] = {
        { "anon/random", test_pq_anon_random },
        { "anon/rewrite", test_pq_anon_rewrite },
        { "anon/two-readers", test_pq_anon_two_readers },
        { "minor/sequential", test_pq_minor_sequential },
        { "minor/reverse", test_pq_minor_reverse },
        { "minor/random", test_pq_minor_random },
        { "minor/race", test_pq_minor_race },
        { "minor/preempt-race", test_pq_minor_preempt_race },
        { "minor/recovery", test_pq_minor_recovery },
        { "minor/rewrite", test_pq_minor_rewrite },
        { "minor/rewrite-preempt-race", test_pq_minor_rewrite_race },
        { "minor/two-readers", test_pq_minor_two_readers },
        { "minor/two-readers-preempt", test_pq_minor_two_readers_preempt },
        { "hugetlb/random", test_pq_hugetlb_random },
        { "minor/hugetlb-random", test_pq_minor_hugetlb_random },
        { "minor/hugetlb-preempt-race", test_pq_minor_hugetlb_preempt_race },
        { "minor/hugetlb-rewrite", test_pq_minor_hugetlb_rewrite },
        { "minor/hugetlb-enomem", test_pq_minor_hugetlb_enomem },
        { "minor/alias-attributes", test_pq_minor_bind },
        { "mixed/guest-memfd-to-memfd", test_pq_mixed_gmem_memfd },
        { "mixed/guest-memfd-to-memfd-minor",
          test_pq_mixed_gmem_memfd_minor },
        { "mixed/guest-memfd-to-anon", test_pq_mixed_gmem_anon },
        { "mixed/memfd-to-guest-memfd", test_pq_mixed_memfd_gmem },
        { "mixed/anon-to-guest-memfd", test_pq_mixed_anon_gmem },
        { "dimm/minor", test_pq_dimm_minor },
        { "dimm/guest-memfd", test_pq_dimm_gmem },
        { "dimm/guest-memfd-boot-memfd-dimm", test_pq_dimm_gmem_memfd },
        { "guest-memfd/random", test_pq_gmem_random },
        { "guest-memfd/race", test_pq_gmem_race },
        { "guest-memfd/preempt-race", test_pq_gmem_preempt_race },
        { "guest-memfd/recovery", test_pq_gmem_recovery },
        { "guest-memfd/rewrite", test_pq_gmem_rewrite },
        { "guest-memfd/two-readers", test_pq_gmem_two_readers },
        { "virtio-mem/memfd", test_pq_vmem_memfd },
        { "virtio-mem/minor", test_pq_vmem_minor },
        { "virtio-mem/guest-memfd", test_pq_vmem_gmem },
    }, cpr[] = {
        /* guest_memfd boot RAM, pc-dimm and virtio-mem */
        { "transfer/guest-memfd", test_pq_cpr_transfer_gmem },
        { "exec/guest-memfd", test_pq_cpr_exec_gmem },
        { "transfer/guest-memfd-boot-memfd-dimm",
          test_pq_cpr_transfer_gmem_memfd },
    }, precopy[] = {
        { "virtio-mem/guest-memfd", test_pq_vmem_precopy_gmem },
        { "dimm/guest-memfd", test_pq_precopy_dimm_gmem },
        { "dimm/guest-memfd-boot-memfd-dimm",
          test_pq_precopy_dimm_gmem_memfd },
        { "dimm/memfd-boot-guest-memfd-dimm",
          test_pq_precopy_dimm_memfd_gmem },
        { "mixed/anon-to-guest-memfd", test_pq_precopy_mixed_anon_gmem },
        { "mixed/guest-memfd-to-anon", test_pq_precopy_mixed_gmem_anon },
    };
    size_t i;

    /* Seconds each, but two dozen of them: in the full set (--full) */
    if (!env->is_x86 || !env->full_set) {
        return;
    }
    for (i = 0; i < ARRAY_SIZE(tests); i++) {
        g_autofree char *path =
            g_strdup_printf("/migration/postcopy/qtest/%s", tests[i].path);

        migration_test_add(path, tests[i].fn);
    }
    for (i = 0; i < ARRAY_SIZE(cpr); i++) {
        g_autofree char *path =
            g_strdup_printf("/migration/mode/qtest/%s", cpr[i].path);

        migration_test_add(path, cpr[i].fn);
    }
    for (i = 0; i < ARRAY_SIZE(precopy); i++) {
        g_autofree char *path =
            g_strdup_printf("/migration/precopy/qtest/%s", precopy[i].path);

        migration_test_add(path, precopy[i].fn);
    }
}
