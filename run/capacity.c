/*
** capacity.c: SLO parsing and the bracket-and-bisect capacity search
** (capacity.h).
**
** Invariants of the search: `met_at` always met the SLO and `missed_at`
** always missed it (when set); for rate met_at < missed_at, for instances
** missed_at < met_at. With k values tried at once (opts->probes), each
** bracketing round moves k doublings
** and each bisection round cuts the bracket k + 1 ways; with k = 1 it is
** the plain sequence. The search ends after O(log(range / tolerance))
** rounds, well inside INFSIM_CAPACITY_MAX_STEPS values for the bounded
** ranges the options allow.
*/
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "infsim/capacity.h"

/* ---- SLO ---- */

infsim_status infsim_slo_parse(const char *text, infsim_slo *out, infsim_error *err) {
  static const char *const metrics[] = {"ttft", "tpot", "e2e"};
  static const char *const stats[] = {"mean", "p50", "p90", "p99"};
  memset(out, 0, sizeof *out);
  const char *p = text;
  while (*p != '\0') {
    size_t len = strcspn(p, ",");
    char item[128];
    if (len == 0 || len >= sizeof item)
      return infsim_fail(err, INFSIM_EINPUT, "--slo %.200s: expected NAME=VALUE[s|ms],... (e.g. ttft_p99=2s)", text);
    memcpy(item, p, len);
    item[len] = '\0';
    if (out->count == INFSIM_SLO_MAX_BOUNDS)
      return infsim_fail(err, INFSIM_EINPUT, "--slo %.200s: more than %d bounds", text, INFSIM_SLO_MAX_BOUNDS);
    char *eq = strchr(item, '=');
    char *us = strchr(item, '_');
    if (eq == NULL || us == NULL || us > eq)
      return infsim_fail(err, INFSIM_EINPUT, "--slo %.200s: '%s': expected METRIC_STAT=VALUE (e.g. ttft_p99=2s)",
                         text, item);
    *eq = '\0';
    *us = '\0';
    int m = -1, s = -1;
    for (int i = 0; i < 3; i++)
      if (strcmp(item, metrics[i]) == 0) m = i;
    for (int i = 0; i < 4; i++)
      if (strcmp(us + 1, stats[i]) == 0) s = i;
    if (m < 0 || s < 0)
      return infsim_fail(err, INFSIM_EINPUT,
                         "--slo %.200s: '%s_%s': expected ttft, tpot or e2e, then _mean, _p50, _p90 or _p99", text,
                         item, us + 1);
    const char *value = eq + 1;
    char *end;
    errno = 0;
    double v = strtod(value, &end);
    double scale = 0;
    if (end != value && strcmp(end, "s") == 0) scale = 1;
    if (end != value && strcmp(end, "ms") == 0) scale = 1e-3;
    if (scale == 0 || errno == ERANGE || !isfinite(v) || !(v > 0))
      return infsim_fail(err, INFSIM_EINPUT, "--slo %.200s: %s_%s: expected a positive time in s or ms, got '%s'",
                         text, item, us + 1, value);
    for (size_t i = 0; i < out->count; i++)
      if (strncmp(out->bounds[i].field, metrics[m], strlen(metrics[m])) == 0 &&
          out->bounds[i].field[strlen(metrics[m])] == '_' && strcmp(out->bounds[i].stat, stats[s]) == 0)
        return infsim_fail(err, INFSIM_EINPUT, "--slo %.200s: %s_%s given twice", text, item, us + 1);
    infsim_slo_bound *b = &out->bounds[out->count++];
    snprintf(b->field, sizeof b->field, "%s_s", metrics[m]);
    snprintf(b->stat, sizeof b->stat, "%s", stats[s]);
    snprintf(b->name, sizeof b->name, "%s_%s", metrics[m], stats[s]);
    b->bound_s = v * scale;
    p += len;
    if (*p == ',') p++;
  }
  if (out->count == 0) return infsim_fail(err, INFSIM_EINPUT, "--slo: empty (e.g. --slo ttft_p99=2s)");
  return INFSIM_OK;
}

