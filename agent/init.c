/* PID 1 duties: mount the kernel filesystems and the root disk, switch into
 * the image's root, and power the VM off when asked. */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <net/if.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mount.h>
#include <sys/reboot.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include "disk.h"
#include "init.h"
#include "log.h"
#include "sysfs.h"

#define NEWROOT "/newroot"
#define PORT_NAME "vmbox.agent"

static char cmdline[4096];

/* Value of `key=` on the kernel command line, or NULL. */
static const char *cmdline_get(const char *key, char *out, size_t outlen) {
  size_t kl = strlen(key);
  for (char *p = cmdline; *p;) {
    while (*p == ' ' || *p == '\n') p++;
    char *end = p;
    while (*end && *end != ' ' && *end != '\n') end++;
    if ((size_t)(end - p) > kl && !strncmp(p, key, kl) && p[kl] == '=') {
      size_t n = end - p - kl - 1;
      if (n >= outlen) n = outlen - 1;
      memcpy(out, p + kl + 1, n);
      out[n] = 0;
      return out;
    }
    p = end;
  }
  return NULL;
}

static void mount_or_log(const char *src, const char *dst, const char *type, unsigned long flags, const char *data) {
  mkdir(dst, 0755);
  if (mount(src, dst, type, flags, data) < 0 && errno != EBUSY)
    log_msg("mount %s on %s: %s", type, dst, strerror(errno));
}

static void loopback_up(void) {
  int s = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
  if (s < 0) return;
  struct ifreq ifr = {0};
  strcpy(ifr.ifr_name, "lo");
  if (ioctl(s, SIOCGIFFLAGS, &ifr) == 0) {
    ifr.ifr_flags |= IFF_UP;
    ioctl(s, SIOCSIFFLAGS, &ifr);
  }
  close(s);
}

