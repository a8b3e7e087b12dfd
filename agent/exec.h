/* exec channels: launching a process and moving its stdio under credit. */
#ifndef VMBOX_EXEC_H
#define VMBOX_EXEC_H

#include <stdint.h>
#include <stddef.h>
#include <sys/types.h>

#include "chan.h"
#include "json.h"

void exec_open(uint32_t id, const struct json_obj *req);
void exec_stdin(struct chan *c, const uint8_t *p, size_t n);
void exec_stdin_eof(struct chan *c);
void exec_signal(struct chan *c, int sig);
void exec_on_fd(struct chan *c, uint32_t events);
void exec_on_child(pid_t pid, int status);
void exec_pump(struct chan *c);   /* move output while credit lasts; finish when done */
void exec_check_deadline(struct chan *c, uint64_t now);
void exec_close(struct chan *c);  /* host gave up on the channel */
void exec_resize(struct chan *c, int cols, int rows);
void exec_release(struct chan *c); /* frees what a finished process held */

#endif
