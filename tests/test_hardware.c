/*
** test_hardware.c: built-in model shapes against the parameter counts
** published with the LLaMA2 checkpoints (Hugging Face model cards:
** 6,738,415,616 / 13,015,864,320 / 68,976,648,192), and KV bytes per token
** against the usual figures (0.5 MiB for 7B, 0.78 MiB for 13B, 0.31 MiB for
** 70B with 8 KV heads). Model mappings from a config: a built-in name
** takes only max_context_tokens; a custom shape is labelled "custom".
*/
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "infsim/hardware.h"

static void test_parameter_counts_match_published(void **state) {
  (void)state;
  const struct {
    const char *name;
    int64_t params;
    int64_t kv_bytes_per_token;
  } cases[] = {
      {"llama2-7b", INT64_C(6738415616), 2 * 32 * 4096 * 2},
      {"llama2-13b", INT64_C(13015864320), 2 * 40 * 5120 * 2},
      {"llama2-70b", INT64_C(68976648192), 2 * 80 * 8 * 128 * 2},
  };
  for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
    infsim_model_shape m;
    assert_true(infsim_model_builtin(cases[i].name, &m));
    assert_int_equal(infsim_model_params(&m), cases[i].params);
    assert_int_equal(infsim_model_weight_bytes(&m), 2 * cases[i].params);
    assert_int_equal(infsim_model_kv_bytes_per_token(&m), cases[i].kv_bytes_per_token);
  }
  infsim_model_shape m;
  assert_false(infsim_model_builtin("llama2-8b", &m));
}

static void test_gpu_table(void **state) {
  (void)state;
  infsim_gpu_spec a100, h100, h200;
  assert_true(infsim_gpu_builtin("a100-80gb", &a100));
  assert_true(infsim_gpu_builtin("h100-sxm", &h100));
  assert_true(infsim_gpu_builtin("h200", &h200));
  assert_true(a100.peak_flops == 312e12 && a100.hbm_bytes_per_s == 2039e9);
  assert_true(h100.peak_flops == 989e12 && h100.hbm_bytes_per_s == 3350e9);
  assert_true(h200.hbm_bytes_per_s == 4800e9 && h200.memory_bytes == INT64_C(141000000000));
  assert_false(infsim_gpu_builtin("v100", &a100));
}

/* Reads the model from YAML text (named c.yaml in messages). */
static infsim_status model_of(const char *yaml, infsim_model_shape *m, infsim_error *err) {
  infsim_config *cfg = infsim_config_new();
  assert_non_null(cfg);
  assert_int_equal(infsim_config_load_yaml_text(cfg, "c.yaml", yaml, strlen(yaml), err), INFSIM_OK);
  infsim_status st = infsim_model_from_config(cfg, m, err);
  infsim_config_free(cfg);
  return st;
}

static void test_model_mappings(void **state) {
  (void)state;
  infsim_model_shape m;
  infsim_error err = {0};
  /* A built-in by name, with a context limit. */
  assert_int_equal(model_of("model:\n  name: tiny\n  max_context_tokens: 512\n", &m, &err), INFSIM_OK);
  assert_string_equal(m.name, "tiny");
  assert_int_equal(m.hidden, 256);
  assert_int_equal(m.max_context_tokens, 512);
  /* A built-in's name beside a shape key: refused, naming the shape key's
   * line (it would have run hidden 4096 under the name tiny). */
  assert_int_equal(model_of("seed: 1\nmodel:\n  name: tiny\n  layers: 4\n", &m, &err), INFSIM_EINPUT);
  assert_string_equal(err.msg, "c.yaml:4: model.layers: not with model.name (c.yaml:3): a built-in takes only "
                               "max_context_tokens; a custom shape has no name");
  assert_int_equal(model_of("model: {hidden: 512, name: llama2-7b}\n", &m, &err), INFSIM_EINPUT);
  assert_string_equal(err.msg, "c.yaml:1: model.hidden: not with model.name (c.yaml:1): a built-in takes only "
                               "max_context_tokens; a custom shape has no name");
  /* A custom shape is labelled custom, whatever it resembles. */
  assert_int_equal(model_of("model: {layers: 2, hidden: 256, heads: 2}\n", &m, &err), INFSIM_OK);
  assert_string_equal(m.name, "custom");
  assert_int_equal(m.layers, 2);
  assert_int_equal(m.head_dim, 128);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_parameter_counts_match_published),
      cmocka_unit_test(test_gpu_table),
      cmocka_unit_test(test_model_mappings),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
