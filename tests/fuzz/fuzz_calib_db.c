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
** So does an input that leaves the copy byte for byte a DB the readers
** already passed in this process (about two in three of those that change
** it: a mutation of a seed that changes the same rows the same way), known
** by the SHA-256 of its bytes; the readers open the file afresh and are
** deterministic, so the same bytes get the same verdict.
*/
#include <ctype.h>
#include <math.h>
#include <sqlite3.h>

#include "fuzz_util.h"
#include "infsim/calib.h"
#include "infsim/hardware.h"
#include "infsim/hash.h"

static uint8_t *g_template; /* the fitted DB's bytes, made on first use */
static size_t g_template_size;
static long g_inputs, g_changed, g_read; /* SQL inputs run; those that changed the DB; those that ran the readers */

/* How many inputs reached the readers, for a campaign's note. */
static void report_changed(void) {
  fprintf(stderr,
          "fuzz_calib_db: %ld of %ld SQL inputs changed the DB, %ld of them into one not seen before, which ran the "
          "readers\n",
          g_changed, g_inputs, g_read);
}

/* The DBs the readers passed: the first 16 bytes of each one's SHA-256, in
 * an open-addressed table (all zeros: empty). When it is 3/4 full, no more
 * are added: later new DBs only run the readers again. */
enum { SEEN_SLOTS = 1 << 18, SEEN_KEY_BYTES = 16 };
static uint8_t (*g_seen)[SEEN_KEY_BYTES];
static long g_seen_count;

/* The key of a DB's bytes: the SHA-256 of its size and of each 4 KB chunk
 * that differs from the template's, with its offset (the template fixes
 * the others). An input changes a page or two of the template's nine, and
 * hashing all of it took an eighth of the target's time. */
static void db_key(const uint8_t *bytes, size_t size, uint8_t key[SEEN_KEY_BYTES]) {
  enum { CHUNK_BYTES = 4096 };
  infsim_sha256 h;
  uint8_t digest[INFSIM_SHA256_BYTES];
  infsim_sha256_init(&h);
  uint64_t size64 = size;
  infsim_sha256_update(&h, &size64, sizeof size64);
  for (size_t off = 0; off < size; off += CHUNK_BYTES) {
    size_t n = size - off < CHUNK_BYTES ? size - off : CHUNK_BYTES;
    if (off + n <= g_template_size && memcmp(bytes + off, g_template + off, n) == 0) continue;
    uint64_t off64 = off;
    infsim_sha256_update(&h, &off64, sizeof off64);
    infsim_sha256_update(&h, bytes + off, n);
  }
  infsim_sha256_final(&h, digest);
  memcpy(key, digest, SEEN_KEY_BYTES);
  if (memcmp(key, (uint8_t[SEEN_KEY_BYTES]){0}, SEEN_KEY_BYTES) == 0) key[0] = 1; /* zeros mark empty slots */
}

/* Whether key is in the table; if not, its slot (or NULL when full). */
static int seen(const uint8_t key[SEEN_KEY_BYTES], uint8_t **slot) {
  static const uint8_t k_empty[SEEN_KEY_BYTES];
  *slot = NULL;
  if (g_seen == NULL && (g_seen = calloc(SEEN_SLOTS, SEEN_KEY_BYTES)) == NULL) return 0;
  uint64_t i;
  memcpy(&i, key, sizeof i);
  for (i &= SEEN_SLOTS - 1;; i = (i + 1) & (SEEN_SLOTS - 1)) {
    if (memcmp(g_seen[i], key, SEEN_KEY_BYTES) == 0) return 1;
    if (memcmp(g_seen[i], k_empty, SEEN_KEY_BYTES) == 0) break;
  }
  if (g_seen_count < SEEN_SLOTS / 4 * 3) *slot = g_seen[i];
  return 0;
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

/* What the readers would see of the DB at `db`: 0 with no sidecar file
 * that SQLite would read along with it, when *key names its bytes (the
 * template's: 1), else -1 (a sidecar, or a file that cannot be read). */
static int db_state(const char *db, uint8_t key[SEEN_KEY_BYTES]) {
  static uint8_t *buf;
  static size_t cap;
  char path[600];
  static const char *const k_ext[] = {"-journal", "-wal"};
  for (size_t i = 0; i < sizeof k_ext / sizeof k_ext[0]; i++) {
    snprintf(path, sizeof path, "%s%s", db, k_ext[i]);
    if (access(path, F_OK) == 0) return -1;
  }
  FILE *fp = fopen(db, "rb");
  if (fp == NULL) return -1;
  size_t got = 0;
  for (;;) {
    if (got == cap) {
      size_t grown = cap == 0 ? g_template_size + 1 : 2 * cap;
      uint8_t *p = realloc(buf, grown);
      if (p == NULL) break;
      buf = p;
      cap = grown;
    }
    size_t n = fread(buf + got, 1, cap - got, fp);
    got += n;
    if (n == 0) break;
  }
  int failed = ferror(fp) || !feof(fp);
  fclose(fp);
  if (failed) return -1;
  if (got == g_template_size && memcmp(buf, g_template, g_template_size) == 0) return 1;
  db_key(buf, got, key);
  return 0;
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
   * above, and the code under test is deterministic, so they are skipped;
   * likewise for bytes they already passed on an earlier input. */
  g_inputs++;
  uint8_t key[SEEN_KEY_BYTES];
  int state = db_state(db, key);
  if (state == 1) return 0;
  g_changed++;
  uint8_t *slot = NULL;
  if (state == 0 && seen(key, &slot)) return 0;
  g_read++;
  check_readers(db);
  if (slot != NULL) {
    memcpy(slot, key, SEEN_KEY_BYTES);
    g_seen_count++;
  }
  return 0;
}
