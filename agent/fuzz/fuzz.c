/* A host program that fuzzes what the agent parses from the host: the frame
 * decoder and dispatch (main.c's parse_input and on_frame) and the JSON
 * parser (json.c), with a deterministic mutation loop over a corpus built
 * below. `make fuzz` builds it with AddressSanitizer and UBSan where the
 * compiler has them; `fuzz/vmbox-fuzz ITERATIONS [SEED]` exits 0 when every
 * property held, else prints the failing input and aborts.
 *
 * main.c is compiled into this program with its static state in reach; what
 * it dispatches to (exec, files, net, ... which act on the system) is
 * replaced below by stubs that only record their calls. Its own sources stay
 * where they are: this directory is outside the agent's build. */
#include <setjmp.h>
#include <stdarg.h>
#include <sys/mman.h>

/* Every parse main.c makes is tracked, so a power-off (which never returns)
 * can free the request it came from, as the real one needs not. */
#define json_parse fuzz_tracked_json_parse
#define json_free fuzz_tracked_json_free
#define main agent_main
#include "../main.c"
#undef main
#undef json_parse
#undef json_free

int json_parse(const char *text, size_t len, struct json_obj *out);
void json_free(struct json_obj *o);

/* ---- deterministic randomness ---- */

static uint64_t rng_state;
static uint64_t rnd(void) { /* splitmix64 */
  uint64_t z = (rng_state += 0x9E3779B97F4A7C15ULL);
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ULL;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBULL;
  return z ^ (z >> 31);
}
static size_t below(size_t n) { return n ? (size_t)(rnd() % n) : 0; }

/* ---- failure reporting ---- */

static uint64_t seed, iteration;
static const uint8_t *current_input;
static size_t current_len;

static void fail(const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  fprintf(stderr, "vmbox-fuzz: iteration %llu (seed %llu): ", (unsigned long long)iteration, (unsigned long long)seed);
  vfprintf(stderr, fmt, ap);
  va_end(ap);
  fprintf(stderr, "\ninput (%zu bytes):", current_len);
  for (size_t i = 0; i < current_len && i < 4096; i++) fprintf(stderr, "%s%02x", i % 32 ? "" : "\n  ", current_input[i]);
  fprintf(stderr, "\n");
  abort();
}
#define CHECK(cond, ...) \
  do { \
    if (!(cond)) fail(__VA_ARGS__); \
  } while (0)

/* ---- what the stubs saw: a hash of every call, its arguments and the bytes it was given ---- */

static uint64_t trace_hash;
static void trace(const char *what, uint64_t a, const void *p, size_t n) {
  uint64_t h = trace_hash ^ 0xcbf29ce484222325ULL;
  for (const char *s = what; *s; s++) h = (h ^ (uint8_t)*s) * 0x100000001b3ULL;
  for (int i = 0; i < 8; i++) h = (h ^ ((a >> (8 * i)) & 0xff)) * 0x100000001b3ULL;
  const uint8_t *b = p; /* read every byte: AddressSanitizer checks the bounds the caller gave */
  for (size_t i = 0; i < n; i++) h = (h ^ b[i]) * 0x100000001b3ULL;
  trace_hash = h;
}
static void trace_str(const char *what, const char *s) { trace(what, 0, s, s ? strlen(s) : 0); }
static void trace_req(const char *what, uint32_t id, const struct json_obj *req) {
  trace(what, id, NULL, 0);
  for (size_t i = 0; i < req->n; i++) {
    const struct json_field *f = &req->fields[i];
    trace_str("key", f->key);
    if (f->type == J_STR) trace_str("str", f->str);
    if (f->type == J_STRARR)
      for (size_t j = 0; j < f->arr_len; j++) trace_str("arr", f->arr[j]);
    if (f->type == J_STRARR) CHECK(f->arr[f->arr_len] == NULL, "string array not NULL-terminated");
  }
}

static struct json_obj *tracked;
int fuzz_tracked_json_parse(const char *text, size_t len, struct json_obj *out) {
  int r = json_parse(text, len, out);
  if (r == 0) tracked = out;
  return r;
}
void fuzz_tracked_json_free(struct json_obj *o) {
  if (o == tracked) tracked = NULL;
  json_free(o);
}

