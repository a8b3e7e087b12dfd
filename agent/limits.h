/* Resource limits for the processes the agent starts: "NAME=SOFT:HARD"
 * strings (setrlimit's names without RLIMIT_, lower case; -1 is unlimited). */
#ifndef VMBOX_LIMITS_H
#define VMBOX_LIMITS_H

#include <stddef.h>

/* 0 when every string names a limit with numbers, soft <= hard; -1 with `err` filled otherwise. */
int limits_check(char **specs, size_t n, char *err, size_t errlen);
/* In the child, before dropping privileges (raising a hard limit needs root): -1 with errno on failure. */
int limits_apply(char **specs, size_t n);

#endif
