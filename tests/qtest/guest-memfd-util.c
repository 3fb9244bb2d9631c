/*
 * Host capability probes for guest_memfd qtests
 *
 * Copyright (c) 2026 qemu-gmem developers
 *
 * SPDX-License-Identifier: GPL-2.0-or-later
 */

#include "qemu/osdep.h"
#include "guest-memfd-util.h"

#ifdef CONFIG_LINUX
#include <sys/ioctl.h>
#include <linux/kvm.h>
#include <linux/userfaultfd.h>
#include "qemu/userfaultfd.h"
#include <sys/syscall.h>
#include <sys/sysmacros.h>
#include <sys/vfs.h>
#include <sys/socket.h>
#include <linux/netlink.h>
#include <poll.h>
#include "qobject/qdict.h"

/* The filesystem of guest_memfd inodes (include/uapi/linux/magic.h) */
#define GUEST_MEMFD_MAGIC 0x474d454d

#define GMEM_FLAGS (GUEST_MEMFD_FLAG_MMAP | GUEST_MEMFD_FLAG_INIT_SHARED)

/* A shared guest_memfd of @size bytes, or -1 with @reason set */
static int guest_memfd_open(size_t size, char **reason)
{
    struct kvm_create_guest_memfd args = { .size = size, .flags = GMEM_FLAGS };
    int kvm, vm, flags, fd = -1;

    kvm = open("/dev/kvm", O_RDWR | O_CLOEXEC);
    if (kvm < 0) {
        *reason = g_strdup_printf("cannot open /dev/kvm: %s",
                                  strerror(errno));
        return -1;
    }
    vm = ioctl(kvm, KVM_CREATE_VM, 0);
    if (vm < 0) {
        *reason = g_strdup_printf("KVM_CREATE_VM: %s", strerror(errno));
        goto out_kvm;
    }
    if (ioctl(vm, KVM_CHECK_EXTENSION, KVM_CAP_GUEST_MEMFD) <= 0) {
        *reason = g_strdup_printf("KVM lacks KVM_CAP_GUEST_MEMFD (%d)",
                                  KVM_CAP_GUEST_MEMFD);
        goto out_vm;
    }
    flags = ioctl(vm, KVM_CHECK_EXTENSION, KVM_CAP_GUEST_MEMFD_FLAGS);
    if (flags < 0 || (flags & GMEM_FLAGS) != GMEM_FLAGS) {
        *reason = g_strdup_printf("KVM_CAP_GUEST_MEMFD_FLAGS (%d) is 0x%x, "
                                  "needs MMAP|INIT_SHARED (0x%x)",
                                  KVM_CAP_GUEST_MEMFD_FLAGS, MAX(flags, 0),
                                  (unsigned)GMEM_FLAGS);
        goto out_vm;
    }
    fd = ioctl(vm, KVM_CREATE_GUEST_MEMFD, &args);
    if (fd < 0) {
        *reason = g_strdup_printf("KVM_CREATE_GUEST_MEMFD: %s",
                                  strerror(errno));
    }
out_vm:
    close(vm);
out_kvm:
    close(kvm);
    return fd;
}

bool guest_memfd_host_supported(char **reason)
{
    size_t size = qemu_real_host_page_size();
    int fd = guest_memfd_open(size, reason);
    void *p;

    if (fd < 0) {
        return false;
    }
    p = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    if (p == MAP_FAILED) {
        *reason = g_strdup_printf("mmap of a guest_memfd: %s",
                                  strerror(errno));
        close(fd);
        return false;
    }
    munmap(p, size);
    close(fd);
    return true;
}

bool guest_memfd_uffd_supported(char **reason)
{
    size_t size = qemu_real_host_page_size();
    struct uffdio_api api = { .api = UFFD_API };
    struct uffdio_register reg = { 0 };
    bool ret = false;
    int fd, ufd;
    void *p;

    if (!guest_memfd_host_supported(reason)) {
        return false;
    }
    fd = guest_memfd_open(size, reason);
    if (fd < 0) {
        return false;
    }
    p = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    /* As QEMU opens it: /dev/userfaultfd first, then the system call */
    ufd = uffd_open(O_CLOEXEC);
    if (ufd < 0) {
        *reason = g_strdup_printf("userfaultfd: %s", strerror(errno));
        goto out;
    }
    if (ioctl(ufd, UFFDIO_API, &api)) {
        *reason = g_strdup_printf("UFFDIO_API: %s", strerror(errno));
        goto out_ufd;
    }
    reg.range.start = (uintptr_t)p;
    reg.range.len = size;
    reg.mode = UFFDIO_REGISTER_MODE_MISSING | UFFDIO_REGISTER_MODE_MINOR;
    if (ioctl(ufd, UFFDIO_REGISTER, &reg)) {
        *reason = g_strdup_printf("kernel lacks userfaultfd support for "
                                  "guest_memfd (UFFDIO_REGISTER "
                                  "MISSING|MINOR: %s)", strerror(errno));
        goto out_ufd;
    }
    if (!(reg.ioctls & (1ULL << _UFFDIO_CONTINUE))) {
        *reason = g_strdup("guest_memfd registration lacks UFFDIO_CONTINUE");
        goto out_ufd;
    }
    ret = true;
out_ufd:
    close(ufd);
out:
    munmap(p, size);
    close(fd);
    return ret;
}

