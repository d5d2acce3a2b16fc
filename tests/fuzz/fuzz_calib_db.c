/*
** fuzz_calib_db.c: reading a calibration DB that someone has edited:
** `calibrate show`, the curves `run` loads, and `calibrate fit`.
**
** A valid DB (the tiny model measured on a made-up GPU, loaded and fitted)
** is made once; each input is SQL run against a fresh copy of it (ATTACH,
** VACUUM INTO and extensions refused, so nothing outside the copy is
** touched). Checked: show, the curve loader and fit end in success or bad
** input (exit 2), never an I/O error or a crash; curves that load evaluate
** to finite, non-negative times that do not fall as work grows.
** An input that leaves the copy byte for byte the template (most do: a
** syntax error, a query, a change that matches no row) skips the readers,
** which already ran once on the template: it costs 0.1 ms instead of 5.
*/
#include <ctype.h>
#include <math.h>
#include <sqlite3.h>

#include "fuzz_util.h"
#include "infsim/calib.h"
#include "infsim/hardware.h"

static uint8_t *g_template; /* the fitted DB's bytes, made on first use */
static size_t g_template_size;
static long g_inputs, g_changed; /* SQL inputs run; those that changed the DB */

/* How many inputs reached the readers, for a campaign's note. */
static void report_changed(void) {
  fprintf(stderr, "fuzz_calib_db: %ld of %ld SQL inputs changed the DB and ran the readers\n", g_changed, g_inputs);
}

static void make_template(void) {
  char raw[512], db[512];
  fuzz_path("tmpl.csv", raw);
  fuzz_path("tmpl.db", db);
  unlink(db);
  FILE *fp = fopen(raw, "w");
  fputs("schema,gpu,driver,sm_clock_mhz,mem_clock_mhz,backend,model,layers,hidden,heads,kv_heads,head_dim,"
        "intermediate,dtype_bytes,tp,kernel,tokens,pairs,requests,context_tokens,partials,bytes,local_fraction,"
        "repeats,median_ns,spread_ns\n",
        fp);
  const char *row = "1,Fuzz GPU,1.0,1000,2000,cpu,tiny,2,256,2,2,128,688,2,1,";
  /* Small on purpose: fit runs on every input, and its cost grows with
   * the points (each is tried as a bend). */
  for (int i = 1; i <= 8; i++) {
    fprintf(fp, "%sgemm_qkv,%d,0,0,0,0,0,1,5,%d,10\n", row, 16 * i, 1000 + 37 * i + (i > 4 ? 50 * (i - 4) : 0));
    fprintf(fp, "%sdecode_attn,0,0,%d,%d,0,0,1,5,%d,10\n", row, i, 512 * i, 800 + 90 * i);
    fprintf(fp, "%skv_copy,0,0,0,0,0,%d,1,5,%d,10\n", row, 4096 * i, 500 + 3 * i);
  }
  fclose(fp);
  infsim_error err = {0};
  int goal = 0;
  if (infsim_calib_load(raw, db, NULL, NULL, &err) != INFSIM_OK ||
      infsim_calib_fit_db(db, NULL, &goal, &err) != INFSIM_OK) {
    fprintf(stderr, "fuzz_calib_db: cannot make the template: %s\n", err.msg);
    abort();
  }
  fp = fopen(db, "rb");
  fseek(fp, 0, SEEK_END);
  g_template_size = (size_t)ftell(fp);
  fseek(fp, 0, SEEK_SET);
  g_template = malloc(g_template_size);
  if (fread(g_template, 1, g_template_size, fp) != g_template_size) abort();
  fclose(fp);
  unlink(db);
  unlink(raw);
}

/* SQL that could reach outside the copy. */
static int reaches_out(const char *sql) {
  static const char *const k_words[] = {"attach", "vacuum", "load_extension", "into", "temp_store_directory"};
  char low[4096];
  size_t n = strlen(sql) < sizeof low - 1 ? strlen(sql) : sizeof low - 1;
  for (size_t i = 0; i < n; i++) low[i] = (char)tolower((unsigned char)sql[i]);
  low[n] = '\0';
  for (size_t i = 0; i < sizeof k_words / sizeof k_words[0]; i++)
    if (strstr(low, k_words[i]) != NULL) return 1;
  return 0;
}