/* ---- stubs for what main.c calls: no process, file, socket or clock is touched ---- */

static jmp_buf powered_off;
static unsigned long long power_offs, stub_calls;

uint64_t clock_now_ms(void) { return 0; }
void clock_set_realtime_ms(double ms) { trace("clock", (uint64_t)(ms > 0 && ms < 1e18 ? ms : 0), NULL, 0); }
void identity_add_entropy(const char *hex) { trace_str("entropy", hex); }
void identity_set_hostname(const char *name) { trace_str("hostname", name); }
int init_system(void) { return 0; }
int init_agent_port(void) { return -1; }
void init_power_off(void) {
  power_offs++;
  trace("poweroff", 0, NULL, 0);
  if (tracked) json_free(tracked), tracked = NULL;
  longjmp(powered_off, 1);
}
void log_at(enum log_level level, const char *fmt, ...) {
  char line[512];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(line, sizeof line, fmt, ap);
  va_end(ap);
}
void log_msg(const char *fmt, ...) {
  char line[512];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(line, sizeof line, fmt, ap);
  va_end(ap);
}
int oom_open_log(void) { return -1; }
void oom_drain(void) {}

static void opened(uint32_t id, enum chan_type type) {
  stub_calls++;
  chan_new(id, type);
}
void exec_open(uint32_t id, const struct json_obj *req) {
  trace_req("exec", id, req);
  opened(id, CH_EXEC);
}
void exec_stdin(struct chan *c, const uint8_t *p, size_t n) { trace("stdin", c->id, p, n); }
void exec_stdin_eof(struct chan *c) { trace("stdin-eof", c->id, NULL, 0); }
void exec_signal(struct chan *c, int sig) { trace("signal", (uint64_t)sig, NULL, 0); }
void exec_resize(struct chan *c, int cols, int rows) { trace("resize", (uint64_t)cols << 32 | (uint32_t)rows, NULL, 0); }
void exec_pump(struct chan *c) { trace("exec-pump", (uint64_t)c->credit, NULL, 0); }
void exec_on_fd(struct chan *c, uint32_t events) {}
void exec_on_child(pid_t pid, int status) {}
void exec_check_deadline(struct chan *c, uint64_t now) {}
void exec_close(struct chan *c) {
  trace("exec-close", c->id, NULL, 0);
  c->dead = true;
}
void files_request(uint32_t id, const char *op, const struct json_obj *req) {
  trace_req(op, id, req);
  if (!strcmp(op, "write")) opened(id, CH_WRITE);
  else if (!strcmp(op, "read")) opened(id, CH_READ);
  else proto_send_json(K_DONE, id, "{}");
}
void files_data(struct chan *c, const uint8_t *p, size_t n) { trace("data", c->id, p, n); }
void files_eof(struct chan *c) { trace("eof", c->id, NULL, 0); }
void files_pump(struct chan *c) { trace("files-pump", (uint64_t)c->credit, NULL, 0); }
void files_close(struct chan *c) {
  trace("files-close", c->id, NULL, 0);
  c->dead = true;
}
void net_up(uint32_t id) { trace("net-up", id, NULL, 0); }
void net_connect(uint32_t id, const struct json_obj *req) {
  trace_req("connect", id, req);
  opened(id, CH_NET);
}
bool net_on_event(void *tag) { return false; }
void net_on_fd(struct chan *c, uint32_t events) {}
void net_data(struct chan *c, const uint8_t *p, size_t n) { trace("net-data", c->id, p, n); }
void net_eof(struct chan *c) { trace("net-eof", c->id, NULL, 0); }
void net_pump(struct chan *c) { trace("net-pump", (uint64_t)c->credit, NULL, 0); }
void net_close(struct chan *c) {
  trace("net-close", c->id, NULL, 0);
  c->dead = true;
}
void net_dns_answer(uint32_t tag, const uint8_t *p, size_t n) { trace("dns", tag, p, n); }
void watch_open(uint32_t id, const struct json_obj *req) {
  trace_req("watch", id, req);
  opened(id, CH_WATCH);
}
void watch_on_fd(struct chan *c) {}
void watch_close(struct chan *c) {
  trace("watch-close", c->id, NULL, 0);
  c->dead = true;
}
void processes_attach(uint32_t id, const struct json_obj *req) { trace_req("attach", id, req); }
void processes_list(uint32_t id) { trace("ps", id, NULL, 0); }
void processes_kill(uint32_t id, const struct json_obj *req) { trace_req("kill", id, req); }
void stats_request(uint32_t id) { trace("stats", id, NULL, 0); }
void mounts_request(uint32_t id, const struct json_obj *req) { trace_req("mount", id, req); }
void handoff_request(uint32_t id, const struct json_obj *req) { trace_req("handoff", id, req); }

