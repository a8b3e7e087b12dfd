/* Users: a name or uid resolved from the image's /etc/passwd and /etc/group. */
#ifndef VMBOX_USER_H
#define VMBOX_USER_H

#include <stdbool.h>
#include <sys/types.h>

struct ident {
  uid_t uid;
  gid_t gid;
  char name[64];
  char home[256];
  bool named;
};

/* `user` is a name, a uid, or uid:gid / name:group, as Docker's --user; NULL or "" is root. */
int resolve_user(const char *user, struct ident *id, char *err, size_t errlen);

#endif
