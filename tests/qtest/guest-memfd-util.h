/*
 * Host capability probes for guest_memfd qtests
 *
 * Copyright (c) 2026 qemu-gmem developers
 *
 * SPDX-License-Identifier: GPL-2.0-or-later
 */

#ifndef GUEST_MEMFD_UTIL_H
#define GUEST_MEMFD_UTIL_H

#include "libqtest.h"

/*
 * guest_memfd_host_supported: can this host back guest RAM with
 * memory-backend-guest-memfd?  True if /dev/kvm creates a VM whose
 * guest_memfd supports GUEST_MEMFD_FLAG_MMAP | GUEST_MEMFD_FLAG_INIT_SHARED
 * and the guest_memfd can be mapped shared; otherwise false, with the
 * reason in @reason (to be freed by the caller).
 */
bool guest_memfd_host_supported(char **reason);

/*
 * guest_memfd_uffd_supported: does the kernel register a guest_memfd
 * mapping with userfaultfd for MISSING and MINOR faults (which postcopy
 * on memory-backend-guest-memfd needs)?  False with @reason otherwise.
 */
bool guest_memfd_uffd_supported(char **reason);

/*
 * guest_memfd_mapped_at: is what process @pid maps at [@hva, @hva + @len)
 * one guest_memfd, at contiguous offsets?  If so, return that guest_memfd,
 * duplicated into this process (pidfd_getfd(), so root or ptrace rights
 * over @pid are needed), and its file offset at @hva in @offset.  If not,
 * return -1 with the reason in @reason (to be freed by the caller): the
 * range is not mapped whole, maps another kind of file (a memfd, for
 * instance), or the fd cannot be found.
 */
int guest_memfd_mapped_at(pid_t pid, uint64_t hva, uint64_t len,
                          uint64_t *offset, char **reason);

/*
 * guest_memfd_ram_block: the guest_memfd of the RAM block @name (its idstr,
 * or that of /objects/@name) of the QEMU that @qts drives, as
 * guest_memfd_mapped_at() returns it; the block's host address and used
 * length in @hva and @len if not NULL.  Fails the test if the block has no
 * such fd.
 */
int guest_memfd_ram_block(QTestState *qts, const char *name, uint64_t *hva,
                          uint64_t *len);

/*
 * kvm_count_vms: the number of KVM VMs alive on this host, any process's,
 * including those that only a guest_memfd keeps alive, or -1 with @reason
 * set.  Read from the COUNT of KVM's uevent for a VM created for that.
 */
int kvm_count_vms(char **reason);

#endif
