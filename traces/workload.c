/*
** workload.c: synthetic traces from `workload.*` config keys (see trace.h;
** docs/traces.md lists every key with its default).
**
** Arrivals: a renewal process with mean gap 1/rate_rps. Poisson draws
** exponential gaps; gamma draws gamma gaps of shape k = 1/cv^2 and scale
** 1/(rate_rps k), whose mean is 1/rate_rps and coefficient of variation cv
** (cv = 1 is the exponential; cv > 1 is burstier than Poisson). Gaps are
** rounded to the nanosecond and summed as integers, so arrival times carry
** no floating-point drift however long the trace.
**
** Lengths (prompt and output alike, each from its own stream):
**   fixed      `tokens`
**   uniform    integers in [min, max], each equally likely
**   lognormal  round(exp(N(ln median, sigma^2))), clamped to [min, max]
**   zipf       P(n) proportional to n^-alpha for n in [min, max]
**   empirical  `values` drawn with probabilities proportional to `weights`
** A distribution reads only its own keys, so a key that does not apply to
** the chosen one stays unread and config_check_unused() reports it.
**
** Streams "workload.arrivals", "workload.prompt" and "workload.output" are
** independent: changing the length distributions never moves an arrival.
*/
#include <gsl/gsl_randist.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "infsim/rng.h"
#include "infsim/trace.h"

/* Bounds (named so that messages and docs agree). */
#define WORKLOAD_MAX_REQUESTS INT64_C(100000000) /* 100 M requests = 2.4 GB of trace */
#define WORKLOAD_MAX_DURATION_S 1e8
#define WORKLOAD_MAX_RATE_RPS 1e9
#define WORKLOAD_MAX_TABLE INT64_C(4194304)      /* zipf support size / empirical values */
#define WORKLOAD_MAX_SIGMA 10.0
#define WORKLOAD_MAX_ALPHA 20.0
#define WORKLOAD_MAX_CV 100.0

typedef enum { DIST_FIXED, DIST_UNIFORM, DIST_LOGNORMAL, DIST_ZIPF, DIST_EMPIRICAL } dist_kind;
static const char *const k_dist_names[] = {"fixed", "uniform", "lognormal", "zipf", "empirical", NULL};

typedef struct {
  dist_kind kind;
  int64_t tokens;   /* fixed */
  int64_t min, max; /* uniform, zipf: support; lognormal: clamps */
  double mu, sigma; /* lognormal */
  gsl_ran_discrete_t *table; /* zipf, empirical */
  int64_t *values;           /* empirical */
} length_dist;

typedef struct {
  const char *side;       /* "prompt" or "output" */
  int64_t median_tokens;  /* lognormal median and fixed default */
  int64_t max_tokens;     /* default max */
} length_defaults;

static void key_of(char *buf, size_t n, const char *prefix, const char *side, const char *name) {
  if (side != NULL) snprintf(buf, n, "%s.%s.%s", prefix, side, name);
  else snprintf(buf, n, "%s.%s", prefix, name);
}

/* Parses a comma list of numbers from config value text. */
static infsim_status parse_list(infsim_config *cfg, const char *key, const char *text, bool integers,
                                double **out, size_t *count, infsim_error *err) {
  size_t cap = 1;
  for (const char *p = text; *p != '\0'; p++) cap += *p == ',';
  double *v = malloc(cap * sizeof *v);
  if (v == NULL) return infsim_fail(err, INFSIM_ENOMEM, "%s: out of memory", key);
  size_t n = 0;
  const char *p = text;
  for (;;) {
    while (*p == ' ' || *p == '\t') p++;
    char *end;
    double x = strtod(p, &end);
    const char *q = end;
    while (*q == ' ' || *q == '\t') q++;
    bool bad = end == p || (*q != ',' && *q != '\0') || !isfinite(x) || (integers && x != floor(x));
    if (bad) {
      free(v);
      return infsim_fail(err, INFSIM_EINPUT, "%s: %s: item %zu is not %s in '%s'", infsim_config_origin(cfg, key),
                         key, n + 1, integers ? "an integer" : "a number", text);
    }
    v[n++] = x;
    if (*q == '\0') break;
    p = q + 1;
  }
  *out = v;
  *count = n;
  return INFSIM_OK;
}

