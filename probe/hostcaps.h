/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * What gmem-probe and uffd-place-bench share: the guest_memfd and
 * userfaultfd UAPI bits Debian bookworm's headers lack, the two kinds of
 * backing memory, opening a userfaultfd each way the kernel offers one,
 * and error and JSON text.
 *
 * Copyright (c) 2026 The qemu-gmem authors
 */

#ifndef HOSTCAPS_H
#define HOSTCAPS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/ioctl.h>
#include <linux/kvm.h>
#include <linux/userfaultfd.h>

/*
 * KVM guest_memfd UAPI (Linux 6.8, MMAP/INIT_SHARED flags 6.18).  Debian
 * bookworm's linux-libc-dev (6.1) has none of it, so it is defined here.
 * The ioctl takes a 64-byte struct; a private struct name avoids clashing
 * with struct kvm_create_guest_memfd where the system header has it.
 */
#ifndef KVM_CAP_GUEST_MEMFD
#define KVM_CAP_GUEST_MEMFD 234
#endif
#ifndef KVM_CAP_GUEST_MEMFD_FLAGS
#define KVM_CAP_GUEST_MEMFD_FLAGS 244
#endif
#ifndef GUEST_MEMFD_FLAG_MMAP
#define GUEST_MEMFD_FLAG_MMAP (1ULL << 0)
#endif
#ifndef GUEST_MEMFD_FLAG_INIT_SHARED
#define GUEST_MEMFD_FLAG_INIT_SHARED (1ULL << 1)
#endif

struct hostcaps_gmem_create {
    uint64_t size;
    uint64_t flags;
    uint64_t reserved[6];
};
_Static_assert(sizeof(struct hostcaps_gmem_create) == 64,
               "struct kvm_create_guest_memfd is 64 bytes");
#define HOSTCAPS_CREATE_GUEST_MEMFD \
    _IOWR(KVMIO, 0xd4, struct hostcaps_gmem_create)
#ifdef KVM_CREATE_GUEST_MEMFD
_Static_assert(HOSTCAPS_CREATE_GUEST_MEMFD == KVM_CREATE_GUEST_MEMFD,
               "KVM_CREATE_GUEST_MEMFD matches the system header");
#endif

/* userfaultfd and madvise UAPI bits newer than linux-libc-dev 6.1 */
#ifndef _UFFDIO_MOVE
#define _UFFDIO_MOVE (0x05)
#endif
#ifndef _UFFDIO_POISON
#define _UFFDIO_POISON (0x08)
#endif
#ifndef UFFD_USER_MODE_ONLY
#define UFFD_USER_MODE_ONLY 1
#endif
#ifndef USERFAULTFD_IOC_NEW
#define USERFAULTFD_IOC_NEW _IO(0xAA, 0x00)
#endif
#ifndef MADV_POPULATE_WRITE
#define MADV_POPULATE_WRITE 23
#endif

typedef enum {
    BACK_MEMFD,
    BACK_GMEM,
    BACK__MAX,
} Backing;

extern const char *const backing_name[BACK__MAX];

/*
 * A file of @size bytes: a memfd, or a guest_memfd created with
 * MMAP|INIT_SHARED on @vm_fd.  -1 with *err set on failure.
 */
int backing_open(Backing b, int vm_fd, size_t size, int *err);

/* mmap(MAP_SHARED) of all of @fd; NULL with *err set on failure */
void *map_shared(int fd, size_t size, int *err);

/* The ways to get a userfaultfd, most capable first */
typedef enum {
    UFFD_VIA_SYSCALL,               /* userfaultfd(2), all faults */
    UFFD_VIA_SYSCALL_USER_ONLY,     /* userfaultfd(2), user faults only */
    UFFD_VIA_DEV,                   /* /dev/userfaultfd */
    UFFD_VIA__MAX,
} UffdVia;

/*
 * A new O_CLOEXEC|O_NONBLOCK userfaultfd got @via, before the UFFDIO_API
 * handshake.  -1 with *err set on failure.
 */
int uffd_open_via(UffdVia via, int *err);
/* The same with the handshake done (no features requested) */
int uffd_new(UffdVia via, int *err);

/* "EINVAL": the errno name ("?" if unknown) */
const char *errname(int err);
/* "Invalid argument (EINVAL)", from a ring of 4 static buffers */
const char *errtext(int err);

/* @s as a JSON string, quotes included, on stdout */
void json_str(const char *s);

#endif
