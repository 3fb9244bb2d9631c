/*
 * Postcopy tests with a crafted migration stream
 *
 * Copyright (c) 2026 qemu-gmem developers
 *
 * SPDX-License-Identifier: GPL-2.0-or-later
 *
 * The incoming migration stream is untrusted input.  Here the test plays
 * the source itself: it connects to a destination started with
 * "-incoming defer" and writes a stream built byte by byte, the way
 * migration/savevm.c and migration/ram.c read it, and then one piece of
 * bad input:
 *
 * - a POSTCOPY_RAM_DISCARD range outside the RAM block (well beyond it,
 *   at its end, and across its end), one whose start is not aligned to
 *   the block's page size, and one whose end wraps around 2^64 to a
 *   small, harmless looking value;
 * - a page that arrives twice during postcopy, with other contents the
 *   second time.
 *
 * The destination must refuse each with an error that names the block
 * and the offset, keep the RAM it had received before intact, and stay
 * up and answering QMP.  Each test runs on memfd RAM placed with
 * UFFDIO_COPY ("copy") and with minor placement ("minor",
 * x-postcopy-minor on the destination).  A "valid" stream made of the
 * same pieces, without the bad input, must migrate to completion: that
 * is what shows that the stream is built right and that the other tests
 * fail on the bad input alone.
 *
 * The destination's stderr goes to a file, which is printed and searched
 * for the expected error and for sanitizer reports.
 */

#include "qemu/osdep.h"
#include <sys/socket.h>
#include <sys/un.h>
#include "libqtest.h"
#include "migration/framework.h"
#include "migration/migration-qmp.h"
#include "migration/migration-util.h"
#include "qobject/qdict.h"

/*
 * The errors the destination must report: one line of its stderr, or
 * query-migrate's error-desc, must contain every string of the list and
 * the offset named in each test, printed as 0x%llx.
 */
#define PS_BLOCK "mem0"
static const char *const ps_expect_discard[] = {
    PS_BLOCK, "postcopy discard", NULL
};
static const char *const ps_expect_twice[] = {
    PS_BLOCK, "arrived twice", NULL
};
/* query-migrate's status on the destination once it has refused */
#define PS_DISCARD_STATUS "failed"
/*
 * A page sent twice arrives after POSTCOPY_RUN, when the guest runs on
 * the destination: there an error pauses postcopy (postcopy-paused),
 * waiting for a recovery, instead of failing the migration.
 */
#define PS_TWICE_STATUS "postcopy-paused"

/* How long the destination has to refuse, in seconds (ASan is slow) */
#define PS_TIMEOUT 30

#define PS_PAGE         4096
#define PS_RAM_SIZE     (64 * 1024 * 1024)
/* Sent during precopy, and read back after the bad input */
#define PS_PRECOPY_OFF  (16 * 1024 * 1024)
#define PS_PRECOPY_PAGES 16
/*
 * Sent during precopy with other contents, discarded before postcopy
 * (so that minor placement keeps it in the page cache and places it
 * through the alias), then sent (twice) during postcopy
 */
#define PS_POSTCOPY_OFF (32 * 1024 * 1024)
#define PS_SECTION_ID   2

/* The stream, as migration/savevm.h, savevm.c and ram.h define it */
#define PS_VM_FILE_MAGIC        0x5145564d
#define PS_VM_FILE_VERSION      0x00000003
#define PS_VM_EOF               0x00
#define PS_VM_SECTION_START     0x01
#define PS_VM_SECTION_PART      0x02
#define PS_VM_COMMAND           0x08
#define PS_VM_SECTION_FOOTER    0x7e

#define PS_CMD_OPEN_RETURN_PATH 1
#define PS_CMD_POSTCOPY_ADVISE  3
#define PS_CMD_POSTCOPY_LISTEN  4
#define PS_CMD_POSTCOPY_RUN     5
#define PS_CMD_POSTCOPY_RAM_DISCARD 6
#define PS_CMD_PACKAGED         7

#define PS_RAM_MEM_SIZE         0x004
#define PS_RAM_PAGE             0x008
#define PS_RAM_EOS              0x010
#define PS_RAM_CONTINUE         0x020
#define PS_RAM_VERSION          4

typedef enum {
    PS_VALID,
    PS_DISCARD_OUTSIDE,
    PS_DISCARD_AT_END,
    PS_DISCARD_ACROSS_END,
    PS_DISCARD_MISALIGNED,
    PS_DISCARD_WRAP,
    PS_PAGE_TWICE,
    PS_RUN_HELD,
} PSCase;

typedef struct {
    bool minor;
    PSCase kind;
} PSArgs;

