/* Which commands lost a process to the OOM killer, from the kernel log. */
#ifndef VMBOX_OOM_H
#define VMBOX_OOM_H

/* Opens /dev/kmsg past what is already logged: a non-blocking fd for the
 * event loop, or -1. */
int oom_open_log(void);
/* Reads the kernel log to its end and marks the exec channel of every OOM
 * victim. Call it before reaping children: a victim's record is logged
 * before it can exit, so it is read while the victim can still be found. */
void oom_drain(void);

#endif
