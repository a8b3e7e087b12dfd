/* File channels (read, write) and the one-shot file system requests. */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "chan.h"
#include "files.h"
#include "json.h"
#include "metadata.h"
#include "proto.h"
#include "user.h"

/* The owner of what the current request creates (files, directories, links),
 * when it names one; the request itself runs with the agent's rights. */
static const struct ident *owner;

static void own(const char *path) {
  if (owner) lchown(path, owner->uid, owner->gid);
}

static const char *type_name(mode_t m) {
  if (S_ISREG(m)) return "file";
  if (S_ISDIR(m)) return "dir";
  if (S_ISLNK(m)) return "symlink";
  return "other";
}

static void stat_fields(struct jw *w, const struct stat *st) {
  jw_key_str(w, "type", type_name(st->st_mode));
  jw_key_num(w, "size", (double)st->st_size);
  jw_key_num(w, "mode", st->st_mode & 07777);
  jw_key_num(w, "uid", st->st_uid);
  jw_key_num(w, "gid", st->st_gid);
  jw_key_num(w, "mtimeMs", (double)st->st_mtim.tv_sec * 1000 + st->st_mtim.tv_nsec / 1000000);
}

static void do_stat(uint32_t id, const char *path) {
  struct stat st;
  if (lstat(path, &st) < 0) { proto_send_errno(id, errno, "stat", path); return; }
  struct jw w;
  jw_begin(&w);
  stat_fields(&w, &st);
  if (S_ISLNK(st.st_mode)) {
    char target[4096];
    ssize_t n = readlink(path, target, sizeof target - 1);
    if (n >= 0) { target[n] = 0; jw_key_str(&w, "linkTarget", target); }
  }
  add_metadata(&w, path);
  proto_send_json(K_DONE, id, jw_end(&w));
  jw_free(&w);
}

/* Entries go out in REPLY batches so a huge directory never needs one huge frame. */
static void do_list(uint32_t id, const char *path) {
  DIR *d = opendir(path);
  if (!d) { proto_send_errno(id, errno, "list", path); return; }
  struct jw w;
  int count = 0;
  struct dirent *e;
  jw_begin(&w);
  jw_raw(&w, "\"entries\":[");
  while ((e = readdir(d))) {
    if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, "..")) continue;
    struct stat st;
    if (fstatat(dirfd(d), e->d_name, &st, AT_SYMLINK_NOFOLLOW) < 0) continue;
    if (count++) jw_raw(&w, ",");
    jw_raw(&w, "{\"name\":");
    jw_str(&w, e->d_name);
    w.first = false;
    stat_fields(&w, &st);
    if (S_ISLNK(st.st_mode)) {
      char target[4096];
      ssize_t n = readlinkat(dirfd(d), e->d_name, target, sizeof target - 1);
      if (n >= 0) { target[n] = 0; jw_key_str(&w, "linkTarget", target); }
    }
    char full[4096];
    if (snprintf(full, sizeof full, "%s/%s", path, e->d_name) < (int)sizeof full) add_metadata(&w, full);
    jw_raw(&w, "}");
    if (w.len > MAX_PAYLOAD / 2) {
      jw_raw(&w, "]");
      proto_send_json(K_REPLY, id, jw_end(&w));
      jw_free(&w);
      jw_begin(&w);
      jw_raw(&w, "\"entries\":[");
      count = 0;
    }
  }
  closedir(d);
  jw_raw(&w, "]");
  proto_send_json(K_DONE, id, jw_end(&w));
  jw_free(&w);
}

static int mkdir_p(const char *path, mode_t mode) {
  char tmp[4096];
  if (snprintf(tmp, sizeof tmp, "%s", path) >= (int)sizeof tmp) { errno = ENAMETOOLONG; return -1; }
  for (char *p = tmp + 1; *p; p++) {
    if (*p != '/') continue;
    *p = 0;
    if (mkdir(tmp, mode) == 0) own(tmp);
    else if (errno != EEXIST) return -1;
    *p = '/';
  }
  if (mkdir(tmp, mode) == 0) own(tmp);
  else {
    if (errno != EEXIST) return -1;
    struct stat st;
    if (stat(tmp, &st) < 0) return -1;
    if (!S_ISDIR(st.st_mode)) { errno = ENOTDIR; return -1; }
  }
  return 0;
}

