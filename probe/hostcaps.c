/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * Helpers shared by gmem-probe and uffd-place-bench; see hostcaps.h.
 *
 * Copyright (c) 2026 The qemu-gmem authors
 */

#define _GNU_SOURCE
#include "hostcaps.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>
#include <sys/mman.h>
#include <sys/syscall.h>

const char *const backing_name[BACK__MAX] = {
    [BACK_MEMFD] = "memfd",
    [BACK_GMEM] = "gmem",
};

int backing_open(Backing b, int vm_fd, size_t size, int *err)
{
    struct hostcaps_gmem_create gc = {
        .size = size,
        .flags = GUEST_MEMFD_FLAG_MMAP | GUEST_MEMFD_FLAG_INIT_SHARED,
    };
    int fd;

    if (b == BACK_GMEM) {
        fd = vm_fd < 0 ? (errno = ENODEV, -1)
             : ioctl(vm_fd, HOSTCAPS_CREATE_GUEST_MEMFD, &gc);
        if (fd < 0) {
            *err = errno;
        }
        return fd;
    }
    fd = memfd_create("qemu-gmem-hostcaps", MFD_CLOEXEC);
    if (fd < 0) {
        *err = errno;
        return -1;
    }
    if (ftruncate(fd, size) < 0) {
        *err = errno;
        close(fd);
        return -1;
    }
    return fd;
}

void *map_shared(int fd, size_t size, int *err)
{
    void *a = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);

    if (a == MAP_FAILED) {
        *err = errno;
        return NULL;
    }
    return a;
}

int uffd_open_via(UffdVia via, int *err)
{
    int flags = O_CLOEXEC | O_NONBLOCK;
    int fd, dev;

    switch (via) {
    case UFFD_VIA_SYSCALL:
        fd = syscall(SYS_userfaultfd, flags);
        break;
    case UFFD_VIA_SYSCALL_USER_ONLY:
        fd = syscall(SYS_userfaultfd, flags | UFFD_USER_MODE_ONLY);
        break;
    default:
        dev = open("/dev/userfaultfd", O_RDWR | O_CLOEXEC);
        if (dev < 0) {
            *err = errno;
            return -1;
        }
        fd = ioctl(dev, USERFAULTFD_IOC_NEW, flags);
        *err = errno;
        close(dev);
        return fd;
    }
    if (fd < 0) {
        *err = errno;
    }
    return fd;
}

int uffd_new(UffdVia via, int *err)
{
    struct uffdio_api api = { .api = UFFD_API, .features = 0 };
    int fd = uffd_open_via(via, err);

    if (fd < 0) {
        return -1;
    }
    if (ioctl(fd, UFFDIO_API, &api) < 0) {
        *err = errno;
        close(fd);
        return -1;
    }
    return fd;
}

/*
 * The symbolic name goes next to strerror()'s text because the kernel's
 * answers are documented (and tested) by errno name.
 */
const char *errname(int err)
{
    const char *name = strerrorname_np(err);

    return name ? name : "?";
}

const char *errtext(int err)
{
    static char buf[4][96];
    static int slot;
    char *b = buf[slot++ % 4];

    snprintf(b, sizeof(buf[0]), "%s (%s)", strerror(err), errname(err));
    return b;
}

void json_str(const char *s)
{
    putchar('"');
    for (; *s; s++) {
        unsigned char ch = *s;

        if (ch == '"' || ch == '\\') {
            printf("\\%c", ch);
        } else if (ch < 0x20) {
            printf("\\u%04x", ch);
        } else {
            putchar(ch);
        }
    }
    putchar('"');
}
