#include "json.h"

#include <stdint.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct parser {
  const char *p, *end;
};

static void skip_ws(struct parser *ps) {
  while (ps->p < ps->end && (*ps->p == ' ' || *ps->p == '\t' || *ps->p == '\n' || *ps->p == '\r'))
    ps->p++;
}

static int hex4(const char *p, unsigned *out) {
  unsigned v = 0;
  for (int i = 0; i < 4; i++) {
    char c = p[i];
    v <<= 4;
    if (c >= '0' && c <= '9') v |= c - '0';
    else if (c >= 'a' && c <= 'f') v |= c - 'a' + 10;
    else if (c >= 'A' && c <= 'F') v |= c - 'A' + 10;
    else return -1;
  }
  *out = v;
  return 0;
}

static size_t put_utf8(char *o, unsigned cp) {
  if (cp < 0x80) { o[0] = cp; return 1; }
  if (cp < 0x800) { o[0] = 0xC0 | (cp >> 6); o[1] = 0x80 | (cp & 0x3F); return 2; }
  if (cp < 0x10000) {
    o[0] = 0xE0 | (cp >> 12); o[1] = 0x80 | ((cp >> 6) & 0x3F); o[2] = 0x80 | (cp & 0x3F);
    return 3;
  }
  o[0] = 0xF0 | (cp >> 18); o[1] = 0x80 | ((cp >> 12) & 0x3F);
  o[2] = 0x80 | ((cp >> 6) & 0x3F); o[3] = 0x80 | (cp & 0x3F);
  return 4;
}

/* Parses a string at ps->p (which points at the opening quote). The decoded
 * form is never longer than the encoded one, so one allocation suffices.
 * NUL bytes are refused: paths and argv cannot carry them. */
static char *parse_string(struct parser *ps) {
  if (ps->p >= ps->end || *ps->p != '"') return NULL;
  ps->p++;
  char *out = malloc(ps->end - ps->p + 1), *o = out;
  if (!out) return NULL;
  while (ps->p < ps->end && *ps->p != '"') {
    char c = *ps->p++;
    if ((unsigned char)c < 0x20) goto fail;
    if (c != '\\') { *o++ = c; continue; }
    if (ps->p >= ps->end) goto fail;
    c = *ps->p++;
    switch (c) {
    case '"': *o++ = '"'; break;
    case '\\': *o++ = '\\'; break;
    case '/': *o++ = '/'; break;
    case 'b': *o++ = '\b'; break;
    case 'f': *o++ = '\f'; break;
    case 'n': *o++ = '\n'; break;
    case 'r': *o++ = '\r'; break;
    case 't': *o++ = '\t'; break;
    case 'u': {
      unsigned cp;
      if (ps->end - ps->p < 4 || hex4(ps->p, &cp) < 0) goto fail;
      ps->p += 4;
      if (cp >= 0xD800 && cp < 0xDC00) {
        unsigned lo;
        if (ps->end - ps->p < 6 || ps->p[0] != '\\' || ps->p[1] != 'u' || hex4(ps->p + 2, &lo) < 0 ||
            lo < 0xDC00 || lo > 0xDFFF)
          goto fail;
        ps->p += 6;
        cp = 0x10000 + ((cp - 0xD800) << 10) + (lo - 0xDC00);
      }
      if (cp == 0) goto fail;
      o += put_utf8(o, cp);
      break;
    }
    default: goto fail;
    }
  }
  if (ps->p >= ps->end) goto fail;
  ps->p++;
  *o = 0;
  return out;
fail:
  free(out);
  return NULL;
}

static int parse_value(struct parser *ps, struct json_field *f) {
  skip_ws(ps);
  if (ps->p >= ps->end) return -1;
  char c = *ps->p;
  if (c == '"') {
    f->type = J_STR;
    f->str = parse_string(ps);
    return f->str ? 0 : -1;
  }
  if (c == '[') {
    ps->p++;
    f->type = J_STRARR;
    size_t cap = 8;
    f->arr = calloc(cap + 1, sizeof(char *));
    if (!f->arr) return -1;
    skip_ws(ps);
    if (ps->p < ps->end && *ps->p == ']') { ps->p++; return 0; }
    for (;;) {
      skip_ws(ps);
      char *s = parse_string(ps);
      if (!s) return -1;
      if (f->arr_len == cap) {
        cap *= 2;
        char **n = realloc(f->arr, (cap + 1) * sizeof(char *));
        if (!n) { free(s); return -1; }
        f->arr = n;
      }
      f->arr[f->arr_len++] = s;
      f->arr[f->arr_len] = NULL;
      skip_ws(ps);
      if (ps->p < ps->end && *ps->p == ',') { ps->p++; continue; }
      if (ps->p < ps->end && *ps->p == ']') { ps->p++; return 0; }
      return -1;
    }
  }
  if (ps->end - ps->p >= 4 && !memcmp(ps->p, "true", 4)) { f->type = J_BOOL; f->boolean = true; ps->p += 4; return 0; }
  if (ps->end - ps->p >= 5 && !memcmp(ps->p, "false", 5)) { f->type = J_BOOL; ps->p += 5; return 0; }
  if (ps->end - ps->p >= 4 && !memcmp(ps->p, "null", 4)) { f->type = J_NULL; ps->p += 4; return 0; }
  if (c == '-' || (c >= '0' && c <= '9')) {
    char tmp[64];
    size_t n = 0;
    while (ps->p < ps->end && n < sizeof tmp - 1 && strchr("+-0123456789.eE", *ps->p)) tmp[n++] = *ps->p++;
    tmp[n] = 0;
    char *e;
    f->type = J_NUM;
    f->num = strtod(tmp, &e);
    return *e ? -1 : 0;
  }
  return -1;
}

