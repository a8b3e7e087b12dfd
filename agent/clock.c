#include <time.h>

#include "clock.h"

uint64_t clock_now_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (uint64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

void clock_set_realtime_ms(double ms) {
  struct timespec ts = {.tv_sec = (time_t)(ms / 1000), .tv_nsec = (long)((long long)ms % 1000) * 1000000};
  clock_settime(CLOCK_REALTIME, &ts);
}
