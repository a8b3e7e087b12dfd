/* Installs the guest's one NAT rule through the iptables socket interface, so
 * no iptables or nft binary is needed in the image:
 *
 *   nat OUTPUT: -p tcp ! -d 127.0.0.0/8 -j REDIRECT --to-ports PORT
 *
 * Every outgoing TCP connection then reaches the agent's listener, and conntrack
 * keeps its original destination for SO_ORIGINAL_DST. The rule is a convenience,
 * not the wall: a guest root that removes it only sends its packets into the
 * dummy device, which drops them (net.c). Only kernel headers are used here; they
 * do not mix with libc's network headers, so this file includes no others. */
#include <endian.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>
#include <linux/netfilter/nf_nat.h>
#include <linux/netfilter_ipv4/ip_tables.h>

#include "netfilter.h"

struct policy_entry {
  struct ipt_entry e;
  struct xt_standard_target t;
};

struct redirect_entry {
  struct ipt_entry e;
  struct xt_entry_target t;
  struct nf_nat_ipv4_multi_range_compat range;
};

struct error_entry {
  struct ipt_entry e;
  struct xt_error_target t;
};

/* The nat table's chains, in the order the kernel lays them out. */
static const int hooks[] = {NF_INET_PRE_ROUTING, NF_INET_LOCAL_IN, NF_INET_LOCAL_OUT, NF_INET_POST_ROUTING};

static void init_policy(struct policy_entry *p) {
  memset(p, 0, sizeof *p);
  p->e.target_offset = sizeof p->e;
  p->e.next_offset = sizeof *p;
  p->t.target.u.user.target_size = XT_ALIGN(sizeof p->t);
  p->t.verdict = -NF_ACCEPT - 1; /* a standard target's verdict, encoded */
}

int netfilter_redirect_tcp(uint16_t port) {
  int s = socket(AF_INET, SOCK_RAW | SOCK_CLOEXEC, IPPROTO_RAW), e;
  if (s < 0) return -1;
  struct ipt_getinfo info;
  memset(&info, 0, sizeof info);
  strcpy(info.name, "nat");
  socklen_t len = sizeof info;
  if (getsockopt(s, IPPROTO_IP, IPT_SO_GET_INFO, &info, &len) < 0) goto fail;

  size_t size = 3 * sizeof(struct policy_entry) + sizeof(struct policy_entry) + sizeof(struct redirect_entry) +
                sizeof(struct error_entry);
  struct ipt_replace *r = calloc(1, sizeof *r + size);
  struct xt_counters *old = calloc(info.num_entries ? info.num_entries : 1, sizeof *old);
  if (!r || !old) abort();
  strcpy(r->name, "nat");
  r->valid_hooks = info.valid_hooks;
  r->num_entries = 6;
  r->size = size;
  r->num_counters = info.num_entries;
  r->counters = old;

  uint8_t *at = (uint8_t *)r->entries;
  for (size_t i = 0; i < sizeof hooks / sizeof hooks[0]; i++) {
    int h = hooks[i];
    r->hook_entry[h] = at - (uint8_t *)r->entries;
    if (h == NF_INET_LOCAL_OUT) {
      struct redirect_entry *e = (struct redirect_entry *)at;
      e->e.ip.proto = IPPROTO_TCP;
      e->e.ip.dst.s_addr = htobe32(0x7f000000);
      e->e.ip.dmsk.s_addr = htobe32(0xff000000);
      e->e.ip.invflags = IPT_INV_DSTIP;
      e->e.target_offset = sizeof e->e;
      e->e.next_offset = sizeof *e;
      e->t.u.user.target_size = XT_ALIGN(sizeof e->t + sizeof e->range);
      strcpy(e->t.u.user.name, "REDIRECT");
      e->range.rangesize = 1;
      e->range.range[0].flags = NF_NAT_RANGE_PROTO_SPECIFIED;
      e->range.range[0].min.tcp.port = htobe16(port);
      e->range.range[0].max.tcp.port = htobe16(port);
      at += sizeof *e;
    }
    r->underflow[h] = at - (uint8_t *)r->entries;
    init_policy((struct policy_entry *)at);
    at += sizeof(struct policy_entry);
  }
  struct error_entry *err = (struct error_entry *)at;
  err->e.target_offset = sizeof err->e;
  err->e.next_offset = sizeof *err;
  err->t.target.u.user.target_size = XT_ALIGN(sizeof err->t);
  strcpy(err->t.target.u.user.name, XT_ERROR_TARGET);
  strcpy(err->t.errorname, XT_ERROR_TARGET);

  int rc = setsockopt(s, IPPROTO_IP, IPT_SO_SET_REPLACE, r, sizeof *r + size);
  e = errno;
  free(r);
  free(old);
  close(s);
  errno = e;
  return rc;
fail:
  e = errno;
  close(s);
  errno = e;
  return -1;
}
