/*
** sweep_grid.c: the sweep's grid (axes of config values and their cross
** product) and the content keys of jobs (sweep.h).
**
** Invariants: every axis has at least one value, keys are distinct, and
** the product of the axis sizes stays within INFSIM_GRID_MAX_POINTS, so
** point indices fit size_t and a point's values are found by mixed-radix
** division without overflow.
*/
#include <ctype.h>
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "infsim/sweep.h"

typedef struct {
  char *key;
  char **values;
  size_t count;
} grid_axis;

struct infsim_grid {
  grid_axis axes[INFSIM_GRID_MAX_AXES];
  size_t axis_count;
  size_t points;
};

infsim_grid *infsim_grid_new(void) {
  infsim_grid *g = calloc(1, sizeof *g);
  if (g != NULL) g->points = 1;
  return g;
}

static void axis_free(grid_axis *a) {
  for (size_t i = 0; i < a->count; i++) free(a->values[i]);
  free(a->values);
  free(a->key);
  memset(a, 0, sizeof *a);
}

void infsim_grid_free(infsim_grid *g) {
  if (g == NULL) return;
  for (size_t i = 0; i < g->axis_count; i++) axis_free(&g->axes[i]);
  free(g);
}

/* Copy of s[0..len) without blanks around it. */
static char *trimmed_copy(const char *s, size_t len) {
  while (len > 0 && isspace((unsigned char)*s)) s++, len--;
  while (len > 0 && isspace((unsigned char)s[len - 1])) len--;
  char *out = malloc(len + 1);
  if (out != NULL) {
    memcpy(out, s, len);
    out[len] = '\0';
  }
  return out;
}

static bool parse_number(const char *s, double *out) {
  char *end;
  errno = 0;
  double v = strtod(s, &end);
  if (s[0] == '\0' || *end != '\0' || errno == ERANGE || !isfinite(v)) return false;
  *out = v;
  return true;
}

static bool axis_push(grid_axis *a, char *value) {
  if (value == NULL) return false;
  char **p = realloc(a->values, (a->count + 1) * sizeof *p);
  if (p == NULL) {
    free(value);
    return false;
  }
  a->values = p;
  a->values[a->count++] = value;
  return true;
}

/* "LO:HI:STEP" into values; 1 expanded, 0 not a range, -1 bad range. */
static int expand_range(const char *text, grid_axis *a, size_t limit, const char **why) {
  const char *c1 = strchr(text, ':');
  const char *c2 = c1 != NULL ? strchr(c1 + 1, ':') : NULL;
  if (c1 == NULL || c2 == NULL || strchr(c2 + 1, ':') != NULL) return 0;
  char buf[3][64];
  const char *parts[3] = {text, c1 + 1, c2 + 1};
  size_t lens[3] = {(size_t)(c1 - text), (size_t)(c2 - c1 - 1), strlen(c2 + 1)};
  double v[3];
  for (int i = 0; i < 3; i++) {
    if (lens[i] >= sizeof buf[i]) return 0;
    memcpy(buf[i], parts[i], lens[i]);
    buf[i][lens[i]] = '\0';
    if (!parse_number(buf[i], &v[i])) return 0;
  }
  if (!(v[2] > 0) || v[1] < v[0]) {
    *why = "a range LO:HI:STEP needs STEP > 0 and HI >= LO";
    return -1;
  }
  /* Steps counted in integers so that 0.1:0.5:0.1 gives 5 values, not 4
   * (a relative slack of 1e-9 absorbs the binary rounding of STEP). */
  double steps = floor((v[1] - v[0]) / v[2] * (1 + 1e-9) + 1e-9);
  if (steps + 1 > (double)limit) {
    *why = "range has too many values";
    return -1;
  }
  for (double k = 0; k <= steps; k++) {
    char num[64];
    snprintf(num, sizeof num, "%.10g", v[0] + k * v[2]);
    if (!axis_push(a, strdup(num))) {
      *why = "out of memory";
      return -1;
    }
  }
  return 1;
}

