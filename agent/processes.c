/* Processes that outlive their channel: a background process or terminal
 * keeps its latest output for whoever attaches next by pid; ps and kill by pid. */
#include <signal.h>
#include <stdio.h>
#include <sys/epoll.h>
#include <sys/wait.h>

#include "agent.h"

/* Output a background process keeps for whoever attaches next. */
#define RING_MAX (1024 * 1024)

/* A background process keeps its latest output (RING_MAX) as {kind, len,
 * bytes} records, whoever listens, so an attach can start with what came
 * before it; the oldest records go first. */
void process_keep(struct chan *c, uint8_t kind, const uint8_t *p, size_t n) {
  uint8_t h[5];
  h[0] = kind;
  put_u32(h + 1, (uint32_t)n);
  buf_append(&c->ring, h, sizeof h);
  buf_append(&c->ring, p, n);
  while (buf_pending(&c->ring) > RING_MAX)
    buf_consume(&c->ring, 5 + get_u32(c->ring.data + c->ring.start + 1));
}

static struct chan *find_process(pid_t pid) {
  for (struct chan *c = channels; c; c = c->next)
    if (c->type == CH_EXEC && !c->dead && c->pid == pid) return c;
  return NULL;
}

static void no_such_process(uint32_t id, pid_t pid) {
  char msg[128];
  snprintf(msg, sizeof msg, "no process with pid %d started by vmbox (it ended and was collected, or never existed)", pid);
  send_error(id, "notFound", msg, NULL);
}

void exec_attach(uint32_t id, const struct json_obj *req) {
  pid_t pid = (pid_t)json_num(req, "pid", 0);
  struct chan *c = find_process(pid);
  if (!c) { no_such_process(id, pid); return; }
  if (!c->orphan) /* one client at a time: the newest takes over, as tmux attach -d */
    send_error(c->id, "aborted", "another client attached to this process", NULL);
  c->orphan = false;
  c->id = id;
  c->credit = WINDOW;
  c->owed = 0;
  c->in_eof = false;
  buf_free(&c->in);
  char reply[96];
  snprintf(reply, sizeof reply, "{\"pid\":%d,\"pty\":%s}", pid, c->pty ? "true" : "false");
  send_json(K_REPLY, id, reply);
  /* Its output so far (the latest RING_MAX bytes; smaller than the window).
   * The ring stays: a later attach starts from the same history. */
  for (size_t off = c->ring.start; off + 5 <= c->ring.len;) {
    const uint8_t *r = c->ring.data + off;
    uint32_t len = get_u32(r + 1);
    send_frame(r[0], id, r + 5, len);
    c->credit -= len;
    off += 5 + len;
  }
  if (c->in_fd >= 0) epoll_ctl(epoll_fd, EPOLL_CTL_DEL, c->in_fd, NULL);
  exec_pump(c);
}

void exec_list(uint32_t id) {
  struct jw w;
  jw_begin(&w);
  jw_raw(&w, "\"processes\":[");
  bool first = true;
  for (struct chan *c = channels; c; c = c->next) {
    if (c->type != CH_EXEC || c->dead) continue;
    if (!first) jw_raw(&w, ",");
    first = false;
    jw_raw(&w, "{");
    w.first = true;
    jw_key_num(&w, "pid", c->pid);
    jw_key_raw(&w, "argv", c->argv_json ? c->argv_json : "[]");
    jw_key_str(&w, "cwd", c->cwd ? c->cwd : "/");
    jw_key_bool(&w, "pty", c->pty);
    jw_key_bool(&w, "background", c->detached);
    jw_key_bool(&w, "attached", !c->orphan);
    jw_key_bool(&w, "exited", c->exited);
    if (c->exited)
      jw_key_num(&w, "exitCode", WIFEXITED(c->status) ? WEXITSTATUS(c->status) : 128 + WTERMSIG(c->status));
    jw_raw(&w, "}");
  }
  jw_raw(&w, "]");
  w.first = false;
  send_json(K_DONE, id, jw_end(&w));
  jw_free(&w);
}

void exec_kill(uint32_t id, const struct json_obj *req) {
  pid_t pid = (pid_t)json_num(req, "pid", 0);
  int sig = (int)json_num(req, "signal", SIGKILL);
  struct chan *c = find_process(pid);
  if (!c) { no_such_process(id, pid); return; }
  if (sig <= 0 || sig > 64) { send_error(id, "invalidArgument", "signal must be between 1 and 64", NULL); return; }
  if (c->exited) {
    /* Already over: killing it means forgetting it. */
    if (c->orphan) exec_release(c);
    send_json(K_DONE, id, "{\"exited\":true}");
    return;
  }
  kill(-c->pid, sig);
  send_json(K_DONE, id, "{\"exited\":false}");
}
