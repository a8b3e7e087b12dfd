/* Frame output: one ordered queue of bytes for the host, written from the
 * event loop whenever the port accepts more. */
#include <errno.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "agent.h"

extern int port_fd;
static struct buf out;

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

void send_frame(uint8_t kind, uint32_t channel, const void *payload, size_t n) {
  uint8_t h[FRAME_HEADER];
  put_u32(h, (uint32_t)n);
  h[4] = kind;
  put_u32(h + 5, channel);
  buf_reserve(&out, FRAME_HEADER + n);
  buf_append(&out, h, FRAME_HEADER);
  if (n) buf_append(&out, payload, n);
}

uint8_t *frame_reserve(size_t max) {
  buf_reserve(&out, FRAME_HEADER + max);
  return out.data + out.len + FRAME_HEADER;
}

void frame_commit(uint8_t kind, uint32_t channel, size_t n) {
  uint8_t *h = out.data + out.len;
  put_u32(h, (uint32_t)n);
  h[4] = kind;
  put_u32(h + 5, channel);
  out.len += FRAME_HEADER + n;
}

void send_json(uint8_t kind, uint32_t channel, const char *json) { send_frame(kind, channel, json, strlen(json)); }

void send_credit(uint32_t channel, uint32_t n) {
  uint8_t p[4];
  put_u32(p, n);
  send_frame(K_CREDIT, channel, p, 4);
}

static const char *errno_code(int err) {
  switch (err) {
  case ENOENT: return "notFound";
  case EACCES: case EPERM: case EROFS: return "permissionDenied";
  case ENOSPC: case EDQUOT: return "noSpace";
  case EISDIR: return "isDirectory";
  case ENOTDIR: return "notDirectory";
  case EEXIST: return "alreadyExists";
  case ENOTEMPTY: return "notEmpty";
  case EINVAL: case ENAMETOOLONG: case ELOOP: return "invalidArgument";
  case EXDEV: return "crossDevice";
  default: return "ioError";
  }
}

void send_error(uint32_t channel, const char *code, const char *message, const char *path) {
  struct jw w;
  jw_begin(&w);
  jw_key_str(&w, "code", code);
  jw_key_str(&w, "message", message);
  if (path) jw_key_str(&w, "path", path);
  send_json(K_ERROR, channel, jw_end(&w));
  jw_free(&w);
}

void send_errno(uint32_t channel, int err, const char *what, const char *path) {
  char msg[512];
  snprintf(msg, sizeof msg, "%s %s: %s", what, path ? path : "", strerror(err));
  send_error(channel, errno_code(err), msg, path);
}

size_t out_pending(void) { return buf_pending(&out); }

void out_reset(void) { out.start = out.len = 0; }

/* Writes what the port takes now; returns -1 only on a hard error. */
int out_write(void) {
  while (buf_pending(&out)) {
    ssize_t n = write(port_fd, out.data + out.start, buf_pending(&out));
    if (n < 0) {
      if (errno == EINTR) continue;
      if (errno == EAGAIN) return 0;
      return -1;
    }
    buf_consume(&out, n);
  }
  return 0;
}

void out_flush_blocking(void) {
  uint64_t deadline = now_ms() + 2000;
  while (buf_pending(&out) && now_ms() < deadline) {
    if (out_write() < 0) return;
    struct pollfd p = {.fd = port_fd, .events = POLLOUT};
    if (buf_pending(&out)) poll(&p, 1, 100);
  }
}
