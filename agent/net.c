/* The guest's network: no way out except through the host.
 *
 * `net.up` gives the guest a dummy device with a default route (so programs can
 * connect at all), one NAT rule that turns every outgoing TCP connection to the
 * agent's listener, and a DNS listener on 127.0.0.1:53. Each accepted connection
 * becomes a channel the agent opens (CONNECT, with the original destination from
 * conntrack); the host decides, dials out itself and relays. DNS queries travel as
 * DNS frames. Published ports are the other way round: the host opens a `connect`
 * channel and the agent dials the guest port on loopback.
 *
 * Nothing here is trusted by the host: a guest root can remove the rule, add
 * routes or write raw packets, and all of it ends in the dummy device, which
 * drops everything. Nothing of it depends on host state either, so a restored
 * snapshot's network works as it is. */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <net/if.h>
#include <net/route.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include "chan.h"
#include "json.h"
#include "log.h"
#include "net.h"
#include "netfilter.h"
#include "proto.h"

#ifndef SO_ORIGINAL_DST
#define SO_ORIGINAL_DST 80
#endif

/* The listener every redirected connection lands on: a privileged port, so no
 * unprivileged guest program competes for it. */
#define PROXY_PORT 1
/* The guest's address on the dummy device; it never leaves the guest. */
#define GUEST_ADDR "10.0.2.15"
#define DNS_SLOTS 256
#define MAX_CONNECTIONS 4096

static int proxy_fd = -1, dns_fd = -1;
static bool up;
static uint32_t next_id;
static unsigned connections;

/* Queries waiting for the host's answer: the tag is slot | generation << 8. */
static struct {
  uint32_t tag;
  struct sockaddr_in from;
} dns_pending[DNS_SLOTS];
static uint32_t dns_next;

static int if_ioctl(int s, unsigned long req, const char *dev, const char *addr) {
  struct ifreq ifr;
  memset(&ifr, 0, sizeof ifr);
  snprintf(ifr.ifr_name, sizeof ifr.ifr_name, "%s", dev);
  if (addr) {
    struct sockaddr_in *sin = (struct sockaddr_in *)&ifr.ifr_addr;
    sin->sin_family = AF_INET;
    inet_pton(AF_INET, addr, &sin->sin_addr);
    return ioctl(s, req, &ifr);
  }
  if (ioctl(s, SIOCGIFFLAGS, &ifr) < 0) return -1;
  ifr.ifr_flags |= IFF_UP;
  return ioctl(s, SIOCSIFFLAGS, &ifr);
}

static int default_route(int s) {
  struct rtentry rt;
  memset(&rt, 0, sizeof rt);
  ((struct sockaddr_in *)&rt.rt_dst)->sin_family = AF_INET;
  ((struct sockaddr_in *)&rt.rt_genmask)->sin_family = AF_INET;
  rt.rt_flags = RTF_UP;
  rt.rt_dev = "dummy0";
  if (ioctl(s, SIOCADDRT, &rt) < 0 && errno != EEXIST) return -1;
  return 0;
}