static infsim_status read_min_max(infsim_config *cfg, const char *prefix, const length_defaults *d, length_dist *ld,
                                  infsim_error *err) {
  char kmin[256], kmax[256];
  key_of(kmin, sizeof kmin, prefix, d->side, "min");
  key_of(kmax, sizeof kmax, prefix, d->side, "max");
  infsim_status st = infsim_config_int(cfg, kmin, 1, 1, INFSIM_TRACE_MAX_TOKENS, &ld->min, err);
  if (st == INFSIM_OK) st = infsim_config_int(cfg, kmax, d->max_tokens, 1, INFSIM_TRACE_MAX_TOKENS, &ld->max, err);
  if (st == INFSIM_OK && ld->min > ld->max) {
    const char *o = infsim_config_origin(cfg, kmin);
    if (strcmp(o, "default") == 0) o = infsim_config_origin(cfg, kmax);
    st = infsim_fail(err, INFSIM_EINPUT, "%s: %s: %lld is above %s (%lld)", o, kmin, (long long)ld->min, kmax,
                     (long long)ld->max);
  }
  return st;
}

static infsim_status read_empirical(infsim_config *cfg, const char *prefix, const char *side, length_dist *ld,
                                    infsim_error *err) {
  char kv[256], kw[256];
  key_of(kv, sizeof kv, prefix, side, "values");
  key_of(kw, sizeof kw, prefix, side, "weights");
  const char *vtext, *wtext;
  infsim_status st = infsim_config_string(cfg, kv, "", &vtext, err);
  if (st != INFSIM_OK) return st;
  if (vtext[0] == '\0')
    return infsim_fail(err, INFSIM_EINPUT, "%s: %s: required by dist empirical (a list of token counts)",
                       infsim_config_origin(cfg, kv), kv);
  double *vals = NULL, *w = NULL;
  size_t nv = 0, nw = 0;
  st = parse_list(cfg, kv, vtext, true, &vals, &nv, err);
  if (st == INFSIM_OK) st = infsim_config_string(cfg, kw, "", &wtext, err);
  if (st == INFSIM_OK && wtext[0] != '\0') st = parse_list(cfg, kw, wtext, false, &w, &nw, err);
  if (st == INFSIM_OK && (int64_t)nv > WORKLOAD_MAX_TABLE)
    st = infsim_fail(err, INFSIM_EINPUT, "%s: %s: more than %lld values", infsim_config_origin(cfg, kv), kv,
                     (long long)WORKLOAD_MAX_TABLE);
  for (size_t i = 0; st == INFSIM_OK && i < nv; i++)
    if (vals[i] < 1 || vals[i] > (double)INFSIM_TRACE_MAX_TOKENS)
      st = infsim_fail(err, INFSIM_EINPUT, "%s: %s: item %zu (%g) is outside [1, %lld]", infsim_config_origin(cfg, kv),
                       kv, i + 1, vals[i], (long long)INFSIM_TRACE_MAX_TOKENS);
  if (st == INFSIM_OK && w == NULL) {
    w = malloc(nv * sizeof *w); /* no weights: every value equally likely */
    if (w == NULL) st = infsim_fail(err, INFSIM_ENOMEM, "%s: out of memory", kw);
    for (size_t i = 0; st == INFSIM_OK && i < nv; i++) w[i] = 1.0;
    nw = nv;
  }
  double total = 0;
  for (size_t i = 0; st == INFSIM_OK && i < nw; i++) {
    if (w[i] < 0)
      st = infsim_fail(err, INFSIM_EINPUT, "%s: %s: item %zu is negative", infsim_config_origin(cfg, kw), kw, i + 1);
    total += w[i];
  }
  if (st == INFSIM_OK && nw != nv)
    st = infsim_fail(err, INFSIM_EINPUT, "%s: %s: %zu weights for %zu values", infsim_config_origin(cfg, kw), kw, nw,
                     nv);
  if (st == INFSIM_OK && !(total > 0))
    st = infsim_fail(err, INFSIM_EINPUT, "%s: %s: the weights sum to zero", infsim_config_origin(cfg, kw), kw);
  if (st == INFSIM_OK) {
    ld->values = malloc(nv * sizeof *ld->values);
    ld->table = gsl_ran_discrete_preproc(nv, w);
    if (ld->values == NULL || ld->table == NULL) st = infsim_fail(err, INFSIM_ENOMEM, "%s: out of memory", kv);
    for (size_t i = 0; st == INFSIM_OK && i < nv; i++) ld->values[i] = (int64_t)vals[i];
  }
  free(vals);
  free(w);
  return st;
}

