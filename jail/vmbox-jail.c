/* vmbox-jail: starts one QEMU the way Firecracker's jailer starts Firecracker.
 *
 *   vmbox-jail --root DIR --uid U --gid G [--group G2]... [--cap NAME]...
 *              [--net] [--ro PATH]... [--rw PATH]... [--dev NAME]...
 *              [--nofile N] [--nproc N] -- QEMU ARG...
 *
 * Run as root by the vmbox server (which moves the QEMU into its cgroups once it
 * runs: a move waits out an RCU grace period, better not spent before the start), it
 *   1. enters a new mount namespace (and, with --net, an empty network namespace);
 *   2. builds a root of its own on a tmpfs mounted at DIR: /usr, the libraries'
 *      cache and the named /dev nodes read-only, /proc showing only its own
 *      processes, and each --ro/--rw PATH at the same path, so QEMU's command
 *      line is the same inside as out; then makes that root the only one;
 *   3. sets its resource limits, leaves root for U:G (keeping only the named
 *      capabilities, as ambient ones), sets no_new_privs, and executes QEMU.
 * QEMU keeps this pid: the server knows it as the VM's pid from the start.
 * Any failure is one line on stderr (QEMU's log) and exit status 125. */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <linux/capability.h>
#include <sched.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#define MAX_ITEMS 64

static void die(const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  fputs("vmbox-jail: ", stderr);
  vfprintf(stderr, fmt, ap);
  fprintf(stderr, ": %s\n", strerror(errno));
  va_end(ap);
  exit(125);
}

static const char *CAP_NAMES[] = {"chown", "dac_override", "dac_read_search", "fowner", "fsetid", "kill", "setgid", "setuid"};

static int cap_number(const char *name) {
  for (int i = 0; i < (int)(sizeof CAP_NAMES / sizeof CAP_NAMES[0]); i++)
    if (!strcmp(CAP_NAMES[i], name)) return i;
  errno = EINVAL;
  die("unknown capability %s", name);
  return -1;
}

/* mkdir -p of `path`'s directories inside the new root (they live on its tmpfs). */
static void make_parents(char *path) {
  for (char *p = path + 1; *p; p++) {
    if (*p != '/') continue;
    *p = 0;
    if (mkdir(path, 0755) < 0 && errno != EEXIST) die("mkdir %s", path);
    *p = '/';
  }
}

/* Binds host `src` at the same path under `root`, read-only unless `rw`. */
static void bind(const char *root, const char *src, int rw) {
  char target[4096];
  if (snprintf(target, sizeof target, "%s%s", root, src) >= (int)sizeof target) { errno = ENAMETOOLONG; die("bind %s", src); }
  struct stat st;
  if (stat(src, &st) < 0) die("stat %s", src);
  make_parents(target);
  if (S_ISDIR(st.st_mode)) {
    if (mkdir(target, 0755) < 0 && errno != EEXIST) die("mkdir %s", target);
  } else {
    int fd = open(target, O_WRONLY | O_CREAT | O_CLOEXEC, 0600);
    if (fd < 0) die("mount point %s", target);
    close(fd);
  }
  if (mount(src, target, NULL, MS_BIND | MS_REC, NULL) < 0) die("bind %s", src);
  unsigned long flags = MS_REMOUNT | MS_BIND | MS_NOSUID | MS_NODEV | (rw ? 0 : MS_RDONLY);
  /* Device nodes keep their meaning; everything else loses set-user-id and devices. */
  if (S_ISCHR(st.st_mode)) flags &= ~(unsigned long)MS_NODEV;
  if (mount(NULL, target, NULL, flags, NULL) < 0) die("remount %s", src);
}

/* /lib, /bin … are links into /usr on a merged-/usr host (made the same), else directories (bound). */
static void system_dir(const char *root, const char *name) {
  char link[256], target[4096];
  ssize_t n = readlink(name, link, sizeof link - 1);
  snprintf(target, sizeof target, "%s%s", root, name);
  if (n > 0) {
    link[n] = 0;
    if (symlink(link, target) < 0) die("symlink %s", target);
  } else if (access(name, F_OK) == 0) bind(root, name, 0);
}

/* Sets a limit, soft and hard; where the host's hard limit is lower and cannot be
 * raised (no CAP_SYS_RESOURCE, as in some containers), the host's is kept. */
static void cap_limit(int resource, rlim_t value, const char *name) {
  struct rlimit now;
  if (getrlimit(resource, &now) < 0) die("%s limit", name);
  if (value > now.rlim_max && setrlimit(resource, &(struct rlimit){value, value}) == 0) return;
  if (value > now.rlim_max) value = now.rlim_max;
  if (setrlimit(resource, &(struct rlimit){value, value}) < 0) die("%s limit", name);
}

