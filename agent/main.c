/* vmbox guest agent: PID 1 of every sandbox. Mounts the root disk, then serves
 * the host over a virtio-serial port until asked to power off. */
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <poll.h>
#include <sys/epoll.h>
#include <sys/prctl.h>
#include <sys/signalfd.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "chan.h"
#include "clock.h"
#include "exec.h"
#include "files.h"
#include "handoff.h"
#include "identity.h"
#include "init.h"
#include "json.h"
#include "log.h"
#include "mounts.h"
#include "net.h"
#include "oom.h"
#include "processes.h"
#include "proto.h"
#include "stats.h"
#include "watch.h"

static int port_fd = -1;
static struct buf in;
static size_t skip_bytes; /* rest of an oversized frame being discarded */

static void close_channel(struct chan *c) {
  if (c->type == CH_EXEC) exec_close(c);
  else if (c->type == CH_WATCH) watch_close(c);
  else if (c->type == CH_NET) net_close(c);
  else files_close(c);
}

static void on_hello(const uint8_t *p, size_t n) {
  /* A hello starts a host session: channels of an earlier one are stale, also
   * when that host went away unseen (a VM restored from a saved state). As when
   * the host goes: background processes are kept, the rest end. */
  for (struct chan *c = chan_list; c; c = c->next)
    if (!c->dead) close_channel(c);
  proto_out_reset();
  struct json_obj o;
  if (json_parse((const char *)p, n, &o) == 0) {
    double t = json_num(&o, "timeMs", 0);
    if (t > 0) clock_set_realtime_ms(t);
    /* Before any user process of this session runs: a restored copy is made itself again. */
    identity_add_entropy(json_str(&o, "entropy", ""));
    identity_set_hostname(json_str(&o, "hostname", ""));
    json_free(&o);
  }
  char hello[128];
  snprintf(hello, sizeof hello, "{\"generation\":%d,\"agentVersion\":\"%s\"}", PROTO_GENERATION, AGENT_VERSION);
  proto_send_json(K_HELLO, 0, hello);
}

static void on_open(uint32_t id, const uint8_t *p, size_t n) {
  if (id == 0 || chan_find(id)) {
    proto_send_error(id, "protocolError", "channel id is 0 or already open", NULL);
    return;
  }
  struct json_obj req;
  if (json_parse((const char *)p, n, &req) < 0) {
    proto_send_error(id, "protocolError", "malformed request: expected a flat JSON object", NULL);
    return;
  }
  const char *op = json_str(&req, "op", "");
  log_at(LOG_DEBUG, "channel %u: %s %s", id, op, json_str(&req, "path", ""));
  if (!strcmp(op, "exec")) exec_open(id, &req);
  else if (!strcmp(op, "ping")) proto_send_json(K_DONE, id, "{}");
  else if (!strcmp(op, "stats")) stats_request(id);
  else if (!strcmp(op, "attach")) processes_attach(id, &req);
  else if (!strcmp(op, "ps")) processes_list(id);
  else if (!strcmp(op, "kill")) processes_kill(id, &req);
  else if (!strcmp(op, "watch")) watch_open(id, &req);
  else if (!strcmp(op, "net.up")) net_up(id);
  else if (!strcmp(op, "connect")) net_connect(id, &req);
  else if (!strcmp(op, "mount")) mounts_request(id, &req);
  else if (!strcmp(op, "init.handoff")) handoff_request(id, &req);
  else if (!strcmp(op, "shutdown")) {
    proto_send_json(K_DONE, id, "{}");
    proto_out_flush();
    init_power_off();
  } else files_request(id, op, &req);
  json_free(&req);
}

