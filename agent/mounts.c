#include <dirent.h>
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/stat.h>

#include "mounts.h"
#include "proto.h"
#include "sysfs.h"

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

/* The virtio disk whose serial is `serial` (/sys/block/vdX/serial), as /dev/vdX; -1 when none is. */
static int disk_by_serial(const char *serial, char *dev, size_t cap) {
  DIR *d = opendir("/sys/block");
  if (!d) return -1;
  struct dirent *e;
  int found = -1;
  while (found < 0 && (e = readdir(d))) {
    if (strncmp(e->d_name, "vd", 2)) continue;
    char buf[128];
    if (sysfs_read("/sys/block", e->d_name, "serial", buf, sizeof buf) > 0 && !strcmp(buf, serial)) {
      snprintf(dev, cap, "/dev/%s", e->d_name);
      found = 0;
    }
  }
  closedir(d);
  return found;
}

/* The filesystems a disk is tried with when none is named: those this guest kernel has. */
static const char *const PROBED[] = {"ext4", NULL};

static int mount_block(const char *dev, const char *target, unsigned long mf, const char *fstype) {
  /* Read-only on a read-only disk: ext4 must not replay a journal there (another sandbox may be writing it). */
  const char *data = mf & MS_RDONLY ? "noload" : NULL;
  if (fstype && *fstype) return mount(dev, target, fstype, mf, strncmp(fstype, "ext", 3) ? NULL : data);
  for (const char *const *t = PROBED; *t; t++) {
    if (mount(dev, target, *t, mf, data) == 0) return 0;
    if (errno != EINVAL) return -1; /* not "not this filesystem": say why */
  }
  errno = EINVAL;
  return -1;
}

/* {"op":"mount","fstype":"9p"|"tmpfs"|"block","source":TAG|SERIAL,"target":PATH,"flags":["ro","noexec","nosuid","nodev"],"data":OPTIONS|FSTYPE} */
void mounts_request(uint32_t id, const struct json_obj *req) {
  const char *fstype = json_str(req, "fstype", NULL), *source = json_str(req, "source", "none");
  const char *target = json_str(req, "target", NULL), *data = json_str(req, "data", NULL);
  const struct json_field *flags = json_get(req, "flags");
  if (!fstype || (strcmp(fstype, "9p") && strcmp(fstype, "tmpfs") && strcmp(fstype, "block"))) {
    proto_send_error(id, "invalidArgument", "mount: fstype must be 9p, tmpfs or block", target);
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
  if (!strcmp(fstype, "block")) {
    char dev[300];
    if (disk_by_serial(source, dev, sizeof dev) < 0) {
      proto_send_error(id, "notFound", "mount: no virtio disk with that serial", source);
      return;
    }
    if (mount_block(dev, target, mf, data) < 0) {
      if (errno == EINVAL)
        proto_send_error(id, "invalidArgument", "mount: the disk holds no filesystem this guest knows (ext2, ext3, ext4): format it, or give another disk", target);
      else proto_send_errno(id, errno, "mount", target);
      return;
    }
    proto_send_json(K_DONE, id, "{}");
    return;
  }
  if (mount(source, target, fstype, mf, data) < 0) { proto_send_errno(id, errno, "mount", target); return; }
  proto_send_json(K_DONE, id, "{}");
}
