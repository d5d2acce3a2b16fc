/*
** distkv_fixture.c: see distkv_fixture.h.
*/
#include "distkv_fixture.h"

#include <stdio.h>
#include <stdlib.h>

void fixture_a100_roofline(const infsim_run_params *p, infsim_cost_model *cm) {
  infsim_instance_layout layout = {.tp = 1, .pp = 1, .iteration_overhead_ns = p->iteration_overhead_ns,
                                   .link_latency_ns = p->link_latency_ns};
  infsim_error err = {0};
  if (infsim_cost_model_build("a100-80gb", "/nonexistent.db", false, &p->model, &layout, &p->roofline, NULL, cm,
                              &err) != INFSIM_OK) {
    fprintf(stderr, "fixture_a100_roofline: %s\n", err.msg);
    abort();
  }
}

int64_t fixture_distkv_field(const infsim_run_result *res, const char *key) {
  json_t *s = infsim_run_result_summary_json(res);
  json_t *v = json_object_get(json_object_get(s, "distkv"), key);
  if (!json_is_integer(v)) {
    fprintf(stderr, "fixture_distkv_field: summary.json has no integer distkv.%s\n", key);
    abort();
  }
  int64_t x = (int64_t)json_integer_value(v);
  json_decref(s);
  return x;
}
