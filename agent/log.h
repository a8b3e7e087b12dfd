/* The agent's own messages, on the console (the VM's serial log), at the
 * level the host asks for (vmbox.loglevel=error|warn|info|debug; warn by default). */
#ifndef VMBOX_LOG_H
#define VMBOX_LOG_H

enum log_level { LOG_ERROR, LOG_WARN, LOG_INFO, LOG_DEBUG };

/* Sets the level from its name; unknown names leave it. */
void log_set_level(const char *name);
void log_at(enum log_level level, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* A warning: what went wrong but did not stop the agent. */
void log_msg(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

#endif
