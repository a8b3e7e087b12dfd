/* The agent's own messages, on the console (the VM's serial log). */
#ifndef VMBOX_LOG_H
#define VMBOX_LOG_H

void log_msg(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

#endif