int guest_memfd_mapped_at(pid_t pid, uint64_t hva, uint64_t len,
                          uint64_t *offset, char **reason)
{
    g_autofree char *maps_path = g_strdup_printf("/proc/%d/maps", (int)pid);
    g_autofree char *fd_dir = g_strdup_printf("/proc/%d/fd", (int)pid);
    g_autofree char *maps = NULL;
    g_auto(GStrv) lines = NULL;
    uint64_t next = hva, first_off = 0;
    unsigned long ino = 0;
    unsigned maj = 0, min = 0;
    struct statfs sfs;
    const char *name;
    GDir *dir;
    int pidfd, fd = -1, target = -1;
    size_t i;

    if (!g_file_get_contents(maps_path, &maps, NULL, NULL)) {
        *reason = g_strdup_printf("cannot read %s", maps_path);
        return -1;
    }
    /* The VMAs that cover the range, in order: one file, contiguous */
    lines = g_strsplit(maps, "\n", -1);
    for (i = 0; lines[i] && next < hva + len; i++) {
        unsigned long long start, end, off;
        unsigned long l_ino;
        unsigned l_maj, l_min;

        if (sscanf(lines[i], "%llx-%llx %*s %llx %x:%x %lu", &start, &end,
                   &off, &l_maj, &l_min, &l_ino) != 6 ||
            end <= next || start > next) {
            continue;
        }
        if (next == hva) {
            maj = l_maj;
            min = l_min;
            ino = l_ino;
            first_off = off + (hva - start);
        } else if (l_maj != maj || l_min != min || l_ino != ino ||
                   off + (next - start) != first_off + (next - hva)) {
            *reason = g_strdup_printf("0x%" PRIx64 "+0x%" PRIx64 " maps "
                                      "more than one file: %s", hva, len,
                                      lines[i]);
            return -1;
        }
        if (!l_ino) {
            *reason = g_strdup_printf("0x%" PRIx64 " maps no file: %s",
                                      next, lines[i]);
            return -1;
        }
        next = end;
    }
    if (next < hva + len) {
        *reason = g_strdup_printf("0x%" PRIx64 " is not mapped", next);
        return -1;
    }

    /* Which of its fds is that file */
    dir = g_dir_open(fd_dir, 0, NULL);
    if (!dir) {
        *reason = g_strdup_printf("cannot list %s", fd_dir);
        return -1;
    }
    while ((name = g_dir_read_name(dir)) && target < 0) {
        g_autofree char *link = g_strdup_printf("%s/%s", fd_dir, name);
        struct stat st;

        if (!stat(link, &st) && st.st_ino == ino &&
            major(st.st_dev) == maj && minor(st.st_dev) == min) {
            target = atoi(name);
        }
    }
    g_dir_close(dir);
    if (target < 0) {
        *reason = g_strdup_printf("no fd of process %d is the file (inode "
                                  "%lu) mapped at 0x%" PRIx64, (int)pid,
                                  ino, hva);
        return -1;
    }

    pidfd = syscall(SYS_pidfd_open, pid, 0);
    if (pidfd >= 0) {
        fd = syscall(SYS_pidfd_getfd, pidfd, target, 0);
        close(pidfd);
    }
    if (fd < 0) {
        *reason = g_strdup_printf("pidfd_getfd of fd %d of process %d: %s",
                                  target, (int)pid, strerror(errno));
        return -1;
    }
    if (fstatfs(fd, &sfs) || sfs.f_type != GUEST_MEMFD_MAGIC) {
        *reason = g_strdup_printf("fd %d of process %d, mapped at 0x%" PRIx64
                                  ", is not a guest_memfd (filesystem magic "
                                  "0x%lx)", target, (int)pid, hva,
                                  (unsigned long)sfs.f_type);
        close(fd);
        return -1;
    }
    if (offset) {
        *offset = first_off;
    }
    return fd;
}

