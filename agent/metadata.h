/* User metadata on files, E2B's way: extended attributes named user.e2b.KEY,
 * reported as {"KEY": "value"} and replaced whole by a write that carries any. */
#ifndef VMBOX_METADATA_H
#define VMBOX_METADATA_H

#include "json.h"

/* Adds "metadata": {...} to `w` when the file (not followed) has any. */
void add_metadata(struct jw *w, const char *path);
/* The open file's user.e2b.* attributes become `meta` ("KEY=value" strings); -1 with errno. */
int replace_metadata(int fd, const struct json_field *meta);

#endif