static int rm_one(const char *p, const struct stat *st, int flag, struct FTW *f) {
  (void)st; (void)f;
  return flag == FTW_DP ? rmdir(p) : unlink(p);
}

static void do_remove(uint32_t id, const char *path, bool recursive) {
  struct stat st;
  if (lstat(path, &st) < 0) { proto_send_errno(id, errno, "remove", path); return; }
  int r;
  if (S_ISDIR(st.st_mode))
    r = recursive ? nftw(path, rm_one, 32, FTW_DEPTH | FTW_PHYS) : rmdir(path);
  else
    r = unlink(path);
  if (r < 0) { proto_send_errno(id, errno, "remove", path); return; }
  proto_send_json(K_DONE, id, "{}");
}

static void open_read(uint32_t id, const char *path) {
  int fd = open(path, O_RDONLY | O_CLOEXEC);
  if (fd < 0) { proto_send_errno(id, errno, "read", path); return; }
  struct stat st;
  if (fstat(fd, &st) < 0 || S_ISDIR(st.st_mode)) {
    int e = S_ISDIR(st.st_mode) ? EISDIR : errno;
    close(fd);
    proto_send_errno(id, e, "read", path);
    return;
  }
  struct chan *c = chan_new(id, CH_READ);
  c->file_fd = fd;
  struct jw w;
  jw_begin(&w);
  stat_fields(&w, &st);
  proto_send_json(K_REPLY, id, jw_end(&w));
  jw_free(&w);
  files_pump(c);
}

/* A file is written under a temporary name beside its final one and renamed
 * over it only once complete, so an interrupted write (the client or the
 * server gone, the host abandoning the channel, a full disk) never leaves a
 * partial file under the final name: the temporary one is unlinked instead.
 * Appends write in place: a partial append is still the whole old file. */
struct pending_write {
  struct chan *c;
  char *tmp;   /* unlinked unless renamed; NULL for an append */
  char *final; /* the path the caller named, for errors */
  char *dest;  /* where the content goes: the final path, or a symlink's target */
  struct pending_write *next;
};
static struct pending_write *pending_writes;

static struct pending_write *pending_take(struct chan *c) {
  for (struct pending_write **pp = &pending_writes; *pp; pp = &(*pp)->next) {
    struct pending_write *p = *pp;
    if (p->c != c) continue;
    *pp = p->next;
    return p;
  }
  return NULL;
}

static void pending_free(struct pending_write *p) {
  if (!p) return;
  if (p->tmp) unlink(p->tmp);
  free(p->tmp);
  free(p->final);
  free(p->dest);
  free(p);
}

static void pending_add(struct chan *c, const char *tmp, const char *final, const char *dest) {
  struct pending_write *p = calloc(1, sizeof *p);
  if (!p) abort();
  p->c = c;
  p->tmp = tmp ? strdup(tmp) : NULL;
  p->final = strdup(final);
  p->dest = strdup(dest);
  p->next = pending_writes;
  pending_writes = p;
}

/* A temporary file beside `dest`, with `mode`, and the owner of the file it replaces. */
static int open_temp(const char *dest, char *tmp, size_t cap, mode_t mode, const struct stat *old) {
  const char *slash = strrchr(dest, '/');
  int dir_len = (int)(slash - dest);
  /* The name stays under NAME_MAX however long the final one is. */
  if (snprintf(tmp, cap, "%.*s/.%.200s.vmbox-XXXXXX", dir_len, dest, slash + 1) >= (int)cap) {
    errno = ENAMETOOLONG;
    return -1;
  }
  int fd = mkostemp(tmp, O_CLOEXEC);
  if (fd < 0) return -1;
  if (fchmod(fd, mode) < 0 || (old && fchown(fd, old->st_uid, old->st_gid) < 0 && errno != EPERM) ||
      (!old && owner && fchown(fd, owner->uid, owner->gid) < 0)) {
    int e = errno;
    close(fd);
    unlink(tmp);
    errno = e;
    return -1;
  }
  return fd;
}