infsim_status infsim_grid_add(infsim_grid *g, const char *spec, infsim_error *err) {
  const char *eq = strchr(spec, '=');
  if (eq == NULL) return infsim_fail(err, INFSIM_EINPUT, "--grid %.200s: expected key=v1,v2,...", spec);
  if (g->axis_count == INFSIM_GRID_MAX_AXES)
    return infsim_fail(err, INFSIM_EINPUT, "--grid %.200s: more than %d axes", spec, INFSIM_GRID_MAX_AXES);
  grid_axis a = {0};
  a.key = trimmed_copy(spec, (size_t)(eq - spec));
  if (a.key == NULL) return infsim_fail(err, INFSIM_ENOMEM, "out of memory");
  infsim_status st = INFSIM_OK;
  if (a.key[0] == '\0') st = infsim_fail(err, INFSIM_EINPUT, "--grid %.200s: empty key", spec);
  if (st == INFSIM_OK && strcmp(a.key, "seed") == 0)
    st = infsim_fail(err, INFSIM_EINPUT, "--grid %.200s: seeds come from --seeds N, not a grid axis", spec);
  for (size_t i = 0; st == INFSIM_OK && i < g->axis_count; i++)
    if (strcmp(g->axes[i].key, a.key) == 0)
      st = infsim_fail(err, INFSIM_EINPUT, "--grid %.200s: key '%.100s' already has an axis", spec, a.key);
  size_t limit = INFSIM_GRID_MAX_POINTS / g->points;
  const char *why = NULL;
  int ranged = st == INFSIM_OK ? expand_range(eq + 1, &a, limit, &why) : 0;
  if (ranged < 0) st = infsim_fail(err, INFSIM_EINPUT, "--grid %.200s: %s", spec, why);
  for (const char *p = eq + 1; st == INFSIM_OK && ranged == 0;) {
    size_t len = strcspn(p, ",");
    char *v = trimmed_copy(p, len);
    if (v == NULL) {
      st = infsim_fail(err, INFSIM_ENOMEM, "out of memory");
    } else if (v[0] == '\0') {
      free(v);
      st = infsim_fail(err, INFSIM_EINPUT, "--grid %.200s: empty value", spec);
    } else if (!axis_push(&a, v)) {
      st = infsim_fail(err, INFSIM_ENOMEM, "out of memory");
    }
    if (p[len] == '\0') break;
    p += len + 1;
  }
  if (st == INFSIM_OK && a.count > limit)
    st = infsim_fail(err, INFSIM_EINPUT, "--grid %.200s: the grid would exceed %d points", spec,
                     INFSIM_GRID_MAX_POINTS);
  for (size_t i = 0; st == INFSIM_OK && strcmp(a.key, INFSIM_RATE_SCALE_KEY) == 0 && i < a.count; i++) {
    double v;
    if (!parse_number(a.values[i], &v) || !(v > 0))
      st = infsim_fail(err, INFSIM_EINPUT, "--grid %.200s: %s: expected a positive number, got '%.40s'", spec,
                       INFSIM_RATE_SCALE_KEY, a.values[i]);
  }
  if (st != INFSIM_OK) {
    axis_free(&a);
    return st;
  }
  g->axes[g->axis_count++] = a;
  g->points *= a.count;
  return INFSIM_OK;
}

size_t infsim_grid_axis_count(const infsim_grid *g) { return g->axis_count; }
const char *infsim_grid_axis_key(const infsim_grid *g, size_t axis) { return g->axes[axis].key; }
size_t infsim_grid_axis_size(const infsim_grid *g, size_t axis) { return g->axes[axis].count; }
size_t infsim_grid_point_count(const infsim_grid *g) { return g->points; }

const char *infsim_grid_value(const infsim_grid *g, size_t point, size_t axis) {
  /* Divide out the axes after this one (they vary faster). */
  for (size_t a = g->axis_count; a-- > axis + 1;) point /= g->axes[a].count;
  return g->axes[axis].values[point % g->axes[axis].count];
}

/* ---- keys ---- */

static void put_u64_le(uint8_t b[8], uint64_t v) {
  for (int i = 0; i < 8; i++) b[i] = (uint8_t)(v >> (8 * i));
}

void infsim_trace_digest(const infsim_trace *trace, uint8_t out[INFSIM_SHA256_BYTES]) {
  infsim_sha256 s;
  infsim_sha256_init(&s);
  uint8_t b[24];
  put_u64_le(b, (uint64_t)trace->count);
  infsim_sha256_update(&s, b, 8);
  for (size_t i = 0; i < trace->count; i++) {
    const infsim_trace_request *r = &trace->requests[i];
    put_u64_le(b, (uint64_t)r->arrival_ns);
    put_u64_le(b + 8, (uint64_t)r->prompt_tokens);
    put_u64_le(b + 16, (uint64_t)r->output_tokens);
    infsim_sha256_update(&s, b, sizeof b);
  }
  infsim_sha256_final(&s, out);
}

/* Length-prefixed, so that ("ab","c") and ("a","bc") differ. */
static void update_field(infsim_sha256 *s, const void *data, size_t bytes) {
  uint8_t b[8];
  put_u64_le(b, (uint64_t)bytes);
  infsim_sha256_update(s, b, 8);
  infsim_sha256_update(s, data, bytes);
}

bool infsim_point_key(const json_t *config, const uint8_t trace_digest[INFSIM_SHA256_BYTES], uint64_t seed,
                      const char *version, char out[INFSIM_SHA256_HEX_BYTES]) {
  json_t *copy = json_deep_copy(config);
  json_t *workload = copy != NULL ? json_object_get(copy, "workload") : NULL;
  if (json_is_object(workload)) json_object_del(workload, "trace");
  /* JSON_REAL_PRECISION(17) prints every double exactly. */
  char *text = copy != NULL ? json_dumps(copy, JSON_SORT_KEYS | JSON_COMPACT | JSON_REAL_PRECISION(17)) : NULL;
  json_decref(copy);
  if (text == NULL) return false;
  infsim_sha256 s;
  infsim_sha256_init(&s);
  static const char tag[] = "infsim-job-key-1";
  update_field(&s, tag, sizeof tag - 1);
  update_field(&s, text, strlen(text));
  free(text);
  update_field(&s, trace_digest, INFSIM_SHA256_BYTES);
  uint8_t b[8];
  put_u64_le(b, seed);
  update_field(&s, b, 8);
  update_field(&s, version, strlen(version));
  uint8_t digest[INFSIM_SHA256_BYTES];
  infsim_sha256_final(&s, digest);
  infsim_sha256_hex(digest, out);
  return true;
}
