#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/stat.h>

#include "mounts.h"
#include "proto.h"

/* Makes `path` and its parents, as root, mode 0755 (a mount point's own mode is hidden by the mount). */
static int make_dirs(const char *path) {
  char tmp[4096];
  if (snprintf(tmp, sizeof tmp, "%s", path) >= (int)sizeof tmp) { errno = ENAMETOOLONG; return -1; }
  for (char *p = tmp + 1;; p++) {
    if (*p != '/' && *p != 0) continue;
    char c = *p;
    *p = 0;
    if (mkdir(tmp, 0755) < 0 && errno != EEXIST) return -1;
    if (c == 0) break;
    *p = c;
  }
  struct stat st;
  if (stat(path, &st) < 0) return -1;
  if (!S_ISDIR(st.st_mode)) { errno = ENOTDIR; return -1; }
  return 0;
}

/* {"op":"mount","fstype":"9p"|"tmpfs","source":TAG,"target":PATH,"flags":["ro","noexec","nosuid","nodev"],"data":OPTIONS} */
void mounts_request(uint32_t id, const struct json_obj *req) {
  const char *fstype = json_str(req, "fstype", NULL), *source = json_str(req, "source", "none");
  const char *target = json_str(req, "target", NULL), *data = json_str(req, "data", NULL);
  const struct json_field *flags = json_get(req, "flags");
  if (!fstype || (strcmp(fstype, "9p") && strcmp(fstype, "tmpfs"))) {
    proto_send_error(id, "invalidArgument", "mount: fstype must be 9p or tmpfs", target);
    return;
  }
  if (!target || target[0] != '/') {
    proto_send_error(id, "invalidArgument", "mount: target must be an absolute path", target);
    return;
  }
  unsigned long mf = 0;
  for (size_t i = 0; flags && flags->type == J_STRARR && i < flags->arr_len; i++) {
    const char *f = flags->arr[i];
    if (!strcmp(f, "ro")) mf |= MS_RDONLY;
    else if (!strcmp(f, "noexec")) mf |= MS_NOEXEC;
    else if (!strcmp(f, "nosuid")) mf |= MS_NOSUID;
    else if (!strcmp(f, "nodev")) mf |= MS_NODEV;
    else {
      proto_send_error(id, "invalidArgument", "mount: flags are ro, noexec, nosuid, nodev", target);
      return;
    }
  }
  if (make_dirs(target) < 0) { proto_send_errno(id, errno, "mount point", target); return; }
  if (mount(source, target, fstype, mf, data) < 0) { proto_send_errno(id, errno, "mount", target); return; }
  proto_send_json(K_DONE, id, "{}");
}
