/* File channels (read, write) and the one-shot file system requests. */
#ifndef VMBOX_FILES_H
#define VMBOX_FILES_H

#include <stddef.h>
#include <stdint.h>

#include "chan.h"
#include "json.h"

void files_request(uint32_t id, const char *op, const struct json_obj *req);
void files_data(struct chan *c, const uint8_t *p, size_t n);
void files_eof(struct chan *c);
void files_pump(struct chan *c);
void files_close(struct chan *c);

#endif
