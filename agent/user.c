#include <grp.h>
#include <pwd.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "user.h"

/* `user` is a name, a uid, or uid:gid / name:group, as Docker's --user. */
int resolve_user(const char *user, struct ident *id, char *err, size_t errlen) {
  memset(id, 0, sizeof *id);
  strcpy(id->home, "/");
  if (!user || !*user) user = "0";
  char u[128], *g = NULL;
  snprintf(u, sizeof u, "%s", user);
  char *colon = strchr(u, ':');
  if (colon) { *colon = 0; g = colon + 1; }
  char *end;
  long n = strtol(u, &end, 10);
  struct passwd *pw = NULL;
  if (*u && !*end) {
    id->uid = n;
    pw = getpwuid(id->uid);
  } else {
    pw = getpwnam(u);
    if (!pw) { snprintf(err, errlen, "unknown user '%s' (not in the image's /etc/passwd)", u); return -1; }
    id->uid = pw->pw_uid;
  }
  if (pw) {
    id->gid = pw->pw_gid;
    snprintf(id->name, sizeof id->name, "%s", pw->pw_name);
    snprintf(id->home, sizeof id->home, "%s", pw->pw_dir);
    id->named = true;
  } else {
    id->gid = id->uid;
  }
  if (g && *g) {
    long gn = strtol(g, &end, 10);
    if (!*end) id->gid = gn;
    else {
      struct group *gr = getgrnam(g);
      if (!gr) { snprintf(err, errlen, "unknown group '%s' (not in the image's /etc/group)", g); return -1; }
      id->gid = gr->gr_gid;
    }
  }
  return 0;
}