static void open_write(uint32_t id, const struct json_obj *req, const char *path) {
  bool append = json_bool(req, "append", false);
  const struct json_field *meta = json_get(req, "metadata");
  if (meta && meta->type != J_STRARR) {
    proto_send_error(id, "invalidArgument", "metadata must be an array of KEY=VALUE strings", path);
    return;
  }
  char parent[4096];
  snprintf(parent, sizeof parent, "%s", path);
  char *slash = strrchr(parent, '/');
  if (slash == parent) slash[1] = 0;
  else *slash = 0;
  if (json_bool(req, "mkdirs", false) && mkdir_p(parent, 0755) < 0) { proto_send_errno(id, errno, "write", parent); return; }

  /* Through a symlink to its target, as open() would write. */
  char dest[4096];
  if (!realpath(path, dest)) snprintf(dest, sizeof dest, "%s", path);
  struct stat old;
  bool exists = stat(dest, &old) == 0;
  if (exists && S_ISDIR(old.st_mode)) { proto_send_errno(id, EISDIR, "write", path); return; }
  /* Appends, what is not a regular file (/dev/null, a FIFO), a file with
   * other hard links (a rename would split them), and an existing file when
   * asked (a watcher then sees it written, not a temporary file renamed over
   * it) are written in place. A new file is always written whole or not at all. */
  bool in_place = append || (exists && (json_bool(req, "inPlace", false) || !S_ISREG(old.st_mode) || old.st_nlink > 1));
  /* A file whose directory takes no new entry (procfs, sysfs, cgroup files, a
   * read-only directory with a writable file) is written in place too. */
  mode_t mode = json_get(req, "mode") ? (mode_t)json_num(req, "mode", 0644) : exists ? old.st_mode & 07777 : 0644;
  char tmp[4096];
  int fd = in_place ? -1 : open_temp(dest, tmp, sizeof tmp, mode, exists ? &old : NULL);
  if (!in_place && fd < 0 && exists) in_place = true;
  if (in_place) {
    /* Truncated only once the metadata took: a refused write leaves the file as it was. */
    int flags = O_WRONLY | O_CREAT | O_CLOEXEC | (append ? O_APPEND : 0);
    int fd = open(path, flags, (mode_t)json_num(req, "mode", 0644));
    if (fd < 0) { proto_send_errno(id, errno, "write", path); return; }
    if (!exists && owner) fchown(fd, owner->uid, owner->gid);
    if ((meta && replace_metadata(fd, meta) < 0) || (!append && ftruncate(fd, 0) < 0 && errno != EINVAL)) {
      proto_send_errno(id, errno, meta ? "write metadata" : "write", path);
      close(fd);
      return;
    }
    struct chan *c = chan_new(id, CH_WRITE);
    c->file_fd = fd;
    pending_add(c, NULL, path, path);
    return;
  }
  /* A replaced file kept its mode unless one was asked for, and its owner (open_temp). */
  if (fd < 0) {
    if (errno == ENOENT) {
      char msg[4200];
      snprintf(msg, sizeof msg, "write %s: no such directory %s (make it first, or ask for the parents to be made)", path, parent);
      proto_send_error(id, "notFound", msg, parent);
    } else proto_send_errno(id, errno, "write", path);
    return;
  }
  if (meta && replace_metadata(fd, meta) < 0) {
    proto_send_errno(id, errno, "write metadata", path);
    close(fd);
    unlink(tmp);
    return;
  }
  struct chan *c = chan_new(id, CH_WRITE);
  c->file_fd = fd;
  pending_add(c, tmp, path, dest);
}

