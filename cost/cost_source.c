/*
** cost_source.c: where a run's cost curves come from, decided once
** (costmodel.h: infsim_cost_model_build, infsim_gpu_for_key).
**
** A `gpu` key is a built-in GPU (a100-80gb, a100-40gb, h100-sxm, h200) or
** a calibrated profile. A profile present in the calibration DB for the
** run's model and TP degree wins, whatever its name; otherwise a built-in
** GPU runs on its roofline; anything else is an error naming the DB.
*/
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "infsim/calib.h"
#include "infsim/costmodel.h"
#include "infsim/sqlite_file.h"

static const char *const k_builtin_gpus[] = {"a100-80gb", "a100-40gb", "h100-sxm", "h200"};

bool infsim_gpu_for_key(const char *gpu_key, infsim_gpu_spec *out) {
  if (infsim_gpu_builtin(gpu_key, out)) return true;
  size_t best = 0;
  const char *base = NULL;
  for (size_t i = 0; i < sizeof k_builtin_gpus / sizeof k_builtin_gpus[0]; i++) {
    size_t n = strlen(k_builtin_gpus[i]);
    if (n > best && strncmp(gpu_key, k_builtin_gpus[i], n) == 0 && gpu_key[n] == '-') {
      best = n;
      base = k_builtin_gpus[i];
    }
  }
  return base != NULL && infsim_gpu_builtin(base, out);
}

/* Why db_path cannot be read as a DB, or NULL when it can: strerror's
 * text for a file that is not there or not readable, and a directory
 * refused as every DB path refuses one (sqlite_file.h). */
static const char *unreadable(const char *db_path) {
  if (access(db_path, R_OK) != 0) return strerror(errno);
  return infsim_sqlite_file_unfit(db_path);
}

infsim_status infsim_cost_model_build(const char *gpu_key, const char *db_path, bool db_given,
                                      const infsim_model_shape *model, const infsim_instance_layout *layout,
                                      const infsim_roofline_eff *eff, const infsim_config *cfg,
                                      infsim_cost_model *out, infsim_error *err) {
  memset(out, 0, sizeof *out);
  out->model = *model;
  out->layout = *layout;
  infsim_gpu_spec gpu;
  if (!infsim_gpu_for_key(gpu_key, &gpu))
    return infsim_config_fail(cfg, "gpu", err,
                              "unknown GPU '%s' (a100-80gb, a100-40gb, h100-sxm, h200, or a calibrated profile "
                              "named GPU-SUFFIX)",
                              gpu_key);
  int found = 0;
  const char *why = unreadable(db_path);
  if (why == NULL) {
    infsim_status st =
        infsim_cost_curves_calibrated(db_path, gpu_key, model, layout->tp, &found, &out->curves, err);
    if (st != INFSIM_OK) return st;
    if (found) {
      out->curves.layer_overhead_ns = 0.0; /* measured curves hold launch costs */
      /* A measured per-iteration time replaces the config's default; a
       * value the user set stays (an override, e.g. another host). */
      if (out->curves.has_iteration_overhead && !layout->iteration_overhead_given)
        out->layout.iteration_overhead_ns = infsim_cost_round_ns(out->curves.iteration_overhead_ns);
      return INFSIM_OK;
    }
  } else if (db_given) {
    return infsim_config_fail(cfg, "calibration.db", err, "cannot read '%s': %s", db_path, why);
  }
  if (!infsim_gpu_builtin(gpu_key, &gpu))
    return infsim_config_fail(cfg, "gpu", err, "no calibrated profile '%s' for model %s, tp %lld in %s", gpu_key,
                              model->name, (long long)layout->tp, db_path);
  return infsim_cost_curves_roofline(model, &gpu, layout->tp, eff, &out->curves, err);
}
