/*
 * QTest for memory-backend-guest-memfd
 *
 * Copyright (c) 2026 qemu-gmem developers
 *
 * SPDX-License-Identifier: GPL-2.0-or-later
 */

#include "qemu/osdep.h"
#include "qemu/atomic.h"
#include "qemu/units.h"
#include <linux/kvm.h>
#include "libqtest.h"
#include "qobject/qdict.h"
#include "qobject/qlist.h"
#include "qobject/qjson.h"
#include "qobject/qstring.h"
#include "qapi/error.h"
#include "guest-memfd-util.h"

#define TYPE "memory-backend-guest-memfd"
#define RAM_SIZE (32 * MiB)

static char *skip_reason;

static bool host_ok(void)
{
    if (skip_reason) {
        g_test_skip(skip_reason);
        return false;
    }
    return true;
}

/*
 * Start a pc machine whose RAM is a guest_memfd backend, under @accel.
 * Its CPU stays stopped (-S): under KVM the firmware would otherwise
 * write its tables into the RAM the test checks.  Booting a guest from
 * guest_memfd RAM is what the migration tests do.
 */
static QTestState *start_vm_args(const char *accel, const char *extra)
{
    return qtest_initf("-S -machine pc -accel %s -m %u "
                       "-object " TYPE ",id=m0,size=%u "
                       "-machine memory-backend=m0 %s", accel,
                       (unsigned)(RAM_SIZE / MiB), (unsigned)RAM_SIZE,
                       extra);
}

static QTestState *start_vm(const char *accel)
{
    return start_vm_args(accel, "");
}

/* Fill guest RAM with an address-derived pattern and read it back */
static void check_ram(QTestState *qts)
{
    uint64_t addr;

    for (addr = 1 * MiB; addr < RAM_SIZE; addr += 64 * KiB) {
        qtest_writeq(qts, addr, addr ^ 0x5a5a5a5a5a5a5a5aULL);
    }
    for (addr = 1 * MiB; addr < RAM_SIZE; addr += 64 * KiB) {
        g_assert_cmphex(qtest_readq(qts, addr), ==,
                        addr ^ 0x5a5a5a5a5a5a5a5aULL);
    }
}

/*
 * The RAM of m0 is a guest_memfd (by the filesystem of the fd QEMU maps
 * it from, not by what QEMU says), and holds what check_ram() wrote.
 */
static void check_ram_in_guest_memfd(QTestState *qts)
{
    uint64_t hva, len, addr;
    int fd = guest_memfd_ram_block(qts, "m0", &hva, &len);
    uint8_t *p;

    g_assert_cmpuint(len, ==, RAM_SIZE);
    p = mmap(NULL, len, PROT_READ, MAP_SHARED, fd, 0);
    g_assert(p != MAP_FAILED);
    for (addr = 1 * MiB; addr < RAM_SIZE; addr += 64 * KiB) {
        g_assert_cmphex(*(uint64_t *)(p + addr), ==,
                        addr ^ 0x5a5a5a5a5a5a5a5aULL);
    }
    munmap(p, len);
    close(fd);
}

static void check_memdev(QTestState *qts)
{
    QDict *rsp = qtest_qmp(qts, "{ 'execute': 'query-memdev' }");
    QList *list = qdict_get_qlist(rsp, "return");
    QDict *m;

    g_assert(list);
    g_assert_cmpint(qlist_size(list), ==, 1);
    m = qobject_to(QDict, qlist_peek(list));
    g_assert_cmpstr(qdict_get_str(m, "id"), ==, "m0");
    g_assert_cmpuint(qdict_get_int(m, "size"), ==, RAM_SIZE);
    g_assert(qdict_get_bool(m, "share"));
    qobject_unref(rsp);
}

static void test_tcg_or_qtest(void)
{
    QTestState *qts;

    if (!host_ok()) {
        return;
    }
    qts = start_vm("qtest");
    check_memdev(qts);
    check_ram(qts);
    check_ram_in_guest_memfd(qts);
    qtest_quit(qts);
}

/* Where QEMU mapped the RAM of m0: HMP info ramblock's HVA column */
static uint64_t ram_hva(QTestState *qts)
{
    QDict *rsp = qtest_qmp(qts, "{ 'execute': 'human-monitor-command', "
                           "'arguments': { 'command-line': 'info ramblock' } }");
    g_auto(GStrv) lines = g_strsplit(qdict_get_str(rsp, "return"), "\n", -1);
    uint64_t hva = 0;
    size_t i;

    for (i = 0; lines[i]; i++) {
        g_auto(GStrv) f = g_strsplit_set(g_strstrip(lines[i]), " ", -1);
        guint n = g_strv_length(f);

        if (n && !strcmp(f[0], "m0")) {
            /* the HVA is the last field but for RO, if present */
            while (n > 0 && !g_str_has_prefix(f[n - 1], "0x")) {
                n--;
            }
            g_assert(n > 0);
            hva = g_ascii_strtoull(f[n - 1], NULL, 16);
        }
    }
    qobject_unref(rsp);
    g_assert(hva);
    return hva;
}

