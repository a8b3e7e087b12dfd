#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "log.h"

static enum log_level current = LOG_WARN;
static const char *const NAMES[] = {"error", "warn", "info", "debug"};

void log_set_level(const char *name) {
  for (int i = LOG_ERROR; i <= LOG_DEBUG; i++)
    if (!strcmp(name, NAMES[i])) current = (enum log_level)i;
}

static void emit(enum log_level level, const char *fmt, va_list ap) {
  if (level > current) return;
  char line[512];
  vsnprintf(line, sizeof line, fmt, ap);
  dprintf(2, "vmbox-agent: %s%s\n", level == LOG_WARN ? "" : level == LOG_ERROR ? "error: " : "", line);
}

void log_at(enum log_level level, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  emit(level, fmt, ap);
  va_end(ap);
}

void log_msg(const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  emit(LOG_WARN, fmt, ap);
  va_end(ap);
}
