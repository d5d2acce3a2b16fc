/*
** test_high_water.c: the high-water marks (high_water.h, docs/high-water.md)
** against what the containers hold, watched every simulated millisecond.
**
** At every watch tick each mark's `final` is the container's count at
** that moment, read from the container itself, not from the peak's
** bookkeeping; so at every tick final <= peak <= capacity must hold, and at
** the end each peak must be at least the largest count seen. Runs that
** fill the queues: one overloaded instance with KV memory so small that
** requests are swapped out (waiting, swapped, prefilling, running and both
** step heaps used), and infinite-llm with lost messages and a lost
** gManager (the ledger, the protocol's tables, messages, network flows).
** Each mark that such a run must use is checked to have been seen
** non-zero, so a mark stuck at 0 fails. The KV pools' peaks are also
** checked against the time series: never below a sampled use.
*/
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include "sim_fixture.h"

typedef struct {
  infsim_high_water_set seen; /* per mark: the largest final seen at a tick */
  int64_t ticks;
} watcher;

static void on_tick(void *self, const infsim_sim *s, int64_t at_ns) {
  (void)at_ns;
  watcher *w = self;
  infsim_high_water_set now;
  infsim_sim_high_water(s, &now);
  for (int i = 0; i < now.count; i++) {
    const infsim_high_water *m = &now.mark[i];
    if (!(0 <= m->final && m->final <= m->peak && m->peak <= m->capacity))
      fail_msg("%s at %lld ns: final %lld, peak %lld, capacity %lld", m->name, (long long)at_ns, (long long)m->final,
               (long long)m->peak, (long long)m->capacity);
    infsim_high_water_note(&w->seen, m->name, m->final, m->final, m->final);
  }
  w->ticks++;
}

static const infsim_high_water *find(const infsim_high_water_set *set, const char *name) {
  for (int i = 0; i < set->count; i++)
    if (strcmp(set->mark[i].name, name) == 0) return &set->mark[i];
  fail_msg("no mark %s", name);
  return NULL;
}

/* Runs watched every millisecond; checks peaks against what was seen and
 * that every mark in `used` was seen non-zero. */
static void run_watched(const infsim_run_params *p, const infsim_trace *t, const char *const *used) {
  watcher w = {0};
  infsim_sim_watch watch = {.self = &w, .every_ns = 1000000, .tick = on_tick};
  infsim_run_result *res = NULL;
  infsim_error err = {0};
  assert_int_equal(infsim_run_simulate_watched(p, t, NULL, &watch, &res, &err), INFSIM_OK);
  assert_true(w.ticks > 100);
  infsim_high_water_set end;
  infsim_run_result_high_water(res, &end);
  for (int i = 0; i < w.seen.count; i++) {
    const infsim_high_water *seen = &w.seen.mark[i], *m = find(&end, seen->name);
    if (m->peak < seen->final)
      fail_msg("%s: peak %lld below %lld seen", m->name, (long long)m->peak, (long long)seen->final);
  }
  for (size_t k = 0; used[k] != NULL; k++)
    if (find(&w.seen, used[k])->final == 0) fail_msg("%s never seen in use", used[k]);
  size_t rows = 0;
  const infsim_sample_row *s = infsim_run_result_samples(res, &rows);
  int64_t kv_peak = find(&end, "kv_gpu_blocks")->peak;
  for (size_t i = 0; i < rows; i++) assert_true(s[i].kv_used_blocks <= kv_peak);
  infsim_run_result_free(res);
}

static void test_one_overloaded_instance(void **state) {
  (void)state;
  const char *const settings[] = {"model=llama2-7b",
                                  "gpu=a100-80gb",
                                  "cluster.instances=1",
                                  "scheduler.gpu_memory_utilization=0.18",
                                  "scheduler.preemption=swap",
                                  "scheduler.swap_space_gib=1",
                                  "scheduler.max_batch_size=16",
                                  "scheduler.max_batched_tokens=1024",
                                  NULL};
  infsim_run_params p = fixture_params(settings);
  infsim_trace t = fixture_random_trace(150, 40.0, 1500, 400, 21, "test.high_water");
  const char *const used[] = {"event_heap", "instance_waiting", "instance_swapped", "instance_prefilling",
                              "instance_running", "instance_finish_events", "instance_block_boundary_events",
                              "kv_gpu_blocks", "kv_host_blocks", "timeseries_rows", NULL};
  run_watched(&p, &t, used);
  infsim_trace_free(&t);
}

static void test_borrowing_with_faults(void **state) {
  (void)state;
  const char *const settings[] = {"model=llama2-7b",
                                  "gpu=a100-80gb",
                                  "cluster.instances=4",
                                  "cluster.gpus_per_node=2",
                                  "scheduler.gpu_memory_utilization=0.2",
                                  "scheduler.max_batched_tokens=2048",
                                  "policy.name=infinite-llm",
                                  "faults.message_loss=0.05",
                                  "faults.lose_gmanager_at_s=1",
                                  "faults.lose_gmanager_every_s=2",
                                  NULL};
  infsim_run_params p = fixture_params(settings);
  infsim_trace t = fixture_random_trace(200, 20.0, 9000, 300, 22, "test.high_water");
  const char *const used[] = {"event_heap",       "messages_in_flight",    "network_flows",
                              "kv_gpu_blocks",    "gmanager_ledger_requests", "gmanager_split_requests",
                              "contract_borrows", "contract_reservations", "contract_proposals",
                              NULL};
  run_watched(&p, &t, used);
  infsim_trace_free(&t);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_one_overloaded_instance),
      cmocka_unit_test(test_borrowing_with_faults),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
