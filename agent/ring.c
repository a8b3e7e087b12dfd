#include "proto.h"
#include "ring.h"

void ring_keep(struct buf *ring, uint8_t kind, const uint8_t *p, size_t n) {
  uint8_t h[5];
  h[0] = kind;
  put_u32(h + 1, (uint32_t)n);
  buf_append(ring, h, sizeof h);
  buf_append(ring, p, n);
  while (buf_pending(ring) > RING_MAX)
    buf_consume(ring, 5 + get_u32(ring->data + ring->start + 1));
}

size_t ring_replay(const struct buf *ring, uint32_t id) {
  size_t sent = 0;
  for (size_t off = ring->start; off + 5 <= ring->len;) {
    const uint8_t *r = ring->data + off;
    uint32_t len = get_u32(r + 1);
    proto_send_frame(r[0], id, r + 5, len);
    sent += len;
    off += 5 + len;
  }
  return sent;
}
