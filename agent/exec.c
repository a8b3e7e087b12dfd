/* exec channels: a process in its own session (so a timeout or a signal
 * reaches the whole process tree), pipes for stdio, output paced by credit. */
#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <pwd.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/ioctl.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include "chan.h"
#include "clock.h"
#include "exec.h"
#include "json.h"
#include "proto.h"
#include "limits.h"
#include "log.h"
#include "ring.h"
#include "user.h"

#define DEFAULT_PATH "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

static int set_nonblock(int fd) { return fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK); }

static void watch(int fd, uint32_t events, struct chan *c) {
  struct epoll_event ev = {.events = events, .data.ptr = c};
  epoll_ctl(chan_epoll, EPOLL_CTL_ADD, fd, &ev);
}

static void close_fd(int *fd) {
  if (*fd >= 0) {
    epoll_ctl(chan_epoll, EPOLL_CTL_DEL, *fd, NULL);
    close(*fd);
    *fd = -1;
  }
}

struct launch {
  char **argv;
  char **envp;
  const char *path; /* PATH to search when argv[0] has no slash */
  const char *cwd;
  uid_t uid;
  gid_t gid;
  gid_t groups[64];
  int ngroups;
  int in, out, err;
  const char *pty; /* the terminal's slave side: becomes stdio and the controlling tty */
  char **rlimits; /* "NAME=SOFT:HARD", applied before the identity changes */
  size_t nrlimits;
  bool restricted; /* no_new_privs: set-user-id programs gain nothing */
  uint64_t caps;   /* the capabilities the command may hold at all (its bounding set) */
};

static void child_fail(const char *what, const char *arg, int e, int code) {
  char msg[512];
  int n = snprintf(msg, sizeof msg, "vmbox: %s%s%s: %s\n", what, arg ? " " : "", arg ? arg : "",
                   e == ENOENT && code == 127 ? "command not found" : strerror(e));
  if (n > 0) write(2, msg, (size_t)n < sizeof msg ? (size_t)n : sizeof msg - 1);
  _exit(code);
}

/* Runs in a vfork child, on the parent's memory: only system calls and stack
 * buffers until execve. Everything else was prepared by the parent. Using
 * vfork, not fork, spares copying the agent's page tables and the
 * copy-on-write faults after it, which under TCG cost more than the exec. */
static void child(const struct launch *l) {
  sigset_t none;
  sigemptyset(&none);
  sigprocmask(SIG_SETMASK, &none, NULL);
  signal(SIGPIPE, SIG_DFL);
  umask(022);
  setsid();
  if (l->pty) {
    /* A session leader opening a terminal without O_NOCTTY takes it as its
     * controlling tty; TIOCSCTTY makes that explicit. */
    int t = open(l->pty, O_RDWR);
    if (t < 0) child_fail("opening the terminal", l->pty, errno, 126);
    ioctl(t, TIOCSCTTY, 0);
    dup2(t, 0);
    dup2(t, 1);
    dup2(t, 2);
    if (t > 2) close(t);
  } else {
    dup2(l->in, 0);
    dup2(l->out, 1);
    dup2(l->err, 2);
  }
  if (limits_apply(l->rlimits, l->nrlimits) < 0) child_fail("setting resource limits", NULL, errno, 126);
  /* Capabilities outside the sandbox's set leave the bounding set, so not even
   * root regains them (CAP_SYS_PTRACE would reach the agent). The restricted
   * profile adds no_new_privs: set-user-id programs (sudo) gain nothing. */
  if (limits_drop_caps(l->caps) < 0) child_fail("dropping capabilities", NULL, errno, 126);
  if (l->restricted && prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) < 0) child_fail("entering the restricted profile", NULL, errno, 126);
  /* Raw system calls: only this task changes identity, with no libc bookkeeping. */
  if (syscall(SYS_setgroups, l->ngroups, l->groups) < 0) child_fail("setting supplementary groups", NULL, errno, 126);
  if (syscall(SYS_setgid, l->gid) < 0) child_fail("switching group", NULL, errno, 126);
  if (syscall(SYS_setuid, l->uid) < 0) child_fail("switching user", NULL, errno, 126);
  if (chdir(l->cwd) < 0) child_fail("cannot enter working directory", l->cwd, errno, 126);
  const char *name = l->argv[0];
  if (strchr(name, '/')) {
    execve(name, l->argv, l->envp);
    child_fail(name, NULL, errno, errno == ENOENT ? 127 : 126);
  }
  /* PATH search, as execvp, but an EACCES is remembered over a later ENOENT. */
  int saved = ENOENT;
  char buf[4096];
  for (const char *p = l->path; *p;) {
    const char *end = strchrnul(p, ':');
    size_t dl = end - p;
    if (dl + strlen(name) + 2 <= sizeof buf) {
      memcpy(buf, p, dl);
      size_t off = dl;
      if (dl) buf[off++] = '/';
      strcpy(buf + off, name);
      execve(buf, l->argv, l->envp);
      if (errno == EACCES) saved = EACCES;
      else if (errno != ENOENT && errno != ENOTDIR) saved = errno;
    }
    p = *end ? end + 1 : end;
  }
  child_fail(name, NULL, saved, saved == ENOENT ? 127 : 126);
}