/* Stream building */

static void ps_put8(GByteArray *s, uint8_t v)
{
    g_byte_array_append(s, &v, 1);
}

static void ps_put16(GByteArray *s, uint16_t v)
{
    v = GUINT16_TO_BE(v);
    g_byte_array_append(s, (uint8_t *)&v, sizeof(v));
}

static void ps_put32(GByteArray *s, uint32_t v)
{
    v = GUINT32_TO_BE(v);
    g_byte_array_append(s, (uint8_t *)&v, sizeof(v));
}

static void ps_put64(GByteArray *s, uint64_t v)
{
    v = GUINT64_TO_BE(v);
    g_byte_array_append(s, (uint8_t *)&v, sizeof(v));
}

/* qemu_put_counted_string(): a length byte, then the string */
static void ps_put_str(GByteArray *s, const char *str)
{
    size_t len = strlen(str);

    g_assert(len < 256);
    ps_put8(s, len);
    g_byte_array_append(s, (const uint8_t *)str, len);
}

static void ps_put_cmd(GByteArray *s, uint16_t cmd, const GByteArray *data)
{
    ps_put8(s, PS_VM_COMMAND);
    ps_put16(s, cmd);
    ps_put16(s, data ? data->len : 0);
    if (data) {
        g_byte_array_append(s, data->data, data->len);
    }
}

static void ps_put_footer(GByteArray *s)
{
    ps_put8(s, PS_VM_SECTION_FOOTER);
    ps_put32(s, PS_SECTION_ID);
}

/*
 * The header, the return path, the advise, and the "ram" section's
 * start with the block list, as qemu_savevm_state_header(),
 * qemu_savevm_send_postcopy_advise() and ram_save_setup() write them.
 * The destination runs with send-configuration=off: no configuration
 * section.
 */
static void ps_put_start(GByteArray *s)
{
    g_autoptr(GByteArray) advise = g_byte_array_new();

    ps_put32(s, PS_VM_FILE_MAGIC);
    ps_put32(s, PS_VM_FILE_VERSION);

    ps_put_cmd(s, PS_CMD_OPEN_RETURN_PATH, NULL);

    /* ram_pagesize_summary(), then the target page size */
    ps_put64(advise, PS_PAGE);
    ps_put64(advise, PS_PAGE);
    ps_put_cmd(s, PS_CMD_POSTCOPY_ADVISE, advise);

    ps_put8(s, PS_VM_SECTION_START);
    ps_put32(s, PS_SECTION_ID);
    ps_put_str(s, "ram");
    ps_put32(s, 0);                     /* instance */
    ps_put32(s, PS_RAM_VERSION);
    ps_put64(s, PS_RAM_SIZE | PS_RAM_MEM_SIZE);
    ps_put_str(s, PS_BLOCK);
    /* No page size: the block's is the host's */
    ps_put64(s, PS_RAM_SIZE);
    ps_put64(s, PS_RAM_EOS);
    ps_put_footer(s);
}

/* What the page at @off holds, @second the second time it is sent */
static void ps_fill(uint8_t *page, uint64_t off, bool second)
{
    uint64_t i, v;

    for (i = 0; i < PS_PAGE / 8; i++) {
        v = (off << 16) ^ (i * 0x9e3779b97f4a7c15ULL) ^ 0x5eed;
        if (second) {
            v = ~v;
        }
        memcpy(page + i * 8, &v, 8);
    }
}

/*
 * The records of @n pages from @off, in a "ram" section part that
 * ps_put_pages() or the caller opens and ends
 */
static void ps_put_page_records(GByteArray *s, uint64_t off, int n,
                                bool second)
{
    uint8_t page[PS_PAGE];
    int i;

    for (i = 0; i < n; i++) {
        uint64_t o = off + (uint64_t)i * PS_PAGE;

        if (i == 0) {
            ps_put64(s, o | PS_RAM_PAGE);
            ps_put_str(s, PS_BLOCK);
        } else {
            ps_put64(s, o | PS_RAM_PAGE | PS_RAM_CONTINUE);
        }
        ps_fill(page, o, second);
        g_byte_array_append(s, page, PS_PAGE);
    }
}

/* A "ram" section part with @n pages from @off, as ram_save_iterate() */
static void ps_put_pages(GByteArray *s, uint64_t off, int n, bool second)
{
    ps_put8(s, PS_VM_SECTION_PART);
    ps_put32(s, PS_SECTION_ID);
    ps_put_page_records(s, off, n, second);
    ps_put64(s, PS_RAM_EOS);
    ps_put_footer(s);
}

