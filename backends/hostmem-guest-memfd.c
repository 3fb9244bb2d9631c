/*
 * QEMU host memory backend: guest RAM in a mmap'd KVM guest_memfd
 *
 * Copyright (c) 2026 qemu-gmem developers
 *
 * SPDX-License-Identifier: GPL-2.0-or-later
 *
 * The guest_memfd is created with GUEST_MEMFD_FLAG_MMAP |
 * GUEST_MEMFD_FLAG_INIT_SHARED, mapped MAP_SHARED, and becomes an ordinary
 * shared, fd-backed RAMBlock.  Migration recognises it by its fd
 * (qemu_fd_getfs() gives QEMU_FS_TYPE_GUEST_MEMFD), as it does a
 * guest_memfd that any other backend maps.
 *
 * The block's guest_memfd is RAMBlock->fd.  RAMBlock->guest_memfd, the
 * confidential-computing private-memory fd, stays -1, so KVM memslots for
 * this memory are registered by userspace address and not bound to the
 * guest_memfd (no KVM_MEM_GUEST_MEMFD).  Every guest access, vCPU stage-2
 * faults included, is therefore resolved through QEMU's mapping, where
 * userfaultfd sees it: postcopy can never hand the guest a page that has
 * not arrived.  A memslot bound to the guest_memfd would let KVM fault
 * pages in from the guest_memfd directly, behind userfaultfd's back.
 */

#include "qemu/osdep.h"
#include <sys/ioctl.h>
#include <linux/kvm.h>
#include "system/hostmem.h"
#include "system/kvm.h"
#include "qom/object_interfaces.h"
#include "qemu/module.h"
#include "qapi/error.h"
#include "qom/object.h"
#include "migration/cpr.h"

#define TYPE_MEMORY_BACKEND_GUEST_MEMFD "memory-backend-guest-memfd"

OBJECT_DECLARE_SIMPLE_TYPE(HostMemoryBackendGuestMemfd,
                           MEMORY_BACKEND_GUEST_MEMFD)

struct HostMemoryBackendGuestMemfd {
    HostMemoryBackend parent_obj;
};

#define GUEST_MEMFD_WANTED_FLAGS \
    (GUEST_MEMFD_FLAG_MMAP | GUEST_MEMFD_FLAG_INIT_SHARED)

/*
 * Create a mmap-able, initially shared guest_memfd of @size bytes on the
 * KVM VM @vmfd.  Returns the fd, or -1 with @errp set.
 */
static int guest_memfd_create(int vmfd, uint64_t size, Error **errp)
{
    struct kvm_create_guest_memfd args = {
        .size = size,
        .flags = GUEST_MEMFD_WANTED_FLAGS,
    };
    int cap, fd;
    uint64_t missing;

    cap = ioctl(vmfd, KVM_CHECK_EXTENSION, KVM_CAP_GUEST_MEMFD);
    if (cap <= 0) {
        error_setg(errp, "KVM lacks guest_memfd (KVM_CAP_GUEST_MEMFD, %d)",
                   KVM_CAP_GUEST_MEMFD);
        return -1;
    }
    cap = ioctl(vmfd, KVM_CHECK_EXTENSION, KVM_CAP_GUEST_MEMFD_FLAGS);
    missing = GUEST_MEMFD_WANTED_FLAGS & ~(uint64_t)MAX(cap, 0);
    if (missing) {
        error_setg(errp, "KVM guest_memfd lacks %s%s%s "
                   "(KVM_CAP_GUEST_MEMFD_FLAGS, %d, is 0x%x)",
                   missing & GUEST_MEMFD_FLAG_MMAP ?
                   "GUEST_MEMFD_FLAG_MMAP" : "",
                   missing == GUEST_MEMFD_WANTED_FLAGS ? " and " : "",
                   missing & GUEST_MEMFD_FLAG_INIT_SHARED ?
                   "GUEST_MEMFD_FLAG_INIT_SHARED" : "",
                   KVM_CAP_GUEST_MEMFD_FLAGS, MAX(cap, 0));
        return -1;
    }
    fd = ioctl(vmfd, KVM_CREATE_GUEST_MEMFD, &args);
    if (fd < 0) {
        error_setg_errno(errp, errno, "cannot create a KVM guest_memfd of "
                         "0x%" PRIx64 " bytes", size);
        return -1;
    }
    return fd;
}