static const char *env_value(char **env, const char *key) {
  size_t kl = strlen(key);
  for (; env && *env; env++)
    if (!strncmp(*env, key, kl) && (*env)[kl] == '=') return *env + kl + 1;
  return NULL;
}

void exec_open(uint32_t id, const struct json_obj *req) {
  const struct json_field *argv = json_get(req, "argv");
  const struct json_field *env = json_get(req, "env");
  const char *cwd = json_str(req, "cwd", "/");
  bool want_stdin = json_bool(req, "stdin", false);
  double timeout = json_num(req, "timeoutMs", 0);
  if (!argv || argv->type != J_STRARR || argv->arr_len == 0) {
    proto_send_error(id, "invalidArgument", "exec needs a non-empty argv array of strings", NULL);
    return;
  }
  if (env && env->type != J_STRARR) {
    proto_send_error(id, "invalidArgument", "exec env must be an array of KEY=VALUE strings", NULL);
    return;
  }
  struct ident ident;
  char err[256];
  if (resolve_user(json_str(req, "user", NULL), &ident, err, sizeof err) < 0) {
    proto_send_error(id, "invalidArgument", err, NULL);
    return;
  }
  const struct json_field *rlimits = json_get(req, "rlimits");
  if (rlimits && (rlimits->type != J_STRARR || limits_check(rlimits->arr, rlimits->arr_len, err, sizeof err) < 0)) {
    proto_send_error(id, "invalidArgument", rlimits->type != J_STRARR ? "rlimits must be an array of strings" : err, NULL);
    return;
  }
  struct stat st;
  if (stat(cwd, &st) < 0) { proto_send_errno(id, errno, "working directory", cwd); return; }
  if (!S_ISDIR(st.st_mode)) { proto_send_errno(id, ENOTDIR, "working directory", cwd); return; }

  bool pty = json_bool(req, "pty", false);
  int inp[2] = {-1, -1}, outp[2] = {-1, -1}, errp[2] = {-1, -1};
  int master = -1;
  char slave[64] = "";
  if (pty) {
    master = posix_openpt(O_RDWR | O_NOCTTY | O_CLOEXEC);
    if (master < 0 || grantpt(master) < 0 || unlockpt(master) < 0 || ptsname_r(master, slave, sizeof slave) != 0) {
      int e = errno;
      if (master >= 0) close(master);
      proto_send_errno(id, e, "opening a terminal", NULL);
      return;
    }
    struct winsize ws = {.ws_col = (unsigned short)json_num(req, "cols", 80), .ws_row = (unsigned short)json_num(req, "rows", 24)};
    ioctl(master, TIOCSWINSZ, &ws);
  } else {
    if (pipe2(outp, O_CLOEXEC) < 0) { proto_send_errno(id, errno, "pipe", NULL); return; }
    if (pipe2(errp, O_CLOEXEC) < 0) { close(outp[0]); close(outp[1]); proto_send_errno(id, errno, "pipe", NULL); return; }
    if (want_stdin) {
      if (pipe2(inp, O_CLOEXEC) < 0) inp[0] = inp[1] = -1;
    } else {
      inp[0] = open("/dev/null", O_RDONLY | O_CLOEXEC);
    }
  }
  /* The whole environment and identity are prepared here, before vfork. */
  char **given = env ? env->arr : NULL;
  size_t n = env ? env->arr_len : 0;
  char *envp[n + 5];
  size_t k = 0;
  for (size_t i = 0; i < n; i++) envp[k++] = given[i];
  char home[300], usr[80];
  if (!env_value(given, "PATH")) envp[k++] = "PATH=" DEFAULT_PATH;
  if (!env_value(given, "HOME")) { snprintf(home, sizeof home, "HOME=%s", ident.home); envp[k++] = home; }
  if (!env_value(given, "USER") && ident.named) { snprintf(usr, sizeof usr, "USER=%s", ident.name); envp[k++] = usr; }
  if (pty && !env_value(given, "TERM")) envp[k++] = "TERM=xterm-256color";
  envp[k] = NULL;
  struct launch l = {
    .argv = argv->arr, .envp = envp, .cwd = cwd, .uid = ident.uid, .gid = ident.gid,
    .in = inp[0], .out = outp[1], .err = errp[1], .pty = pty ? slave : NULL,
    .rlimits = rlimits ? rlimits->arr : NULL, .nrlimits = rlimits ? rlimits->arr_len : 0,
    .restricted = json_bool(req, "restricted", false),
    .caps = limits_caps_of(json_num(req, "caps", -1)),
  };
  l.path = env_value(envp, "PATH");
  if (ident.named) {
    l.ngroups = 64;
    if (getgrouplist(ident.name, ident.gid, l.groups, &l.ngroups) < 0) l.ngroups = 64;
  }
  pid_t pid = vfork();
  if (pid == 0) child(&l);
  if (outp[1] >= 0) close(outp[1]);
  if (errp[1] >= 0) close(errp[1]);
  if (inp[0] >= 0) close(inp[0]);
  if (pid < 0) {
    int e = errno;
    if (outp[0] >= 0) close(outp[0]);
    if (errp[0] >= 0) close(errp[0]);
    if (inp[1] >= 0) close(inp[1]);
    if (master >= 0) close(master);
    proto_send_errno(id, e, "fork", NULL);
    return;
  }
  struct chan *c = chan_new(id, CH_EXEC);
  c->pid = pid;
  log_at(LOG_INFO, "started pid %d as uid %u: %s", (int)pid, (unsigned)ident.uid, argv->arr[0]);
  c->pty = pty;
  c->detached = json_bool(req, "detached", false);
  c->cwd = strdup(cwd);
  struct jw aw = {0};
  jw_raw(&aw, "[");
  for (size_t i = 0; i < argv->arr_len; i++) {
    if (i) jw_raw(&aw, ",");
    jw_str(&aw, argv->arr[i]);
  }
  jw_raw(&aw, "]");
  c->argv_json = aw.s; /* owned by the channel */
  if (pty) {
    c->out_fd = master;
    c->in_fd = fcntl(master, F_DUPFD_CLOEXEC, 0); /* its own fd, so stdin and output close apart */
  } else {
    c->out_fd = outp[0];
    c->err_fd = errp[0];
    c->in_fd = inp[1];
  }
  c->deadline_ms = timeout > 0 ? clock_now_ms() + (uint64_t)timeout : 0;
  set_nonblock(c->out_fd);
  watch(c->out_fd, EPOLLIN, c);
  if (c->err_fd >= 0) {
    set_nonblock(c->err_fd);
    watch(c->err_fd, EPOLLIN, c);
  }
  if (c->in_fd >= 0) set_nonblock(c->in_fd);
  char reply[64];
  snprintf(reply, sizeof reply, "{\"pid\":%d}", pid);
  proto_send_json(K_REPLY, id, reply);
}