/* As postcopy_discard_send_range(): version 0, the block, a 0 byte */
static void ps_put_discard(GByteArray *s, uint64_t start, uint64_t length)
{
    g_autoptr(GByteArray) d = g_byte_array_new();

    ps_put8(d, 0);
    ps_put_str(d, PS_BLOCK);
    ps_put8(d, 0);
    ps_put64(d, start);
    ps_put64(d, length);
    ps_put_cmd(s, PS_CMD_POSTCOPY_RAM_DISCARD, d);
}

/*
 * LISTEN and RUN, packaged as postcopy_start() does: the listen thread
 * starts reading the stream after the package at LISTEN, and RUN makes
 * the main thread stop reading (LOADVM_QUIT).
 */
static void ps_put_listen_run(GByteArray *s)
{
    g_autoptr(GByteArray) pkg = g_byte_array_new();
    g_autoptr(GByteArray) len = g_byte_array_new();

    ps_put_cmd(pkg, PS_CMD_POSTCOPY_LISTEN, NULL);
    ps_put_cmd(pkg, PS_CMD_POSTCOPY_RUN, NULL);
    ps_put32(len, pkg->len);
    ps_put_cmd(s, PS_CMD_PACKAGED, len);
    g_byte_array_append(s, pkg->data, pkg->len);
}

/* The connection */

static int ps_connect(const char *path)
{
    struct sockaddr_un addr = { .sun_family = AF_UNIX };
    int fd = socket(AF_UNIX, SOCK_STREAM, 0);

    g_assert(fd >= 0);
    g_assert(strlen(path) < sizeof(addr.sun_path));
    g_strlcpy(addr.sun_path, path, sizeof(addr.sun_path));
    g_assert_cmpint(connect(fd, (struct sockaddr *)&addr, sizeof(addr)),
                    ==, 0);
    return fd;
}

/*
 * Send and empty @s.  The destination may close the connection once it
 * has refused the stream: a write that fails then is not an error here.
 */
static bool ps_send(int fd, GByteArray *s)
{
    size_t done = 0;

    while (done < s->len) {
        ssize_t n = send(fd, s->data + done, s->len - done, MSG_NOSIGNAL);

        if (n < 0 && errno == EINTR) {
            continue;
        }
        if (n <= 0) {
            g_test_message("send to the destination: %s", strerror(errno));
            g_byte_array_set_size(s, 0);
            return false;
        }
        done += n;
    }
    g_byte_array_set_size(s, 0);
    return true;
}

/* The destination */

/*
 * On a failure (an abort), show what the destination printed: its error,
 * or what killed it, a sanitizer's report included.  Only
 * async-signal-safe calls: this runs in the SIGABRT handler.
 */
static void ps_abort_print_log(void *opaque)
{
    static const char head[] = "--- destination stderr ---\n";
    static const char tail[] = "--- end of destination stderr ---\n";
    static volatile sig_atomic_t printed;
    char buf[4096];
    ssize_t n;
    int fd;

    /* Once: a death found while killing QEMU here aborts again */
    if (printed) {
        return;
    }
    printed = 1;
    fd = open(opaque, O_RDONLY);
    if (fd < 0) {
        return;
    }
    if (write(STDERR_FILENO, head, sizeof(head) - 1) < 0) {
        goto out;
    }
    while ((n = read(fd, buf, sizeof(buf))) > 0) {
        if (write(STDERR_FILENO, buf, n) < 0) {
            goto out;
        }
    }
    if (write(STDERR_FILENO, tail, sizeof(tail) - 1) < 0) {
        goto out;
    }
out:
    close(fd);
}

static QTestState *ps_start_dest_caps(bool minor, bool preempt,
                                      const char *log, const char *sock)
{
    g_autofree char *args = NULL;
    g_autofree char *uri = g_strdup_printf("unix:%s", sock);
    QTestState *to;

    args = g_strdup_printf("-machine pc -m 64M "
                           "-object memory-backend-memfd,id=%s,size=64M,"
                           "share=on -machine memory-backend=%s "
                           "-global migration.send-configuration=off "
                           "-incoming defer 2>%s", PS_BLOCK, PS_BLOCK, log);
    to = qtest_init(args);
    qtest_add_abrt_handler(ps_abort_print_log, log);
    migrate_set_capability(to, "postcopy-ram", true);
    if (preempt) {
        migrate_set_capability(to, "postcopy-preempt", true);
    }
    if (minor) {
        migrate_set_capability(to, "x-postcopy-minor", true);
    }
    migrate_incoming_qmp(to, uri, NULL, "{ 'exit-on-error': false }");
    return to;
}

