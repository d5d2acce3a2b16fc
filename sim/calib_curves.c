/*
** calib_curves.c: cost curves fitted to GPU measurements (calib.h).
**
** Reads the `fit` rows that `infsim calibrate fit` stored for one profile,
** model and TP degree, and serves them through the infsim_cost_curves
** vtable. Only SQLite is needed here: the curves are evaluated in closed
** form (piecewise linear, calib.h), so the simulator does not link GSL for
** them.
**
** Invariants: a curve never decreases in any aggregate (the fitter keeps
** slopes >= 0, and loading rejects a negative one as a corrupt DB), and
** evaluates to 0 when its work aggregate is 0.
*/
#include "infsim/calib.h"

#include <assert.h>
#include <math.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

enum {
  VAR_BIT_TOKENS = 1u << INFSIM_CALIB_TOKENS,
  VAR_BIT_PAIRS = 1u << INFSIM_CALIB_PAIRS,
  VAR_BIT_REQUESTS = 1u << INFSIM_CALIB_REQUESTS,
  VAR_BIT_CONTEXT = 1u << INFSIM_CALIB_CONTEXT_TOKENS,
  VAR_BIT_PARTIALS = 1u << INFSIM_CALIB_PARTIALS,
  VAR_BIT_BYTES = 1u << INFSIM_CALIB_BYTES,
};

/* Which aggregates each kernel's curve uses. The hinge is where the curves
 * bend: GEMMs go from weight-bandwidth bound to FLOP bound as tokens grow;
 * attention from launch/occupancy bound to KV-bandwidth (decode) or FLOP
 * (prefill) bound; copies from latency bound to bandwidth bound. */
static const infsim_calib_kernel_info k_kernels[INFSIM_CALIB_KERNELS] = {
    [INFSIM_CALIB_GEMM_QKV] = {"gemm_qkv", VAR_BIT_TOKENS, INFSIM_CALIB_TOKENS, INFSIM_CALIB_TOKENS},
    [INFSIM_CALIB_GEMM_O] = {"gemm_o", VAR_BIT_TOKENS, INFSIM_CALIB_TOKENS, INFSIM_CALIB_TOKENS},
    [INFSIM_CALIB_GEMM_GATEUP] = {"gemm_gateup", VAR_BIT_TOKENS, INFSIM_CALIB_TOKENS, INFSIM_CALIB_TOKENS},
    [INFSIM_CALIB_GEMM_DOWN] = {"gemm_down", VAR_BIT_TOKENS, INFSIM_CALIB_TOKENS, INFSIM_CALIB_TOKENS},
    [INFSIM_CALIB_PREFILL_ATTN] = {"prefill_attn", VAR_BIT_TOKENS | VAR_BIT_PAIRS, INFSIM_CALIB_TOKENS,
                                   INFSIM_CALIB_PAIRS},
    [INFSIM_CALIB_DECODE_ATTN] = {"decode_attn", VAR_BIT_REQUESTS | VAR_BIT_CONTEXT, INFSIM_CALIB_REQUESTS,
                                  INFSIM_CALIB_CONTEXT_TOKENS},
    [INFSIM_CALIB_MERGE] = {"merge", VAR_BIT_REQUESTS | VAR_BIT_PARTIALS, INFSIM_CALIB_PARTIALS,
                            INFSIM_CALIB_PARTIALS},
    [INFSIM_CALIB_KV_COPY] = {"kv_copy", VAR_BIT_BYTES, INFSIM_CALIB_BYTES, INFSIM_CALIB_BYTES},
    [INFSIM_CALIB_HOST_COPY] = {"host_copy", VAR_BIT_BYTES, INFSIM_CALIB_BYTES, INFSIM_CALIB_BYTES},
};

static const char *const k_var_names[INFSIM_CALIB_VARS] = {
    "tokens", "pairs", "requests", "context_tokens", "partials", "bytes",
};

const infsim_calib_kernel_info *infsim_calib_kernel_get(infsim_calib_kernel k) {
  assert(k >= 0 && k < INFSIM_CALIB_KERNELS);
  return &k_kernels[k];
}

int infsim_calib_kernel_from_name(const char *name) {
  for (int k = 0; k < INFSIM_CALIB_KERNELS; k++)
    if (strcmp(k_kernels[k].name, name) == 0) return k;
  return -1;
}

const char *infsim_calib_var_name(infsim_calib_var v) {
  assert(v >= 0 && v < INFSIM_CALIB_VARS);
  return k_var_names[v];
}