/* ---- the frame target ---- */

static int out_fd = -1;
static uint8_t *out_copy;
static size_t out_cap;
static unsigned long long frames_out, json_ok, json_bad, round_trips;

/* A fresh agent: no channels, nothing buffered either way. */
static void agent_reset(void) {
  for (struct chan *c = chan_list; c; c = c->next) c->dead = true;
  chan_reap();
  in.start = in.len = 0;
  skip_bytes = 0;
  proto_out_reset();
  tracked = NULL;
}

/* Everything the agent sent the host (queued, or flushed before a power-off) must be whole frames
 * within the limit; its JSON ones must parse with its own parser, its errors name a code and a message. */
static void check_output(void) {
  CHECK(proto_out_write() == 0 && proto_out_pending() == 0, "the output queue did not drain to a file");
  off_t end = lseek(out_fd, 0, SEEK_CUR);
  CHECK(end >= 0, "lseek");
  size_t n = (size_t)end;
  if (n > out_cap) {
    out_copy = realloc(out_copy, n);
    if (!out_copy) abort();
    out_cap = n;
  }
  CHECK(pread(out_fd, out_copy, n, 0) == (ssize_t)n, "reading the output back");
  trace("out", n, out_copy, n);
  for (size_t pos = 0; pos < n;) {
    CHECK(n - pos >= FRAME_HEADER, "output ends inside a frame header");
    uint32_t len = get_u32(out_copy + pos);
    uint8_t kind = out_copy[pos + 4];
    CHECK(len <= MAX_PAYLOAD && n - pos - FRAME_HEADER >= len, "output frame of %u bytes does not fit", len);
    if (kind == K_ERROR || kind == K_HELLO || kind == K_DONE || kind == K_REPLY) {
      struct json_obj o;
      CHECK(json_parse((const char *)out_copy + pos + FRAME_HEADER, len, &o) == 0, "the agent sent JSON its own parser refuses: %.*s",
            (int)len, out_copy + pos + FRAME_HEADER);
      if (kind == K_ERROR) CHECK(json_get(&o, "code") && json_get(&o, "message"), "an error without code or message");
      json_free(&o);
    }
    frames_out++;
    pos += FRAME_HEADER + len;
  }
  CHECK(ftruncate(out_fd, 0) == 0 && lseek(out_fd, 0, SEEK_SET) == 0, "emptying the output file");
}

/* Feeds the stream to a fresh agent in the given chunks, as on_port does; returns the hash of what happened. */
static uint64_t run_stream(const uint8_t *s, size_t n, const size_t *cuts, size_t ncuts) {
  agent_reset();
  trace_hash = 0;
  if (setjmp(powered_off) == 0) {
    size_t prev = 0;
    for (size_t i = 0; i <= ncuts; i++) {
      size_t end = i < ncuts ? cuts[i] : n;
      if (end < prev) continue;
      buf_reserve(&in, end - prev);
      memcpy(in.data + in.len, s + prev, end - prev);
      in.len += end - prev;
      prev = end;
      parse_input();
      chan_reap();
      /* At most one incomplete frame waits; none while an oversized payload is skipped. */
      CHECK(buf_pending(&in) < FRAME_HEADER + (size_t)MAX_PAYLOAD, "the agent holds %zu bytes of input", buf_pending(&in));
      CHECK(!skip_bytes || buf_pending(&in) == 0, "bytes held while skipping");
    }
  }
  check_output();
  agent_reset();
  return trace_hash;
}

