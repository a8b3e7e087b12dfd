#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/resource.h>

#include "limits.h"

static const struct { const char *name; int resource; } NAMES[] = {
  {"as", RLIMIT_AS},         {"core", RLIMIT_CORE},       {"cpu", RLIMIT_CPU},         {"data", RLIMIT_DATA},
  {"fsize", RLIMIT_FSIZE},   {"locks", RLIMIT_LOCKS},     {"memlock", RLIMIT_MEMLOCK}, {"msgqueue", RLIMIT_MSGQUEUE},
  {"nice", RLIMIT_NICE},     {"nofile", RLIMIT_NOFILE},   {"nproc", RLIMIT_NPROC},     {"rss", RLIMIT_RSS},
  {"rtprio", RLIMIT_RTPRIO}, {"rttime", RLIMIT_RTTIME},   {"sigpending", RLIMIT_SIGPENDING}, {"stack", RLIMIT_STACK},
};

static rlim_t value(long long v) { return v < 0 ? RLIM_INFINITY : (rlim_t)v; }

/* "nofile=4096:8192" → resource and limits; -1 when it does not parse. */
static int parse(const char *spec, int *resource, struct rlimit *rl) {
  const char *eq = strchr(spec, '=');
  if (!eq) return -1;
  size_t len = (size_t)(eq - spec);
  *resource = -1;
  for (size_t i = 0; i < sizeof NAMES / sizeof NAMES[0]; i++)
    if (strlen(NAMES[i].name) == len && !strncmp(NAMES[i].name, spec, len)) *resource = NAMES[i].resource;
  if (*resource < 0) return -1;
  char *end;
  long long soft = strtoll(eq + 1, &end, 10);
  if (*end != ':') return -1;
  long long hard = strtoll(end + 1, &end, 10);
  if (*end) return -1;
  rl->rlim_cur = value(soft);
  rl->rlim_max = value(hard);
  return rl->rlim_cur > rl->rlim_max ? -1 : 0;
}

int limits_check(char **specs, size_t n, char *err, size_t errlen) {
  for (size_t i = 0; i < n; i++) {
    int r;
    struct rlimit rl;
    if (parse(specs[i], &r, &rl) < 0) {
      snprintf(err, errlen, "rlimit '%s': expected NAME=SOFT:HARD with a known name and soft <= hard", specs[i]);
      return -1;
    }
  }
  return 0;
}

int limits_apply(char **specs, size_t n) {
  for (size_t i = 0; i < n; i++) {
    int r;
    struct rlimit rl;
    if (parse(specs[i], &r, &rl) < 0) { errno = EINVAL; return -1; }
    if (setrlimit(r, &rl) < 0) return -1;
  }
  return 0;
}

uint64_t limits_caps_of(double requested) {
  /* A mask past 2^53 does not come through JSON's numbers: take it as unset. */
  if (!(requested >= 0) || requested > 9007199254740991.0) return LIMITS_DEFAULT_CAPS;
  return (uint64_t)requested;
}

int limits_drop_caps(uint64_t keep) {
  for (int cap = 0; cap < 64; cap++) {
    if (keep & (1ull << cap)) continue;
    if (prctl(PR_CAPBSET_DROP, cap, 0, 0, 0) < 0) {
      if (errno == EINVAL) return 0; /* past the kernel's last capability */
      return -1;
    }
  }
  return 0;
}
