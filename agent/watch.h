/* watch channels: inotify on a directory tree. */
#ifndef VMBOX_WATCH_H
#define VMBOX_WATCH_H

#include <stdint.h>

#include "chan.h"
#include "json.h"

void watch_open(uint32_t id, const struct json_obj *req);
void watch_on_fd(struct chan *c);
void watch_close(struct chan *c);

#endif
