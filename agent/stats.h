/* The guest's view of its own resources, for the host's metrics. */
#ifndef VMBOX_STATS_H
#define VMBOX_STATS_H

#include <stdint.h>

void stats_request(uint32_t id);

#endif
