/* Limits for the processes the agent starts: resource limits as "NAME=SOFT:HARD"
 * strings (setrlimit's names without RLIMIT_, lower case; -1 is unlimited), and
 * the capabilities they may ever hold. */
#ifndef VMBOX_LIMITS_H
#define VMBOX_LIMITS_H

#include <stddef.h>
#include <stdint.h>

/* 0 when every string names a limit with numbers, soft <= hard; -1 with `err` filled otherwise. */
int limits_check(char **specs, size_t n, char *err, size_t errlen);
/* In the child, before dropping privileges (raising a hard limit needs root): -1 with errno on failure. */
int limits_apply(char **specs, size_t n);

/* Docker's default capability set (CHOWN, DAC_OVERRIDE, FSETID, FOWNER, MKNOD,
 * NET_RAW, SETGID, SETUID, SETFCAP, SETPCAP, NET_BIND_SERVICE, SYS_CHROOT, KILL,
 * AUDIT_WRITE): what a command keeps when the host names no other set. Without
 * CAP_SYS_PTRACE a command cannot reach the agent's memory or descriptors. */
#define LIMITS_DEFAULT_CAPS                                                                                          \
  ((1ull << 0) | (1ull << 1) | (1ull << 3) | (1ull << 4) | (1ull << 5) | (1ull << 6) | (1ull << 7) | (1ull << 8) | \
   (1ull << 10) | (1ull << 13) | (1ull << 18) | (1ull << 27) | (1ull << 29) | (1ull << 31))

/* The "caps" field of a request (a bit per capability number), else the default set. */
uint64_t limits_caps_of(double requested);
/* In the child, before exec: every capability outside `keep` leaves the bounding
 * set, so no program it runs, root or set-user-id, gains it. -1 with errno on failure. */
int limits_drop_caps(uint64_t keep);

#endif