/* What a connection may leave next to the DB: removed before each input,
 * so that no input sees what an earlier one left (a crash replays alone). */
static void remove_sidecars(const char *db) {
  static const char *const k_ext[] = {"-journal", "-wal", "-shm"};
  char path[600];
  for (size_t i = 0; i < sizeof k_ext / sizeof k_ext[0]; i++) {
    snprintf(path, sizeof path, "%s%s", db, k_ext[i]);
    unlink(path);
  }
}

/* Whether the DB file holds exactly the template's bytes, with no sidecar
 * file that SQLite would read along with it. */
static int same_as_template(const char *db) {
  static uint8_t *buf;
  if (buf == NULL && (buf = malloc(g_template_size + 1)) == NULL) return 0;
  char path[600];
  static const char *const k_ext[] = {"-journal", "-wal"};
  for (size_t i = 0; i < sizeof k_ext / sizeof k_ext[0]; i++) {
    snprintf(path, sizeof path, "%s%s", db, k_ext[i]);
    if (access(path, F_OK) == 0) return 0;
  }
  FILE *fp = fopen(db, "rb");
  if (fp == NULL) return 0;
  size_t got = fread(buf, 1, g_template_size + 1, fp);
  fclose(fp);
  return got == g_template_size && memcmp(buf, g_template, g_template_size) == 0;
}

static void check_status(infsim_status st, const infsim_error *err, const char *what) {
  FUZZ_CHECK(st == INFSIM_OK || st == INFSIM_EINPUT || st == INFSIM_ENOMEM, "%s: status %d: %s", what, (int)st,
             err->msg);
}

/* Runs show, the curve loader and fit on the DB at `db`, checking them. */
static void check_readers(const char *db) {
  infsim_error err = {0};
  FILE *devnull = fopen("/dev/null", "w");
  check_status(infsim_calib_show(db, NULL, devnull, &err), &err, "show");
  infsim_model_shape tiny;
  infsim_model_builtin("tiny", &tiny);
  infsim_cost_curves c;
  int found = 0;
  infsim_status st = infsim_cost_curves_calibrated(db, "fuzz-gpu", &tiny, 1, &found, &c, &err);
  check_status(st, &err, "curves");
  if (st == INFSIM_OK && found) {
    double prev = 0;
    for (int64_t t = 1; t <= (INT64_C(1) << 40); t *= 8) {
      double g = c.gemm_layer_ns(c.self, t);
      FUZZ_CHECK(isfinite(g) && g >= 0, "gemm time %g at %lld tokens", g, (long long)t);
      FUZZ_CHECK(g >= prev * (1 - 1e-12), "gemm time falls from %g to %g at %lld tokens", prev, g, (long long)t);
      prev = g;
      double d = c.decode_attn_layer_ns(c.self, t, 1000 * t);
      FUZZ_CHECK(isfinite(d) && d >= 0, "decode time %g", d);
      double k = c.kv_copy_ns(c.self, t);
      FUZZ_CHECK(isfinite(k) && k >= 0, "copy time %g", k);
    }
    if (c.destroy != NULL) c.destroy(c.self);
  }
  int goal = 0;
  check_status(infsim_calib_fit_db(db, devnull, &goal, &err), &err, "fit");
  fclose(devnull);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  char db[512];
  fuzz_path("work.db", db);
  if (g_template == NULL) {
    make_template();
    atexit(report_changed);
    /* The template itself, once: the inputs that leave it unchanged skip
     * the readers below. */
    remove_sidecars(db);
    fuzz_write("work.db", g_template, g_template_size, db);
    check_readers(db);
  }
  if (size > 4000) return 0;
  char sql[4096];
  memcpy(sql, data, size);
  sql[size] = '\0';
  if (strlen(sql) != size || reaches_out(sql)) return 0;
  remove_sidecars(db);
  fuzz_write("work.db", g_template, g_template_size, db);
  sqlite3 *h = NULL;
  if (sqlite3_open(db, &h) == SQLITE_OK) sqlite3_exec(h, sql, NULL, NULL, NULL);
  sqlite3_close(h);
  /* Most inputs change nothing (a syntax error, a query, an update that
   * matches no row): the readers would see the template's bytes, checked
   * above, and the code under test is deterministic, so they are skipped. */
  g_inputs++;
  if (same_as_template(db)) return 0;
  g_changed++;
  check_readers(db);
  return 0;
}