static QTestState *ps_start_dest(bool minor, const char *log,
                                 const char *sock)
{
    return ps_start_dest_caps(minor, false, log, sock);
}

static char *ps_error_desc(QTestState *to)
{
    QDict *rsp = qtest_qmp_assert_success_ref(to,
                                              "{ 'execute': 'query-migrate' }");
    char *desc = g_strdup(qdict_get_try_str(rsp, "error-desc"));

    qobject_unref(rsp);
    return desc;
}

static bool ps_running(QTestState *to)
{
    QDict *rsp = qtest_qmp_assert_success_ref(to,
                                              "{ 'execute': 'query-status' }");
    bool running = qdict_get_bool(rsp, "running");

    qobject_unref(rsp);
    return running;
}

static char *ps_read_log(const char *log)
{
    char *text = NULL;

    if (!g_file_get_contents(log, &text, NULL, NULL)) {
        return g_strdup("");
    }
    return text;
}

static void ps_print_log(const char *log)
{
    g_autofree char *text = ps_read_log(log);
    g_auto(GStrv) lines = g_strsplit(text, "\n", -1);
    int i;

    for (i = 0; lines[i]; i++) {
        if (*lines[i]) {
            g_test_message("destination stderr: %s", lines[i]);
        }
    }
}

/* Fail if the destination has died, saying how */
static void ps_assert_alive(QTestState *to, const char *log, const char *when)
{
    if (!qtest_probe_child(to)) {
        g_test_message("the destination died %s", when);
        g_assert_not_reached();
    }
}

/*
 * Wait until the destination's migration status is @goal; give up after
 * PS_TIMEOUT seconds, or if it dies.
 */
static void ps_wait_status(QTestState *to, const char *goal, const char *log)
{
    gint64 end = g_get_monotonic_time() + PS_TIMEOUT * G_TIME_SPAN_SECOND;
    g_autofree char *status = NULL;
    g_autofree char *desc = NULL;

    for (;;) {
        ps_assert_alive(to, log, "before its migration status was final");
        g_free(status);
        status = migrate_query_status(to);
        if (!strcmp(status, goal)) {
            return;
        }
        if (!strcmp(status, "failed") || !strcmp(status, "completed") ||
            g_get_monotonic_time() > end) {
            break;
        }
        g_usleep(20 * 1000);
    }
    desc = ps_error_desc(to);
    g_test_message("destination: migration status '%s' (error-desc: %s), "
                   "expected '%s'", status, desc ? desc : "none", goal);
    g_assert_cmpstr(status, ==, goal);
}

/* Does @line name 0x%llx of @value, and not as the start of a longer one? */
static bool ps_line_has_hex(const char *line, uint64_t value)
{
    g_autofree char *hex = g_strdup_printf("0x%" PRIx64, value);
    const char *p = line;

    while ((p = strstr(p, hex))) {
        p += strlen(hex);
        if (!g_ascii_isxdigit(*p)) {
            return true;
        }
    }
    return false;
}

static bool ps_line_matches(const char *line, const char *const *want,
                            uint64_t value)
{
    int i;

    for (i = 0; want[i]; i++) {
        if (!strstr(line, want[i])) {
            return false;
        }
    }
    return ps_line_has_hex(line, value);
}

/*
 * The error: error-desc, or one line of the destination's stderr, with
 * every string of @want and 0x%llx of @value.
 */
static void ps_assert_error(QTestState *to, const char *log,
                            const char *const *want, uint64_t value)
{
    g_autofree char *desc = ps_error_desc(to);
    g_autofree char *text = ps_read_log(log);
    g_auto(GStrv) lines = g_strsplit(text, "\n", -1);
    g_autofree char *joined = g_strjoinv("', '", (char **)want);
    bool found = desc && ps_line_matches(desc, want, value);
    int i;

    for (i = 0; !found && lines[i]; i++) {
        found = ps_line_matches(lines[i], want, value);
    }
    if (!found) {
        g_test_message("destination: error-desc: %s", desc ? desc : "none");
        g_test_message("no error names '%s' and 0x%" PRIx64, joined, value);
        g_assert_not_reached();
    }
}

static void ps_assert_no_sanitizer_report(const char *log)
{
    g_autofree char *text = ps_read_log(log);

    if (strstr(text, "ERROR: AddressSanitizer") ||
        strstr(text, "ERROR: LeakSanitizer") ||
        strstr(text, "runtime error:")) {
        g_test_message("the destination's stderr has a sanitizer report");
        g_assert_not_reached();
    }
}

/*
 * What was sent (the second time, if @second) is there; qtest reads
 * through QEMU's own mapping
 */
