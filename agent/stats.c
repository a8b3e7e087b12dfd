/* The guest's view of its own resources, for the host's metrics. */
#include <ctype.h>
#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/statvfs.h>

#include "json.h"
#include "proto.h"
#include "stats.h"

static double meminfo_kib(const char *key) {
  FILE *f = fopen("/proc/meminfo", "r");
  if (!f) return 0;
  char line[256];
  double v = 0;
  size_t kl = strlen(key);
  while (fgets(line, sizeof line, f)) {
    if (!strncmp(line, key, kl) && line[kl] == ':') { v = strtod(line + kl + 1, NULL); break; }
  }
  fclose(f);
  return v;
}

static int count_processes(void) {
  DIR *d = opendir("/proc");
  if (!d) return 0;
  int n = 0;
  struct dirent *e;
  while ((e = readdir(d)))
    if (isdigit((unsigned char)e->d_name[0])) n++;
  closedir(d);
  return n;
}

void stats_request(uint32_t id) {
  struct jw w;
  jw_begin(&w);
  double total = meminfo_kib("MemTotal"), avail = meminfo_kib("MemAvailable");
  jw_key_num(&w, "memTotalBytes", total * 1024);
  jw_key_num(&w, "memUsedBytes", (total - avail) * 1024);
  struct statvfs vfs;
  if (statvfs("/", &vfs) == 0) {
    jw_key_num(&w, "diskTotalBytes", (double)vfs.f_blocks * vfs.f_frsize);
    jw_key_num(&w, "diskUsedBytes", (double)(vfs.f_blocks - vfs.f_bfree) * vfs.f_frsize);
  }
  jw_key_num(&w, "processes", count_processes());
  proto_send_json(K_DONE, id, jw_end(&w));
  jw_free(&w);
}
