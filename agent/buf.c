#include <stdlib.h>
#include <string.h>

#include "buf.h"

void buf_reserve(struct buf *b, size_t extra) {
  if (b->start > 0 && (b->start == b->len || b->len + extra > b->cap)) {
    memmove(b->data, b->data + b->start, b->len - b->start);
    b->len -= b->start;
    b->start = 0;
  }
  if (b->len + extra <= b->cap) return;
  size_t cap = b->cap ? b->cap : 4096;
  while (cap < b->len + extra) cap *= 2;
  uint8_t *n = realloc(b->data, cap);
  if (!n) abort();
  b->data = n;
  b->cap = cap;
}

void buf_append(struct buf *b, const void *p, size_t n) {
  buf_reserve(b, n);
  memcpy(b->data + b->len, p, n);
  b->len += n;
}

void buf_consume(struct buf *b, size_t n) {
  b->start += n;
  if (b->start == b->len) b->start = b->len = 0;
}

void buf_free(struct buf *b) {
  free(b->data);
  memset(b, 0, sizeof *b);
}