bool infsim_slo_met(const infsim_slo *slo, const json_t *summary, char *why, size_t why_bytes) {
  for (size_t i = 0; i < slo->count; i++) {
    const infsim_slo_bound *b = &slo->bounds[i];
    const json_t *obj = json_object_get(summary, b->field);
    const json_t *count = json_object_get(obj, "count");
    const json_t *v = json_object_get(obj, b->stat);
    /* TPOT has no requests when every output is one token: no bound to miss. */
    bool empty = json_is_integer(count) && json_integer_value(count) == 0;
    if (empty && strcmp(b->field, "tpot_s") == 0) continue;
    if (empty || !json_is_number(v)) {
      snprintf(why, why_bytes, "%s: no completed requests", b->name);
      return false;
    }
    double x = json_number_value(v);
    if (!(x <= b->bound_s)) {
      snprintf(why, why_bytes, "%s %.4g s > %.4g s", b->name, x, b->bound_s);
      return false;
    }
  }
  if (why_bytes > 0) why[0] = '\0';
  return true;
}

/* ---- the search ---- */

enum { CAPACITY_MAX_CANDIDATES = 8 };

/* One round: every seed's run at each of values[0..n), as one sweep (so
 * they run in parallel); met[i] when all seeds meet the SLO at values[i]. */
static infsim_status evaluate(const infsim_capacity_opts *o, const double *values, size_t n,
                              infsim_capacity_result *r, bool *met, infsim_error *err) {
  if (r->step_count + n > INFSIM_CAPACITY_MAX_STEPS)
    return infsim_fail(err, INFSIM_ERUN, "capacity search did not converge in %d steps", INFSIM_CAPACITY_MAX_STEPS);
  char spec[64 + CAPACITY_MAX_CANDIDATES * 32];
  int at = snprintf(spec, sizeof spec, "%s=",
                    o->target == INFSIM_TARGET_RATE ? INFSIM_RATE_SCALE_KEY : "cluster.instances");
  for (size_t i = 0; i < n; i++)
    at += snprintf(spec + at, sizeof spec - (size_t)at, o->target == INFSIM_TARGET_RATE ? "%s%.17g" : "%s%.0f",
                   i > 0 ? "," : "", values[i]);
  infsim_grid *g = infsim_grid_new();
  if (g == NULL) return infsim_fail(err, INFSIM_ENOMEM, "out of memory");
  infsim_status st = infsim_grid_add(g, spec, err);
  infsim_sweep_opts so = o->sweep;
  so.grid = g;
  so.keep_summaries = true;
  infsim_sweep_outcome out = {0}; /* freed on every path: a failed sweep may hold summaries */
  if (st == INFSIM_OK) st = infsim_sweep_run(&so, &out, err);
  for (size_t i = 0; i < n; i++) {
    infsim_capacity_step *step = &r->steps[r->step_count++];
    step->value = values[i];
    step->met = true;
    step->why[0] = '\0';
    /* Under MPI every rank holds the summaries (sweep_mpi.c), so every
     * rank takes the same next step. Point i's seeds follow each other. */
    for (size_t s = 0; st == INFSIM_OK && s < (size_t)so.seeds && step->met; s++) {
      const json_t *sum = out.summaries[i * (size_t)so.seeds + s];
      step->met = sum != NULL && infsim_slo_met(&o->slo, sum, step->why, sizeof step->why);
    }
    met[i] = step->met;
  }
  if (st == INFSIM_OK) {
    r->runs += out.ran;
    r->runs_skipped += out.skipped;
    r->is_root = out.is_root;
  }
  infsim_sweep_outcome_free(&out);
  infsim_grid_free(g);
  return st;
}

/* The next value one bracketing step from v: double or halve. */
static double bracket_step(const infsim_capacity_opts *o, double v, bool more_load) {
  double next;
  if (o->target == INFSIM_TARGET_RATE)
    next = more_load ? v * 2 : v / 2;
  else
    next = more_load ? floor(v / 2) : v * 2;
  if (next > o->max_value) next = o->max_value;
  if (next < o->min_value) next = o->min_value;
  return next;
}

