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
 * them with data and zero pages.
 *
 * The "hugetlb" tests do the same on memfd RAM in 2 MiB hugetlbfs pages,
 * with minor placement and, as the reference, with UFFDIO_COPY; they need
 * 64 free 2 MiB pages on the host.
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
 */

#include "qemu/osdep.h"
#include "elf.h"
#include "libqtest.h"
#include "migration/framework.h"
#include "migration/migration-qmp.h"
#include "migration/migration-util.h"
#include "qobject/qdict.h"
#include "qobject/qlist.h"
#include "qobject/qnum.h"
#include "qobject/qstring.h"

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
} PQArgs;

#define PQ_DIMM_MB 16
#define PQ_DIMM_PAGES (PQ_DIMM_MB * 1024 * 1024 / PQ_PAGE)

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
 * Change the first PQ_REWRITE_PAGES pages on the source, and in @want:
 * every third page becomes zeroes, the others a new pattern.
 */
static void pq_rewrite(QTestState *from, uint8_t *want)
{
    uint64_t *w = (uint64_t *)want;
    uint64_t p, i;

    for (p = 0; p < PQ_REWRITE_PAGES; p++) {
        for (i = 0; i < PQ_PAGE / 8; i++) {
            w[p * (PQ_PAGE / 8) + i] = p % 3 ? ~pq_word(p, i) : 0;
        }
    }
    for (p = 0; p < PQ_REWRITE_PAGES * PQ_PAGE; p += PQ_CHUNK) {
        qtest_bufwrite(from, PQ_START + p, want + p, PQ_CHUNK);
    }
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

static QTestState *pq_start(PQArgs *a, bool incoming)
{
    g_autoptr(QList) caps = qlist_new();
    g_autofree char *args = NULL;
    g_autofree char *dimm = NULL;
    MemType type = !incoming && a->src_differs ? a->src_mem_type
                                                : a->mem_type;

    if (a->dimm && incoming) {
        dimm = g_strdup_printf("-object %s,id=dimm0,size=%dM "
                               "-device pc-dimm,id=d0,memdev=dimm0",
                               pq_backend(a->dimm_mem_type), PQ_DIMM_MB);
    }
    qlist_append_str(caps, "oob");
    args = g_strdup_printf("-machine q35 -m %dM%s "
                           "-object %s%s%s,id=mem,size=%dM "
                           "-machine memory-backend=mem %s %s",
                           PQ_RAM_MB, a->dimm ? ",slots=2,maxmem=1G" : "",
                           pq_backend(type),
                           a->hugetlb ? ",hugetlb=on,hugetlbsize=2M" : "",
                           a->bind ? ",host-nodes=0,policy=bind" : "",
                           PQ_RAM_MB, dimm ? dimm : "",
                           incoming ? "-incoming defer" : "");
    return qtest_init_ext(NULL, args, caps, true);
}

/*
 * Hotplug the DIMM on the source as a user would, and fill it: its
 * guest-physical address
 */
static uint64_t pq_dimm_plug(QTestState *from, PQArgs *a, uint8_t *want)
{
    g_auto(GStrv) words = g_strsplit(pq_backend(a->dimm_mem_type), ",", 2);
    QDict *rsp, *dev;
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
    g_assert_cmpint(qlist_size(list), ==, 1);
    dev = qdict_get_qdict(qobject_to(QDict, qlist_peek(list)), "data");
    addr = qdict_get_uint(dev, "addr");
    g_assert_cmpstr(qdict_get_str(dev, "memdev"), ==, "/objects/dimm0");
    qobject_unref(rsp);
    for (off = 0; off < PQ_DIMM_MB * 1024 * 1024; off += PQ_CHUNK) {
        qtest_bufwrite(from, addr + off, want + off, PQ_CHUNK);
    }
    return addr;
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

/* One counter of the destination's query-migrate postcopy-placement */
static uint64_t pq_placement(QTestState *to, const char *name)
{
    QDict *rsp = qtest_qmp_assert_success_ref(to,
                                               "{ 'execute': 'query-migrate' }");
    QDict *placement = qdict_get_qdict(rsp, "postcopy-placement");
    uint64_t n;

    g_assert(placement);
    n = qdict_get_uint(placement, name);
    qobject_unref(rsp);
    return n;
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
    uint64_t i, off;

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
        /* The DIMM holds the boot RAM's last PQ_DIMM_MB, reversed */
        dimm_want = g_malloc(PQ_DIMM_MB * 1024 * 1024);
        for (i = 0; i < PQ_DIMM_PAGES; i++) {
            memcpy(dimm_want + i * PQ_PAGE,
                   want + (PQ_PAGES - 1 - i) * PQ_PAGE, PQ_PAGE);
        }
        dimm_addr = pq_dimm_plug(from, a, dimm_want);
    }

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
                              a->rewrite ? PQ_REWRITE_BW : 1024 * 1024);
    migrate_set_parameter_int(from, "max-postcopy-bandwidth",
                              a->postcopy_bandwidth);
    migrate_incoming_qmp(to, "tcp:127.0.0.1:0", NULL, "{}");
    migrate_qmp(from, to, NULL, NULL, "{}");
    wait_for_migration_status(from, "active", NULL);
    if (a->rewrite) {
        while (read_ram_property_int(from, "transferred") < PQ_REWRITE_SENT) {
            g_usleep(10 * 1000);
        }
        migrate_set_parameter_int(from, "max-bandwidth", 64 * 1024);
        pq_rewrite(from, want);
    }
    qtest_qmp_assert_success(from, "{ 'execute': 'migrate-start-postcopy' }");
    wait_for_migration_status(from, "postcopy-active", NULL);
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
        dump_path = g_strdup_printf("%s/pq-dump", env->tmpfs);
        pq_dump_start(to, dump_path);
    }
    for (i = 0; i < PQ_PAGES; i++) {
        if (a->recover && i == PQ_BEFORE_PAUSE) {
            pq_recover(from, to, env->tmpfs);
        }
        pq_check_page(to, want, order[i]);
    }
    if (a->dump) {
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
    for (i = 0; a->dimm && i < PQ_DIMM_PAGES; i++) {
        uint8_t got[PQ_PAGE];

        qtest_bufread(to, dimm_addr + i * PQ_PAGE, got, PQ_PAGE);
        if (memcmp(got, dimm_want + i * PQ_PAGE, PQ_PAGE)) {
            g_test_message("DIMM page %" PRIu64 " differs", i);
            g_assert_not_reached();
        }
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
     * discarded) and, with 4 KiB pages, the requested ones (allocated by
     * the fault thread while they were on their way); the others, never
     * in the page cache, with UFFDIO_COPY.  A rewrite started with
     * discards.
     */
    {
        uint64_t pagesize = a->hugetlb ? 2 * 1024 * 1024 : PQ_PAGE;
        uint64_t pages = (PQ_END - PQ_START) / pagesize;
        uint64_t continued = pq_placement(to, "continued");
        uint64_t copied = pq_placement(to, "copied");

        g_test_message("placed: %" PRIu64 " with UFFDIO_COPY, %" PRIu64
                       " with UFFDIO_CONTINUE, %" PRIu64 " minor faults, %"
                       PRIu64 " bytes discarded", copied, continued,
                       pq_placement(to, "minor-faults"),
                       pq_placement(to, "discarded"));
        if (a->minor_cap || a->mem_type == MEM_TYPE_GUEST_MEMFD) {
            if (a->rewrite) {
                g_assert_cmpuint(continued, >=,
                                 PQ_REWRITE_PAGES * PQ_PAGE / pagesize);
            } else if (a->postcopy_bandwidth && !a->hugetlb) {
                g_assert_cmpuint(continued, >, 0);
            }
            g_assert_cmpuint(copied, >, pages / 4);
        } else {
            g_assert_cmpuint(continued, ==, 0);
            g_assert_cmpuint(copied, >, pages / 4);
        }
        /* Every rewritten page had been received, and was discarded */
        if (a->rewrite) {
            g_assert_cmpuint(pq_placement(to, "discarded"), >=,
                             PQ_REWRITE_PAGES * PQ_PAGE);
        }
    }
    qtest_quit(from);
    qtest_quit(to);
}