/*
 * What postcopy rests on: the memslots that map m0 are registered by
 * userspace address, at QEMU's own mapping of the guest_memfd, and not
 * bound to it (no KVM_MEM_GUEST_MEMFD, no guest_memfd fd), so every vCPU
 * access goes through that mapping, where userfaultfd sees it.  Read from
 * the kvm_set_user_memory trace of every memslot QEMU set.
 */
static void check_memslots(QTestState *qts, const char *trace_path)
{
    uint64_t hva = ram_hva(qts);
    g_autofree char *trace = NULL;
    g_auto(GStrv) lines = NULL;
    int slots = 0;
    size_t i;

    g_assert(g_file_get_contents(trace_path, &trace, NULL, NULL));
    lines = g_strsplit(trace, "\n", -1);
    for (i = 0; lines[i]; i++) {
        const char *flags = strstr(lines[i], " flags=0x");
        const char *size = strstr(lines[i], " size=0x");
        const char *ua = strstr(lines[i], " ua=0x");
        g_autofree char *why = NULL;
        uint64_t f, len, addr, off;
        int fd;

        if (!strstr(lines[i], "kvm_set_user_memory") || !flags || !ua ||
            !size) {
            continue;
        }
        f = g_ascii_strtoull(flags + 9, NULL, 16);
        len = g_ascii_strtoull(size + 8, NULL, 16);
        addr = g_ascii_strtoull(ua + 6, NULL, 16);
        if (!len || addr < hva || addr >= hva + RAM_SIZE) {
            continue;
        }
        g_test_message("m0 memslot: %s", lines[i]);
        g_assert_cmphex(f & KVM_MEM_GUEST_MEMFD, ==, 0);
        g_assert(strstr(lines[i], " guest_memfd=-1 "));
        g_assert_cmphex(addr + len, <=, hva + RAM_SIZE);
        /* What the memslot's userspace range maps is the guest_memfd */
        fd = guest_memfd_mapped_at(qtest_pid(qts), addr, len, &off, &why);
        if (fd < 0) {
            g_test_message("m0 memslot: %s", why);
            g_assert_not_reached();
        }
        g_assert_cmphex(off, ==, addr - hva);
        close(fd);
        slots++;
    }
    g_assert_cmpint(slots, >, 0);
}

/*
 * A 64 KiB BIOS whose vCPU writes, in real mode, at the start of each 4 KiB
 * page from 64 KiB to 576 KiB the 16-bit word (segment ^ offset), then
 * 0x4f4b at 0x500 when done, and halts:
 *
 *          cli
 *          mov ax, 0x1000
 *  outer:  mov ds, ax
 *          xor bx, bx
 *  inner:  mov ax, ds
 *          xor ax, bx
 *          mov [bx], ax
 *          add bx, 0x1000
 *          jnz inner
 *          mov ax, ds
 *          add ax, 0x1000
 *          cmp ax, 0x9000
 *          jne outer
 *          xor ax, ax
 *          mov ds, ax
 *          mov word [0x500], 0x4f4b
 *  halt:   hlt
 *          jmp halt
 *
 * It starts at offset 0 (f000:0000), where the reset vector jumps.
 */
static const uint8_t rom_code[] = {
    0xfa, 0xb8, 0x00, 0x10, 0x8e, 0xd8, 0x31, 0xdb, 0x8c, 0xd8, 0x31, 0xd8,
    0x89, 0x07, 0x81, 0xc3, 0x00, 0x10, 0x75, 0xf4, 0x8c, 0xd8, 0x05, 0x00,
    0x10, 0x3d, 0x00, 0x90, 0x75, 0xe6, 0x31, 0xc0, 0x8e, 0xd8, 0xc7, 0x06,
    0x00, 0x05, 0x4b, 0x4f, 0xf4, 0xeb, 0xfd,
};
#define ROM_DONE_ADDR 0x500
#define ROM_DONE 0x4f4b
#define ROM_START 0x10000
#define ROM_END 0x90000