infsim_status infsim_capacity_search(const infsim_capacity_opts *o, infsim_capacity_result *r, infsim_error *err) {
  memset(r, 0, sizeof *r);
  r->is_root = true;
  bool rate = o->target == INFSIM_TARGET_RATE;
  if (rate && !(o->tolerance > 0 && o->tolerance < 1))
    return infsim_fail(err, INFSIM_EINPUT, "--tolerance: expected a number in (0, 1), got %g", o->tolerance);
  if (!(o->min_value > 0 && o->min_value <= o->start && o->start <= o->max_value))
    return infsim_fail(err, INFSIM_EINPUT, "capacity: start %g outside [%g, %g]", o->start, o->min_value,
                       o->max_value);
  if (!rate && (o->start != floor(o->start) || o->min_value != floor(o->min_value) ||
                o->max_value != floor(o->max_value)))
    return infsim_fail(err, INFSIM_EINPUT, "capacity: instance counts must be whole numbers");
  /* Values tried at once (one: the plain bracket-and-bisect sequence).
   * With k at once a round cuts the bracket k + 1 ways instead of two. */
  if (o->probes < 0 || o->probes > CAPACITY_MAX_CANDIDATES)
    return infsim_fail(err, INFSIM_EINPUT, "--probes: expected an integer in [1, %d], got %d", CAPACITY_MAX_CANDIDATES,
                       o->probes);
  size_t k = o->probes > 1 ? (size_t)o->probes : 1;
  double cand[CAPACITY_MAX_CANDIDATES];
  bool met[CAPACITY_MAX_CANDIDATES] = {false};

  /* "More load": rate up, instances down. met_at met the SLO, missed_at
   * missed it; the search keeps missed_at on the more-load side. */
  double met_at = NAN, missed_at = NAN, v = o->start;
  infsim_status st = evaluate(o, &v, 1, r, met, err);
  if (st != INFSIM_OK) return st;
  if (met[0]) met_at = v;
  else missed_at = v;
  /* Bracket: double (or halve) until the other side is seen or a limit
   * hit; k steps at once, read in order until the first change. */
  while (isnan(met_at) || isnan(missed_at)) {
    bool more_load = !isnan(met_at);
    size_t n = 0;
    for (double c = bracket_step(o, v, more_load); n < k && c != (n > 0 ? cand[n - 1] : v);
         c = bracket_step(o, c, more_load))
      cand[n++] = c;
    if (n == 0) break; /* at a limit */
    if ((st = evaluate(o, cand, n, r, met, err)) != INFSIM_OK) return st;
    for (size_t i = 0; i < n; i++) {
      if (met[i] && more_load) {
        met_at = v = cand[i];
      } else if (!met[i] && !more_load) {
        missed_at = v = cand[i];
      } else {
        if (met[i]) met_at = cand[i];
        else missed_at = cand[i];
        break;
      }
    }
  }
  if (isnan(met_at)) return INFSIM_OK; /* nothing in range met the SLO */
  r->found = true;
  if (isnan(missed_at)) { /* met even at the limit: for rate only a lower bound */
    r->capped = rate;
    r->value = met_at;
    return INFSIM_OK;
  }
  /* Bisect (k + 1 ways), reading the candidates from less load to more. */
  for (;;) {
    size_t n = 0;
    if (rate) {
      if (missed_at - met_at <= o->tolerance * met_at) break;
      for (size_t i = 1; i <= k; i++) cand[n++] = met_at + (missed_at - met_at) * (double)i / (double)(k + 1);
    } else {
      if (met_at - missed_at <= 1) break;
      for (size_t i = 1; i <= k; i++) {
        double c = floor(met_at - (met_at - missed_at) * (double)i / (double)(k + 1));
        if (c <= missed_at) c = missed_at + 1;
        if (c >= met_at) c = met_at - 1;
        if (n == 0 || c < cand[n - 1]) cand[n++] = c; /* distinct, decreasing */
      }
    }
    if ((st = evaluate(o, cand, n, r, met, err)) != INFSIM_OK) return st;
    for (size_t i = 0; i < n; i++) {
      if (!met[i]) {
        missed_at = cand[i];
        break;
      }
      met_at = cand[i];
    }
  }
  r->value = met_at;
  r->failed_at = missed_at;
  return INFSIM_OK;
}
