/* The guest's NAT rule: every outgoing TCP connection to the agent (netfilter.c). */
#ifndef VMBOX_NETFILTER_H
#define VMBOX_NETFILTER_H

#include <stdint.h>

/* Replaces the nat table with the one rule; 0 or -1 with errno. */
int netfilter_redirect_tcp(uint16_t port);

#endif
