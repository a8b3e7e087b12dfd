/* The OOM killer logs "Killed process PID (comm)" before it lets the victim
 * exit (mm/oom_kill.c: the record is stored under the victim's task lock,
 * which exit_mm takes). The victim's session is the command it belongs to:
 * every command is a session of its own (exec.c). If the victim is already
 * gone (its own parent reaped it before the log was read), the one command
 * still running, if there is exactly one, is the one that lost it.
 * Per-command memory cgroups would attribute every kill exactly, but moving
 * each command into a fresh cgroup and reading its memory.events cost 4-10 ms
 * per command under TCG, several times an exec's round trip; reading the log
 * costs nothing until memory runs out. */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "chan.h"
#include "log.h"
#include "oom.h"

static int kmsg = -1;

int oom_open_log(void) {
  kmsg = open("/dev/kmsg", O_RDONLY | O_NONBLOCK | O_CLOEXEC);
  if (kmsg >= 0) lseek(kmsg, 0, SEEK_END);
  return kmsg;
}

/* The session of a live or zombie process, or -1 once it was reaped. */
static pid_t session_of(pid_t pid) {
  char path[32], text[512];
  snprintf(path, sizeof path, "/proc/%d/stat", pid);
  int fd = open(path, O_RDONLY | O_CLOEXEC);
  if (fd < 0) return -1;
  ssize_t n = read(fd, text, sizeof text - 1);
  close(fd);
  if (n <= 0) return -1;
  text[n] = 0;
  /* "pid (comm) state ppid pgrp session ...": comm may hold anything but the last ')'. */
  const char *p = strrchr(text, ')');
  int ppid, pgrp, sid;
  char state;
  if (!p || sscanf(p + 1, " %c %d %d %d", &state, &ppid, &pgrp, &sid) != 4) return -1;
  return sid;
}

/* A command whose process or output is still live. */
static bool running(const struct chan *c) {
  return c->type == CH_EXEC && !c->dead && (!c->exited || c->out_fd >= 0 || c->err_fd >= 0);
}

static void victim(pid_t pid) {
  pid_t sid = session_of(pid);
  struct chan *only = NULL;
  int live = 0;
  for (struct chan *c = chan_list; c; c = c->next) {
    if (!running(c)) continue;
    if (sid > 0 && c->pid == sid) {
      c->oom_killed = true;
      return;
    }
    live++;
    only = c;
  }
  if (sid < 0 && live == 1) only->oom_killed = true;
  else log_msg("the OOM killer took pid %d, which no single command owns", pid);
}

void oom_drain(void) {
  if (kmsg < 0) return;
  char rec[8192]; /* the kernel's largest record */
  for (;;) {
    ssize_t n = read(kmsg, rec, sizeof rec - 1);
    /* EPIPE: older records were overwritten; EINVAL: a record too long, which the kernel skips. */
    if (n < 0 && (errno == EINTR || errno == EPIPE || errno == EINVAL)) continue;
    if (n <= 0) return;
    rec[n] = 0;
    /* "prio,seq,usec,flags;message\n" */
    const char *msg = strchr(rec, ';');
    const char *k = msg ? strstr(msg, "Killed process ") : NULL;
    if (k) victim((pid_t)strtol(k + 15, NULL, 10));
  }
}