static void flush_stdin(struct chan *c) {
  while (c->in_fd >= 0 && buf_pending(&c->in)) {
    ssize_t n = write(c->in_fd, c->in.data + c->in.start, buf_pending(&c->in));
    if (n < 0) {
      if (errno == EINTR) continue;
      if (errno == EAGAIN) {
        struct epoll_event ev = {.events = EPOLLOUT, .data.ptr = c};
        if (epoll_ctl(chan_epoll, EPOLL_CTL_MOD, c->in_fd, &ev) < 0) epoll_ctl(chan_epoll, EPOLL_CTL_ADD, c->in_fd, &ev);
        return;
      }
      /* EPIPE: the process stopped reading; drop what it will never read. */
      chan_consumed(c, buf_pending(&c->in), true);
      buf_consume(&c->in, buf_pending(&c->in));
      close_fd(&c->in_fd);
      return;
    }
    buf_consume(&c->in, n);
    chan_consumed(c, n, false);
  }
  if (c->in_fd >= 0) {
    epoll_ctl(chan_epoll, EPOLL_CTL_DEL, c->in_fd, NULL);
    if (c->in_eof) close_fd(&c->in_fd);
  }
}

void exec_stdin(struct chan *c, const uint8_t *p, size_t n) {
  if (c->in_fd < 0) { chan_consumed(c, n, false); return; }
  buf_append(&c->in, p, n);
  flush_stdin(c);
}

