#include <stdarg.h>
#include <stdio.h>

#include "log.h"

void log_msg(const char *fmt, ...) {
  char line[512];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(line, sizeof line, fmt, ap);
  va_end(ap);
  dprintf(2, "vmbox-agent: %s\n", line);
}