static void on_frame(uint8_t kind, uint32_t id, const uint8_t *p, size_t n) {
  if (kind == K_HELLO) { on_hello(p, n); return; }
  if (kind == K_OPEN) { on_open(id, p, n); return; }
  if (kind == K_DNS) { net_dns_answer(id, p, n); return; }
  struct chan *c = chan_find(id);
  if (!c) return; /* a late frame for a channel that already ended */
  switch (kind) {
  case K_CREDIT:
    if (n != 4) goto malformed;
    c->credit += get_u32(p);
    if (c->type == CH_EXEC) exec_pump(c);
    else if (c->type == CH_NET) net_pump(c);
    else files_pump(c);
    return;
  case K_STDIN:
    if (c->type != CH_EXEC) goto malformed;
    exec_stdin(c, p, n);
    return;
  case K_DATA:
    if (c->type == CH_NET) net_data(c, p, n);
    else if (c->type == CH_WRITE) files_data(c, p, n);
    else goto malformed;
    return;
  case K_EOF:
    if (c->type == CH_EXEC) exec_stdin_eof(c);
    else if (c->type == CH_WRITE) files_eof(c);
    else if (c->type == CH_NET) net_eof(c);
    else goto malformed;
    return;
  case K_SIGNAL: {
    struct json_obj o;
    if (c->type != CH_EXEC || json_parse((const char *)p, n, &o) < 0) goto malformed;
    exec_signal(c, (int)json_num(&o, "signal", 0));
    json_free(&o);
    return;
  }
  case K_RESIZE: {
    struct json_obj o;
    if (c->type != CH_EXEC || json_parse((const char *)p, n, &o) < 0) goto malformed;
    exec_resize(c, (int)json_num(&o, "cols", 0), (int)json_num(&o, "rows", 0));
    json_free(&o);
    return;
  }
  case K_ERROR: /* the host abandons the channel */
    close_channel(c);
    return;
  default:
    goto malformed;
  }
malformed:
  proto_send_error(id, "protocolError", "unexpected frame for this channel", NULL);
  close_channel(c);
}

/* Parses every complete frame in the input buffer. */
static void parse_input(void) {
  for (;;) {
    if (skip_bytes) {
      size_t k = buf_pending(&in) < skip_bytes ? buf_pending(&in) : skip_bytes;
      buf_consume(&in, k);
      skip_bytes -= k;
      if (skip_bytes) return;
    }
    if (buf_pending(&in) < FRAME_HEADER) return;
    const uint8_t *h = in.data + in.start;
    uint32_t len = get_u32(h);
    uint8_t kind = h[4];
    uint32_t id = get_u32(h + 5);
    if (len > MAX_PAYLOAD) {
      /* The length still frames the stream: skip the payload, fail only this channel. */
      buf_consume(&in, FRAME_HEADER);
      skip_bytes = len;
      struct chan *c = chan_find(id);
      proto_send_error(id, "protocolError", "frame larger than the protocol maximum", NULL);
      if (c) close_channel(c);
      continue;
    }
    if (buf_pending(&in) < FRAME_HEADER + len) return;
    on_frame(kind, id, h + FRAME_HEADER, len);
    buf_consume(&in, FRAME_HEADER + len);
  }
}

/* The host side of the port comes and goes (a server restart): while it is
 * away the port reports HUP and reads return 0. Everything of the old
 * connection is dropped, its commands end as if the host had abandoned them,
 * and the port is watched edge-triggered for writability, which returns when
 * a host connects again. */
static bool host_connected = true;

static void watch_port(uint32_t events) {
  struct epoll_event ev = {.events = events, .data.ptr = &port_fd};
  epoll_ctl(chan_epoll, EPOLL_CTL_MOD, port_fd, &ev);
}

static void host_gone(void) {
  host_connected = false;
  for (struct chan *c = chan_list; c; c = c->next)
    if (!c->dead) close_channel(c);
  in.start = in.len = 0;
  skip_bytes = 0;
  proto_out_reset();
  watch_port(EPOLLOUT | EPOLLET);
}

static void on_port(uint32_t events) {
  if (!host_connected) {
    if ((events & EPOLLOUT) && !(events & EPOLLHUP)) {
      host_connected = true;
      watch_port(EPOLLIN);
    }
    return;
  }
  if (events & (EPOLLIN | EPOLLHUP)) {
    for (;;) {
      buf_reserve(&in, DATA_CHUNK + FRAME_HEADER);
      ssize_t n = read(port_fd, in.data + in.len, in.cap - in.len);
      if (n < 0 && errno == EINTR) continue;
      if (n == 0) { host_gone(); return; }
      if (n < 0) break;
      in.len += n;
      parse_input();
    }
  }
}

static void on_signalfd(int sfd) {
  struct signalfd_siginfo si;
  while (read(sfd, &si, sizeof si) == sizeof si) {
  }
  oom_drain(); /* before reaping: an OOM victim that is our child is still a zombie */
  int status;
  pid_t pid;
  while ((pid = waitpid(-1, &status, WNOHANG)) > 0) exec_on_child(pid, status);
}