double infsim_calib_curve_eval(const infsim_calib_curve *c, infsim_calib_kernel k,
                               const double x[INFSIM_CALIB_VARS]) {
  const infsim_calib_kernel_info *info = infsim_calib_kernel_get(k);
  if (x[info->work_var] <= 0) return 0;
  double t = c->c_const;
  for (int v = 0; v < INFSIM_CALIB_VARS; v++) {
    if (!(info->var_mask & (1u << v))) continue;
    if (v == c->hinge_var) {
      double above = fmax(x[v] - c->hinge_at, 0);
      if (c->hinge2_at > c->hinge_at) {
        t += c->c_above2 * fmax(x[v] - c->hinge2_at, 0);
        above = fmin(above, c->hinge2_at - c->hinge_at);
      }
      t += c->c_var[v] * fmin(x[v], c->hinge_at) + c->c_above * above;
    } else {
      t += c->c_var[v] * x[v];
    }
  }
  if (c->has_alt) {
    double alt = c->alt_const;
    for (int v = 0; v < INFSIM_CALIB_VARS; v++)
      if (info->var_mask & (1u << v)) alt += c->alt_var[v] * x[v];
    t = fmax(t, alt);
  }
  return t > 0 ? t : 0;
}

/* ---- the vtable ---- */

typedef struct {
  infsim_calib_curve curve[INFSIM_CALIB_KERNELS];
} calib_curves;

static double eval2(const calib_curves *cc, infsim_calib_kernel k, infsim_calib_var va, double a,
                    infsim_calib_var vb, double b) {
  double x[INFSIM_CALIB_VARS] = {0};
  x[va] = a;
  x[vb] = b;
  return infsim_calib_curve_eval(&cc->curve[k], k, x);
}

static double calib_gemm_layer_ns(void *self, int64_t tokens) {
  const calib_curves *cc = self;
  double t = 0;
  for (int k = INFSIM_CALIB_GEMM_QKV; k <= INFSIM_CALIB_GEMM_DOWN; k++)
    t += eval2(cc, k, INFSIM_CALIB_TOKENS, (double)tokens, INFSIM_CALIB_TOKENS, (double)tokens);
  return t;
}

static double calib_prefill_attn_layer_ns(void *self, int64_t tokens, int64_t pairs) {
  return eval2(self, INFSIM_CALIB_PREFILL_ATTN, INFSIM_CALIB_TOKENS, (double)tokens, INFSIM_CALIB_PAIRS,
               (double)pairs);
}

static double calib_decode_attn_layer_ns(void *self, int64_t requests, int64_t context_tokens) {
  return eval2(self, INFSIM_CALIB_DECODE_ATTN, INFSIM_CALIB_REQUESTS, (double)requests,
               INFSIM_CALIB_CONTEXT_TOKENS, (double)context_tokens);
}

static double calib_merge_layer_ns(void *self, int64_t requests, int64_t partials) {
  return eval2(self, INFSIM_CALIB_MERGE, INFSIM_CALIB_REQUESTS, (double)requests, INFSIM_CALIB_PARTIALS,
               (double)partials);
}

static double calib_kv_copy_ns(void *self, int64_t bytes) {
  return eval2(self, INFSIM_CALIB_KV_COPY, INFSIM_CALIB_BYTES, (double)bytes, INFSIM_CALIB_BYTES,
               (double)bytes);
}

static void calib_destroy(void *self) { free(self); }

/* ---- reading the DB ---- */

static infsim_status db_fail(sqlite3 *db, const char *db_path, infsim_error *err) {
  return infsim_fail(err, INFSIM_EINPUT, "%s: %s", db_path, sqlite3_errmsg(db));
}

/* Kernels a calibrated profile must have for the simulator to use it. */
static int kernel_required(int k) { return k != INFSIM_CALIB_HOST_COPY; }