#define PQ_TEST(name, ...)                                                   \
static void test_pq_##name(void)                                             \
{                                                                            \
    PQArgs a = { __VA_ARGS__ };                                              \
    pq_run(&a);                                                              \
}

PQ_TEST(anon_random, .mem_type = MEM_TYPE_ANON, .order = PQ_RANDOM,
        .postcopy_bandwidth = PQ_SLOW)
PQ_TEST(minor_sequential, .mem_type = MEM_TYPE_MEMFD, .minor_cap = true,
        .order = PQ_SEQUENTIAL, .postcopy_bandwidth = PQ_SLOW)
PQ_TEST(minor_reverse, .mem_type = MEM_TYPE_MEMFD, .minor_cap = true,
        .order = PQ_REVERSE, .postcopy_bandwidth = PQ_SLOW)
PQ_TEST(minor_random, .mem_type = MEM_TYPE_MEMFD, .minor_cap = true,
        .order = PQ_RANDOM, .postcopy_bandwidth = PQ_SLOW)
PQ_TEST(minor_race, .mem_type = MEM_TYPE_MEMFD, .minor_cap = true,
        .order = PQ_RANDOM, .postcopy_bandwidth = 0)
PQ_TEST(minor_preempt_race, .mem_type = MEM_TYPE_MEMFD, .minor_cap = true,
        .order = PQ_RANDOM, .postcopy_bandwidth = 0, .preempt = true)