static void ps_check_sent(QTestState *to, uint64_t off, int n, bool second)
{
    uint8_t got[PS_PAGE], want[PS_PAGE];
    int i;

    for (i = 0; i < n; i++) {
        uint64_t o = off + (uint64_t)i * PS_PAGE;

        /* The block is all of RAM, below 4 GiB: GPA = offset */
        qtest_memread(to, o, got, PS_PAGE);
        ps_fill(want, o, second);
        if (memcmp(got, want, PS_PAGE)) {
            g_test_message("page at offset 0x%" PRIx64 " is not what was "
                           "sent %s", o, second ? "second" : "first");
            g_assert_not_reached();
        }
    }
}

static void ps_check_pages(QTestState *to, uint64_t off, int n)
{
    ps_check_sent(to, off, n, false);
}

/*
 * The destination placed @pages pages during postcopy, with
 * UFFDIO_CONTINUE (@minor) or UFFDIO_COPY: within PS_TIMEOUT, which a
 * placement that waits for more of the stream fails instead of hanging.
 * Not by reading guest RAM, which would wait for the pages.
 */
static void ps_wait_placed(QTestState *to, bool minor, uint64_t pages)
{
    gint64 deadline = g_get_monotonic_time() + PS_TIMEOUT * G_USEC_PER_SEC;
    uint64_t copied, continued;

    for (;;) {
        copied = read_postcopy_placement(to, "copied");
        continued = read_postcopy_placement(to, "continued");
        if (copied + continued >= pages ||
            g_get_monotonic_time() > deadline) {
            break;
        }
        g_usleep(10 * 1000);
    }
    g_test_message("placed: %" PRIu64 " with UFFDIO_COPY, %" PRIu64
                   " with UFFDIO_CONTINUE", copied, continued);
    g_assert_cmpuint(continued, ==, minor ? pages : 0);
    g_assert_cmpuint(copied, ==, minor ? 0 : pages);
}

/*
 * PS_RUN_HELD: PS_RUN_PAGES pages are received in precopy and discarded,
 * so that they stay in the page cache with minor placement, then sent
 * again in postcopy, and the stream stops in the middle of the section
 * that carries them: no end of section, nothing more.  The pages must be
 * readable on the destination while its listen thread waits for more:
 * minor placement, which maps runs of such pages with one
 * UFFDIO_CONTINUE, must have mapped them before that wait.  Only then
 * does the stream go on to its end.
 */
#define PS_RUN_OFF      (40 * 1024 * 1024)
#define PS_RUN_PAGES    6

static void ps_run_held(QTestState *to, int fd, GByteArray *s, bool minor,
                        const char *log)
{
    ps_put8(s, PS_VM_SECTION_PART);
    ps_put32(s, PS_SECTION_ID);
    ps_put_page_records(s, PS_RUN_OFF, PS_RUN_PAGES, true);
    g_assert(ps_send(fd, s));
    /*
     * Fails if the pages wait for more of the stream to be mapped; with
     * the page at PS_POSTCOPY_OFF placed before
     */
    ps_wait_placed(to, minor, 1 + PS_RUN_PAGES);
    ps_check_sent(to, PS_RUN_OFF, PS_RUN_PAGES, true);
    if (minor) {
        uint64_t calls = read_postcopy_placement(to, "continue-calls");

        g_test_message("%" PRIu64 " UFFDIO_CONTINUE calls", calls);
        /* That page, then one run, unless it arrived in pieces */
        g_assert_cmpuint(calls, <, 1 + PS_RUN_PAGES);
    }
    ps_put64(s, PS_RAM_EOS);
    ps_put_footer(s);
    ps_put8(s, PS_VM_EOF);
    g_assert(ps_send(fd, s));
    ps_wait_status(to, "completed", log);
    ps_check_sent(to, PS_RUN_OFF, PS_RUN_PAGES, true);
}