struct bytes {
  uint8_t *p;
  size_t len, cap;
};
static void put(struct bytes *b, const void *p, size_t n) {
  if (!n) return;
  if (b->len + n > b->cap) {
    while (b->len + n > b->cap) b->cap = b->cap ? b->cap * 2 : 1024;
    b->p = realloc(b->p, b->cap);
    if (!b->p) abort();
  }
  memcpy(b->p + b->len, p, n);
  b->len += n;
}
static void put_frame(struct bytes *b, uint8_t kind, uint32_t ch, const void *p, size_t n) {
  uint8_t h[FRAME_HEADER];
  put_u32(h, (uint32_t)n);
  h[4] = kind;
  put_u32(h + 5, ch);
  put(b, h, FRAME_HEADER);
  put(b, p, n);
}

static const char *const requests[] = {
  "{\"timeMs\":1700000000000,\"entropy\":\"00ff10\",\"hostname\":\"box\"}",
  "{\"op\":\"exec\",\"argv\":[\"/bin/sh\",\"-c\",\"echo hi\"],\"env\":[\"A=1\",\"B=\\u00e9\"],\"cwd\":\"/\",\"timeoutMs\":5000,\"pty\":true}",
  "{\"op\":\"exec\",\"argv\":[],\"user\":\"root\",\"detached\":true,\"stdin\":false}",
  "{\"op\":\"write\",\"path\":\"/tmp/a\",\"mode\":420,\"append\":false,\"makeParents\":true}",
  "{\"op\":\"read\",\"path\":\"/etc/hosts\"}",
  "{\"op\":\"connect\",\"port\":8080}",
  "{\"op\":\"watch\",\"path\":\"/tmp\",\"recursive\":true}",
  "{\"op\":\"stat\",\"path\":\"/\"}",
  "{\"op\":\"rename\",\"from\":\"/a\",\"to\":\"/b\"}",
  "{\"op\":\"attach\",\"pid\":42}",
  "{\"op\":\"kill\",\"pid\":42,\"signal\":9}",
  "{\"op\":\"mount\",\"mounts\":[\"9p:tag:/mnt\"],\"tmpfs\":null}",
  "{\"op\":\"ping\"}",
  "{\"op\":\"stats\"}",
  "{\"op\":\"ps\"}",
  "{\"op\":\"net.up\"}",
  "{\"op\":\"init.handoff\",\"path\":\"/sbin/init\"}",
  "{\"op\":\"shutdown\"}",
  "{\"signal\":15}",
  "{\"cols\":80,\"rows\":24}",
  "{}",
};
#define NREQ (sizeof requests / sizeof *requests)

/* A valid session: hello, then channels opened and driven with the frames each takes. */
static void valid_stream(struct bytes *b, bool big) {
  put_frame(b, K_HELLO, 0, requests[0], strlen(requests[0]));
  size_t frames = 1 + below(12);
  for (size_t i = 0; i < frames; i++) {
    uint32_t ch = (uint32_t)(1 + below(4));
    const char *r = requests[1 + below(NREQ - 1)];
    uint8_t credit[4];
    put_u32(credit, (uint32_t)rnd());
    switch (below(10)) {
    case 0: case 1: case 2:
      put_frame(b, K_OPEN, ch, r, strlen(r));
      break;
    case 3: {
      uint8_t data[300];
      size_t n = below(sizeof data);
      for (size_t j = 0; j < n; j++) data[j] = (uint8_t)rnd();
      put_frame(b, below(2) ? K_STDIN : K_DATA, ch, data, n);
      break;
    }
    case 4: put_frame(b, K_CREDIT, ch, credit, 4); break;
    case 5: put_frame(b, K_EOF, ch, NULL, 0); break;
    case 6: put_frame(b, below(2) ? K_SIGNAL : K_RESIZE, ch, r, strlen(r)); break;
    case 7: put_frame(b, K_DNS, (uint32_t)rnd(), r, strlen(r)); break;
    case 8: put_frame(b, K_ERROR, ch, "{}", 2); break;
    default: put_frame(b, K_OPEN, 0, r, strlen(r)); break;
    }
  }
  if (big) { /* a frame at the limit, or just past it */
    size_t n = MAX_PAYLOAD - 1 + below(3);
    uint8_t *p = calloc(1, n);
    if (!p) abort();
    if (n <= MAX_PAYLOAD) put_frame(b, K_DATA, 1 + (uint32_t)below(4), p, n);
    else {
      uint8_t h[FRAME_HEADER];
      put_u32(h, (uint32_t)n);
      h[4] = K_DATA;
      put_u32(h + 5, 1);
      put(b, h, FRAME_HEADER);
      put(b, p, n);
    }
    free(p);
  }
}

