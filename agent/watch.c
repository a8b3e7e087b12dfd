/* watch channels: inotify on a directory (and, if asked, every directory
 * below it, including ones created later), streamed to the host as REPLY
 * batches {"events":[{"type","path","isDir"}]}. Types follow fsnotify's
 * names: create, write, remove, rename (the old name), chmod. */
#include <dirent.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/inotify.h>
#include <sys/stat.h>
#include <unistd.h>

#include "chan.h"
#include "json.h"
#include "proto.h"
#include "watch.h"

#define MASK (IN_CREATE | IN_MODIFY | IN_DELETE | IN_MOVED_FROM | IN_MOVED_TO | IN_ATTRIB | IN_DELETE_SELF)

struct watch {
  bool recursive;
  int root_wd;
  size_t n, cap;
  struct { int wd; char *path; } *dirs;
};

static const char *dir_of(struct watch *w, int wd) {
  for (size_t i = 0; i < w->n; i++)
    if (w->dirs[i].wd == wd) return w->dirs[i].path;
  return NULL;
}

static void forget_wd(struct watch *w, int wd) {
  for (size_t i = 0; i < w->n; i++) {
    if (w->dirs[i].wd != wd) continue;
    free(w->dirs[i].path);
    w->dirs[i] = w->dirs[--w->n];
    return;
  }
}

/* Watches `path` and, when recursive, the directories below it. */
static int add_tree(struct chan *c, const char *path, bool top) {
  struct watch *w = c->watch;
  int wd = inotify_add_watch(c->file_fd, path, MASK | IN_ONLYDIR);
  if (wd < 0) return top ? -1 : 0; /* a subdirectory that vanished meanwhile is not an error */
  if (!dir_of(w, wd)) {
    if (w->n == w->cap) {
      w->cap = w->cap ? w->cap * 2 : 16;
      w->dirs = realloc(w->dirs, w->cap * sizeof *w->dirs);
      if (!w->dirs) abort();
    }
    w->dirs[w->n].wd = wd;
    w->dirs[w->n].path = strdup(path);
    w->n++;
  }
  if (top) w->root_wd = wd;
  if (!w->recursive) return 0;
  DIR *d = opendir(path);
  if (!d) return 0;
  struct dirent *e;
  while ((e = readdir(d))) {
    if (e->d_type != DT_DIR || !strcmp(e->d_name, ".") || !strcmp(e->d_name, "..")) continue;
    char sub[4096];
    if (snprintf(sub, sizeof sub, "%s/%s", strcmp(path, "/") ? path : "", e->d_name) < (int)sizeof sub) add_tree(c, sub, false);
  }
  closedir(d);
  return 0;
}

void watch_open(uint32_t id, const struct json_obj *req) {
  const char *path = json_str(req, "path", NULL);
  if (!path || path[0] != '/') { proto_send_error(id, "invalidArgument", "path must be absolute", path); return; }
  struct stat st;
  if (stat(path, &st) < 0) { proto_send_errno(id, errno, "watch", path); return; }
  if (!S_ISDIR(st.st_mode)) { proto_send_errno(id, ENOTDIR, "watch", path); return; }
  int fd = inotify_init1(IN_NONBLOCK | IN_CLOEXEC);
  if (fd < 0) { proto_send_errno(id, errno, "watch", path); return; }
  struct chan *c = chan_new(id, CH_WATCH);
  c->file_fd = fd;
  c->watch = calloc(1, sizeof *c->watch);
  if (!c->watch) abort();
  c->watch->recursive = json_bool(req, "recursive", false);
  if (add_tree(c, path, true) < 0) {
    proto_send_errno(id, errno, "watch", path);
    watch_close(c);
    return;
  }
  struct epoll_event ev = {.events = EPOLLIN, .data.ptr = c};
  epoll_ctl(chan_epoll, EPOLL_CTL_ADD, fd, &ev);
  proto_send_json(K_REPLY, id, "{\"events\":[]}"); /* watching from here on */
}

/* files.c writes a file as ".NAME.vmbox-XXXXXX" and renames it to NAME when
 * complete: a watcher sees only NAME, created and written. */
