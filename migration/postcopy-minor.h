/*
 * Postcopy minor placement
 *
 * Copyright (c) 2026 qemu-gmem developers
 *
 * SPDX-License-Identifier: GPL-2.0-or-later
 */

#ifndef MIGRATION_POSTCOPY_MINOR_H
#define MIGRATION_POSTCOPY_MINOR_H

#include "migration.h"

/*
 * Map the fd of @rb a second time, unregistered, with the attributes of
 * the block's own mapping (rb->postcopy_alias), and allocate its claim
 * map.  Does nothing if the block has its alias already.
 */
int postcopy_minor_alias_map(RAMBlock *rb, Error **errp);
void postcopy_minor_alias_unmap(RAMBlock *rb);

/*
 * @rb, with its alias, was registered for missing and minor faults, the
 * kernel offering @ioctls on it
 */
void postcopy_minor_registered(RAMBlock *rb, uint64_t ioctls);

/*
 * Place a host page of @rb (zeroes if @from is NULL).  With @tmp, a page
 * written through the alias joins the run of pages in @tmp that
 * postcopy_minor_flush() maps, once the caller can no longer add to it.
 */
int postcopy_minor_place_page(MigrationIncomingState *mis, void *host,
                              void *from, RAMBlock *rb, PostcopyTmpPage *tmp);

/* Map the run of pages in @tmp with as few UFFDIO_CONTINUE as possible */
int postcopy_minor_flush(MigrationIncomingState *mis, PostcopyTmpPage *tmp);

/*
 * A minor fault on @offset of @rb: 1 if the page had been received and
 * is mapped now, 0 if it has not been received and must be requested,
 * or -errno if the received page cannot be mapped.
 */
int postcopy_minor_resolve_fault(MigrationIncomingState *mis, RAMBlock *rb,
                                 ram_addr_t offset);

/*
 * A received page of @rb at @offset could not be mapped: mark it not
 * received, so that a recovery makes the source send it again
 */
void postcopy_minor_unreceive(MigrationIncomingState *mis, RAMBlock *rb,
                              ram_addr_t offset);

/* Discard a range of a block with an alias, from a postcopy discard */
int postcopy_minor_discard(RAMBlock *rb, uint64_t start, size_t length);

#endif
