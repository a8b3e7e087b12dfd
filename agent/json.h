/* Just enough JSON for the agent's requests: one flat object whose values are
 * strings, numbers, booleans, null, or arrays of strings. Anything else is
 * rejected, which turns a malformed request into a clean channel error. */
#ifndef VMBOX_JSON_H
#define VMBOX_JSON_H

#include <stdbool.h>
#include <stddef.h>

#define JSON_MAX_FIELDS 32

enum json_type { J_NULL, J_BOOL, J_NUM, J_STR, J_STRARR };

struct json_field {
  char *key;
  enum json_type type;
  double num;
  bool boolean;
  char *str;
  char **arr; /* NULL-terminated */
  size_t arr_len;
};

struct json_obj {
  struct json_field fields[JSON_MAX_FIELDS];
  size_t n;
  char *arena; /* every string lives here; one free() */
};

int json_parse(const char *text, size_t len, struct json_obj *out);
void json_free(struct json_obj *o);
const struct json_field *json_get(const struct json_obj *o, const char *key);
const char *json_str(const struct json_obj *o, const char *key, const char *fallback);
double json_num(const struct json_obj *o, const char *key, double fallback);
bool json_bool(const struct json_obj *o, const char *key, bool fallback);

/* Output: a growable string with JSON string escaping. */
struct jw {
  char *s;
  size_t len, cap;
  bool first;
};
void jw_begin(struct jw *w);
void jw_key_str(struct jw *w, const char *key, const char *val);
void jw_key_num(struct jw *w, const char *key, double val);
void jw_key_bool(struct jw *w, const char *key, bool val);
void jw_key_raw(struct jw *w, const char *key, const char *raw);
void jw_raw(struct jw *w, const char *raw);
void jw_str(struct jw *w, const char *val);
const char *jw_end(struct jw *w);
void jw_free(struct jw *w);

#endif
