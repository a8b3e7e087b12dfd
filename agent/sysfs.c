#include <fcntl.h>
#include <stdio.h>
#include <unistd.h>

#include "sysfs.h"

ssize_t sysfs_read(const char *dir, const char *entry, const char *attr, char *out, size_t cap) {
  char path[512];
  if (snprintf(path, sizeof path, "%s/%s/%s", dir, entry, attr) >= (int)sizeof path) return -1;
  int fd = open(path, O_RDONLY | O_CLOEXEC);
  if (fd < 0) return -1;
  ssize_t n = read(fd, out, cap - 1);
  close(fd);
  if (n < 0) return -1;
  while (n > 0 && (out[n - 1] == '\n' || out[n - 1] == ' ')) n--;
  out[n] = 0;
  return n;
}
