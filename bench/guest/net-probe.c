/* Timings from inside a guest for `npm run bench` (built static with musl-gcc):
 *   net-probe get HOST PORT N   N × (connect, GET /, read to close): one line of µs each
 *   net-probe serve PORT        answers every connection with a small HTTP response
 *   net-probe dns NAME N        N × getaddrinfo(NAME): one line of µs each
 * One process, no fork or exec per sample, so what is timed is the network path. */
#include <netdb.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

static long long now_us(void) {
  struct timespec t;
  clock_gettime(CLOCK_MONOTONIC, &t);
  return t.tv_sec * 1000000LL + t.tv_nsec / 1000;
}

static const char reply[] = "HTTP/1.1 200 OK\r\nContent-Length: 3\r\nConnection: close\r\n\r\nhi\n";

static int get(const char *host, const char *port) {
  struct addrinfo hints = {.ai_family = AF_INET, .ai_socktype = SOCK_STREAM}, *ai;
  if (getaddrinfo(host, port, &hints, &ai)) return -1;
  int s = socket(AF_INET, SOCK_STREAM, 0);
  if (connect(s, ai->ai_addr, ai->ai_addrlen) < 0) { close(s); freeaddrinfo(ai); return -1; }
  freeaddrinfo(ai);
  char req[256], buf[4096];
  int n = snprintf(req, sizeof req, "GET / HTTP/1.1\r\nHost: %s\r\nConnection: close\r\n\r\n", host);
  if (write(s, req, n) != n) { close(s); return -1; }
  while (read(s, buf, sizeof buf) > 0) {
  }
  close(s);
  return 0;
}

int main(int argc, char **argv) {
  if (argc == 3 && !strcmp(argv[1], "serve")) {
    int l = socket(AF_INET, SOCK_STREAM, 0), one = 1;
    setsockopt(l, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons(atoi(argv[2])), .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    if (bind(l, (struct sockaddr *)&a, sizeof a) < 0 || listen(l, 64) < 0) { perror("listen"); return 1; }
    for (;;) {
      int c = accept(l, NULL, NULL);
      if (c < 0) continue;
      char buf[4096];
      if (read(c, buf, sizeof buf) > 0 && write(c, reply, sizeof reply - 1) < 0) perror("write");
      close(c);
    }
  }
  if (argc == 5 && !strcmp(argv[1], "get")) {
    for (int i = 0; i < atoi(argv[4]); i++) {
      long long t = now_us();
      if (get(argv[2], argv[3]) < 0) { fprintf(stderr, "request %d failed\n", i); return 1; }
      printf("%lld\n", now_us() - t);
    }
    return 0;
  }
  if (argc == 4 && !strcmp(argv[1], "dns")) {
    for (int i = 0; i < atoi(argv[3]); i++) {
      struct addrinfo hints = {.ai_family = AF_INET, .ai_socktype = SOCK_STREAM}, *ai;
      long long t = now_us();
      if (getaddrinfo(argv[2], "80", &hints, &ai)) { fprintf(stderr, "lookup %d failed\n", i); return 1; }
      printf("%lld\n", now_us() - t);
      freeaddrinfo(ai);
    }
    return 0;
  }
  fprintf(stderr, "usage: net-probe get HOST PORT N | serve PORT | dns NAME N\n");
  return 2;
}
