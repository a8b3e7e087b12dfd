/* The guest's network, all of it through the host (net.c). */
#ifndef VMBOX_NET_H
#define VMBOX_NET_H

#include <stdbool.h>
#include <stdint.h>

#include "chan.h"
#include "json.h"

/* op `net.up`: the dummy route, the NAT rule and the listeners; idempotent. */
void net_up(uint32_t id);
/* op `connect` {port}: a published port's connection to a guest port. */
void net_connect(uint32_t id, const struct json_obj *req);
/* The listeners' epoll events; false when the tag is not theirs. */
bool net_on_event(void *tag);
void net_on_fd(struct chan *c, uint32_t events);
void net_data(struct chan *c, const uint8_t *p, size_t n);
void net_eof(struct chan *c);
/* More credit from the host: read the guest socket again. */
void net_pump(struct chan *c);
/* The host abandons the connection (or its session ends): reset it. */
void net_close(struct chan *c);
void net_dns_answer(uint32_t tag, const uint8_t *p, size_t n);

#endif