static bool is_write_temp(const char *name) {
  size_t n = strlen(name);
  return name[0] == '.' && n > 14 && !strncmp(name + n - 13, ".vmbox-", 7);
}

static void add_event(struct jw *out, int *count, const char *type, const char *path, bool is_dir) {
  if ((*count)++) jw_raw(out, ",");
  jw_raw(out, "{");
  out->first = true;
  jw_key_str(out, "type", type);
  jw_key_str(out, "path", path);
  jw_key_bool(out, "isDir", is_dir);
  jw_raw(out, "}");
}

static const char *type_of(uint32_t mask) {
  if (mask & IN_CREATE) return "create";
  if (mask & IN_MOVED_TO) return "create";
  if (mask & IN_MODIFY) return "write";
  if (mask & IN_DELETE) return "remove";
  if (mask & IN_MOVED_FROM) return "rename";
  if (mask & IN_ATTRIB) return "chmod";
  return NULL;
}

void watch_on_fd(struct chan *c) {
  if (c->dead) return;
  struct watch *w = c->watch;
  char buf[16384] __attribute__((aligned(__alignof__(struct inotify_event))));
  struct jw out;
  jw_begin(&out);
  jw_raw(&out, "\"events\":[");
  int count = 0;
  bool root_gone = false;
  char last[4210] = "";
  uint32_t temp_cookie = 0; /* of the last temporary file renamed away */
  for (;;) {
    ssize_t n = read(c->file_fd, buf, sizeof buf);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) break;
    for (char *p = buf; p < buf + n;) {
      const struct inotify_event *e = (const struct inotify_event *)p;
      p += sizeof *e + e->len;
      if (e->mask & IN_Q_OVERFLOW) {
        if (count++) jw_raw(&out, ",");
        jw_raw(&out, "{\"type\":\"overflow\",\"path\":\"\",\"isDir\":false}");
        continue;
      }
      if (e->mask & (IN_DELETE_SELF | IN_IGNORED)) {
        if (e->wd == w->root_wd) root_gone = true;
        forget_wd(w, e->wd);
        continue;
      }
      const char *dir = dir_of(w, e->wd);
      const char *type = type_of(e->mask);
      if (!dir || !type || !e->len) continue;
      if (is_write_temp(e->name)) {
        if (e->mask & IN_MOVED_FROM) temp_cookie = e->cookie;
        continue;
      }
      bool written = (e->mask & IN_MOVED_TO) && e->cookie && e->cookie == temp_cookie;
      char path[4200];
      snprintf(path, sizeof path, "%s/%s", strcmp(dir, "/") ? dir : "", e->name);
      bool is_dir = e->mask & IN_ISDIR;
      if (is_dir && w->recursive && (e->mask & (IN_CREATE | IN_MOVED_TO))) add_tree(c, path, false);
      /* A large write is many IN_MODIFY in a row: one event says it. */
      char key[4210];
      snprintf(key, sizeof key, "%s %s", type, path);
      if (!strcmp(key, last)) continue;
      snprintf(last, sizeof last, "%s", key);
      add_event(&out, &count, type, path, is_dir);
      if (written) add_event(&out, &count, "write", path, false);
    }
    if (out.len > MAX_PAYLOAD / 2) break;
  }
  jw_raw(&out, "]");
  out.first = false;
  if (count) proto_send_json(K_REPLY, c->id, jw_end(&out));
  jw_free(&out);
  if (root_gone) {
    proto_send_json(K_DONE, c->id, "{\"reason\":\"the watched directory was removed\"}");
    watch_close(c);
  }
}

void watch_close(struct chan *c) {
  if (c->file_fd >= 0) {
    epoll_ctl(chan_epoll, EPOLL_CTL_DEL, c->file_fd, NULL);
    close(c->file_fd);
    c->file_fd = -1;
  }
  if (c->watch) {
    for (size_t i = 0; i < c->watch->n; i++) free(c->watch->dirs[i].path);
    free(c->watch->dirs);
    free(c->watch);
    c->watch = NULL;
  }
  c->dead = true;
}
