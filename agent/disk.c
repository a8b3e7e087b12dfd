/* Online growth with EXT4_IOC_RESIZE_FS, as resize2fs does on a mounted file
 * system: the guest needs no e2fsprogs. The superblock says how big the file
 * system is, so a disk of the image's own size costs one cached read. */
#include <errno.h>
#include <fcntl.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/ioctl.h>
#include <unistd.h>

#include "disk.h"

/* From <linux/fs.h> and ext4.h, which musl-gcc does not see. */
#define BLKGETSIZE64 _IOR(0x12, 114, size_t)
#define EXT4_IOC_RESIZE_FS _IOW('f', 16, uint64_t)
#define EXT4_SUPER_MAGIC 0xEF53
#define EXT4_FEATURE_INCOMPAT_64BIT 0x80

static uint32_t le32(const uint8_t *p) { return p[0] | p[1] << 8 | p[2] << 16 | (uint32_t)p[3] << 24; }

int disk_grow_ext4(const char *dev, const char *mnt) {
  int fd = open(dev, O_RDONLY | O_CLOEXEC);
  if (fd < 0) return -1;
  uint64_t dev_bytes = 0;
  uint8_t sb[1024];
  int ok = ioctl(fd, BLKGETSIZE64, &dev_bytes) == 0 && pread(fd, sb, sizeof sb, 1024) == (ssize_t)sizeof sb;
  int e = errno;
  close(fd);
  if (!ok) { errno = e; return -1; }
  if ((sb[0x38] | sb[0x39] << 8) != EXT4_SUPER_MAGIC) { errno = EINVAL; return -1; }
  uint64_t block = 1024ull << le32(sb + 0x18);
  uint64_t blocks = le32(sb + 0x4);
  if (le32(sb + 0x60) & EXT4_FEATURE_INCOMPAT_64BIT) blocks |= (uint64_t)le32(sb + 0x150) << 32;
  uint64_t want = dev_bytes / block;
  if (want <= blocks) return 0;
  int dir = open(mnt, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (dir < 0) return -1;
  int r = ioctl(dir, EXT4_IOC_RESIZE_FS, &want);
  e = errno;
  close(dir);
  errno = e;
  return r;
}
