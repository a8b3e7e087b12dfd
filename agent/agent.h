/* Shared state of the agent: channels and the hooks each concern implements. */
#ifndef VMBOX_AGENT_H
#define VMBOX_AGENT_H

#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

#include "json.h"
#include "proto.h"

enum chan_type { CH_EXEC, CH_READ, CH_WRITE, CH_WATCH };

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
  uint64_t deadline_ms; /* 0: none */
  bool pty;            /* out_fd is a PTY master (in_fd a dup of it); no stderr */
  bool detached;       /* survives its channel: orphaned, not killed, when the host lets go */
  bool orphan;         /* no channel (id 0): output goes to `ring` until someone attaches */
  struct buf ring;     /* records {u8 kind, u32 len, bytes} kept while orphaned, oldest dropped */
  char *argv_json;     /* the command, for listings */
  char *cwd;
  /* watch */
  struct watch *watch;
  /* files */
  int file_fd;
  uint64_t bytes;
  struct chan *next;
};

extern struct chan *channels;
extern int epoll_fd;

struct chan *chan_new(uint32_t id, enum chan_type type);
struct chan *chan_find(uint32_t id);
/* Grant the host credit for `n` consumed bytes, batching small grants. */
void chan_consumed(struct chan *c, uint32_t n, bool force);
uint64_t now_ms(void);
void logmsg(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/* exec.c */
void exec_open(uint32_t id, const struct json_obj *req);
void exec_stdin(struct chan *c, const uint8_t *p, size_t n);
void exec_stdin_eof(struct chan *c);
void exec_signal(struct chan *c, int sig);
void exec_on_fd(struct chan *c, int fd, uint32_t events);
void exec_on_child(pid_t pid, int status);
void exec_pump(struct chan *c);   /* move output while credit lasts; finish when done */
void exec_check_deadline(struct chan *c, uint64_t now);
void exec_close(struct chan *c);  /* host gave up on the channel */
void exec_resize(struct chan *c, int cols, int rows);
void exec_release(struct chan *c); /* frees what a finished process held */
/* processes.c: background processes by pid */
void process_keep(struct chan *c, uint8_t kind, const uint8_t *p, size_t n); /* output kept for a later attach */
void exec_attach(uint32_t id, const struct json_obj *req); /* a channel takes over a process by pid */
void exec_list(uint32_t id);
void exec_kill(uint32_t id, const struct json_obj *req);

/* watch.c */
void watch_open(uint32_t id, const struct json_obj *req);
void watch_on_fd(struct chan *c);
void watch_close(struct chan *c);

/* files.c */
void file_request(uint32_t id, const char *op, const struct json_obj *req);
void file_data(struct chan *c, const uint8_t *p, size_t n);
void file_eof(struct chan *c);
void file_pump(struct chan *c);
void file_close(struct chan *c);

/* stats.c */
void stats_request(uint32_t id);

/* init.c */
int init_system(void);
int open_agent_port(void);
void power_off(void);
void set_clock_ms(double ms);

#endif