static void do_request(uint32_t id, const char *op, const struct json_obj *req) {
  const char *path = json_str(req, "path", NULL);
  if (!strcmp(op, "rename")) {
    const char *from = json_str(req, "from", NULL), *to = json_str(req, "to", NULL);
    if (!from || !to) { proto_send_error(id, "invalidArgument", "rename needs from and to", NULL); return; }
    if (rename(from, to) < 0) proto_send_errno(id, errno, "rename", errno == ENOENT && access(from, F_OK) == 0 ? to : from);
    else proto_send_json(K_DONE, id, "{}");
    return;
  }
  if (!path || path[0] != '/') {
    proto_send_error(id, "invalidArgument", "path must be absolute", path);
    return;
  }
  if (!strcmp(op, "symlink")) {
    const char *target = json_str(req, "target", NULL);
    if (!target) { proto_send_error(id, "invalidArgument", "symlink needs a target", path); return; }
    if (symlink(target, path) < 0) proto_send_errno(id, errno, "symlink", path);
    else {
      own(path);
      proto_send_json(K_DONE, id, "{}");
    }
  } else if (!strcmp(op, "stat")) do_stat(id, path);
  else if (!strcmp(op, "list")) do_list(id, path);
  else if (!strcmp(op, "mkdir")) {
    if (mkdir_p(path, (mode_t)json_num(req, "mode", 0755)) < 0) proto_send_errno(id, errno, "mkdir", path);
    else proto_send_json(K_DONE, id, "{}");
  } else if (!strcmp(op, "remove")) do_remove(id, path, json_bool(req, "recursive", false));
  else if (!strcmp(op, "read")) open_read(id, path);
  else if (!strcmp(op, "write")) open_write(id, req, path);
  else proto_send_error(id, "invalidArgument", "unknown operation", NULL);
}

/* With `owner`, what the request creates belongs to that guest user (E2B's
 * envd acts for a user this way: with its own rights, the user's ownership). */
void files_request(uint32_t id, const char *op, const struct json_obj *req) {
  const char *name = json_str(req, "owner", NULL);
  if (!name || !*name) {
    do_request(id, op, req);
    return;
  }
  struct ident who;
  char err[256];
  if (resolve_user(name, &who, err, sizeof err) < 0) {
    proto_send_error(id, "invalidArgument", err, NULL);
    return;
  }
  owner = &who;
  do_request(id, op, req);
  owner = NULL;
}

void files_pump(struct chan *c) {
  if (c->dead || c->type != CH_READ) return;
  /* Keep the output queue short so other channels' frames are not stuck behind it. */
  while (c->credit > 0 && proto_out_pending() < 2 * DATA_CHUNK) {
    size_t want = c->credit < DATA_CHUNK ? (size_t)c->credit : DATA_CHUNK;
    ssize_t n = read(c->file_fd, proto_frame_reserve(want), want);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) { proto_send_errno(c->id, errno, "read", NULL); files_close(c); return; }
    if (n == 0) {
      char done[64];
      snprintf(done, sizeof done, "{\"size\":%llu}", (unsigned long long)c->bytes);
      proto_send_json(K_DONE, c->id, done);
      files_close(c);
      return;
    }
    proto_frame_commit(K_DATA, c->id, n);
    c->credit -= n;
    c->bytes += n;
  }
}

static const char *write_name(struct chan *c) {
  for (struct pending_write *p = pending_writes; p; p = p->next)
    if (p->c == c) return p->final;
  return NULL;
}

void files_data(struct chan *c, const uint8_t *p, size_t n) {
  size_t off = 0;
  while (off < n) {
    ssize_t w = write(c->file_fd, p + off, n - off);
    if (w < 0 && errno == EINTR) continue;
    if (w < 0) { proto_send_errno(c->id, errno, "write", write_name(c)); files_close(c); return; }
    off += w;
  }
  c->bytes += n;
  chan_consumed(c, n, false);
}

void files_eof(struct chan *c) {
  struct pending_write *p = pending_take(c);
  int err = close(c->file_fd) < 0 ? errno : 0;
  c->file_fd = -1;
  if (!err && p && p->tmp) {
    if (rename(p->tmp, p->dest) < 0) err = errno;
    else { free(p->tmp); p->tmp = NULL; }
  }
  if (err) proto_send_errno(c->id, err, "write", p ? p->final : NULL);
  else {
    char done[64];
    snprintf(done, sizeof done, "{\"size\":%llu}", (unsigned long long)c->bytes);
    proto_send_json(K_DONE, c->id, done);
  }
  pending_free(p); /* unlinks the temporary file when it was not renamed */
  files_close(c);
}

void files_close(struct chan *c) {
  pending_free(pending_take(c));
  if (c->file_fd >= 0) close(c->file_fd);
  c->file_fd = -1;
  c->dead = true;
}