static void write_rom(const char *path)
{
    g_autofree uint8_t *rom = g_malloc0(64 * KiB);
    /* jmp far f000:0000 */
    static const uint8_t reset[] = { 0xea, 0x00, 0x00, 0x00, 0xf0 };

    memcpy(rom, rom_code, sizeof(rom_code));
    memcpy(rom + 64 * KiB - 16, reset, sizeof(reset));
    g_assert(g_file_set_contents(path, (char *)rom, 64 * KiB, NULL));
}

/*
 * Let the vCPU run the ROM; what it wrote is in the guest_memfd, read
 * through an fd of the guest_memfd itself, not through QEMU.
 */
static void check_vcpu_writes(QTestState *qts)
{
    uint64_t hva, len, addr;
    int fd = guest_memfd_ram_block(qts, "m0", &hva, &len);
    int64_t deadline = g_get_monotonic_time() + 120 * G_USEC_PER_SEC;
    uint8_t *p = mmap(NULL, len, PROT_READ, MAP_SHARED, fd, 0);

    g_assert(p != MAP_FAILED);
    g_assert_cmphex(*(uint16_t *)(p + ROM_DONE_ADDR), !=, ROM_DONE);
    qtest_qmp_assert_success(qts, "{ 'execute': 'cont' }");
    while (qatomic_read((uint16_t *)(p + ROM_DONE_ADDR)) != ROM_DONE) {
        g_assert_cmpint(g_get_monotonic_time(), <, deadline);
        g_usleep(10 * 1000);
    }
    for (addr = ROM_START; addr < ROM_END; addr += 4 * KiB) {
        g_assert_cmphex(*(uint16_t *)(p + addr), ==,
                        (addr >> 4 & 0xf000) ^ (addr & 0xffff));
    }
    munmap(p, len);
    close(fd);
}

static void test_kvm(void)
{
    g_autofree char *trace_dir = NULL, *trace_path = NULL, *trace_arg = NULL;
    g_autofree char *rom_path = NULL;
    QTestState *qts;
    QDict *rsp;
    const char *mtree;

    if (!host_ok()) {
        return;
    }
    if (!qtest_has_accel("kvm")) {
        g_test_skip("KVM accelerator not available");
        return;
    }
    trace_dir = g_dir_make_tmp("guest-memfd-test-XXXXXX", NULL);
    g_assert(trace_dir);
    trace_path = g_strdup_printf("%s/memslots", trace_dir);
    rom_path = g_strdup_printf("%s/rom", trace_dir);
    write_rom(rom_path);
    trace_arg = g_strdup_printf("-nodefaults -bios %s "
                                "-trace enable=kvm_set_user_memory,file=%s",
                                rom_path, trace_path);
    qts = start_vm_args("kvm", trace_arg);
    check_memdev(qts);
    check_ram(qts);
    check_ram_in_guest_memfd(qts);
    check_vcpu_writes(qts);
    /* The RAM is in KVM memslots */
    rsp = qtest_qmp(qts, "{ 'execute': 'human-monitor-command', "
                    "'arguments': { 'command-line': 'info mtree -f' } }");
    mtree = qdict_get_str(rsp, "return");
    g_assert(strstr(mtree, "(prio 0, ram): m0 KVM"));
    qobject_unref(rsp);
    check_memslots(qts, trace_path);
    qtest_quit(qts);
    unlink(trace_path);
    unlink(rom_path);
    rmdir(trace_dir);
}

static void object_add_expect_error(QTestState *qts, const char *props,
                                    const char *expected)
{
    QDict *rsp, *err;
    const char *desc;

    g_autofree char *json = g_strdup_printf("{ 'qom-type': '" TYPE "', "
                                            "'id': 'bad', %s }", props);
    QObject *args = qobject_from_json(json, &error_abort);

    /* %p hands the reference to args over */
    rsp = qtest_qmp(qts, "{ 'execute': 'object-add', 'arguments': %p }",
                    args);
    err = qdict_get_qdict(rsp, "error");
    g_assert(err);
    desc = qdict_get_str(err, "desc");
    if (!strstr(desc, expected)) {
        g_test_message("'%s' does not contain '%s'", desc, expected);
        g_assert_not_reached();
    }
    qobject_unref(rsp);
    /* Nothing was left behind */
    rsp = qtest_qmp(qts, "{ 'execute': 'qom-list', "
                    "'arguments': { 'path': '/objects/bad' } }");
    g_assert(qdict_haskey(rsp, "error"));
    qobject_unref(rsp);
}