infsim_status infsim_cost_curves_calibrated(const char *db_path, const char *profile,
                                            const infsim_model_shape *model, int64_t tp, int *found,
                                            infsim_cost_curves *out, infsim_error *err) {
  assert(db_path && profile && model && found && out);
  *found = 0;
  sqlite3 *db = NULL;
  if (sqlite3_open_v2(db_path, &db, SQLITE_OPEN_READONLY, NULL) != SQLITE_OK) {
    infsim_status st = infsim_fail(err, INFSIM_EINPUT, "%s: calibration.db: cannot open: %s", db_path,
                                   db ? sqlite3_errmsg(db) : "out of memory");
    sqlite3_close(db);
    return st;
  }
  infsim_status st = INFSIM_OK;
  sqlite3_stmt *q = NULL;
  calib_curves *cc = NULL;
  if (sqlite3_prepare_v2(db, "PRAGMA user_version", -1, &q, NULL) != SQLITE_OK || sqlite3_step(q) != SQLITE_ROW) {
    st = db_fail(db, db_path, err);
    goto done;
  }
  int version = sqlite3_column_int(q, 0);
  sqlite3_finalize(q);
  q = NULL;
  if (version != INFSIM_CALIB_DB_VERSION) {
    st = infsim_fail(err, INFSIM_EINPUT, "%s: user_version: calibration schema version %d, expected %d", db_path,
                     version, INFSIM_CALIB_DB_VERSION);
    goto done;
  }
  static const char sql[] =
      "SELECT f.kernel, f.c_const, f.c_tokens, f.c_pairs, f.c_requests, f.c_context_tokens, f.c_partials,"
      " f.c_bytes, f.hinge_var, f.hinge_at, f.c_above, f.hinge2_at, f.c_above2,"
      " f.has_alt, f.alt_const, f.alt_tokens, f.alt_pairs, f.alt_requests, f.alt_context_tokens, f.alt_partials,"
      " f.alt_bytes FROM fit f JOIN profile p ON p.id = f.profile_id"
      " WHERE p.name = ?1 AND p.model = ?2 AND p.hidden = ?3 AND p.heads = ?4 AND p.kv_heads = ?5"
      " AND p.head_dim = ?6 AND p.intermediate = ?7 AND p.dtype_bytes = ?8 AND f.tp = ?9";
  if (sqlite3_prepare_v2(db, sql, -1, &q, NULL) != SQLITE_OK) {
    st = db_fail(db, db_path, err);
    goto done;
  }
  sqlite3_bind_text(q, 1, profile, -1, SQLITE_STATIC);
  sqlite3_bind_text(q, 2, model->name, -1, SQLITE_STATIC);
  sqlite3_bind_int64(q, 3, model->hidden);
  sqlite3_bind_int64(q, 4, model->heads);
  sqlite3_bind_int64(q, 5, model->kv_heads);
  sqlite3_bind_int64(q, 6, model->head_dim);
  sqlite3_bind_int64(q, 7, model->intermediate);
  sqlite3_bind_int64(q, 8, model->dtype_bytes);
  sqlite3_bind_int64(q, 9, tp);
  cc = calloc(1, sizeof *cc);
  if (cc == NULL) {
    st = infsim_fail(err, INFSIM_ENOMEM, "%s: out of memory", db_path);
    goto done;
  }
  unsigned have = 0;
  int rc;
  while ((rc = sqlite3_step(q)) == SQLITE_ROW) {
    const char *kname = (const char *)sqlite3_column_text(q, 0);
    int k = kname ? infsim_calib_kernel_from_name(kname) : -1;
    if (k < 0) continue; /* a kernel this version does not use */
    infsim_calib_curve *c = &cc->curve[k];
    c->c_const = sqlite3_column_double(q, 1);
    int bad = !isfinite(c->c_const);
    for (int v = 0; v < INFSIM_CALIB_VARS; v++) {
      c->c_var[v] = sqlite3_column_double(q, 2 + v);
      bad |= !(c->c_var[v] >= 0 && isfinite(c->c_var[v]));
    }
    const char *hv = (const char *)sqlite3_column_text(q, 8);
    c->hinge_var = -1;
    for (int v = 0; hv && v < INFSIM_CALIB_VARS; v++)
      if (strcmp(hv, k_var_names[v]) == 0) c->hinge_var = v;
    bad |= hv != NULL && hv[0] != '\0' && c->hinge_var < 0;
    c->hinge_at = sqlite3_column_double(q, 9);
    c->c_above = sqlite3_column_double(q, 10);
    c->hinge2_at = sqlite3_column_double(q, 11);
    c->c_above2 = sqlite3_column_double(q, 12);
    bad |= !(c->c_above >= 0 && isfinite(c->c_above) && isfinite(c->hinge_at));
    bad |= !(c->c_above2 >= 0 && isfinite(c->c_above2) && isfinite(c->hinge2_at));
    c->has_alt = sqlite3_column_int(q, 13) != 0;
    c->alt_const = sqlite3_column_double(q, 14);
    bad |= !isfinite(c->alt_const);
    for (int v = 0; v < INFSIM_CALIB_VARS; v++) {
      c->alt_var[v] = sqlite3_column_double(q, 15 + v);
      bad |= !(c->alt_var[v] >= 0 && isfinite(c->alt_var[v]));
    }
    if (bad) {
      st = infsim_fail(err, INFSIM_EINPUT, "%s: fit: %s: kernel %s: coefficient negative or not finite", db_path,
                       profile, kname);
      goto done;
    }
    have |= 1u << k;
  }
  if (rc != SQLITE_DONE) {
    st = db_fail(db, db_path, err);
    goto done;
  }
  for (int k = 0; k < INFSIM_CALIB_KERNELS; k++)
    if (kernel_required(k) && !(have & (1u << k))) goto done; /* not found */
  memset(out, 0, sizeof *out);
  out->self = cc;
  out->gemm_layer_ns = calib_gemm_layer_ns;
  out->prefill_attn_layer_ns = calib_prefill_attn_layer_ns;
  out->decode_attn_layer_ns = calib_decode_attn_layer_ns;
  out->merge_layer_ns = calib_merge_layer_ns;
  out->kv_copy_ns = calib_kv_copy_ns;
  out->destroy = calib_destroy;
  snprintf(out->name, sizeof out->name, "calibrated:%s", profile);
  cc = NULL;
  *found = 1;
done:
  free(cc);
  sqlite3_finalize(q);
  sqlite3_close(db);
  return st;
}
