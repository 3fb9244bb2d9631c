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

#endif