static void ps_run(const PSArgs *a)
{
    MigrationTestEnv *env = migration_get_env();
    g_autofree char *log = g_strdup_printf("%s/ps-dest.log", env->tmpfs);
    g_autofree char *sock = g_strdup_printf("%s/ps-sock", env->tmpfs);
    g_autoptr(GByteArray) s = g_byte_array_new();
    uint64_t start = 0, length = 0;
    QTestState *to;
    int fd;

    if (!env->has_uffd) {
        g_test_skip("userfaultfd not available");
        return;
    }
    if (qemu_real_host_page_size() != PS_PAGE) {
        g_test_skip("the stream is built for 4 KiB host pages");
        return;
    }

    to = ps_start_dest(a->minor, log, sock);
    fd = ps_connect(sock);

    ps_put_start(s);
    ps_put_pages(s, PS_PRECOPY_OFF, PS_PRECOPY_PAGES, false);
    /* Its other contents: what postcopy sends must replace them */
    ps_put_pages(s, PS_POSTCOPY_OFF, 1, true);

    switch (a->kind) {
    case PS_DISCARD_OUTSIDE:
        start = PS_RAM_SIZE + 1024 * 1024;
        length = PS_PAGE;
        break;
    case PS_DISCARD_AT_END:
        /* The first page after the block */
        start = PS_RAM_SIZE;
        length = PS_PAGE;
        break;
    case PS_DISCARD_ACROSS_END:
        /* Starts inside, ends a page after the block */
        start = PS_RAM_SIZE - PS_PAGE;
        length = 2 * PS_PAGE;
        break;
    case PS_DISCARD_MISALIGNED:
        /* Over pages that were sent: none of them may go */
        start = PS_PRECOPY_OFF + PS_PAGE / 2;
        length = PS_PAGE;
        break;
    case PS_DISCARD_WRAP:
        /* start + length wraps around 2^64 to one page */
        start = PS_PRECOPY_OFF;
        length = UINT64_MAX - PS_PRECOPY_OFF + 1 + PS_PAGE;
        break;
    case PS_VALID:
    case PS_PAGE_TWICE:
        break;
    case PS_RUN_HELD:
        ps_put_pages(s, PS_RUN_OFF, PS_RUN_PAGES, false);
        ps_put_discard(s, PS_RUN_OFF, PS_RUN_PAGES * PS_PAGE);
        break;
    }

    if (length) {
        g_test_message("discard 0x%" PRIx64 "+0x%" PRIx64, start, length);
        ps_put_discard(s, start, length);
        ps_send(fd, s);
        ps_wait_status(to, PS_DISCARD_STATUS, log);
        ps_assert_error(to, log, ps_expect_discard, start);
    } else {
        /* What a source sends for a page it sends again in postcopy */
        ps_put_discard(s, PS_POSTCOPY_OFF, PS_PAGE);
        ps_put_listen_run(s);
        g_assert(ps_send(fd, s));
        ps_wait_status(to, "postcopy-active", log);
        /* RUN's bottom half has run: the postcopy state is RUNNING */
        while (!ps_running(to)) {
            g_usleep(10 * 1000);
        }

        ps_put_pages(s, PS_POSTCOPY_OFF, 1, false);
        g_assert(ps_send(fd, s));
        /*
         * Placed by the listen thread: through the alias with minor
         * placement, as it had been received before
         */
        ps_wait_placed(to, a->minor, 1);
        ps_check_pages(to, PS_POSTCOPY_OFF, 1);

        if (a->kind == PS_VALID) {
            ps_put8(s, PS_VM_EOF);
            g_assert(ps_send(fd, s));
            ps_wait_status(to, "completed", log);
        } else if (a->kind == PS_RUN_HELD) {
            ps_run_held(to, fd, s, a->minor, log);
        } else {
            ps_put_pages(s, PS_POSTCOPY_OFF, 1, true);
            ps_send(fd, s);
            ps_wait_status(to, PS_TWICE_STATUS, log);
            ps_assert_error(to, log, ps_expect_twice, PS_POSTCOPY_OFF);
        }
        ps_check_pages(to, PS_POSTCOPY_OFF, 1);
    }

    ps_check_pages(to, PS_PRECOPY_OFF, PS_PRECOPY_PAGES);
    qtest_qmp_assert_success(to, "{ 'execute': 'query-status' }");
    ps_assert_no_sanitizer_report(log);
    ps_print_log(log);

    close(fd);
    qtest_quit(to);
    /* LeakSanitizer reports at exit */
    ps_assert_no_sanitizer_report(log);
    qtest_remove_abrt_handler(log);
    unlink(log);
    unlink(sock);
}

#define PS_TEST(name, ...)                                                   \
static void test_ps_##name(void)                                             \
{                                                                            \
    PSArgs a = { __VA_ARGS__ };                                              \
    ps_run(&a);                                                              \
}

