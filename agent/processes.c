/* Processes that outlive their channel: a background process or terminal
 * keeps its latest output for whoever attaches next by pid; ps and kill by pid. */
#include <signal.h>
#include <stdio.h>
#include <sys/epoll.h>
#include <sys/wait.h>

#include "chan.h"
#include "exec.h"
#include "processes.h"
#include "proto.h"
#include "ring.h"

static struct chan *find_process(pid_t pid) {
  for (struct chan *c = chan_list; c; c = c->next)
    if (c->type == CH_EXEC && !c->dead && c->pid == pid) return c;
  return NULL;
}

static void no_such_process(uint32_t id, pid_t pid) {
  char msg[128];
  snprintf(msg, sizeof msg, "no process with pid %d started by vmbox (it ended and was collected, or never existed)", pid);
  proto_send_error(id, "notFound", msg, NULL);
}

void processes_attach(uint32_t id, const struct json_obj *req) {
  pid_t pid = (pid_t)json_num(req, "pid", 0);
  struct chan *c = find_process(pid);
  if (!c) { no_such_process(id, pid); return; }
  if (!c->orphan) /* one client at a time: the newest takes over, as tmux attach -d */
    proto_send_error(c->id, "aborted", "another client attached to this process", NULL);
  c->orphan = false;
  c->id = id;
  c->credit = WINDOW;
  c->owed = 0;
  c->in_eof = false;
  buf_free(&c->in);
  char reply[96];
  snprintf(reply, sizeof reply, "{\"pid\":%d,\"pty\":%s}", pid, c->pty ? "true" : "false");
  proto_send_json(K_REPLY, id, reply);
  /* Its output so far (at most RING_MAX, smaller than the window). */
  c->credit -= ring_replay(&c->ring, id);
  if (c->in_fd >= 0) epoll_ctl(chan_epoll, EPOLL_CTL_DEL, c->in_fd, NULL);
  exec_pump(c);
}

void processes_list(uint32_t id) {
  struct jw w;
  jw_begin(&w);
  jw_raw(&w, "\"processes\":[");
  bool first = true;
  for (struct chan *c = chan_list; c; c = c->next) {
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
  proto_send_json(K_DONE, id, jw_end(&w));
  jw_free(&w);
}

void processes_kill(uint32_t id, const struct json_obj *req) {
  pid_t pid = (pid_t)json_num(req, "pid", 0);
  int sig = (int)json_num(req, "signal", SIGKILL);
  struct chan *c = find_process(pid);
  if (!c) { no_such_process(id, pid); return; }
  if (sig <= 0 || sig > 64) { proto_send_error(id, "invalidArgument", "signal must be between 1 and 64", NULL); return; }
  if (c->exited) {
    /* Already over: killing it means forgetting it. */
    if (c->orphan) exec_release(c);
    proto_send_json(K_DONE, id, "{\"exited\":true}");
    return;
  }
  kill(-c->pid, sig);
  proto_send_json(K_DONE, id, "{\"exited\":false}");
}
