#include <stdlib.h>
#include <sys/epoll.h>

#include "chan.h"
#include "proto.h"

struct chan *chan_list;
int chan_epoll = -1;

int chan_init(void) {
  chan_epoll = epoll_create1(EPOLL_CLOEXEC);
  return chan_epoll < 0 ? -1 : 0;
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
