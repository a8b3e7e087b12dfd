/* Growable byte buffer with a consumed prefix: the agent's input, output and
 * stdin queues, and a background process's kept output. */
#ifndef VMBOX_BUF_H
#define VMBOX_BUF_H

#include <stddef.h>
#include <stdint.h>

struct buf {
  uint8_t *data;
  size_t len;   /* bytes in use, from data[0] */
  size_t start; /* bytes already consumed */
  size_t cap;
};

void buf_reserve(struct buf *b, size_t extra);
void buf_append(struct buf *b, const void *p, size_t n);
void buf_consume(struct buf *b, size_t n);
static inline size_t buf_pending(const struct buf *b) { return b->len - b->start; }
void buf_free(struct buf *b);

#endif
