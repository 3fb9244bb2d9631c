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
    if (!backend->reserve) {
        /*
         * Like shmem, a shared guest_memfd mapping reserves no swap
         * space, and guest_memfd has no huge page pool: MAP_NORESERVE
         * would change nothing.
         */
        error_setg(errp, "property 'reserve' cannot be off: guest_memfd "
                   "memory reserves no swap space or huge pages to skip");
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
        /*
         * On the KVM accelerator's VM, or without it (TCG, qtest) on a
         * KVM VM of the guest_memfd's own.
         */
        fd = kvm_create_guest_memfd(backend->size, GUEST_MEMFD_WANTED_FLAGS,
                                    errp);
        if (fd < 0) {
            return false;
        }
        cpr_save_fd(name, 0, fd);
    }

    backend->aligned = true;
    ram_flags = RAM_SHARED;
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
