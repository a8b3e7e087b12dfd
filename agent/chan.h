/* The channel table: every open exec, file and watch channel, and the epoll
 * set the event loop waits on. exec, files, processes and watch keep their
 * state here; the loop in main.c dispatches frames and fd events to them. */
#ifndef VMBOX_CHAN_H
#define VMBOX_CHAN_H

#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

#include "buf.h"

enum chan_type { CH_EXEC, CH_READ, CH_WRITE, CH_WATCH, CH_NET };

struct chan {
  uint32_t id;
  enum chan_type type;
  int64_t credit;      /* bytes we may still send the host */
  uint32_t owed;       /* bytes of host data consumed but not yet credited back */
  bool dead;           /* closed; freed by the loop */
  /* exec */
  pid_t pid;
  int out_fd, err_fd, in_fd;
  struct buf in;       /* stdin bytes waiting for the pipe */
  bool in_eof;
  bool exited;
  int status;
  bool timed_out;
  bool oom_killed;     /* the OOM killer took one of its processes (oom.c) */
  uint64_t deadline_ms; /* 0: none */
  bool pty;            /* out_fd is a PTY master (in_fd a dup of it); no stderr */
  bool detached;       /* survives its channel: orphaned, not killed, when the host lets go */
  bool orphan;         /* no channel (id 0): output goes to `ring` until someone attaches */
  struct buf ring;     /* output kept for a later attach (ring.c) */
  char *argv_json;     /* the command, for listings */
  char *cwd;
  /* net: a relayed TCP connection; `in` holds host bytes for the socket */
  int sock;
  bool connecting;     /* a published port's connect still in progress */
  bool rd_closed;      /* the guest side sent FIN; EOF went to the host */
  bool wr_eof;         /* the host sent EOF */
  bool wr_shut;        /* ...and it reached the guest socket */
  /* watch */
  struct watch *watch;
  /* files */
  int file_fd;
  uint64_t bytes;
  struct chan *next;
};

/* Every channel, newest first; dead ones until chan_reap. */
extern struct chan *chan_list;
/* The loop's epoll set. A channel's fds carry the channel as their cookie. */
extern int chan_epoll;

/* Creates the epoll set; 0 or -1 with errno. */
int chan_init(void);
/* SIGCHLD as a descriptor in the epoll set (its cookie is &chan_sigfd): how the
 * agent learns its processes ended. SIGCHLD must be blocked first. */
extern int chan_sigfd;
int chan_signals_open(void);
/* After a fork, in the process that serves on: a signalfd in an epoll set
 * wakes the process that added it, so that process makes its own. */
void chan_signals_rearm(void);
struct chan *chan_new(uint32_t id, enum chan_type type);
/* The live, attached channel with this id, or NULL. */
struct chan *chan_find(uint32_t id);
/* Grant the host credit for `n` consumed bytes, batching small grants. */
void chan_consumed(struct chan *c, uint32_t n, bool force);
/* Frees the channels marked dead. */
void chan_reap(void);

#endif