static void test_object_add(void)
{
    QTestState *qts;
    QDict *rsp;

    if (!host_ok()) {
        return;
    }
    qts = qtest_init("-machine none -accel qtest");
    qtest_qmp_assert_success(qts, "{ 'execute': 'object-add', 'arguments': "
                             "{ 'qom-type': '" TYPE "', 'id': 'm1', "
                             "'size': 8388608, 'prealloc': true } }");
    rsp = qtest_qmp(qts, "{ 'execute': 'qom-get', 'arguments': "
                    "{ 'path': '/objects/m1', 'property': 'share' } }");
    g_assert(qdict_get_bool(rsp, "return"));
    qobject_unref(rsp);
    rsp = qtest_qmp(qts, "{ 'execute': 'qom-get', 'arguments': "
                    "{ 'path': '/objects/m1', 'property': 'size' } }");
    g_assert_cmpuint(qdict_get_int(rsp, "return"), ==, 8 * MiB);
    qobject_unref(rsp);
    qtest_qmp_assert_success(qts, "{ 'execute': 'object-del', "
                             "'arguments': { 'id': 'm1' } }");

    object_add_expect_error(qts, "'size': 8388608, 'share': false",
                            "property 'share' must be on");
    object_add_expect_error(qts, "'size': 8388608, 'reserve': false",
                            "property 'reserve' cannot be off");
    object_add_expect_error(qts, "'size': 0",
                            "property 'size' of " TYPE
                            " doesn't take value '0'");
    object_add_expect_error(qts, "'size': 4097",
                            "size 0x1001 is not a multiple of the host "
                            "page size");
    object_add_expect_error(qts, "'size': 8388608, 'hugetlb': true",
                            "Parameter 'hugetlb' is unexpected");
    qtest_quit(qts);
}

static void test_introspection(void)
{
    static const char *const props[] = {
        "size", "share", "prealloc", "prealloc-threads", "prealloc-context",
        "reserve", "host-nodes", "policy", "dump", "merge",
    };
    QTestState *qts = qtest_init("-machine none -accel qtest");
    QDict *rsp;
    QList *list;
    QListEntry *e;
    GString *json;
    bool found;
    size_t i;

    /* qom-list-types knows it as a memory backend */
    rsp = qtest_qmp(qts, "{ 'execute': 'qom-list-types', 'arguments': "
                    "{ 'implements': 'memory-backend' } }");
    found = false;
    QLIST_FOREACH_ENTRY(qdict_get_qlist(rsp, "return"), e) {
        QDict *t = qobject_to(QDict, qlist_entry_obj(e));
        found |= !strcmp(qdict_get_str(t, "name"), TYPE);
    }
    g_assert(found);
    qobject_unref(rsp);

    /* qom-list-properties lists what it inherits */
    rsp = qtest_qmp(qts, "{ 'execute': 'qom-list-properties', "
                    "'arguments': { 'typename': '" TYPE "' } }");
    list = qdict_get_qlist(rsp, "return");
    for (i = 0; i < ARRAY_SIZE(props); i++) {
        found = false;
        QLIST_FOREACH_ENTRY(list, e) {
            QDict *p = qobject_to(QDict, qlist_entry_obj(e));
            found |= !strcmp(qdict_get_str(p, "name"), props[i]);
        }
        if (!found) {
            g_test_message("property %s not listed", props[i]);
        }
        g_assert(found);
    }
    qobject_unref(rsp);

    /* The QAPI schema knows the object type */
    rsp = qtest_qmp(qts, "{ 'execute': 'query-qmp-schema' }");
    json = qobject_to_json(qdict_get(rsp, "return"));
    g_assert(strstr(json->str, "\"" TYPE "\""));
    g_string_free(json, true);
    qobject_unref(rsp);
    qtest_quit(qts);
}

static bool exited_ok(int status)
{
    return WIFEXITED(status) && WEXITSTATUS(status) == 0;
}

/*
 * Run QEMU directly, without a qtest connection, behind the shell
 * command @prefix; return its stderr, and its stdout in @out if wanted.
 */
static char *run_qemu(const char *prefix, const char *args, char **out,
                      int *status)
{
    g_autofree char *cmd = g_strdup_printf("%s %s -display none %s", prefix,
                                           qtest_qemu_binary(NULL), args);
    g_autofree char *discard = NULL;
    char *err = NULL;
    gchar *argv[] = { (gchar *)"/bin/sh", (gchar *)"-c", cmd, NULL };

    g_assert(g_spawn_sync(NULL, argv, NULL, G_SPAWN_DEFAULT, NULL, NULL,
                          out ? out : &discard, &err, status, NULL));
    return err;
}

