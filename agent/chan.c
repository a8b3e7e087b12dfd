#include <signal.h>
#include <stdlib.h>
#include <sys/epoll.h>
#include <sys/signalfd.h>
#include <unistd.h>

#include "chan.h"
#include "proto.h"

struct chan *chan_list;
int chan_epoll = -1;
int chan_sigfd = -1;

int chan_init(void) {
  chan_epoll = epoll_create1(EPOLL_CLOEXEC);
  return chan_epoll < 0 ? -1 : 0;
}

int chan_signals_open(void) {
  sigset_t mask;
  sigemptyset(&mask);
  sigaddset(&mask, SIGCHLD);
  int fd = signalfd(-1, &mask, SFD_NONBLOCK | SFD_CLOEXEC);
  if (fd < 0) return -1;
  chan_sigfd = fd;
  struct epoll_event ev = {.events = EPOLLIN, .data.ptr = &chan_sigfd};
  return epoll_ctl(chan_epoll, EPOLL_CTL_ADD, chan_sigfd, &ev);
}

void chan_signals_rearm(void) {
  int old = chan_sigfd;
  epoll_ctl(chan_epoll, EPOLL_CTL_DEL, old, NULL);
  if (chan_signals_open() < 0) chan_sigfd = old; /* keep what there was: better late SIGCHLD than none */
  else close(old);
}

struct chan *chan_new(uint32_t id, enum chan_type type) {
  struct chan *c = calloc(1, sizeof *c);
  if (!c) abort();
  c->id = id;
  c->type = type;
  c->credit = WINDOW;
  c->out_fd = c->err_fd = c->in_fd = c->file_fd = c->sock = -1;
  c->next = chan_list;
  chan_list = c;
  return c;
}

struct chan *chan_find(uint32_t id) {
  for (struct chan *c = chan_list; c; c = c->next)
    if (c->id == id && !c->dead && !c->orphan) return c;
  return NULL;
}

void chan_consumed(struct chan *c, uint32_t n, bool force) {
  c->owed += n;
  if (c->owed && (force || c->owed >= WINDOW / 4)) {
    proto_send_credit(c->id, c->owed);
    c->owed = 0;
  }
}

void chan_reap(void) {
  for (struct chan **pp = &chan_list; *pp;) {
    struct chan *c = *pp;
    if (c->dead) { *pp = c->next; free(c); }
    else pp = &c->next;
  }
}