int init_system(void) {
  mount_or_log("devtmpfs", "/dev", "devtmpfs", MS_NOSUID, "mode=0755");
  mount_or_log("proc", "/proc", "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC, NULL);
  mount_or_log("sysfs", "/sys", "sysfs", MS_NOSUID | MS_NODEV | MS_NOEXEC, NULL);

  int fd = open("/dev/console", O_RDWR | O_CLOEXEC);
  if (fd >= 0) {
    dup2(fd, 1);
    dup2(fd, 2);
    if (fd > 2) close(fd);
  }
  int cfd = open("/proc/cmdline", O_RDONLY | O_CLOEXEC);
  if (cfd >= 0) {
    ssize_t n = read(cfd, cmdline, sizeof cmdline - 1);
    cmdline[n > 0 ? n : 0] = 0;
    close(cfd);
  }

  char root[256], rootfs[32];
  char level[16];
  if (cmdline_get("vmbox.loglevel", level, sizeof level)) log_set_level(level);
  if (!cmdline_get("vmbox.root", root, sizeof root)) strcpy(root, "/dev/vda");
  if (!cmdline_get("vmbox.rootfs", rootfs, sizeof rootfs)) strcpy(rootfs, "ext4");
  mkdir(NEWROOT, 0755);
  /* noinit_itable: never start ext4lazyinit, which would compete with the
   * first commands for the CPU (images are built with their tables zeroed).
   * A 9p root is a host directory the host exports under the tag `root`. */
  const char *data = !strcmp(rootfs, "ext4") ? "noinit_itable"
                     : !strcmp(rootfs, "9p") ? "trans=virtio,version=9p2000.L,msize=262144,cache=mmap"
                                             : NULL;
  if (mount(root, NEWROOT, rootfs, 0, data) < 0) {
    log_msg("cannot mount root %s (%s): %s", root, rootfs, strerror(errno));
    return -1;
  }
  /* A host directory need not have the mount points the system moves in. */
  mkdir(NEWROOT "/dev", 0755);
  mkdir(NEWROOT "/proc", 0555);
  mkdir(NEWROOT "/sys", 0555);
  if (!strcmp(rootfs, "ext4") && disk_grow_ext4(root, NEWROOT) < 0)
    log_msg("cannot grow the root file system to its disk: %s", strerror(errno)); /* it still works at its old size */
  /* Move the kernel filesystems into the image root, then make it `/`
   * (switch_root without deleting the initramfs: it is a few hundred KiB). */
  mount_or_log("/dev", NEWROOT "/dev", NULL, MS_MOVE, NULL);
  mount_or_log("/proc", NEWROOT "/proc", NULL, MS_MOVE, NULL);
  mount_or_log("/sys", NEWROOT "/sys", NULL, MS_MOVE, NULL);
  if (chdir(NEWROOT) < 0 || mount(".", "/", NULL, MS_MOVE, NULL) < 0 || chroot(".") < 0 || chdir("/") < 0) {
    log_msg("switch root: %s", strerror(errno));
    return -1;
  }
  mount_or_log("devpts", "/dev/pts", "devpts", MS_NOSUID | MS_NOEXEC, "gid=5,mode=620,ptmxmode=666");
  mount_or_log("tmpfs", "/dev/shm", "tmpfs", MS_NOSUID | MS_NODEV, "mode=1777");
  mount_or_log("tmpfs", "/run", "tmpfs", MS_NOSUID | MS_NODEV, "mode=0755");
  symlink("/proc/self/fd", "/dev/fd");
  symlink("/proc/self/fd/0", "/dev/stdin");
  symlink("/proc/self/fd/1", "/dev/stdout");
  symlink("/proc/self/fd/2", "/dev/stderr");

  char host[65];
  if (cmdline_get("vmbox.hostname", host, sizeof host)) sethostname(host, strlen(host));
  loopback_up();
  return 0;
}

/* The port's device node is /dev/vportNpM; its name is only in sysfs
 * (there is no udev to make /dev/virtio-ports/NAME). */
int init_agent_port(void) {
  for (int attempt = 0; attempt < 2000; attempt++) {
    DIR *d = opendir("/sys/class/virtio-ports");
    struct dirent *e;
    while (d && (e = readdir(d))) {
      if (e->d_name[0] == '.') continue;
      char path[300], name[64];
      if (sysfs_read("/sys/class/virtio-ports", e->d_name, "name", name, sizeof name) < 0 || strcmp(name, PORT_NAME)) continue;
      snprintf(path, sizeof path, "/dev/%s", e->d_name);
      closedir(d);
      return open(path, O_RDWR | O_NONBLOCK | O_CLOEXEC);
    }
    if (d) closedir(d);
    usleep(1000);
  }
  errno = ENOENT;
  return -1;
}

/* Without ACPI a power-off only halts the CPU; the kernel runs with
 * `reboot=t` and QEMU with -no-reboot, so a reboot ends the QEMU process. */
/* Disks mounted besides the root (volumes, disk images), unmounted last first so each is left clean. */
static void unmount_disks(void) {
  FILE *f = fopen("/proc/self/mounts", "re");
  if (!f) return;
  char line[1024], points[32][256];
  int n = 0;
  while (n < 32 && fgets(line, sizeof line, f)) {
    char dev[256], point[256];
    if (sscanf(line, "%255s %255s", dev, point) == 2 && !strncmp(dev, "/dev/vd", 7) && strcmp(point, "/")) snprintf(points[n++], 256, "%s", point);
  }
  fclose(f);
  while (n-- > 0) {
    char *p = points[n], *w = p; /* the mounts table writes a space as \040 */
    for (char *r = p; *r; r++, w++) {
      if (r[0] == '\\' && r[1] >= '0' && r[1] <= '3' && r[2] >= '0' && r[2] <= '7' && r[3] >= '0' && r[3] <= '7') {
        *w = (char)((r[1] - '0') * 64 + (r[2] - '0') * 8 + (r[3] - '0'));
        r += 3;
      } else *w = *r;
    }
    *w = 0;
    /* Processes just killed may still hold it for a moment; a read-only remount is the fallback. */
    int tries = 0;
    while (umount2(p, 0) < 0 && errno == EBUSY && ++tries < 50) usleep(10000);
    if (tries >= 50) mount(NULL, p, NULL, MS_REMOUNT | MS_RDONLY, NULL);
  }
}

void init_power_off(void) {
  kill(-1, SIGKILL);
  sync();
  unmount_disks();
  mount(NULL, "/", NULL, MS_REMOUNT | MS_RDONLY, NULL);
  reboot(RB_AUTOBOOT);
  _exit(0);
}
