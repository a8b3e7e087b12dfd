/* What makes a guest itself rather than a copy: its randomness and its name.
 * A VM restored from a template or a fork shares both with its siblings until
 * the host's hello gives it its own. */
#ifndef VMBOX_IDENTITY_H
#define VMBOX_IDENTITY_H

/* Mixes host-supplied bytes (hex) into the kernel's pool, credited, and
 * reseeds the CRNG at once, so the next read of /dev/urandom differs. */
void identity_add_entropy(const char *hex);
void identity_set_hostname(const char *name);

#endif