static const uint8_t interesting[] = {0, 1, 0x7f, 0x80, 0xff, '{', '}', '[', ']', '"', '\\', ',', ':', 'u', K_OPEN, K_CREDIT};
static const uint32_t interesting32[] = {0, 1, 4, FRAME_HEADER, MAX_PAYLOAD - 1, MAX_PAYLOAD, MAX_PAYLOAD + 1, 0x7fffffff, 0x80000000, 0xffffffff};

/* Byte-level edits, as many as asked, applied in place (the buffer may grow). */
static void mutate(struct bytes *b, size_t edits, bool frames) {
  for (size_t e = 0; e < edits; e++) {
    size_t at = below(b->len + 1);
    switch (below(frames ? 8 : 7)) {
    case 0:
      if (b->len) b->p[below(b->len)] ^= (uint8_t)(1u << below(8));
      break;
    case 1:
      if (b->len) b->p[below(b->len)] = interesting[below(sizeof interesting)];
      break;
    case 2: { /* insert */
      size_t n = 1 + below(8);
      uint8_t tmp[8];
      for (size_t i = 0; i < n; i++) tmp[i] = below(2) ? interesting[below(sizeof interesting)] : (uint8_t)rnd();
      put(b, tmp, n); /* grow, then move into place */
      memmove(b->p + at + n, b->p + at, b->len - n - at);
      memcpy(b->p + at, tmp, n);
      break;
    }
    case 3: { /* delete */
      size_t n = at < b->len ? 1 + below(b->len - at) % 64 : 0;
      memmove(b->p + at, b->p + at + n, b->len - at - n);
      b->len -= n;
      break;
    }
    case 4: { /* duplicate a span */
      size_t n = at < b->len ? 1 + below(b->len - at) % 64 : 0;
      uint8_t tmp[64];
      memcpy(tmp, b->p + at, n);
      put(b, tmp, n);
      memmove(b->p + at + n, b->p + at, b->len - n - at);
      memcpy(b->p + at, tmp, n);
      break;
    }
    case 5:
      b->len = at < b->len ? at : b->len; /* truncate */
      break;
    case 6: { /* splice in a request */
      const char *r = requests[below(NREQ)];
      size_t n = strlen(r), from = below(n), k = 1 + below(n - from);
      put(b, r + from, k);
      memmove(b->p + at + k, b->p + at, b->len - k - at);
      memcpy(b->p + at, r + from, k);
      break;
    }
    case 7: /* a frame's length or channel field rewritten */
      if (b->len >= 4) put_u32(b->p + below(b->len - 3), interesting32[below(sizeof interesting32 / sizeof *interesting32)]);
      break;
    }
  }
}