int main(int argc, char **argv) {
  const char *root = NULL, *ro[MAX_ITEMS], *rw[MAX_ITEMS], *devs[MAX_ITEMS];
  int nro = 0, nrw = 0, ndev = 0, ncap = 0, ngroups = 0, net = 0, caps[MAX_ITEMS];
  gid_t groups[MAX_ITEMS];
  long uid = -1, gid = -1, nofile = 0, nproc = 0;
  int i = 1;
  for (; i < argc && strcmp(argv[i], "--"); i++) {
    const char *opt = argv[i], *val = i + 1 < argc ? argv[i + 1] : NULL;
    if (!strcmp(opt, "--net")) { net = 1; continue; }
    if (!val || nro == MAX_ITEMS || nrw == MAX_ITEMS || ndev == MAX_ITEMS || ncap == MAX_ITEMS || ngroups == MAX_ITEMS) {
      errno = EINVAL;
      die("bad option %s", opt);
    }
    i++;
    if (!strcmp(opt, "--root")) root = val;
    else if (!strcmp(opt, "--uid")) uid = atol(val);
    else if (!strcmp(opt, "--gid")) gid = atol(val);
    else if (!strcmp(opt, "--group")) groups[ngroups++] = (gid_t)atol(val);
    else if (!strcmp(opt, "--cap")) caps[ncap++] = cap_number(val);
    else if (!strcmp(opt, "--ro")) ro[nro++] = val;
    else if (!strcmp(opt, "--rw")) rw[nrw++] = val;
    else if (!strcmp(opt, "--dev")) devs[ndev++] = val;
    else if (!strcmp(opt, "--nofile")) nofile = atol(val);
    else if (!strcmp(opt, "--nproc")) nproc = atol(val);
    else { errno = EINVAL; die("unknown option %s", opt); }
  }
  if (i + 1 >= argc || !root || uid <= 0 || gid <= 0) { errno = EINVAL; die("usage: --root DIR --uid U --gid G … -- QEMU ARG…"); }
  char **qemu = argv + i + 1;

  if (unshare(CLONE_NEWNS | (net ? CLONE_NEWNET : 0)) < 0) die("unshare");
  if (mount(NULL, "/", NULL, MS_REC | MS_PRIVATE, NULL) < 0) die("making mounts private");
  if (mount("vmbox-jail", root, "tmpfs", MS_NOSUID | MS_NODEV, "mode=0755,size=64k") < 0) die("tmpfs at %s", root);
  bind(root, "/usr", 0);
  if (access("/etc/ld.so.cache", F_OK) == 0) bind(root, "/etc/ld.so.cache", 0);
  system_dir(root, "/lib");
  system_dir(root, "/lib64");
  system_dir(root, "/bin");
  system_dir(root, "/sbin");
  for (int k = 0; k < ndev; k++) {
    char dev[64];
    snprintf(dev, sizeof dev, "/dev/%s", devs[k]);
    bind(root, dev, 1);
  }
  char proc[4096];
  snprintf(proc, sizeof proc, "%s/proc", root);
  if (mkdir(proc, 0555) < 0) die("mkdir %s", proc);
  /* QEMU's 9p server reaches files through /proc/self/fd; it sees no other process. */
  if (mount("proc", proc, "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC, "hidepid=invisible,subset=pid") < 0 &&
      mount("proc", proc, "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC, "hidepid=2") < 0)
    die("proc");
  for (int k = 0; k < nro; k++) bind(root, ro[k], 0);
  for (int k = 0; k < nrw; k++) bind(root, rw[k], 1);
  /* Nothing more is made in the root itself. */
  if (mount(NULL, root, NULL, MS_REMOUNT | MS_RDONLY | MS_NOSUID | MS_NODEV, "mode=0755") < 0) die("read-only root");
  if (chdir(root) < 0) die("chdir %s", root);
  if (syscall(SYS_pivot_root, ".", ".") < 0) die("pivot_root");
  if (umount2(".", MNT_DETACH) < 0) die("detaching the host's root");
  if (chdir("/") < 0) die("chdir /");

  struct rlimit none = {0, 0};
  setrlimit(RLIMIT_CORE, &none);
  if (nofile > 0) cap_limit(RLIMIT_NOFILE, (rlim_t)nofile, "nofile");
  if (nproc > 0) cap_limit(RLIMIT_NPROC, (rlim_t)nproc, "nproc");

  /* Only the named capabilities stay possible at all, then the identity changes with them kept. */
  unsigned long long keep = 0;
  for (int k = 0; k < ncap; k++) keep |= 1ull << caps[k];
  for (int cap = 0; cap < 64; cap++)
    if (!(keep & (1ull << cap)) && prctl(PR_CAPBSET_DROP, cap, 0, 0, 0) < 0 && errno != EINVAL) die("dropping capability %d", cap);
  if (ncap && prctl(PR_SET_KEEPCAPS, 1, 0, 0, 0) < 0) die("keepcaps");
  if (setgroups((size_t)ngroups, groups) < 0) die("setgroups");
  if (setresgid((gid_t)gid, (gid_t)gid, (gid_t)gid) < 0) die("setgid %ld", gid);
  if (setresuid((uid_t)uid, (uid_t)uid, (uid_t)uid) < 0) die("setuid %ld", uid);
  if (ncap) {
    struct __user_cap_header_struct hdr = {_LINUX_CAPABILITY_VERSION_3, 0};
    struct __user_cap_data_struct data[2] = {{0}};
    for (int k = 0; k < ncap; k++) {
      data[caps[k] / 32].effective |= 1u << (caps[k] % 32);
      data[caps[k] / 32].permitted |= 1u << (caps[k] % 32);
      data[caps[k] / 32].inheritable |= 1u << (caps[k] % 32);
    }
    if (syscall(SYS_capset, &hdr, data) < 0) die("capset");
    for (int k = 0; k < ncap; k++)
      if (prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_RAISE, caps[k], 0, 0) < 0) die("ambient capability %s", CAP_NAMES[caps[k]]);
  }
  if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) < 0) die("no_new_privs");
  execv(qemu[0], qemu);
  die("exec %s", qemu[0]);
}