PS_TEST(copy_valid, .kind = PS_VALID)
PS_TEST(copy_outside, .kind = PS_DISCARD_OUTSIDE)
PS_TEST(copy_at_end, .kind = PS_DISCARD_AT_END)
PS_TEST(copy_across_end, .kind = PS_DISCARD_ACROSS_END)
PS_TEST(copy_misaligned, .kind = PS_DISCARD_MISALIGNED)
PS_TEST(copy_wrap, .kind = PS_DISCARD_WRAP)
PS_TEST(copy_twice, .kind = PS_PAGE_TWICE)
PS_TEST(copy_run_held, .kind = PS_RUN_HELD)
PS_TEST(minor_valid, .minor = true, .kind = PS_VALID)
PS_TEST(minor_outside, .minor = true, .kind = PS_DISCARD_OUTSIDE)
PS_TEST(minor_at_end, .minor = true, .kind = PS_DISCARD_AT_END)
PS_TEST(minor_across_end, .minor = true, .kind = PS_DISCARD_ACROSS_END)
PS_TEST(minor_misaligned, .minor = true, .kind = PS_DISCARD_MISALIGNED)
PS_TEST(minor_wrap, .minor = true, .kind = PS_DISCARD_WRAP)
PS_TEST(minor_twice, .minor = true, .kind = PS_PAGE_TWICE)
PS_TEST(minor_run_held, .minor = true, .kind = PS_RUN_HELD)

/*
 * minor/preempt-at-once: the postcopy preempt channel carries the pages
 * that faulting threads wait for, so each page that arrives there must be
 * mapped as soon as it is complete, not kept in a run that waits for more
 * of the stream: ram_load_postcopy() batches the UFFDIO_CONTINUE of minor
 * placement on the main channel only.
 *
 * PS_PREEMPT_PAGES and PS_MAIN_PAGES pages are received in precopy and
 * discarded, so that they stay in the page cache; in postcopy each set
 * is sent again, in one send, the first on the preempt channel and the
 * second on the main channel.  With all of its pages buffered at once,
 * the preempt channel must still use one UFFDIO_CONTINUE per page, while
 * the main channel maps its run with fewer calls than pages (it defers
 * the map while a whole page is buffered after the one it placed): that
 * shows that the count tells one from the other.
 */
#define PS_PREEMPT_OFF      (48 * 1024 * 1024)
#define PS_PREEMPT_PAGES    4
#define PS_MAIN_OFF         (52 * 1024 * 1024)
#define PS_MAIN_PAGES       4

/*
 * Wait until @n pages in all were placed with UFFDIO_CONTINUE, without
 * touching them (a read would fault and request them); give up after
 * PS_TIMEOUT seconds
 */
static void ps_wait_continued(QTestState *to, uint64_t n, const char *log)
{
    gint64 end = g_get_monotonic_time() + PS_TIMEOUT * G_TIME_SPAN_SECOND;
    uint64_t continued;

    for (;;) {
        ps_assert_alive(to, log, "while its pages were placed");
        continued = read_postcopy_placement(to, "continued");
        if (continued >= n || g_get_monotonic_time() > end) {
            break;
        }
        g_usleep(10 * 1000);
    }
    g_assert_cmpuint(continued, ==, n);
}

