/* The vmbox agent protocol, generation 1 (see DESIGN.md "Agent protocol").
 * Frame: u32 payload length (big-endian) | u8 kind | u32 channel (big-endian) | payload.
 * test/unit/frame.test.ts freezes this wire format; change both together. */
#ifndef VMBOX_PROTO_H
#define VMBOX_PROTO_H

#include <stddef.h>
#include <stdint.h>

#define PROTO_GENERATION 1
#define AGENT_VERSION "0.6.0"

#define FRAME_HEADER 9
#define MAX_PAYLOAD (1024 * 1024)
/* Largest data frame either side sends; smaller than MAX_PAYLOAD on purpose. */
#define DATA_CHUNK (256 * 1024)
/* Bytes a sender may have in flight per channel before the receiver grants more. */
#define WINDOW (2 * 1024 * 1024)

enum frame_kind {
  K_HELLO = 1,  /* both ways, JSON: generation, agentVersion / timeMs */
  K_OPEN = 2,   /* host -> agent, JSON request, opens a channel */
  K_REPLY = 3,  /* agent -> host, JSON, intermediate (exec pid, read size, dir entries) */
  K_DONE = 4,   /* agent -> host, JSON, final result; closes the channel */
  K_ERROR = 5,  /* either way, JSON {code,message,path}; closes the channel */
  K_STDIN = 6,  /* host -> agent, bytes */
  K_STDOUT = 7, /* agent -> host, bytes */
  K_STDERR = 8, /* agent -> host, bytes */
  K_DATA = 9,   /* either way, file bytes */
  K_EOF = 10,   /* host -> agent: end of stdin or of a file; agent -> host: a connection's end */
  K_CREDIT = 11,/* either way, u32 BE: more bytes the peer may send on this channel */
  K_SIGNAL = 12,/* host -> agent, JSON {signal} */
  K_RESIZE = 13,/* host -> agent, JSON {cols, rows}: a PTY's window size */
  K_CONNECT = 14,/* agent -> host, JSON {address, port}: opens a channel (id with the top bit set)
                   for a TCP connection the guest made; DATA, EOF and CREDIT both ways follow */
  K_DNS = 15    /* both ways, a raw DNS message; the channel field is the query's tag */
};

/* The virtio-serial port the frames go out on. */
void proto_set_port(int fd);
/* Queue a frame for the host. Frames go out in order, from the event loop. */
void proto_send_frame(uint8_t kind, uint32_t channel, const void *payload, size_t n);
void proto_send_json(uint8_t kind, uint32_t channel, const char *json);
/* Zero-copy variant for data: reserve room for a frame of up to `max` payload
 * bytes, read straight into the returned pointer, then commit what was read. */
uint8_t *proto_frame_reserve(size_t max);
void proto_frame_commit(uint8_t kind, uint32_t channel, size_t n);
void proto_send_credit(uint32_t channel, uint32_t n);
/* Send ERROR {code, message, path} where code comes from errno. */
void proto_send_errno(uint32_t channel, int err, const char *what, const char *path);
void proto_send_error(uint32_t channel, const char *code, const char *message, const char *path);
/* Bytes queued for the host and not yet written. */
size_t proto_out_pending(void);
/* Forgets everything queued: the host that would read it is gone. */
void proto_out_reset(void);
/* Writes what the port takes now; returns -1 only on a hard error. */
int proto_out_write(void);
/* Block until everything queued is written (used before power-off). */
void proto_out_flush(void);

static inline uint32_t get_u32(const uint8_t *p) {
  return ((uint32_t)p[0] << 24) | ((uint32_t)p[1] << 16) | ((uint32_t)p[2] << 8) | p[3];
}
static inline void put_u32(uint8_t *p, uint32_t v) {
  p[0] = v >> 24; p[1] = v >> 16; p[2] = v >> 8; p[3] = v;
}

#endif
