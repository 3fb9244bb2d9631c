/*
 * Host capability probes for guest_memfd qtests
 *
 * Copyright (c) 2026 qemu-gmem developers
 *
 * SPDX-License-Identifier: GPL-2.0-or-later
 */

#ifndef GUEST_MEMFD_UTIL_H
#define GUEST_MEMFD_UTIL_H

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

#endif
