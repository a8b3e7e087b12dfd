/* Output a background process keeps for whoever attaches next: its latest
 * RING_MAX bytes as {u8 kind, u32 len, bytes} records, oldest dropped first. */
#ifndef VMBOX_RING_H
#define VMBOX_RING_H

#include <stddef.h>
#include <stdint.h>

#include "buf.h"

#define RING_MAX (1024 * 1024)

void ring_keep(struct buf *ring, uint8_t kind, const uint8_t *p, size_t n);
/* Sends every kept record on channel `id`; returns the bytes sent. The ring
 * stays: a later attach starts from the same history. */
size_t ring_replay(const struct buf *ring, uint32_t id);

#endif