int guest_memfd_ram_block(QTestState *qts, const char *name, uint64_t *hva,
                          uint64_t *len)
{
    g_autofree char *canonical = g_strdup_printf("/objects/%s", name);
    g_autofree char *reason = NULL;
    g_auto(GStrv) lines = NULL;
    uint64_t b_hva = 0, b_len = 0;
    QDict *rsp;
    size_t i;
    int fd;

    rsp = qtest_qmp(qts, "{ 'execute': 'human-monitor-command', "
                    "'arguments': { 'command-line': 'info ramblock' } }");
    lines = g_strsplit(qdict_get_str(rsp, "return"), "\n", -1);
    qobject_unref(rsp);
    for (i = 0; lines[i]; i++) {
        g_auto(GStrv) f = g_strsplit_set(g_strstrip(lines[i]), " ", -1);
        uint64_t num[4];
        int n = 0;
        size_t j;

        /* idstr, page size ("4 KiB"), offset, used, total, HVA, RO */
        for (j = 1; f[0] && f[j] && n < 4; j++) {
            if (g_str_has_prefix(f[j], "0x")) {
                num[n++] = g_ascii_strtoull(f[j], NULL, 16);
            }
        }
        if (n == 4 && (!strcmp(f[0], name) || !strcmp(f[0], canonical))) {
            b_len = num[1];
            b_hva = num[3];
        }
    }
    g_assert(b_hva && b_len);

    fd = guest_memfd_mapped_at(qtest_pid(qts), b_hva, b_len, NULL, &reason);
    if (fd < 0) {
        g_test_message("RAM block %s is not a guest_memfd: %s", name, reason);
        g_assert_not_reached();
    }
    if (hva) {
        *hva = b_hva;
    }
    if (len) {
        *len = b_len;
    }
    return fd;
}

int kvm_count_vms(char **reason)
{
    struct sockaddr_nl sa = {
        .nl_family = AF_NETLINK,
        .nl_groups = 1,
    };
    g_autofree char *pid_key = g_strdup_printf("PID=%d", (int)getpid());
    int64_t deadline = g_get_monotonic_time() + 10 * G_USEC_PER_SEC;
    int sock, kvm = -1, vm = -1, count = -1;
    char buf[8192];

    *reason = NULL;
    sock = socket(AF_NETLINK, SOCK_DGRAM | SOCK_CLOEXEC,
                  NETLINK_KOBJECT_UEVENT);
    if (sock < 0 || bind(sock, (struct sockaddr *)&sa, sizeof(sa))) {
        *reason = g_strdup_printf("uevent socket: %s", strerror(errno));
        goto out;
    }
    kvm = open("/dev/kvm", O_RDWR | O_CLOEXEC);
    vm = kvm < 0 ? -1 : ioctl(kvm, KVM_CREATE_VM, 0);
    if (vm < 0) {
        *reason = g_strdup_printf("KVM_CREATE_VM: %s", strerror(errno));
        goto out;
    }
    /* KVM's uevent for our VM says how many are alive, ours included */
    while (count < 0 && g_get_monotonic_time() < deadline) {
        struct pollfd pfd = { .fd = sock, .events = POLLIN };
        bool kvm_create = false, ours = false;
        long n = -1;
        ssize_t len, o;

        if (poll(&pfd, 1, 1000) <= 0) {
            continue;
        }
        len = recv(sock, buf, sizeof(buf) - 1, 0);
        if (len <= 0) {
            continue;
        }
        buf[len] = 0;
        /* "ACTION@DEVPATH\0KEY=VALUE\0..." */
        for (o = 0; o < len; o += strlen(buf + o) + 1) {
            const char *kv = buf + o;

            kvm_create |= !strcmp(kv, "EVENT=create");
            ours |= !strcmp(kv, pid_key);
            if (g_str_has_prefix(kv, "COUNT=")) {
                n = atol(kv + 6);
            }
        }
        if (kvm_create && ours && n > 0 && strstr(buf, "/kvm")) {
            count = n - 1;
        }
    }
    if (count < 0) {
        *reason = g_strdup("no KVM uevent for a VM created to count them");
    }
out:
    if (vm >= 0) {
        close(vm);
    }
    if (kvm >= 0) {
        close(kvm);
    }
    if (sock >= 0) {
        close(sock);
    }
    return count;
}

#else

bool guest_memfd_host_supported(char **reason)
{
    *reason = g_strdup("guest_memfd needs Linux");
    return false;
}

bool guest_memfd_uffd_supported(char **reason)
{
    *reason = g_strdup("guest_memfd needs Linux");
    return false;
}

int guest_memfd_mapped_at(pid_t pid, uint64_t hva, uint64_t len,
                          uint64_t *offset, char **reason)
{
    *reason = g_strdup("guest_memfd needs Linux");
    return -1;
}

int guest_memfd_ram_block(QTestState *qts, const char *name, uint64_t *hva,
                          uint64_t *len)
{
    g_assert_not_reached();
}

int kvm_count_vms(char **reason)
{
    *reason = g_strdup("KVM needs Linux");
    return -1;
}

#endif