static void fuzz_frames(void) {
  struct bytes b = {0};
  valid_stream(&b, below(64) == 0);
  if (below(4)) mutate(&b, 1 + below(8), true);
  current_input = b.p;
  current_len = b.len;
  uint64_t whole = run_stream(b.p, b.len, NULL, 0);
  size_t cuts[16], ncuts = 1 + below(16);
  for (size_t i = 0; i < ncuts; i++) cuts[i] = below(b.len + 1);
  for (size_t i = 1; i < ncuts; i++) /* sorted: chunks in order */
    for (size_t j = i; j > 0 && cuts[j - 1] > cuts[j]; j--) {
      size_t t = cuts[j];
      cuts[j] = cuts[j - 1];
      cuts[j - 1] = t;
    }
  uint64_t chunked = run_stream(b.p, b.len, cuts, ncuts);
  CHECK(whole == chunked, "the same stream did other things when it arrived in %zu chunks", ncuts + 1);
  free(b.p);
}

/* ---- the JSON target ---- */

static const char *const documents[] = {
  "{\"s\":\"a\\\"b\\\\c\\/d\\b\\f\\n\\r\\t\\u00e9\\ud83d\\ude00\",\"n\":-12.5e3,\"z\":0,\"t\":true,\"f\":false,\"x\":null,\"a\":[\"1\",\"\"]}",
  "  { \"k\" : [ ] , \"m\" : [ \"a\" , \"b\" ] }  ",
  "{\"a\":1,\"b\":2,\"c\":3,\"d\":4,\"e\":5,\"f\":6,\"g\":7,\"h\":8,\"i\":9,\"j\":10,\"k\":11,\"l\":12,\"m\":13,\"n\":14,\"o\":15,"
  "\"p\":16,\"q\":17,\"r\":18,\"s\":19,\"t\":20,\"u\":21,\"v\":22,\"w\":23,\"x\":24,\"y\":25,\"z\":26,\"A\":27,\"B\":28,\"C\":29,\"D\":30,"
  "\"E\":31,\"F\":32}",
  "{\"n\":123456789012345678901234567890123456789012345678901234567890123456789}",
  "{\"nested\":{\"no\":1}}",
  "{\"bad\":\"\\u0000\"}",
  "{\"lone\":\"\\ud800\"}",
  "{}",
};
#define NDOC (sizeof documents / sizeof *documents)

/* What a parse that succeeded must hold. */
static void check_parsed(const struct json_obj *o, size_t len) {
  CHECK(o->n <= JSON_MAX_FIELDS, "%zu fields", o->n);
  for (size_t i = 0; i < o->n; i++) {
    const struct json_field *f = &o->fields[i];
    CHECK(f->key && strlen(f->key) <= len, "field %zu has no key", i);
    switch (f->type) {
    case J_STR: CHECK(f->str && strlen(f->str) <= len, "string field without its string"); break;
    case J_STRARR:
      CHECK(f->arr && f->arr[f->arr_len] == NULL, "string array not NULL-terminated");
      for (size_t j = 0; j < f->arr_len; j++) CHECK(f->arr[j] && strlen(f->arr[j]) <= len, "array element %zu", j);
      break;
    case J_NUM: case J_BOOL: case J_NULL: break;
    default: fail("field of unknown type %d", (int)f->type);
    }
    CHECK(json_get(o, f->key) != NULL, "json_get misses a key it parsed");
  }
}

static void fuzz_json(void) {
  struct bytes b = {0};
  const char *d = below(4) ? documents[below(NDOC)] : requests[below(NREQ)];
  put(&b, d, strlen(d));
  mutate(&b, below(6), false);
  current_input = b.p;
  current_len = b.len;
  /* An exact-size copy, so reading one byte past the end is caught. */
  char *exact = malloc(b.len ? b.len : 1);
  if (!exact) abort();
  memcpy(exact, b.p, b.len);
  struct json_obj o;
  int r = json_parse(exact, b.len, &o);
  CHECK(r == 0 || r == -1, "json_parse returned %d", r);
  if (r == 0) {
    check_parsed(&o, b.len);
    json_ok++;
    json_free(&o);
  } else {
    json_bad++;
  }
  CHECK(o.n == 0 && o.arena == NULL, "a parse left fields behind after it was freed or failed");
  free(exact);
  free(b.p);
}

