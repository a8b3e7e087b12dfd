/* Handing PID 1 to the image's own init once the system is prepared: PID 1
 * execs it, and the agent goes on serving as its child. */
#ifndef VMBOX_HANDOFF_H
#define VMBOX_HANDOFF_H

#include <stdint.h>

#include "json.h"

void handoff_request(uint32_t id, const struct json_obj *req);

#endif
