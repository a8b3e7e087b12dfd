/* Processes by pid: a background process outlives its channel, and a later
 * channel attaches to it, lists it or kills it. */
#ifndef VMBOX_PROCESSES_H
#define VMBOX_PROCESSES_H

#include <stdint.h>

#include "json.h"

void processes_attach(uint32_t id, const struct json_obj *req);
void processes_list(uint32_t id);
void processes_kill(uint32_t id, const struct json_obj *req);

#endif