/*
 * Without the KVM accelerator (TCG, qtest) there is no VM to own the
 * guest_memfd: open a KVM VM of our own for it.  The guest_memfd keeps
 * a reference on that VM, so the VM fd can be closed at once.
 */
static int guest_memfd_create_standalone(uint64_t size, Error **errp)
{
    int kvmfd, vmfd, fd;

    kvmfd = qemu_open_old("/dev/kvm", O_RDWR | O_CLOEXEC);
    if (kvmfd < 0) {
        error_setg_errno(errp, errno, "cannot open /dev/kvm, which "
                         "creates guest_memfd also without the KVM "
                         "accelerator");
        return -1;
    }
    do {
        vmfd = ioctl(kvmfd, KVM_CREATE_VM, 0);
    } while (vmfd < 0 && errno == EINTR);
    if (vmfd < 0) {
        error_setg_errno(errp, errno, "cannot create a KVM VM to own the "
                         "guest_memfd (KVM_CREATE_VM on /dev/kvm)");
        close(kvmfd);
        return -1;
    }
    fd = guest_memfd_create(vmfd, size, errp);
    close(vmfd);
    close(kvmfd);
    return fd;
}

static bool
guest_memfd_backend_memory_alloc(HostMemoryBackend *backend, Error **errp)
{
    g_autofree char *name = host_memory_backend_get_name(backend);
    uint32_t ram_flags;
    int fd;

    if (!backend->size) {
        error_setg(errp, "can't create backend with size 0");
        return false;
    }
    if (!QEMU_IS_ALIGNED(backend->size, qemu_real_host_page_size())) {
        error_setg(errp, "size 0x%" PRIx64 " is not a multiple of the host "
                   "page size 0x%zx", backend->size,
                   qemu_real_host_page_size());
        return false;
    }
    if (!backend->share) {
        error_setg(errp, "property 'share' must be on: guest_memfd memory "
                   "can only be mapped shared");
        return false;
    }
    if (backend->guest_memfd) {
        /*
         * The machine wants private guest memory (confidential guest
         * support).  That is a second guest_memfd bound to the memslots,
         * exactly what this backend avoids; use another backend there.
         */
        error_setg(errp, "%s cannot back a confidential guest; use "
                   "memory-backend-ram or memory-backend-memfd",
                   TYPE_MEMORY_BACKEND_GUEST_MEMFD);
        return false;
    }

    fd = cpr_find_fd(name, 0);
    if (fd < 0) {
        if (kvm_enabled()) {
            fd = guest_memfd_create(kvm_get_vm_fd(), backend->size, errp);
        } else {
            fd = guest_memfd_create_standalone(backend->size, errp);
        }
        if (fd < 0) {
            return false;
        }
        cpr_save_fd(name, 0, fd);
    }

    backend->aligned = true;
    ram_flags = RAM_SHARED;
    ram_flags |= backend->reserve ? 0 : RAM_NORESERVE;
    if (!memory_region_init_ram_from_fd(&backend->mr, OBJECT(backend), name,
                                        backend->size, ram_flags, fd, 0,
                                        errp)) {
        cpr_delete_fd(name, 0);
        close(fd);
        return false;
    }
    return true;
}

static void
guest_memfd_backend_instance_init(Object *obj)
{
    MEMORY_BACKEND(obj)->share = true;
}

static void
guest_memfd_backend_class_init(ObjectClass *oc, const void *data)
{
    HostMemoryBackendClass *bc = MEMORY_BACKEND_CLASS(oc);

    bc->alloc = guest_memfd_backend_memory_alloc;
}

static const TypeInfo guest_memfd_backend_info = {
    .name = TYPE_MEMORY_BACKEND_GUEST_MEMFD,
    .parent = TYPE_MEMORY_BACKEND,
    .instance_init = guest_memfd_backend_instance_init,
    .class_init = guest_memfd_backend_class_init,
    .instance_size = sizeof(HostMemoryBackendGuestMemfd),
};

static void register_types(void)
{
    type_register_static(&guest_memfd_backend_info);
}

type_init(register_types);