static infsim_status read_zipf(infsim_config *cfg, const char *prefix, const length_defaults *d, length_dist *ld,
                               infsim_error *err) {
  char ka[256];
  key_of(ka, sizeof ka, prefix, d->side, "alpha");
  double alpha;
  infsim_status st = infsim_config_double(cfg, ka, 1.0, 0.0, WORKLOAD_MAX_ALPHA, &alpha, err);
  if (st == INFSIM_OK) st = read_min_max(cfg, prefix, d, ld, err);
  if (st != INFSIM_OK) return st;
  int64_t n = ld->max - ld->min + 1;
  if (n > WORKLOAD_MAX_TABLE) {
    char kmax[256];
    key_of(kmax, sizeof kmax, prefix, d->side, "max");
    return infsim_fail(err, INFSIM_EINPUT, "%s: %s: zipf support [min, max] may hold at most %lld values",
                       infsim_config_origin(cfg, kmax), kmax, (long long)WORKLOAD_MAX_TABLE);
  }
  double *w = malloc((size_t)n * sizeof *w);
  if (w == NULL) return infsim_fail(err, INFSIM_ENOMEM, "%s: out of memory", ka);
  for (int64_t i = 0; i < n; i++) w[i] = pow((double)(ld->min + i), -alpha);
  ld->table = gsl_ran_discrete_preproc((size_t)n, w);
  free(w);
  if (ld->table == NULL) return infsim_fail(err, INFSIM_ENOMEM, "%s: out of memory", ka);
  return INFSIM_OK;
}

static infsim_status read_length_dist(infsim_config *cfg, const char *prefix, const length_defaults *d,
                                      length_dist *ld, infsim_error *err) {
  char key[256];
  int kind;
  key_of(key, sizeof key, prefix, d->side, "dist");
  infsim_status st = infsim_config_enum(cfg, key, "lognormal", k_dist_names, &kind, err);
  if (st != INFSIM_OK) return st;
  ld->kind = (dist_kind)kind;
  switch (ld->kind) {
  case DIST_FIXED:
    key_of(key, sizeof key, prefix, d->side, "tokens");
    return infsim_config_int(cfg, key, d->median_tokens, 1, INFSIM_TRACE_MAX_TOKENS, &ld->tokens, err);
  case DIST_UNIFORM:
    return read_min_max(cfg, prefix, d, ld, err);
  case DIST_LOGNORMAL: {
    double median;
    key_of(key, sizeof key, prefix, d->side, "median");
    st = infsim_config_double(cfg, key, (double)d->median_tokens, 1e-3, (double)INFSIM_TRACE_MAX_TOKENS, &median, err);
    if (st != INFSIM_OK) return st;
    ld->mu = log(median);
    key_of(key, sizeof key, prefix, d->side, "sigma");
    st = infsim_config_double(cfg, key, 1.0, 0.0, WORKLOAD_MAX_SIGMA, &ld->sigma, err);
    if (st != INFSIM_OK) return st;
    return read_min_max(cfg, prefix, d, ld, err);
  }
  case DIST_ZIPF:
    return read_zipf(cfg, prefix, d, ld, err);
  case DIST_EMPIRICAL:
    return read_empirical(cfg, prefix, d->side, ld, err);
  }
  return INFSIM_OK;
}

static void length_dist_free(length_dist *ld) {
  if (ld->table != NULL) gsl_ran_discrete_free(ld->table);
  free(ld->values);
  memset(ld, 0, sizeof *ld);
}

