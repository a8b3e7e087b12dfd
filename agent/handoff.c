#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "chan.h"
#include "handoff.h"
#include "limits.h"
#include "log.h"
#include "proto.h"

/* Where `auto` looks, in order: a classic init, systemd, tini. */
static const char *const INITS[] = {"/sbin/init", "/lib/systemd/systemd", "/usr/lib/systemd/systemd", "/usr/bin/tini", "/sbin/tini", NULL};

static bool runnable(const char *path) {
  struct stat st;
  return stat(path, &st) == 0 && S_ISREG(st.st_mode) && access(path, X_OK) == 0;
}

/* PID 1 becomes `path`; it never comes back (if the exec fails, it stays, reaping, as init must). */
static void become_init(const char *path, const struct json_field *args, const struct json_field *env, uint64_t caps) {
  /* The image's init is a command like any other: it gets the sandbox's capabilities, no more. */
  if (limits_drop_caps(caps) < 0) log_msg("init %s: dropping capabilities: %s", path, strerror(errno));
  sigset_t none;
  sigemptyset(&none);
  sigprocmask(SIG_SETMASK, &none, NULL);
  signal(SIGPIPE, SIG_DFL);
  umask(022);
  size_t nargs = args && args->type == J_STRARR ? args->arr_len : 0;
  char **argv = calloc(nargs + 2, sizeof *argv);
  if (argv) {
    argv[0] = (char *)path;
    for (size_t i = 0; i < nargs; i++) argv[i + 1] = args->arr[i];
    static char *const defaults[] = {"PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", "HOME=/root", "TERM=linux", NULL};
    execve(path, argv, env && env->type == J_STRARR && env->arr_len ? env->arr : defaults);
  }
  log_msg("init %s did not start: %s; PID 1 stays, reaping", path, strerror(errno));
  for (;;)
    if (wait(NULL) < 0) pause();
}

/* {"op":"init.handoff","path":PATH|"auto","args":[…],"env":["K=V",…]} */
void handoff_request(uint32_t id, const struct json_obj *req) {
  const char *asked = json_str(req, "path", "auto");
  const char *path = NULL;
  if (!strcmp(asked, "auto")) {
    for (const char *const *p = INITS; *p && !path; p++)
      if (runnable(*p)) path = *p;
    if (!path) {
      proto_send_error(id, "notFound", "init auto: the image has no /sbin/init, systemd or tini: name one", NULL);
      return;
    }
  } else if (runnable(asked)) path = asked;
  else {
    proto_send_errno(id, errno ? errno : ENOEXEC, "init", asked);
    return;
  }
  if (getpid() != 1) {
    proto_send_error(id, "invalidState", "PID 1 was handed to an init already", path);
    return;
  }
  pid_t pid = fork();
  if (pid < 0) { proto_send_errno(id, errno, "fork", NULL); return; }
  if (pid > 0) become_init(path, json_get(req, "args"), json_get(req, "env"), limits_caps_of(json_num(req, "caps", -1)));
  /* The child: the agent from now on, serving as before. No longer PID 1, it
   * tells the OOM killer to pass it by, as the kernel spares PID 1. */
  chan_signals_rearm();
  FILE *adj = fopen("/proc/self/oom_score_adj", "we");
  if (adj) {
    fputs("-1000", adj);
    fclose(adj);
  }
  char done[64];
  snprintf(done, sizeof done, "{\"agentPid\":%d}", (int)getpid());
  log_at(LOG_INFO, "PID 1 is %s now; the agent serves as pid %d", path, (int)getpid());
  proto_send_json(K_DONE, id, done);
}
