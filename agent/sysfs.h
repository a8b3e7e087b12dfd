/* Small sysfs attribute files (a port's name, a disk's serial). */
#ifndef VMBOX_SYSFS_H
#define VMBOX_SYSFS_H

#include <stddef.h>
#include <sys/types.h>

/* `dir/entry/attr` into `out` (NUL-terminated, trailing newline and spaces cut): its length, or -1. */
ssize_t sysfs_read(const char *dir, const char *entry, const char *attr, char *out, size_t cap);

#endif
