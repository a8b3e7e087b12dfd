/* Mounts the host asks for once the guest is up: virtio-9p shares (host
 * directories, named volumes) and tmpfs, each at a guest path with its flags. */
#ifndef VMBOX_MOUNTS_H
#define VMBOX_MOUNTS_H

#include <stdint.h>

#include "json.h"

void mounts_request(uint32_t id, const struct json_obj *req);

#endif