void exec_stdin_eof(struct chan *c) {
  if (c->pty) {
    /* A terminal has no end of input, only the EOF character its line discipline reads. */
    exec_stdin(c, (const uint8_t *)"\x04", 1);
    return;
  }
  c->in_eof = true;
  if (!buf_pending(&c->in)) close_fd(&c->in_fd);
}

void exec_signal(struct chan *c, int sig) {
  if (!c->exited && sig > 0 && sig < 65) kill(-c->pid, sig);
}

/* Reads one stream into frames while credit lasts; closes it at EOF. */
static void drain(struct chan *c, int *fd, uint8_t kind) {
  while (*fd >= 0 && c->credit > 0) {
    size_t want = c->credit < DATA_CHUNK ? (size_t)c->credit : DATA_CHUNK;
    uint8_t *dst = proto_frame_reserve(want);
    ssize_t n = read(*fd, dst, want);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0 && errno == EAGAIN) {
      /* A finished process cannot write more; a background child that kept
       * the pipe open must not hold the result back. */
      if (c->exited) close_fd(fd);
      return;
    }
    /* EOF, or EIO from a PTY master once every slave fd is closed. */
    if (n <= 0) { close_fd(fd); return; }
    if (c->detached) ring_keep(&c->ring, kind, dst, n);
    proto_frame_commit(kind, c->id, n);
    c->credit -= n;
  }
  /* Out of credit: stop polling this pipe until the host grants more. */
  if (*fd >= 0) epoll_ctl(chan_epoll, EPOLL_CTL_DEL, *fd, NULL);
}

/* While nobody is attached, output goes only to the ring. A bounded read per
 * call keeps a chatty process from starving the loop (epoll is level-triggered). */
static void drain_orphan(struct chan *c, int *fd, uint8_t kind) {
  uint8_t tmp[16384];
  for (int round = 0; *fd >= 0 && round < 16; round++) {
    ssize_t n = read(*fd, tmp, sizeof tmp);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0 && errno == EAGAIN) {
      if (c->exited) close_fd(fd);
      return;
    }
    if (n <= 0) { close_fd(fd); return; }
    ring_keep(&c->ring, kind, tmp, n);
  }
}

/* Frees what a finished process held; the loop frees the channel. */
void exec_release(struct chan *c) {
  close_fd(&c->out_fd);
  close_fd(&c->err_fd);
  close_fd(&c->in_fd);
  buf_free(&c->in);
  buf_free(&c->ring);
  free(c->argv_json);
  free(c->cwd);
  c->argv_json = c->cwd = NULL;
  c->dead = true;
}

