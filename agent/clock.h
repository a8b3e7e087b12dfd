/* The guest's clocks: monotonic time for deadlines, wall time from the host. */
#ifndef VMBOX_CLOCK_H
#define VMBOX_CLOCK_H

#include <stdint.h>

uint64_t clock_now_ms(void);
/* Sets the wall clock (the guest has no RTC; the host sends its time in HELLO). */
void clock_set_realtime_ms(double ms);

#endif