static int64_t draw_length(const length_dist *ld, gsl_rng *r) {
  switch (ld->kind) {
  case DIST_FIXED:
    return ld->tokens;
  case DIST_UNIFORM:
    return ld->min + (int64_t)gsl_rng_uniform_int(r, (unsigned long)(ld->max - ld->min + 1));
  case DIST_LOGNORMAL: {
    double x = gsl_ran_lognormal(r, ld->mu, ld->sigma);
    if (!(x < (double)ld->max)) return ld->max; /* also catches inf */
    int64_t v = (int64_t)llround(x);
    return v < ld->min ? ld->min : v > ld->max ? ld->max : v;
  }
  case DIST_ZIPF:
    return ld->min + (int64_t)gsl_ran_discrete(r, ld->table);
  case DIST_EMPIRICAL:
    return ld->values[gsl_ran_discrete(r, ld->table)];
  }
  return 1;
}

typedef struct {
  int64_t requests;   /* count mode */
  int64_t duration_ns; /* > 0: time mode */
  bool gamma;
  double rate_rps, cv;
} arrival_spec;

static infsim_status read_arrivals(infsim_config *cfg, const char *prefix, arrival_spec *a, infsim_error *err) {
  static const char *const kinds[] = {"poisson", "gamma", NULL};
  char key[256], kreq[256];
  double duration_s;
  key_of(key, sizeof key, prefix, NULL, "duration_s");
  infsim_status st = infsim_config_double(cfg, key, 0.0, 0.0, WORKLOAD_MAX_DURATION_S, &duration_s, err);
  if (st != INFSIM_OK) return st;
  a->duration_ns = llround(duration_s * 1e9);
  /* A positive duration that rounds to 0 ns would silently mean "count
   * mode, 1000 requests" (found by fuzzing): refuse it. */
  if (duration_s > 0 && a->duration_ns < 1)
    return infsim_fail(err, INFSIM_EINPUT, "%s: %s: must be 0 (a request count instead) or at least 1e-9 s, got %g",
                       infsim_config_origin(cfg, key), key, duration_s);
  key_of(kreq, sizeof kreq, prefix, NULL, "requests");
  if (a->duration_ns > 0) {
    if (infsim_config_has(cfg, kreq))
      return infsim_fail(err, INFSIM_EINPUT, "%s: %s: set either %s or %s, not both", infsim_config_origin(cfg, kreq),
                         kreq, kreq, key);
  } else {
    st = infsim_config_int(cfg, kreq, 1000, 1, WORKLOAD_MAX_REQUESTS, &a->requests, err);
    if (st != INFSIM_OK) return st;
  }
  int kind;
  key_of(key, sizeof key, prefix, NULL, "arrival");
  st = infsim_config_enum(cfg, key, "poisson", kinds, &kind, err);
  if (st != INFSIM_OK) return st;
  a->gamma = kind == 1;
  key_of(key, sizeof key, prefix, NULL, "rate_rps");
  st = infsim_config_double(cfg, key, 1.0, 1e-9, WORKLOAD_MAX_RATE_RPS, &a->rate_rps, err);
  if (st != INFSIM_OK) return st;
  if (!(a->rate_rps > 0))
    return infsim_fail(err, INFSIM_EINPUT, "%s: %s: must be > 0", infsim_config_origin(cfg, key), key);
  a->cv = 1.0;
  if (a->gamma) {
    key_of(key, sizeof key, prefix, NULL, "cv");
    st = infsim_config_double(cfg, key, 1.0, 1e-3, WORKLOAD_MAX_CV, &a->cv, err);
  }
  return st;
}

static double draw_gap_s(const arrival_spec *a, gsl_rng *r) {
  if (!a->gamma) return gsl_ran_exponential(r, 1.0 / a->rate_rps);
  double k = 1.0 / (a->cv * a->cv);
  return gsl_ran_gamma(r, k, 1.0 / (a->rate_rps * k));
}