static void test_ps_minor_preempt_at_once(void)
{
    MigrationTestEnv *env = migration_get_env();
    g_autofree char *log = g_strdup_printf("%s/ps-dest.log", env->tmpfs);
    g_autofree char *sock = g_strdup_printf("%s/ps-sock", env->tmpfs);
    g_autoptr(GByteArray) s = g_byte_array_new();
    g_autoptr(GByteArray) p = g_byte_array_new();
    uint64_t calls, continued;
    QTestState *to;
    int fd, pfd;

    if (!env->has_uffd) {
        g_test_skip("userfaultfd not available");
        return;
    }
    if (qemu_real_host_page_size() != PS_PAGE) {
        g_test_skip("the stream is built for 4 KiB host pages");
        return;
    }

    to = ps_start_dest_caps(true, true, log, sock);
    fd = ps_connect(sock);

    ps_put_start(s);
    ps_put_pages(s, PS_PRECOPY_OFF, PS_PRECOPY_PAGES, false);
    ps_put_pages(s, PS_PREEMPT_OFF, PS_PREEMPT_PAGES, false);
    ps_put_pages(s, PS_MAIN_OFF, PS_MAIN_PAGES, false);
    ps_put_discard(s, PS_PREEMPT_OFF, PS_PREEMPT_PAGES * PS_PAGE);
    ps_put_discard(s, PS_MAIN_OFF, PS_MAIN_PAGES * PS_PAGE);
    ps_put_listen_run(s);
    g_assert(ps_send(fd, s));
    /*
     * The main channel is taken: this second connection is the preempt
     * channel, which sends no magic.  The package that carries LISTEN
     * waits for it.
     */
    pfd = ps_connect(sock);
    ps_wait_status(to, "postcopy-active", log);
    while (!ps_running(to)) {
        g_usleep(10 * 1000);
    }
    g_assert_cmpuint(read_postcopy_placement(to, "continued"), ==, 0);
    g_assert_cmpuint(read_postcopy_placement(to, "continue-calls"), ==, 0);

    /*
     * The preempt channel: bare RAM records, as ram_save_host_page()
     * sends a requested page there, all in one send
     */
    ps_put_page_records(p, PS_PREEMPT_OFF, PS_PREEMPT_PAGES, true);
    g_assert(ps_send(pfd, p));
    ps_wait_continued(to, PS_PREEMPT_PAGES, log);
    ps_check_sent(to, PS_PREEMPT_OFF, PS_PREEMPT_PAGES, true);
    calls = read_postcopy_placement(to, "continue-calls");
    continued = read_postcopy_placement(to, "continued");
    g_test_message("preempt channel: %" PRIu64 " pages placed with "
                   "UFFDIO_CONTINUE, in %" PRIu64 " calls", continued, calls);
    g_assert_cmpuint(continued, ==, PS_PREEMPT_PAGES);
    /* Each mapped by its own call, as soon as it was complete */
    g_assert_cmpuint(calls, ==, PS_PREEMPT_PAGES);

    /* The main channel, all in one send too: mapped in runs */
    ps_put_pages(s, PS_MAIN_OFF, PS_MAIN_PAGES, true);
    g_assert(ps_send(fd, s));
    ps_wait_continued(to, PS_PREEMPT_PAGES + PS_MAIN_PAGES, log);
    ps_check_sent(to, PS_MAIN_OFF, PS_MAIN_PAGES, true);
    calls = read_postcopy_placement(to, "continue-calls") - calls;
    continued = read_postcopy_placement(to, "continued") - continued;
    g_test_message("main channel: %" PRIu64 " pages placed with "
                   "UFFDIO_CONTINUE, in %" PRIu64 " calls", continued, calls);
    g_assert_cmpuint(continued, ==, PS_MAIN_PAGES);
    g_assert_cmpuint(calls, <, PS_MAIN_PAGES);

    /* The end of the preempt channel, then of the stream */
    ps_put64(p, PS_RAM_EOS);
    g_assert(ps_send(pfd, p));
    ps_put8(s, PS_VM_EOF);
    g_assert(ps_send(fd, s));
    ps_wait_status(to, "completed", log);

    ps_check_sent(to, PS_PREEMPT_OFF, PS_PREEMPT_PAGES, true);
    ps_check_sent(to, PS_MAIN_OFF, PS_MAIN_PAGES, true);
    ps_check_pages(to, PS_PRECOPY_OFF, PS_PRECOPY_PAGES);
    qtest_qmp_assert_success(to, "{ 'execute': 'query-status' }");
    ps_assert_no_sanitizer_report(log);
    ps_print_log(log);

    close(pfd);
    close(fd);
    qtest_quit(to);
    /* LeakSanitizer reports at exit */
    ps_assert_no_sanitizer_report(log);
    qtest_remove_abrt_handler(log);
    unlink(log);
    unlink(sock);
}

void migration_test_add_postcopy_stream(MigrationTestEnv *env)
{
    static const struct {
        const char *path;
        void (*fn)(void);
    } tests[] = {
        { "copy/valid", test_ps_copy_valid },
        { "copy/discard-outside", test_ps_copy_outside },
        { "copy/discard-at-end", test_ps_copy_at_end },
        { "copy/discard-across-end", test_ps_copy_across_end },
        { "copy/discard-misaligned", test_ps_copy_misaligned },
        { "copy/discard-wrap", test_ps_copy_wrap },
        { "copy/page-twice", test_ps_copy_twice },
        { "copy/run-held", test_ps_copy_run_held },
        { "minor/valid", test_ps_minor_valid },
        { "minor/discard-outside", test_ps_minor_outside },
        { "minor/discard-at-end", test_ps_minor_at_end },
        { "minor/discard-across-end", test_ps_minor_across_end },
        { "minor/discard-misaligned", test_ps_minor_misaligned },
        { "minor/discard-wrap", test_ps_minor_wrap },
        { "minor/page-twice", test_ps_minor_twice },
        { "minor/run-held", test_ps_minor_run_held },
        { "minor/preempt-at-once", test_ps_minor_preempt_at_once },
    };
    size_t i;

    /* Seconds each: in the full set (--full) */
    if (!env->is_x86 || !env->full_set) {
        return;
    }
    for (i = 0; i < ARRAY_SIZE(tests); i++) {
        g_autofree char *path =
            g_strdup_printf("/migration/postcopy/stream/%s", tests[i].path);

        migration_test_add(path, tests[i].fn);
    }
}
