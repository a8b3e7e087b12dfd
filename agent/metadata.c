#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <sys/xattr.h>

#include "metadata.h"

#define META_PREFIX "user.e2b."
#define META_PREFIX_LEN (sizeof META_PREFIX - 1)

void add_metadata(struct jw *w, const char *path) {
  char names[8192];
  ssize_t n = llistxattr(path, names, sizeof names);
  if (n <= 0) return;
  struct jw m;
  jw_begin(&m);
  int count = 0;
  for (char *k = names; k < names + n; k += strlen(k) + 1) {
    if (strncmp(k, META_PREFIX, META_PREFIX_LEN)) continue;
    char val[4096];
    ssize_t vn = lgetxattr(path, k, val, sizeof val - 1);
    if (vn < 0) continue;
    val[vn] = 0;
    jw_key_str(&m, k + META_PREFIX_LEN, val);
    count++;
  }
  if (count) jw_key_raw(w, "metadata", jw_end(&m));
  jw_free(&m);
}

/* The file's user.e2b.* attributes become `meta` ("KEY=value" strings); -1 with errno. */
int replace_metadata(int fd, const struct json_field *meta) {
  char names[8192];
  ssize_t n = flistxattr(fd, names, sizeof names);
  for (char *k = names; n > 0 && k < names + n; k += strlen(k) + 1)
    if (!strncmp(k, META_PREFIX, META_PREFIX_LEN)) fremovexattr(fd, k);
  for (size_t i = 0; i < meta->arr_len; i++) {
    const char *kv = meta->arr[i], *eq = strchr(kv, '=');
    char name[256];
    if (!eq || eq == kv || snprintf(name, sizeof name, META_PREFIX "%.*s", (int)(eq - kv), kv) >= (int)sizeof name) {
      errno = EINVAL;
      return -1;
    }
    if (fsetxattr(fd, name, eq + 1, strlen(eq + 1), 0) < 0) return -1;
  }
  return 0;
}