static void test_cli_errors(void)
{
    g_autofree char *out = NULL;
    g_autofree char *err = NULL;
    g_autofree char *err2 = NULL;
    int status;

    err = run_qemu("", "-object help", &out, &status);
    g_assert(exited_ok(status));
    g_assert(strstr(out, TYPE));

    err2 = run_qemu("", "-machine none -accel qtest -object " TYPE
                    ",id=m0,size=1M,share=off", NULL, &status);
    g_assert(!exited_ok(status));
    g_assert(strstr(err2, "property 'share' must be on"));
}

/*
 * Huge pages: guest_memfd has none to give (no hugetlb flag in
 * KVM_CREATE_GUEST_MEMFD), so the backend has none of memory-backend-
 * memfd's hugetlb properties: QAPI refuses them (the type is in
 * ObjectOptions) when the object is created, from the command line and
 * from object-add alike.
 */
static void test_refusals(void)
{
    static const char *const props[] = { "hugetlb=on", "hugetlbsize=2M" };
    QTestState *qts;
    QDict *rsp;
    size_t i;

    for (i = 0; i < ARRAY_SIZE(props); i++) {
        g_autofree char *args = g_strdup_printf(
            "-machine none -accel qtest -object " TYPE ",id=m0,size=2M,%s",
            props[i]);
        g_autofree char *want = g_strdup_printf(
            TYPE ",id=m0,size=2M,%s: Invalid parameter '%.*s'", props[i],
            (int)(strchr(props[i], '=') - props[i]), props[i]);
        g_autofree char *err = NULL;
        int status;

        err = run_qemu("", args, NULL, &status);
        g_assert(!exited_ok(status));
        if (!strstr(err, want)) {
            g_test_message("%s: expected \"%s\", got: %s", props[i], want,
                           err);
            g_assert_not_reached();
        }
    }

    qts = qtest_init("-machine none -accel qtest");
    rsp = qtest_qmp(qts, "{ 'execute': 'object-add', 'arguments':"
                    " { 'qom-type': %s, 'id': 'm0', 'size': 2097152,"
                    "   'hugetlb': true } }", TYPE);
    g_assert(qdict_haskey(rsp, "error"));
    g_assert_cmpstr(qdict_get_str(qdict_get_qdict(rsp, "error"), "desc"),
                    ==, "Parameter 'hugetlb' is unexpected");
    qobject_unref(rsp);
    /* Nothing was left behind: the id is free */
    rsp = qtest_qmp(qts, "{ 'execute': 'qom-list', 'arguments':"
                    " { 'path': '/objects/m0' } }");
    g_assert(qdict_haskey(rsp, "error"));
    qobject_unref(rsp);
    qtest_quit(qts);
}

/*
 * Without /dev/kvm the backend cannot create a guest_memfd and must say
 * so.  /dev/kvm is hidden by an empty /dev in a private mount namespace.
 */
#define HIDE_DEV "unshare -m sh -c 'mount -t tmpfs none /dev && " \
                 "exec \"$0\" \"$@\"'"

static void test_no_kvm(void)
{
    g_autofree char *err = NULL;
    g_autofree char *check = NULL;
    g_autofree char *unshare = g_find_program_in_path("unshare");
    int status;

    if (getuid() != 0 || !unshare) {
        g_test_skip("hiding /dev/kvm needs root and unshare(1)");
        return;
    }
    check = run_qemu(HIDE_DEV, "-version", NULL, &status);
    if (!exited_ok(status)) {
        g_test_skip("cannot make a mount namespace without /dev/kvm");
        return;
    }
    err = run_qemu(HIDE_DEV, "-machine none -accel qtest -object " TYPE
                   ",id=m0,size=1M", NULL, &status);
    g_assert(!exited_ok(status));
    if (!strstr(err, "still needs KVM: Could not open '/dev/kvm'")) {
        g_test_message("unexpected error: %s", err);
        g_assert_not_reached();
    }
}

int main(int argc, char **argv)
{
    const char *arch = qtest_get_arch();

    g_test_init(&argc, &argv, NULL);

    if (strcmp(arch, "i386") && strcmp(arch, "x86_64")) {
        return g_test_run();
    }
    if (!guest_memfd_host_supported(&skip_reason)) {
        g_test_message("guest_memfd not usable here: %s", skip_reason);
    }
    qtest_add_func("/guest-memfd/introspection", test_introspection);
    qtest_add_func("/guest-memfd/cli-errors", test_cli_errors);
    qtest_add_func("/guest-memfd/refusals", test_refusals);
    qtest_add_func("/guest-memfd/object-add", test_object_add);
    qtest_add_func("/guest-memfd/ram/qtest", test_tcg_or_qtest);
    qtest_add_func("/guest-memfd/ram/kvm", test_kvm);
    qtest_add_func("/guest-memfd/no-kvm", test_no_kvm);
    return g_test_run();
}
