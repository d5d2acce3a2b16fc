/*
** capacity.c: SLO parsing and the bracket-and-bisect capacity search
** (capacity.h).
**
** Invariants of the search: `met_at` always met the SLO and `missed_at`
** always missed it (when set); for rate met_at < missed_at, for instances
** missed_at < met_at; each step halves the distance between them, so the
** search ends after O(log(range / tolerance)) evaluations, well inside
** INFSIM_CAPACITY_MAX_STEPS for the bounded ranges the options allow.
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

/* One evaluation: every seed's run at `value`; met when all meet. */
static infsim_status evaluate(const infsim_capacity_opts *o, double value, infsim_capacity_result *r,
                              bool *met, infsim_error *err) {
  if (r->step_count == INFSIM_CAPACITY_MAX_STEPS)
    return infsim_fail(err, INFSIM_ERUN, "capacity search did not converge in %d steps", INFSIM_CAPACITY_MAX_STEPS);
  char spec[96];
  if (o->target == INFSIM_TARGET_RATE)
    snprintf(spec, sizeof spec, "%s=%.17g", INFSIM_RATE_SCALE_KEY, value);
  else
    snprintf(spec, sizeof spec, "cluster.instances=%.0f", value);
  infsim_grid *g = infsim_grid_new();
  if (g == NULL) return infsim_fail(err, INFSIM_ENOMEM, "out of memory");
  infsim_status st = infsim_grid_add(g, spec, err);
  infsim_sweep_opts so = o->sweep;
  so.grid = g;
  so.keep_summaries = true;
  infsim_sweep_outcome out;
  if (st == INFSIM_OK) st = infsim_sweep_run(&so, &out, err);
  infsim_capacity_step *step = &r->steps[r->step_count++];
  step->value = value;
  step->met = true;
  step->why[0] = '\0';
  if (st == INFSIM_OK) {
    /* Under MPI every rank holds the summaries (sweep_mpi.c), so every
     * rank takes the same next step. */
    r->runs += out.ran;
    r->runs_skipped += out.skipped;
    r->is_root = out.is_root;
    for (size_t i = 0; i < out.total && step->met; i++)
      step->met = out.summaries[i] != NULL &&
                  infsim_slo_met(&o->slo, out.summaries[i], step->why, sizeof step->why);
  }
  if (st == INFSIM_OK) infsim_sweep_outcome_free(&out);
  infsim_grid_free(g);
  *met = step->met;
  return st;
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
  /* "good" moves toward more load: rate up, instances down. */
  double met_at = NAN, missed_at = NAN, v = o->start;
  bool met;
  infsim_status st = evaluate(o, v, r, &met, err);
  if (st != INFSIM_OK) return st;
  if (met) met_at = v;
  else missed_at = v;
  /* Bracket: double (or halve) until the other side is seen or a limit hit. */
  while (isnan(met_at) || isnan(missed_at)) {
    bool toward_load = !isnan(met_at); /* met so far: push the load up */
    double next;
    if (rate)
      next = toward_load ? v * 2 : v / 2;
    else
      next = toward_load ? floor(v / 2) : v * 2;
    if (next > o->max_value) next = o->max_value;
    if (next < o->min_value) next = o->min_value;
    if (next == v) break; /* at a limit */
    v = next;
    if ((st = evaluate(o, v, r, &met, err)) != INFSIM_OK) return st;
    if (met) met_at = v;
    else missed_at = v;
  }
  if (isnan(met_at)) return INFSIM_OK; /* nothing in range met the SLO */
  r->found = true;
  if (isnan(missed_at)) { /* met even at the limit: for rate only a lower bound */
    r->capped = rate;
    r->value = met_at;
    return INFSIM_OK;
  }
  /* Bisect. */
  for (;;) {
    double mid;
    if (rate) {
      if (missed_at - met_at <= o->tolerance * met_at) break;
      mid = 0.5 * (met_at + missed_at);
    } else {
      if (met_at - missed_at <= 1) break;
      mid = floor(0.5 * (met_at + missed_at));
    }
    if ((st = evaluate(o, mid, r, &met, err)) != INFSIM_OK) return st;
    if (met) met_at = mid;
    else missed_at = mid;
  }
  r->value = met_at;
  r->failed_at = missed_at;
  return INFSIM_OK;
}
