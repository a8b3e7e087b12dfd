#include <errno.h>
#include <fcntl.h>
#include <linux/random.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <unistd.h>

#include "identity.h"
#include "log.h"

#define MAX_ENTROPY 256

static int hexval(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

void identity_add_entropy(const char *hex) {
  size_t n = strlen(hex) / 2;
  if (n == 0) return;
  if (n > MAX_ENTROPY) n = MAX_ENTROPY;
  struct {
    struct rand_pool_info info;
    unsigned char bytes[MAX_ENTROPY];
  } req;
  for (size_t i = 0; i < n; i++) {
    int hi = hexval(hex[2 * i]), lo = hexval(hex[2 * i + 1]);
    if (hi < 0 || lo < 0) return;
    req.bytes[i] = (unsigned char)(hi << 4 | lo);
  }
  req.info.entropy_count = (int)n * 8;
  req.info.buf_size = (int)n;
  int fd = open("/dev/urandom", O_RDWR | O_CLOEXEC);
  if (fd < 0) {
    log_msg("entropy: open /dev/urandom: %s", strerror(errno));
    return;
  }
  /* RNDADDENTROPY alone waits for the next scheduled reseed; RNDRESEEDCRNG makes it now. */
  if (ioctl(fd, RNDADDENTROPY, &req) < 0) log_msg("entropy: RNDADDENTROPY: %s", strerror(errno));
  else if (ioctl(fd, RNDRESEEDCRNG) < 0) log_msg("entropy: RNDRESEEDCRNG: %s", strerror(errno));
  close(fd);
  explicit_bzero(&req, sizeof req);
}

void identity_set_hostname(const char *name) {
  size_t n = strlen(name);
  if (n == 0 || n > 64) return;
  if (sethostname(name, n) < 0) log_msg("hostname: %s", strerror(errno));
}