int main(void) {
  /* Not dumpable: a process of the guest's, even root's, needs CAP_SYS_PTRACE to
   * read this one's memory or take a copy of its descriptors (pidfd_getfd, /proc/1/fd)
   * — and commands run without it, so none can speak to the host in the agent's name. */
  prctl(PR_SET_DUMPABLE, 0, 0, 0, 0);
  signal(SIGPIPE, SIG_IGN);
  umask(0); /* modes the host asks for are exact; commands get 022 (exec.c) */
  if (init_system() < 0) {
    log_msg("boot failed; powering off");
    init_power_off();
  }
  port_fd = init_agent_port();
  if (port_fd < 0) {
    log_msg("no virtio-serial port named vmbox.agent: %s", strerror(errno));
    init_power_off();
  }
  sigset_t mask;
  sigemptyset(&mask);
  sigaddset(&mask, SIGCHLD);
  sigprocmask(SIG_BLOCK, &mask, NULL);
  if (chan_init() < 0 || chan_signals_open() < 0) { log_msg("epoll: %s", strerror(errno)); init_power_off(); }
  proto_set_port(port_fd);
  struct epoll_event ev = {.events = EPOLLIN, .data.ptr = &port_fd};
  epoll_ctl(chan_epoll, EPOLL_CTL_ADD, port_fd, &ev);
  int kmsg = oom_open_log();
  if (kmsg < 0) log_msg("no kernel log (%s): OOM kills are not told apart", strerror(errno));
  ev.data.ptr = &kmsg;
  if (kmsg >= 0) epoll_ctl(chan_epoll, EPOLL_CTL_ADD, kmsg, &ev);
  bool port_out_armed = false;
  struct pollfd pp = {.fd = port_fd, .events = POLLOUT};
  if (poll(&pp, 1, 0) == 1 && (pp.revents & POLLHUP)) host_gone(); /* no host yet */

  for (;;) {
    /* The nearest exec deadline bounds the wait. */
    uint64_t now = clock_now_ms(), next = 0;
    bool reader_ready = false;
    for (struct chan *c = chan_list; c; c = c->next) {
      if (c->type == CH_EXEC && c->deadline_ms && !c->exited && (!next || c->deadline_ms < next)) next = c->deadline_ms;
      if (c->type == CH_READ && c->credit > 0) reader_ready = true;
    }
    int timeout = next ? (next > now ? (int)(next - now) : 0) : -1;
    /* A file being read has credit but the queue is short: don't sleep. */
    if (reader_ready && proto_out_pending() < 2 * DATA_CHUNK) timeout = 0;
    struct epoll_event evs[64];
    int n = epoll_wait(chan_epoll, evs, 64, timeout);
    if (n < 0 && errno != EINTR) { log_msg("epoll: %s", strerror(errno)); init_power_off(); }
    for (int i = 0; i < n; i++) {
      void *tag = evs[i].data.ptr;
      if (tag == &port_fd) on_port(evs[i].events);
      else if (tag == &chan_sigfd) on_signalfd(chan_sigfd);
      else if (tag == &kmsg) oom_drain();
      else if (net_on_event(tag)) continue;
      else if (((struct chan *)tag)->type == CH_WATCH) watch_on_fd((struct chan *)tag);
      else if (((struct chan *)tag)->type == CH_NET) net_on_fd((struct chan *)tag, evs[i].events);
      else exec_on_fd((struct chan *)tag, evs[i].events);
    }
    now = clock_now_ms();
    for (struct chan *c = chan_list; c; c = c->next) {
      if (c->dead) continue;
      if (c->type == CH_EXEC) exec_check_deadline(c, now);
      else if (c->type == CH_READ) files_pump(c);
    }
    chan_reap();
    if (!host_connected) { port_out_armed = false; continue; }
    if (proto_out_write() < 0) log_msg("writing to the host: %s", strerror(errno));
    bool want_out = proto_out_pending() > 0;
    if (want_out != port_out_armed) {
      ev.events = EPOLLIN | (want_out ? EPOLLOUT : 0);
      ev.data.ptr = &port_fd;
      epoll_ctl(chan_epoll, EPOLL_CTL_MOD, port_fd, &ev);
      port_out_armed = want_out;
    }
  }
}
