/*
** test_distattn_flows.c: a decode run's DistAttention traffic as one steady
** flow per path (policy.distattn_flows: path) against one per holder and
** direction (holder, the flows of the model it stands for): a 400K-token
** prompt over four instances, two a node, so that the owner's two holders
** on the other node share its NIC out and that node's NIC in. Links with
** room for the demands carry the same bytes either way (every link, to
** 1e-9 of its bytes) and the request's every token comes at the same time;
** the shared NICs carry the holders' queries and partials at all (their
** bytes are above those of the run with no decode at all).
*/
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "infsim/network.h"
#include "sim_fixture.h"

static infsim_run_result *run_tolerance(const char *flows, const char *tolerance, int64_t output) {
  const char *const settings[] = {"model=llama2-7b",
                                  "gpu=a100-80gb",
                                  "cluster.instances=4",
                                  "cluster.gpus_per_node=2",
                                  "cluster.inter_node_GBps=25",
                                  "cluster.intra_node_GBps=300",
                                  "policy.name=infinite-llm",
                                  "policy.dgfm=false",
                                  tolerance,
                                  flows,
                                  NULL};
  infsim_run_params p = fixture_params(settings);
  infsim_trace t = {0};
  fixture_add(&t, 0, 400000, output);
  infsim_run_result *res = fixture_run(&p, &t);
  infsim_trace_free(&t);
  return res;
}

static infsim_run_result *run_long_prompt(const char *flows, int64_t output) {
  return run_tolerance(flows, "policy.distattn_reprice_tolerance=0", output);
}

static void test_flow_per_path_carries_what_flows_per_holder_do(void **state) {
  (void)state;
  infsim_run_result *path = run_long_prompt("policy.distattn_flows=path", 400);
  infsim_run_result *holder = run_long_prompt("policy.distattn_flows=holder", 400);
  infsim_run_result *prompt_only = run_long_prompt("policy.distattn_flows=path", 1);
  size_t n = 0, m = 0;
  const infsim_request_record *a = infsim_run_result_requests(path, &n), *b = infsim_run_result_requests(holder, &m);
  assert_int_equal(n, 1);
  assert_int_equal(m, 1);
  assert_int_equal(a[0].state, INFSIM_REQ_FINISHED);
  assert_int_equal(a[0].instances_touched, 4);
  assert_int_equal(a[0].first_token_ns, b[0].first_token_ns);
  assert_int_equal(a[0].finish_ns, b[0].finish_ns);
  const infsim_network *na = infsim_run_result_network(path), *nb = infsim_run_result_network(holder),
                       *np = infsim_run_result_network(prompt_only);
  size_t links = infsim_network_link_count(na);
  assert_int_equal(links, infsim_network_link_count(nb));
  int nics_loaded = 0;
  for (int32_t l = 0; l < (int32_t)links; l++) {
    infsim_link_info x = infsim_network_link(na, l), y = infsim_network_link(nb, l), z = infsim_network_link(np, l);
    if (fabs(x.bytes - y.bytes) > 1e-9 * y.bytes + 1.0)
      fail_msg("link %d (%s -> %s): %.17g bytes per path, %.17g per holder", (int)l, x.src, x.dst, x.bytes, y.bytes);
    /* the NICs carry the decode's queries and partials beside the prompt's */
    if (x.kind == INFSIM_LINK_NIC && x.bytes > z.bytes * (1 + 1e-6)) nics_loaded++;
  }
  assert_int_equal(nics_loaded, 4); /* both nodes' NIC out and in */
  infsim_run_result_free(path);
  infsim_run_result_free(holder);
  infsim_run_result_free(prompt_only);
}

/* policy.distattn_reprice_tolerance reaches the executor's probe: at 0
 * every batch is probed afresh; at 0.01 the owner's batches over the same
 * holders keep the last answer, and with no other traffic on the links
 * (one request) every load is as it was, so the kept answers are the
 * fresh ones and every token comes at the same ns. */
static void test_reprice_tolerance_reaches_the_probe(void **state) {
  (void)state;
  infsim_run_result *exact = run_tolerance("policy.distattn_flows=path", "policy.distattn_reprice_tolerance=0", 400);
  infsim_run_result *kept = run_tolerance("policy.distattn_flows=path", "policy.distattn_reprice_tolerance=0.01", 400);
  assert_int_equal(infsim_network_probes_reused(infsim_run_result_network(exact)), 0);
  assert_true(infsim_network_probes_reused(infsim_run_result_network(kept)) > 10);
  size_t n = 0, m = 0;
  const infsim_request_record *a = infsim_run_result_requests(exact, &n), *b = infsim_run_result_requests(kept, &m);
  assert_int_equal(n, 1);
  assert_int_equal(m, 1);
  assert_int_equal(a[0].first_token_ns, b[0].first_token_ns);
  assert_int_equal(a[0].finish_ns, b[0].finish_ns);
  infsim_run_result_free(exact);
  infsim_run_result_free(kept);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_flow_per_path_carries_what_flows_per_holder_do),
      cmocka_unit_test(test_reprice_tolerance_reaches_the_probe),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