static infsim_status generate(const arrival_spec *a, const length_dist *pd, const length_dist *od, uint64_t seed,
                              infsim_trace *out, infsim_error *err) {
  gsl_rng *ra = infsim_rng_new(seed, "workload.arrivals");
  gsl_rng *rp = infsim_rng_new(seed, "workload.prompt");
  gsl_rng *ro = infsim_rng_new(seed, "workload.output");
  infsim_status st = INFSIM_OK;
  if (ra == NULL || rp == NULL || ro == NULL) st = infsim_fail(err, INFSIM_ENOMEM, "workload: out of memory");
  int64_t t_ns = 0;
  const int64_t max_ns = INFSIM_TRACE_MAX_ARRIVAL_S * INT64_C(1000000000);
  while (st == INFSIM_OK) {
    if (a->duration_ns <= 0 && (int64_t)out->count >= a->requests) break;
    double gap_ns = draw_gap_s(a, ra) * 1e9;
    if (!(gap_ns < (double)max_ns) || t_ns > max_ns - (int64_t)llround(gap_ns)) {
      st = infsim_fail(err, INFSIM_EINPUT, "workload: arrivals pass %lld s; lower requests or raise rate_rps",
                       (long long)INFSIM_TRACE_MAX_ARRIVAL_S);
      break;
    }
    t_ns += (int64_t)llround(gap_ns);
    if (a->duration_ns > 0 && t_ns >= a->duration_ns) break;
    if ((int64_t)out->count >= WORKLOAD_MAX_REQUESTS) {
      st = infsim_fail(err, INFSIM_EINPUT, "workload: more than %lld requests; shorten duration_s or lower rate_rps",
                       (long long)WORKLOAD_MAX_REQUESTS);
      break;
    }
    infsim_trace_request req = {t_ns, draw_length(pd, rp), draw_length(od, ro)};
    st = infsim_trace_append(out, req, err);
  }
  if (st == INFSIM_OK && out->count == 0)
    st = infsim_fail(err, INFSIM_EINPUT, "workload: no request arrives before duration_s; raise duration_s or rate_rps");
  if (ra != NULL) gsl_rng_free(ra);
  if (rp != NULL) gsl_rng_free(rp);
  if (ro != NULL) gsl_rng_free(ro);
  return st;
}

/* Reads every generator key under prefix. Defaults: a chat-like workload
 * (median prompt 600, output 200 tokens). The caller frees pd and od. */
static infsim_status read_spec(infsim_config *cfg, const char *prefix, arrival_spec *a, length_dist *pd,
                               length_dist *od, infsim_error *err) {
  static const length_defaults pdef = {"prompt", 600, 32768}, odef = {"output", 200, 4096};
  memset(a, 0, sizeof *a);
  memset(pd, 0, sizeof *pd);
  memset(od, 0, sizeof *od);
  infsim_status st = read_arrivals(cfg, prefix, a, err);
  if (st == INFSIM_OK) st = read_length_dist(cfg, prefix, &pdef, pd, err);
  if (st == INFSIM_OK) st = read_length_dist(cfg, prefix, &odef, od, err);
  return st;
}

infsim_status infsim_workload_generate(infsim_config *cfg, const char *prefix, uint64_t seed, infsim_trace *out,
                                       infsim_error *err) {
  memset(out, 0, sizeof *out);
  arrival_spec a;
  length_dist pd, od;
  infsim_status st = read_spec(cfg, prefix, &a, &pd, &od, err);
  if (st == INFSIM_OK) {
    if (a.duration_ns <= 0) {
      out->requests = malloc((size_t)a.requests * sizeof *out->requests);
      if (out->requests == NULL) st = infsim_fail(err, INFSIM_ENOMEM, "workload: out of memory");
      else out->capacity = (size_t)a.requests;
    }
  }
  if (st == INFSIM_OK) st = generate(&a, &pd, &od, seed, out, err);
  length_dist_free(&pd);
  length_dist_free(&od);
  if (st != INFSIM_OK) infsim_trace_free(out);
  return st;
}

infsim_status infsim_workload_check(infsim_config *cfg, const char *prefix, infsim_error *err) {
  arrival_spec a;
  length_dist pd, od;
  infsim_status st = read_spec(cfg, prefix, &a, &pd, &od, err);
  length_dist_free(&pd);
  length_dist_free(&od);
  infsim_config_forget(cfg, prefix);
  return st;
}