static int listen_on(int type, uint16_t port) {
  int s = socket(AF_INET, type | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (s < 0) return -1;
  int one = 1;
  setsockopt(s, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
  struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons(port), .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
  if (bind(s, (struct sockaddr *)&a, sizeof a) < 0 || (type == SOCK_STREAM && listen(s, 512) < 0)) {
    int e = errno;
    close(s);
    errno = e;
    return -1;
  }
  struct epoll_event ev = {.events = EPOLLIN, .data.ptr = type == SOCK_STREAM ? (void *)&proxy_fd : (void *)&dns_fd};
  epoll_ctl(chan_epoll, EPOLL_CTL_ADD, s, &ev);
  return s;
}

/* Programs find the resolver through /etc/resolv.conf; an image's may be a
 * symlink into a directory nothing fills here, so it is replaced. */
static void write_resolv_conf(void) {
  unlink("/etc/resolv.conf.vmbox");
  int fd = open("/etc/resolv.conf.vmbox", O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (fd < 0) { log_msg("resolv.conf: %s", strerror(errno)); return; }
  static const char text[] = "# written by vmbox: the host answers DNS for this sandbox\nnameserver 127.0.0.1\n";
  if (write(fd, text, sizeof text - 1) < 0) log_msg("resolv.conf: %s", strerror(errno));
  close(fd);
  if (rename("/etc/resolv.conf.vmbox", "/etc/resolv.conf") < 0) log_msg("resolv.conf: %s", strerror(errno));
}

void net_up(uint32_t id) {
  if (up) { proto_send_json(K_DONE, id, "{}"); return; }
  const char *what = "socket";
  int s = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
  if (s < 0) goto fail;
  what = "dummy0 address";
  if (if_ioctl(s, SIOCSIFADDR, "dummy0", GUEST_ADDR) < 0) goto fail_s;
  what = "dummy0 netmask";
  if (if_ioctl(s, SIOCSIFNETMASK, "dummy0", "255.255.255.0") < 0) goto fail_s;
  what = "dummy0 up";
  if (if_ioctl(s, 0, "dummy0", NULL) < 0) goto fail_s;
  what = "default route";
  if (default_route(s) < 0) goto fail_s;
  close(s);
  what = "TCP listener";
  if ((proxy_fd = listen_on(SOCK_STREAM, PROXY_PORT)) < 0) goto fail;
  what = "DNS listener";
  if ((dns_fd = listen_on(SOCK_DGRAM, 53)) < 0) goto fail;
  what = "NAT rule";
  if (netfilter_redirect_tcp(PROXY_PORT) < 0) goto fail;
  write_resolv_conf();
  up = true;
  proto_send_json(K_DONE, id, "{}");
  return;
fail_s:;
  int e = errno;
  close(s);
  errno = e;
fail:;
  char msg[160];
  snprintf(msg, sizeof msg, "network set-up: %s: %s", what, strerror(errno));
  proto_send_error(id, "ioError", msg, NULL);
}

/* ---- one relayed TCP connection ---- */

static void arm(struct chan *c) {
  uint32_t events = 0;
  if (c->connecting || buf_pending(&c->in)) events |= EPOLLOUT;
  if (!c->connecting && !c->rd_closed && c->credit > 0) events |= EPOLLIN | EPOLLRDHUP;
  struct epoll_event ev = {.events = events, .data.ptr = c};
  epoll_ctl(chan_epoll, EPOLL_CTL_MOD, c->sock, &ev);
}

static struct chan *relay_new(uint32_t id, int sock, bool connecting) {
  struct chan *c = chan_new(id, CH_NET);
  c->sock = sock;
  c->connecting = connecting;
  struct epoll_event ev = {.events = 0, .data.ptr = c};
  epoll_ctl(chan_epoll, EPOLL_CTL_ADD, sock, &ev);
  connections++;
  arm(c);
  return c;
}

static void relay_end(struct chan *c, bool reset) {
  if (c->dead) return;
  if (reset) {
    struct linger l = {.l_onoff = 1, .l_linger = 0};
    setsockopt(c->sock, SOL_SOCKET, SO_LINGER, &l, sizeof l);
  }
  close(c->sock);
  c->sock = -1;
  buf_free(&c->in);
  c->dead = true;
  connections--;
}

static void maybe_done(struct chan *c) {
  if (c->rd_closed && c->wr_shut && !c->dead) {
    proto_send_json(K_DONE, c->id, "{}");
    relay_end(c, false);
  }
}

/* Guest socket → host, while the host grants credit. */
static void relay_read(struct chan *c) {
  while (!c->rd_closed && c->credit > 0) {
    size_t want = c->credit < DATA_CHUNK ? (size_t)c->credit : DATA_CHUNK;
    uint8_t *p = proto_frame_reserve(want);
    ssize_t n = read(c->sock, p, want);
    if (n > 0) {
      proto_frame_commit(K_DATA, c->id, n);
      c->credit -= n;
      continue;
    }
    if (n == 0) {
      c->rd_closed = true;
      proto_send_frame(K_EOF, c->id, NULL, 0);
      break;
    }
    if (errno == EINTR) continue;
    if (errno == EAGAIN) break;
    proto_send_errno(c->id, errno, "guest connection:", NULL);
    relay_end(c, true);
    return;
  }
  maybe_done(c);
}

/* Host → guest socket; credit goes back as the socket takes the bytes. */
static void relay_write(struct chan *c) {
  while (buf_pending(&c->in)) {
    ssize_t n = write(c->sock, c->in.data + c->in.start, buf_pending(&c->in));
    if (n < 0) {
      if (errno == EINTR) continue;
      if (errno == EAGAIN) return;
      proto_send_errno(c->id, errno, "guest connection:", NULL);
      relay_end(c, true);
      return;
    }
    buf_consume(&c->in, n);
    chan_consumed(c, n, false);
  }
  chan_consumed(c, 0, true);
  if (c->wr_eof && !c->wr_shut) {
    shutdown(c->sock, SHUT_WR);
    c->wr_shut = true;
  }
  maybe_done(c);
}

void net_on_fd(struct chan *c, uint32_t events) {
  if (c->dead) return;
  if (c->connecting) {
    int err = 0;
    socklen_t len = sizeof err;
    getsockopt(c->sock, SOL_SOCKET, SO_ERROR, &err, &len);
    if (err == 0 && !(events & (EPOLLOUT | EPOLLERR | EPOLLHUP))) return;
    if (err) {
      proto_send_errno(c->id, err, "connect to guest port:", NULL);
      relay_end(c, false);
      return;
    }
    c->connecting = false;
    proto_send_json(K_REPLY, c->id, "{}");
  }
  if (events & EPOLLOUT) relay_write(c);
  if (!c->dead && (events & (EPOLLIN | EPOLLRDHUP | EPOLLHUP | EPOLLERR))) relay_read(c);
  if (!c->dead) arm(c);
}

void net_data(struct chan *c, const uint8_t *p, size_t n) {
  if (c->wr_eof) return;
  /* Straight from the frame when nothing is queued: one copy less on a download. */
  if (!c->connecting && !buf_pending(&c->in)) {
    ssize_t w = write(c->sock, p, n);
    if (w > 0) {
      chan_consumed(c, w, false);
      p += w;
      n -= w;
    }
    if (n == 0) {
      arm(c);
      return;
    }
  }
  buf_append(&c->in, p, n);
  if (!c->connecting) relay_write(c);
  if (!c->dead) arm(c);
}

void net_eof(struct chan *c) {
  c->wr_eof = true;
  if (!c->connecting) relay_write(c);
  if (!c->dead) arm(c);
}

void net_pump(struct chan *c) {
  if (!c->dead) arm(c);
}

void net_close(struct chan *c) { relay_end(c, true); }

/* A published port: the host asks for a connection to a guest port on loopback. */
void net_connect(uint32_t id, const struct json_obj *req) {
  double port = json_num(req, "port", 0);
  if (port < 1 || port > 65535) {
    proto_send_error(id, "invalidArgument", "port must be 1-65535", NULL);
    return;
  }
  int s = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (s < 0) { proto_send_errno(id, errno, "socket", NULL); return; }
  struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port), .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
  if (connect(s, (struct sockaddr *)&a, sizeof a) < 0 && errno != EINPROGRESS) {
    proto_send_errno(id, errno, "connect to guest port:", NULL);
    close(s);
    return;
  }
  relay_new(id, s, true);
}

/* ---- the guest's side: redirected connections and DNS ---- */

static void on_proxy(void) {
  for (;;) {
    int s = accept4(proxy_fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
    if (s < 0) return;
    struct sockaddr_in dst;
    socklen_t len = sizeof dst;
    /* A connection made to the listener itself has no original destination. */
    if (connections >= MAX_CONNECTIONS || getsockopt(s, SOL_IP, SO_ORIGINAL_DST, &dst, &len) < 0 ||
        (dst.sin_addr.s_addr == htonl(INADDR_LOOPBACK) && dst.sin_port == htons(PROXY_PORT))) {
      close(s);
      continue;
    }
    uint32_t id;
    do id = 0x80000000u | (next_id++ & 0x7fffffffu);
    while (chan_find(id));
    char addr[INET_ADDRSTRLEN], json[96];
    inet_ntop(AF_INET, &dst.sin_addr, addr, sizeof addr);
    snprintf(json, sizeof json, "{\"address\":\"%s\",\"port\":%u}", addr, ntohs(dst.sin_port));
    proto_send_json(K_CONNECT, id, json);
    /* The program usually has written its request by now: it goes out with the CONNECT. */
    relay_read(relay_new(id, s, false));
  }
}

static void on_dns(void) {
  uint8_t q[4096];
  for (;;) {
    struct sockaddr_in from;
    socklen_t len = sizeof from;
    ssize_t n = recvfrom(dns_fd, q, sizeof q, 0, (struct sockaddr *)&from, &len);
    if (n < 0) return;
    if (n < 12) continue; /* shorter than a DNS header */
    uint32_t slot = dns_next % DNS_SLOTS, tag = slot | ((dns_next / DNS_SLOTS) & 0xffffff) << 8;
    dns_next++;
    /* The oldest query in this slot, if still unanswered, is given up: its
     * program retries on its own. */
    dns_pending[slot].tag = tag;
    dns_pending[slot].from = from;
    proto_send_frame(K_DNS, tag, q, n);
  }
}

void net_dns_answer(uint32_t tag, const uint8_t *p, size_t n) {
  uint32_t slot = tag % DNS_SLOTS;
  if (dns_fd < 0 || dns_pending[slot].tag != tag || dns_pending[slot].from.sin_family != AF_INET || n == 0) return;
  sendto(dns_fd, p, n, 0, (struct sockaddr *)&dns_pending[slot].from, sizeof dns_pending[slot].from);
  dns_pending[slot].tag = 0xffffffffu;
}

bool net_on_event(void *tag) {
  if (tag == &proxy_fd) on_proxy();
  else if (tag == &dns_fd) on_dns();
  else return false;
  return true;
}