/* Whatever the agent writes with jw_*, json_parse reads back the same. */
static void fuzz_round_trip(void) {
  struct jw w;
  jw_begin(&w);
  size_t n = below(JSON_MAX_FIELDS + 1);
  char keys[JSON_MAX_FIELDS][24], vals[JSON_MAX_FIELDS][64];
  int types[JSON_MAX_FIELDS];
  double nums[JSON_MAX_FIELDS];
  for (size_t i = 0; i < n; i++) {
    size_t kl = below(sizeof keys[i]), vl = below(sizeof vals[i]);
    for (size_t j = 0; j < kl; j++) keys[i][j] = (char)(1 + below(255)); /* any byte but NUL */
    keys[i][kl] = 0;
    for (size_t j = 0; j < vl; j++) vals[i][j] = (char)(1 + below(255));
    vals[i][vl] = 0;
    types[i] = (int)below(3);
    /* Whole numbers up to 2^53 and fractions: what the agent writes (sizes, times, codes). */
    nums[i] = below(2) ? (double)(int64_t)(rnd() % (1ULL << 53)) * (below(2) ? 1 : -1) : (double)(int64_t)(rnd() >> 11) / (double)(1 + below(1000));
    if (types[i] == 0) jw_key_str(&w, keys[i], vals[i]);
    else if (types[i] == 1) jw_key_num(&w, keys[i], nums[i]);
    else jw_key_bool(&w, keys[i], nums[i] > 0);
  }
  const char *text = jw_end(&w);
  current_input = (const uint8_t *)text;
  current_len = strlen(text);
  struct json_obj o;
  CHECK(json_parse(text, strlen(text), &o) == 0, "json_parse refuses what jw wrote");
  CHECK(o.n == n, "%zu fields read back, %zu written", o.n, n);
  for (size_t i = 0; i < n; i++) {
    const struct json_field *f = &o.fields[i];
    CHECK(!strcmp(f->key, keys[i]), "key %zu changed", i);
    if (types[i] == 0) CHECK(f->type == J_STR && !strcmp(f->str, vals[i]), "string %zu changed", i);
    else if (types[i] == 1) CHECK(f->type == J_NUM && f->num == nums[i], "number %zu: %.17g became %.17g", i, nums[i], f->num);
    else CHECK(f->type == J_BOOL && f->boolean == (nums[i] > 0), "boolean %zu changed", i);
  }
  json_free(&o);
  jw_free(&w);
  round_trips++;
}

#ifdef __SANITIZE_ADDRESS__
#include <sanitizer/common_interface_defs.h>
/* A sanitizer's report ends the program: say how to repeat it (the loop is deterministic). */
static void on_sanitizer_death(void) {
  fprintf(stderr, "vmbox-fuzz: died at iteration %llu of seed %llu (run the same iterations and seed again to repeat it)\n",
          (unsigned long long)iteration, (unsigned long long)seed);
}
#endif

int main(int argc, char **argv) {
  if (argc < 2) {
    fprintf(stderr, "usage: %s ITERATIONS [SEED]\n", argv[0]);
    return 2;
  }
  unsigned long long iterations = strtoull(argv[1], NULL, 10);
  seed = argc > 2 ? strtoull(argv[2], NULL, 10) : 1;
  rng_state = seed;
#ifdef __SANITIZE_ADDRESS__
  __sanitizer_set_death_callback(on_sanitizer_death);
#endif
  out_fd = memfd_create("vmbox-fuzz-out", 0);
  if (out_fd < 0) {
    perror("memfd_create");
    return 2;
  }
  proto_set_port(out_fd);
  for (iteration = 0; iteration < iterations; iteration++) {
    switch (iteration % 4) {
    case 0: case 1: fuzz_frames(); break;
    case 2: fuzz_json(); break;
    default: fuzz_round_trip(); break;
    }
  }
  printf("vmbox-fuzz: %llu iterations (seed %llu): %llu frames out, %llu stub calls, %llu power-offs, JSON %llu parsed / %llu refused, "
         "%llu round trips\n",
         iterations, (unsigned long long)seed, frames_out, stub_calls, power_offs, json_ok, json_bad, round_trips);
  free(out_copy);
  buf_free(&in);
  close(out_fd);
  return 0;
}
