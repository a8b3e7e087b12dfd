/* Frame output: one ordered queue of bytes for the host, written from the
 * event loop whenever the port accepts more. */
#include <errno.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "buf.h"
#include "clock.h"
#include "json.h"
#include "proto.h"

static int port_fd = -1;
static struct buf out;

void proto_set_port(int fd) { port_fd = fd; }

void proto_send_frame(uint8_t kind, uint32_t channel, const void *payload, size_t n) {
  uint8_t h[FRAME_HEADER];
  put_u32(h, (uint32_t)n);
  h[4] = kind;
  put_u32(h + 5, channel);
  buf_reserve(&out, FRAME_HEADER + n);
  buf_append(&out, h, FRAME_HEADER);
  if (n) buf_append(&out, payload, n);
}

uint8_t *proto_frame_reserve(size_t max) {
  buf_reserve(&out, FRAME_HEADER + max);
  return out.data + out.len + FRAME_HEADER;
}

void proto_frame_commit(uint8_t kind, uint32_t channel, size_t n) {
  uint8_t *h = out.data + out.len;
  put_u32(h, (uint32_t)n);
  h[4] = kind;
  put_u32(h + 5, channel);
  out.len += FRAME_HEADER + n;
}

void proto_send_json(uint8_t kind, uint32_t channel, const char *json) { proto_send_frame(kind, channel, json, strlen(json)); }

void proto_send_credit(uint32_t channel, uint32_t n) {
  uint8_t p[4];
  put_u32(p, n);
  proto_send_frame(K_CREDIT, channel, p, 4);
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
  case ECONNREFUSED: return "connectionRefused";
  default: return "ioError";
  }
}

void proto_send_error(uint32_t channel, const char *code, const char *message, const char *path) {
  struct jw w;
  jw_begin(&w);
  jw_key_str(&w, "code", code);
  jw_key_str(&w, "message", message);
  if (path) jw_key_str(&w, "path", path);
  proto_send_json(K_ERROR, channel, jw_end(&w));
  jw_free(&w);
}

void proto_send_errno(uint32_t channel, int err, const char *what, const char *path) {
  char msg[512];
  snprintf(msg, sizeof msg, "%s %s: %s", what, path ? path : "", strerror(err));
  proto_send_error(channel, errno_code(err), msg, path);
}

size_t proto_out_pending(void) { return buf_pending(&out); }

void proto_out_reset(void) { out.start = out.len = 0; }

/* Writes what the port takes now; returns -1 only on a hard error. */
int proto_out_write(void) {
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

void proto_out_flush(void) {
  uint64_t deadline = clock_now_ms() + 2000;
  while (buf_pending(&out) && clock_now_ms() < deadline) {
    if (proto_out_write() < 0) return;
    struct pollfd p = {.fd = port_fd, .events = POLLOUT};
    if (buf_pending(&out)) poll(&p, 1, 100);
  }
}
