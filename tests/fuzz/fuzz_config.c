/*
** fuzz_config.c: the YAML config loader, --set, and the typed getters.
**
** Input: YAML text, then optionally a 0xFF byte and --set assignments one
** a line. Checked: no crash or sanitizer report; a failing load leaves the
** config as it was (here: empty); a --set that succeeds is read back
** exactly by the string getter; every key the config lists is valid for
** the getters, and the resolved JSON can always be built.
*/
#include <float.h>
#include <stdbool.h>

#include "fuzz_util.h"
#include "infsim/config.h"

enum { MAX_KEYS_READ = 64 };

/* The --set value as infsim_config_set stores it: blanks trimmed. */
static bool expected_value(const char *assignment, char *out, size_t cap) {
  const char *eq = strchr(assignment, '=');
  if (eq == NULL) return false;
  const char *v0 = eq + 1, *v1 = eq + strlen(eq);
  while (v0 < v1 && (*v0 == ' ' || *v0 == '\t' || *v0 == '\n' || *v0 == '\r' || *v0 == '\v' || *v0 == '\f')) v0++;
  while (v1 > v0 && (v1[-1] == ' ' || v1[-1] == '\t' || v1[-1] == '\n' || v1[-1] == '\r' || v1[-1] == '\v' ||
                     v1[-1] == '\f'))
    v1--;
  if ((size_t)(v1 - v0) >= cap) return false;
  memcpy(out, v0, (size_t)(v1 - v0));
  out[v1 - v0] = '\0';
  return true;
}

static void apply_sets(infsim_config *cfg, const uint8_t *data, size_t size) {
  char line[2048], want[2048], key[2048];
  size_t at = 0;
  while (at < size) {
    size_t end = at;
    while (end < size && data[end] != '\n') end++;
    size_t len = end - at < sizeof line - 1 ? end - at : sizeof line - 1;
    memcpy(line, data + at, len);
    line[len] = '\0';
    at = end + 1;
    if (strlen(line) != len) continue; /* argv strings hold no NUL */
    infsim_error err = {0};
    if (infsim_config_set(cfg, line, &err) != INFSIM_OK) {
      FUZZ_CHECK(err.status == INFSIM_EINPUT && err.msg[0] != '\0', "--set failed without a message");
      continue;
    }
    /* Read it back: the key is the trimmed text before '='. */
    const char *eq = strchr(line, '=');
    const char *k0 = line, *k1 = eq;
    while (k0 < k1 && (*k0 == ' ' || *k0 == '\t' || *k0 == '\v' || *k0 == '\f' || *k0 == '\r')) k0++;
    while (k1 > k0 && (k1[-1] == ' ' || k1[-1] == '\t' || k1[-1] == '\v' || k1[-1] == '\f' || k1[-1] == '\r')) k1--;
    memcpy(key, k0, (size_t)(k1 - k0));
    key[k1 - k0] = '\0';
    const char *got = NULL;
    FUZZ_CHECK(expected_value(line, want, sizeof want), "no value in '%s'", line);
    FUZZ_CHECK(infsim_config_string(cfg, key, "", &got, &err) == INFSIM_OK, "%s", err.msg);
    FUZZ_CHECK(strcmp(got, want) == 0, "--set '%s' read back as '%s'", line, got);
  }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  const uint8_t *split = memchr(data, 0xFF, size);
  size_t yaml_len = split != NULL ? (size_t)(split - data) : size;
  infsim_config *cfg = infsim_config_new();
  if (cfg == NULL) return 0;
  infsim_error err = {0};
  infsim_status st = infsim_config_load_yaml_text(cfg, "fuzz.yaml", (const char *)data, yaml_len, &err);
  size_t pos = 0;
  if (st != INFSIM_OK) {
    FUZZ_CHECK(err.msg[0] != '\0' && strchr(err.msg, '\n') == NULL, "failure without a one-line message");
    FUZZ_CHECK(strncmp(err.msg, "fuzz.yaml", 9) == 0, "message does not name the file: %s", err.msg);
    FUZZ_CHECK(infsim_config_next_key(cfg, NULL, &pos) == NULL, "a failed load added keys");
  }
  if (split != NULL) apply_sets(cfg, split + 1, size - yaml_len - 1);
  /* Read some keys through every getter; failures are expected, crashes not. */
  pos = 0;
  const char *keys[MAX_KEYS_READ];
  int n = 0;
  for (const char *k; n < MAX_KEYS_READ && (k = infsim_config_next_key(cfg, NULL, &pos)) != NULL;) keys[n++] = k;
  for (int i = 0; i < n; i++) {
    char key[1100];
    snprintf(key, sizeof key, "%s", keys[i]); /* getters may reorder what next_key handed out */
    int64_t iv;
    double dv;
    bool bv;
    const char *sv;
    infsim_config_int(cfg, key, 0, INT64_MIN, INT64_MAX, &iv, &err);
    infsim_config_double(cfg, key, 0, -DBL_MAX, DBL_MAX, &dv, &err);
    infsim_config_bool(cfg, key, false, &bv, &err);
    FUZZ_CHECK(infsim_config_string(cfg, key, "", &sv, &err) == INFSIM_OK, "string getter on a listed key: %s",
               err.msg);
  }
  infsim_config_check_unused(cfg, &err);
  json_t *j = infsim_config_resolved_json(cfg);
  FUZZ_CHECK(j != NULL, "resolved JSON could not be built");
  char *text = json_dumps(j, JSON_COMPACT);
  free(text);
  json_decref(j);
  infsim_config_free(cfg);
  return 0;
}