PQ_TEST(minor_recovery, .mem_type = MEM_TYPE_MEMFD, .minor_cap = true,
        .order = PQ_RANDOM, .postcopy_bandwidth = PQ_TRICKLE, .recover = true)
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
        .order = PQ_SEQUENTIAL, .postcopy_bandwidth = PQ_SLOW, .dump = true)
PQ_TEST(minor_two_readers_preempt, .mem_type = MEM_TYPE_MEMFD,
        .minor_cap = true, .order = PQ_SEQUENTIAL,
        .postcopy_bandwidth = PQ_SLOW, .dump = true, .preempt = true)
PQ_TEST(hugetlb_random, .mem_type = MEM_TYPE_MEMFD, .hugetlb = true,
        .order = PQ_RANDOM, .postcopy_bandwidth = PQ_SLOW)
PQ_TEST(minor_hugetlb_random, .mem_type = MEM_TYPE_MEMFD, .hugetlb = true,
        .minor_cap = true, .order = PQ_RANDOM, .postcopy_bandwidth = PQ_SLOW)
PQ_TEST(minor_hugetlb_preempt_race, .mem_type = MEM_TYPE_MEMFD,
        .hugetlb = true, .minor_cap = true, .order = PQ_RANDOM,
        .postcopy_bandwidth = 0, .preempt = true)
PQ_TEST(minor_hugetlb_rewrite, .mem_type = MEM_TYPE_MEMFD, .hugetlb = true,
        .minor_cap = true, .order = PQ_RANDOM, .postcopy_bandwidth = PQ_SLOW,
        .rewrite = true)
PQ_TEST(minor_bind, .mem_type = MEM_TYPE_MEMFD, .minor_cap = true,
        .order = PQ_RANDOM, .postcopy_bandwidth = PQ_SLOW, .bind = true)
PQ_TEST(mixed_memfd_gmem, .mem_type = MEM_TYPE_GUEST_MEMFD,
        .src_differs = true, .src_mem_type = MEM_TYPE_MEMFD,
        .order = PQ_RANDOM, .postcopy_bandwidth = PQ_SLOW)
PQ_TEST(mixed_anon_gmem, .mem_type = MEM_TYPE_GUEST_MEMFD,
        .src_differs = true, .src_mem_type = MEM_TYPE_ANON,
        .order = PQ_RANDOM, .postcopy_bandwidth = PQ_SLOW)
PQ_TEST(mixed_gmem_memfd, .mem_type = MEM_TYPE_MEMFD,
        .src_differs = true, .src_mem_type = MEM_TYPE_GUEST_MEMFD,
        .order = PQ_RANDOM, .postcopy_bandwidth = PQ_SLOW)
PQ_TEST(mixed_gmem_memfd_minor, .mem_type = MEM_TYPE_MEMFD,
        .minor_cap = true, .src_differs = true,
        .src_mem_type = MEM_TYPE_GUEST_MEMFD, .order = PQ_RANDOM,
        .postcopy_bandwidth = PQ_SLOW)
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
        .order = PQ_RANDOM, .postcopy_bandwidth = PQ_SLOW)
PQ_TEST(gmem_race, .mem_type = MEM_TYPE_GUEST_MEMFD,
        .order = PQ_RANDOM, .postcopy_bandwidth = 0)
PQ_TEST(gmem_preempt_race, .mem_type = MEM_TYPE_GUEST_MEMFD,
        .order = PQ_RANDOM, .postcopy_bandwidth = 0, .preempt = true)
PQ_TEST(gmem_recovery, .mem_type = MEM_TYPE_GUEST_MEMFD,
        .order = PQ_RANDOM, .postcopy_bandwidth = PQ_TRICKLE, .recover = true)
PQ_TEST(gmem_rewrite, .mem_type = MEM_TYPE_GUEST_MEMFD,
        .order = PQ_RANDOM, .postcopy_bandwidth = PQ_SLOW, .rewrite = true)
PQ_TEST(gmem_two_readers, .mem_type = MEM_TYPE_GUEST_MEMFD,
        .order = PQ_SEQUENTIAL, .postcopy_bandwidth = PQ_SLOW, .dump = true)

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
        { "minor/alias-attributes", test_pq_minor_bind },
        { "mixed/guest-memfd-to-memfd", test_pq_mixed_gmem_memfd },
        { "mixed/guest-memfd-to-memfd-minor",
          test_pq_mixed_gmem_memfd_minor },
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
}