int json_parse(const char *text, size_t len, struct json_obj *out) {
  struct parser ps = {text, text + len};
  memset(out, 0, sizeof *out);
  skip_ws(&ps);
  if (ps.p >= ps.end || *ps.p++ != '{') return -1;
  skip_ws(&ps);
  if (ps.p < ps.end && *ps.p == '}') { ps.p++; goto tail; }
  for (;;) {
    if (out->n == JSON_MAX_FIELDS) goto fail;
    struct json_field *f = &out->fields[out->n++];
    skip_ws(&ps);
    f->key = parse_string(&ps);
    if (!f->key) goto fail;
    skip_ws(&ps);
    if (ps.p >= ps.end || *ps.p++ != ':') goto fail;
    if (parse_value(&ps, f) < 0) goto fail;
    skip_ws(&ps);
    if (ps.p < ps.end && *ps.p == ',') { ps.p++; continue; }
    if (ps.p < ps.end && *ps.p == '}') { ps.p++; break; }
    goto fail;
  }
tail:
  skip_ws(&ps);
  if (ps.p != ps.end) goto fail;
  return 0;
fail:
  json_free(out);
  return -1;
}

void json_free(struct json_obj *o) {
  for (size_t i = 0; i < o->n; i++) {
    struct json_field *f = &o->fields[i];
    free(f->key);
    free(f->str);
    if (f->arr) {
      for (size_t j = 0; j < f->arr_len; j++) free(f->arr[j]);
      free(f->arr);
    }
  }
  memset(o, 0, sizeof *o);
}

const struct json_field *json_get(const struct json_obj *o, const char *key) {
  for (size_t i = 0; i < o->n; i++)
    if (o->fields[i].key && !strcmp(o->fields[i].key, key)) return &o->fields[i];
  return NULL;
}

const char *json_str(const struct json_obj *o, const char *key, const char *fallback) {
  const struct json_field *f = json_get(o, key);
  return f && f->type == J_STR ? f->str : fallback;
}

double json_num(const struct json_obj *o, const char *key, double fallback) {
  const struct json_field *f = json_get(o, key);
  return f && f->type == J_NUM ? f->num : fallback;
}

bool json_bool(const struct json_obj *o, const char *key, bool fallback) {
  const struct json_field *f = json_get(o, key);
  return f && f->type == J_BOOL ? f->boolean : fallback;
}

/* ---- writer ---- */

static void jw_put(struct jw *w, const char *s, size_t n) {
  if (w->len + n + 1 > w->cap) {
    size_t cap = w->cap ? w->cap : 256;
    while (w->len + n + 1 > cap) cap *= 2;
    char *ns = realloc(w->s, cap);
    if (!ns) abort();
    w->s = ns;
    w->cap = cap;
  }
  memcpy(w->s + w->len, s, n);
  w->len += n;
  w->s[w->len] = 0;
}

void jw_begin(struct jw *w) {
  memset(w, 0, sizeof *w);
  jw_put(w, "{", 1);
  w->first = true;
}

void jw_str(struct jw *w, const char *val) {
  jw_put(w, "\"", 1);
  for (const unsigned char *p = (const unsigned char *)val; *p; p++) {
    char esc[8];
    if (*p == '"' || *p == '\\') { esc[0] = '\\'; esc[1] = *p; jw_put(w, esc, 2); }
    else if (*p < 0x20) { snprintf(esc, sizeof esc, "\\u%04x", *p); jw_put(w, esc, 6); }
    else jw_put(w, (const char *)p, 1);
  }
  jw_put(w, "\"", 1);
}

static void jw_key(struct jw *w, const char *key) {
  if (!w->first) jw_put(w, ",", 1);
  w->first = false;
  jw_str(w, key);
  jw_put(w, ":", 1);
}

void jw_key_str(struct jw *w, const char *key, const char *val) { jw_key(w, key); jw_str(w, val); }
void jw_key_raw(struct jw *w, const char *key, const char *raw) { jw_key(w, key); jw_put(w, raw, strlen(raw)); }
void jw_raw(struct jw *w, const char *raw) { jw_put(w, raw, strlen(raw)); }

void jw_key_num(struct jw *w, const char *key, double val) {
  char tmp[40];
  /* JSON has no NaN or infinity: null says "no number" (the host refuses it where one is needed).
   * Whole numbers print exactly; the cast is checked first, as one past int64's range is undefined. */
  if (!isfinite(val)) snprintf(tmp, sizeof tmp, "null");
  else if (val > -9.2e18 && val < 9.2e18 && val == (double)(int64_t)val) snprintf(tmp, sizeof tmp, "%lld", (long long)val);
  else snprintf(tmp, sizeof tmp, "%.17g", val);
  jw_key_raw(w, key, tmp);
}

void jw_key_bool(struct jw *w, const char *key, bool val) { jw_key_raw(w, key, val ? "true" : "false"); }

const char *jw_end(struct jw *w) {
  jw_put(w, "}", 1);
  return w->s;
}

void jw_free(struct jw *w) { free(w->s); memset(w, 0, sizeof *w); }