static void arm(struct chan *c) {
  struct epoll_event ev = {.events = EPOLLIN, .data.ptr = c};
  if (c->out_fd >= 0) epoll_ctl(chan_epoll, EPOLL_CTL_ADD, c->out_fd, &ev);
  if (c->err_fd >= 0) epoll_ctl(chan_epoll, EPOLL_CTL_ADD, c->err_fd, &ev);
}

void exec_pump(struct chan *c) {
  if (c->dead) return;
  if (c->orphan) {
    drain_orphan(c, &c->out_fd, K_STDOUT);
    drain_orphan(c, &c->err_fd, K_STDERR);
    return; /* an exited orphan waits, with its output and status, for an attach */
  }
  drain(c, &c->out_fd, K_STDOUT);
  drain(c, &c->err_fd, K_STDERR);
  if (c->credit > 0) arm(c); /* re-arm pipes parked while credit was exhausted (EEXIST is harmless) */
  if (!c->exited || c->out_fd >= 0 || c->err_fd >= 0) return;
  log_at(LOG_INFO, "pid %d ended: status %d", (int)c->pid, c->status);
  struct jw w;
  jw_begin(&w);
  if (WIFEXITED(c->status)) {
    jw_key_num(&w, "exitCode", WEXITSTATUS(c->status));
  } else {
    jw_key_num(&w, "exitCode", 128 + WTERMSIG(c->status));
    jw_key_num(&w, "signal", WTERMSIG(c->status));
  }
  jw_key_bool(&w, "timedOut", c->timed_out);
  if (c->oom_killed) jw_key_bool(&w, "oomKilled", true);
  proto_send_json(K_DONE, c->id, jw_end(&w));
  jw_free(&w);
  exec_release(c);
}

void exec_on_fd(struct chan *c, uint32_t events) {
  /* Every fd of the channel shares one epoll cookie; only stdin asks for EPOLLOUT. */
  if (events & (EPOLLOUT | EPOLLERR)) flush_stdin(c);
  exec_pump(c);
}

void exec_on_child(pid_t pid, int status) {
  for (struct chan *c = chan_list; c; c = c->next) {
    if (c->type == CH_EXEC && !c->dead && !c->exited && c->pid == pid) {
      c->exited = true;
      c->status = status;
      close_fd(&c->in_fd);
      exec_pump(c);
      return;
    }
  }
}

void exec_check_deadline(struct chan *c, uint64_t now) {
  if (c->exited || !c->deadline_ms || now < c->deadline_ms) return;
  c->timed_out = true;
  c->deadline_ms = 0;
  kill(-c->pid, SIGKILL);
  kill(c->pid, SIGKILL);
}

void exec_close(struct chan *c) {
  if (c->orphan) return; /* already let go of; only a kill or an attach ends that */
  if (c->detached) {
    /* A background process outlives its channel: keep it, and its output,
     * for a later attach by pid. */
    c->orphan = true;
    c->id = 0;
    c->credit = 0;
    c->owed = 0;
    buf_free(&c->in);
    if (c->in_fd >= 0) epoll_ctl(chan_epoll, EPOLL_CTL_DEL, c->in_fd, NULL);
    arm(c);
    exec_pump(c);
    return;
  }
  if (!c->exited) {
    /* Nobody is listening any more: end the whole process tree. */
    kill(-c->pid, SIGKILL);
    kill(c->pid, SIGKILL);
  }
  exec_release(c);
}

void exec_resize(struct chan *c, int cols, int rows) {
  if (!c->pty || cols <= 0 || rows <= 0) return;
  struct winsize ws = {.ws_col = (unsigned short)cols, .ws_row = (unsigned short)rows};
  /* The kernel sends SIGWINCH to the terminal's foreground process group. */
  ioctl(c->in_fd >= 0 ? c->in_fd : c->out_fd, TIOCSWINSZ, &ws);
}
