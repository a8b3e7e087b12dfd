/* The root disk: its ext4 grows to fill the device at boot. */
#ifndef VMBOX_DISK_H
#define VMBOX_DISK_H

/* Grows the ext4 on `dev`, mounted at `mnt`, to the size of `dev` (a sandbox's
 * disk may be larger than its image's file system). 0, or -1 with errno. */
int disk_grow_ext4(const char *dev, const char *mnt);

#endif
