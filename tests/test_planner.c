/*
** test_planner.c: the fit, level and spread borrow planners (planner.h)
** against hand-solved cases.
**
**  - level, one ask: 4 instances of 10,000 blocks (reserve 500), debtor 0
**    full, creditors with 3,000 / 8,000 / 6,000 spare, a 9,000-block need:
**    the water level is 2,666 (17,000 - 3 x 2,666 = 9,002 >= 9,000; 2,667
**    gives 8,999), so the pieces are 5,334, 3,334 and the last 332.
**  - level, one move per ask (as the contract takes it): asking again for
**    what is left ends with the three creditors within one block of each
**    other (2,666 / 2,667 / 2,667 spare), where greedy's asks drain the
**    most spare creditor to 0 and leave 3,000 and 5,000.
**  - level, a small need (under the minimum piece): one creditor, the
**    most spare, greedy's answer.
**  - fit: a piece no same-node creditor can take whole goes whole to the
**    most spare one that can (same-node splits it); a request already
**    held somewhere goes there when that holder can take it all.
**  - spread, the rule: near creditors A, B (3,000 spare each), remote C,
**    D, E (8,000 each), a 9,000-block need, W_remote 1,000, W_near 100
**    (two near holders: base 200 each). No new remote holder: 6,000 < the
**    need. One (C, base 1,000): A, B take 3,000 each, C 3,000: cost 4,000.
**    Two (base 2,000): A, B 3,000, C, D 1,500 each: cost 3,500. Three
**    (base 3,000): 1,000 each: 4,000. So two, at 3,500: 3,000 / 3,000 /
**    1,500 / 1,500 / 0 (greedy: C 8,000 and D 1,000, C's cost 10,000;
**    level: 3,000 at each remote one, three remote holders).
**  - spread in the gManager: big_case (instance 1 on the debtor's node, 2
**    and 3 on the other), W 1,000 / 100: one remote holder costs 7,000
**    (2 takes 6,000), two cost 5,000: 3,000 at each of 1, 2, 3, the near
**    one first; asked one move at a time (each confirmed) it ends the
**    same.
**  - W for LLaMA2-7B, fp16, A100 attention at 156 TFLOP/s: query 8,192 B
**    + partial 8,256 B per token and layer = 16,448 B; over 25 GB/s that
**    is 657.92 ns, and a key token costs 4 x 4,096 / 156e12 s =
**    0.105026 ns: 6,264.4 tokens; over 300 GB/s 522.0.
*/
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "infsim/gmanager.h"
#include "infsim/planner.h"

/* 4 instances, 2 per node, 10,000 blocks each, reserve 500; debtor 0 full
 * with request 0 (1,000 blocks there); free 3,500 / 8,500 / 6,500. */
static infsim_gm *big_case(void) {
  infsim_gm *gm = NULL;
  assert_int_equal(infsim_gm_new(4, 2, 10000, 4, 500, &gm, NULL), INFSIM_OK);
  infsim_gm_entry at0 = {0, 0, 0, 1000};
  infsim_gm_heartbeat(gm, 0, 1, 0, &at0, 1, false);
  infsim_gm_heartbeat(gm, 1, 1, 3500, NULL, 0, false);
  infsim_gm_heartbeat(gm, 2, 1, 8500, NULL, 0, false);
  infsim_gm_heartbeat(gm, 3, 1, 6500, NULL, 0, false);
  return gm;
}

static void test_level_one_ask(void **state) {
  (void)state;
  infsim_gm *gm = big_case();
  int32_t creditors[4];
  size_t n = infsim_gm_creditors(gm, creditors);
  assert_int_equal(n, 3);
  assert_int_equal(infsim_planner_water_level(gm, creditors, n, 9000), 2666);
  assert_int_equal(infsim_planner_water_level(gm, creditors, n, 17000), 0);
  assert_int_equal(infsim_planner_water_level(gm, creditors, n, 99999), 0);
  infsim_gm_move m[8];
  assert_int_equal(infsim_gm_plan(gm, INFSIM_PLAN_LEVEL, 0, 0, 9000, m, 8), 3);
  int32_t to[3] = {2, 3, 1};
  int64_t blocks[3] = {5334, 3334, 332};
  for (int k = 0; k < 3; k++) {
    assert_int_equal(m[k].to, to[k]);
    assert_int_equal(m[k].blocks, blocks[k]);
    assert_true(m[k].fresh);
  }
  infsim_gm_free(gm);
}

/* Asks for `need` one move at a time, as the contract does; returns the
 * creditors' spare at the end in spare[1..3]. */
static void ask_one_move_at_a_time(infsim_gm_planner planner, int64_t need, int64_t *spare) {
  infsim_gm *gm = big_case();
  infsim_gm_move m[8];
  int asks = 0;
  while (need > 0) {
    size_t n = infsim_gm_plan(gm, planner, 0, 0, need, m, 8);
    assert_true(n > 0);
    for (size_t k = 1; k < n; k++) infsim_gm_unpropose(gm, &m[k]);
    need -= m[0].blocks;
    assert_true(++asks <= 10);
  }
  for (int32_t i = 1; i < 4; i++) spare[i] = infsim_gm_spare_blocks(gm, i);
  infsim_gm_free(gm);
}

static void test_level_successive_asks(void **state) {
  (void)state;
  int64_t lv[4], gr[4];
  ask_one_move_at_a_time(INFSIM_PLAN_LEVEL, 9000, lv);
  assert_int_equal(lv[1] + lv[2] + lv[3], 17000 - 9000);
  assert_int_equal(lv[1], 2667);
  assert_int_equal(lv[2], 2666);
  assert_int_equal(lv[3], 2667);
  ask_one_move_at_a_time(INFSIM_PLAN_GREEDY, 9000, gr);
  assert_int_equal(gr[1], 3000);
  assert_int_equal(gr[2], 0);
  assert_int_equal(gr[3], 5000);
}

static void test_level_small_need_is_greedy(void **state) {
  (void)state;
  infsim_gm *gm = big_case();
  infsim_gm_move m[8];
  assert_int_equal(infsim_gm_plan(gm, INFSIM_PLAN_LEVEL, 0, 0, 200, m, 8), 1);
  assert_int_equal(m[0].to, 2);
  assert_int_equal(m[0].blocks, 200);
  infsim_gm_free(gm);
}

/* test_gmanager's hand case: 4 instances, 2 per node, 100 blocks, reserve
 * 10; debtor 0 owns r0 (40 at 0, 5 at 3), r1 (20 at 0), r2 (30 at 0);
 * spare i1 20, i2 50, i3 40. */
static infsim_gm *small_case(void) {
  infsim_gm *gm = NULL;
  assert_int_equal(infsim_gm_new(4, 2, 100, 8, 10, &gm, NULL), INFSIM_OK);
  infsim_gm_entry at0[3] = {{0, 0, 0, 40}, {1, 0, 0, 20}, {2, 0, 0, 30}};
  infsim_gm_heartbeat(gm, 0, 1, 0, at0, 3, false);
  infsim_gm_heartbeat(gm, 1, 1, 30, NULL, 0, false);
  infsim_gm_heartbeat(gm, 2, 1, 60, NULL, 0, false);
  infsim_gm_entry at3 = {0, 0, 3, 5};
  infsim_gm_heartbeat(gm, 3, 1, 50, &at3, 1, false);
  return gm;
}

static void test_fit(void **state) {
  (void)state;
  infsim_gm_move m[8];
  infsim_gm *gm = small_case();
  /* r2's 30 new blocks: i1 (same node, 20 spare) cannot take them whole;
   * same-node splits 20 + 10, fit gives them whole to i2 (most spare). */
  assert_int_equal(infsim_gm_plan(gm, INFSIM_PLAN_SAME_NODE, 0, 2, 30, m, 8), 2);
  assert_int_equal(m[0].to, 1);
  assert_int_equal(m[0].blocks, 20);
  infsim_gm_unpropose(gm, &m[0]);
  infsim_gm_unpropose(gm, &m[1]);
  assert_int_equal(infsim_gm_plan(gm, INFSIM_PLAN_FIT, 0, 2, 30, m, 8), 1);
  assert_int_equal(m[0].to, 2);
  assert_int_equal(m[0].blocks, 30);
  infsim_gm_unpropose(gm, &m[0]);
  /* 15 blocks of r0 (the longest, no new blocks): i3 already holds r0 and
   * can take them whole: there, though i1 is on the debtor's node. */
  assert_int_equal(infsim_gm_plan(gm, INFSIM_PLAN_FIT, 0, -1, 15, m, 8), 1);
  assert_int_equal(m[0].req, 0);
  assert_int_equal(m[0].to, 3);
  assert_false(m[0].fresh);
  infsim_gm_unpropose(gm, &m[0]);
  /* r1's 15 new blocks: nobody holds r1; i1 (same node) takes them whole. */
  assert_int_equal(infsim_gm_plan(gm, INFSIM_PLAN_FIT, 0, 1, 15, m, 8), 1);
  assert_int_equal(m[0].to, 1);
  infsim_gm_free(gm);
}

static void test_spread_rule(void **state) {
  (void)state;
  infsim_planner_creditor c[5] = {
      {3000, 0, false, 0}, {3000, 0, false, 0}, {8000, 0, true, 1}, {8000, 0, true, 2}, {8000, 0, true, 3}};
  bool use[5];
  int64_t take[5];
  assert_int_equal(infsim_planner_spread(c, 5, 9000, 1000, 100, false, use, take), 3500);
  int64_t want[5] = {3000, 3000, 1500, 1500, 0};
  for (int k = 0; k < 5; k++) assert_int_equal(take[k], want[k]);
  assert_false(use[4]);
  /* spare short of the need: everything there is */
  assert_int_equal(infsim_planner_spread(c, 5, 40000, 1000, 100, false, use, take), -1);
  assert_int_equal(take[2], 8000);
  /* a remote holder with no spare left still counts: its cost (held +
   * W x remote holders) is a floor, and a new remote holder raises it */
  infsim_planner_creditor h[3] = {{0, 6000, true, 1}, {3000, 0, false, 0}, {8000, 0, true, 2}};
  assert_int_equal(infsim_planner_spread(h, 3, 2000, 1000, 100, false, use, take), 7000);
  assert_int_equal(take[1], 2000);
  assert_int_equal(take[2], 0);
}

/* Node relay: three remote creditors of 3,000 spare on node 1 and one of
 * 9,000 on node 2, a 6,000-block need, W 1,000 / 100. Per holder (no
 * relay) each remote holder adds 1,000 to every one: two holders, 3,000
 * each, cost 5,000 (three also cost 5,000: the fewer wins). With relay a
 * holder costs held + 1,000 x remote nodes + 100 x holders on its node:
 * all four, node 1's at base 2,300, node 2's at 2,100, level 3,750
 * (1,650 + 3 x 1,450 = 6,000), where two cost 5,100 and three 4,167. */
static void test_spread_with_relay(void **state) {
  (void)state;
  infsim_planner_creditor c[4] = {{3000, 0, true, 1}, {3000, 0, true, 1}, {3000, 0, true, 1}, {9000, 0, true, 2}};
  bool use[4];
  int64_t take[4];
  assert_int_equal(infsim_planner_spread(c, 4, 6000, 1000, 100, false, use, take), 5000);
  const int64_t apart[4] = {3000, 0, 0, 3000};
  for (int k = 0; k < 4; k++) assert_int_equal(take[k], apart[k]);
  assert_int_equal(infsim_planner_spread(c, 4, 6000, 1000, 100, true, use, take), 3750);
  const int64_t relayed[4] = {1450, 1450, 1450, 1650};
  for (int k = 0; k < 4; k++) assert_int_equal(take[k], relayed[k]);
}

static void test_spread_in_the_gmanager(void **state) {
  (void)state;
  infsim_gm *gm = big_case();
  infsim_gm_set_spread_costs(gm, 1000, 100);
  infsim_gm_move m[8];
  int32_t to[3] = {1, 2, 3};
  assert_int_equal(infsim_gm_plan(gm, INFSIM_PLAN_SPREAD, 0, 0, 9000, m, 8), 3);
  for (int k = 0; k < 3; k++) {
    assert_int_equal(m[k].to, to[k]);
    assert_int_equal(m[k].blocks, 3000);
    assert_true(m[k].fresh);
  }
  infsim_gm_free(gm);
  /* One move per ask, as the contract takes them, each confirmed before
   * the next ask: the holders' blocks then count (third ask: 3 alone
   * costs 5,000, 2 taking it all 7,000). */
  gm = big_case();
  infsim_gm_set_spread_costs(gm, 1000, 100);
  int64_t need = 9000;
  for (int asks = 0; need > 0; asks++) {
    assert_true(asks < 3);
    size_t n = infsim_gm_plan(gm, INFSIM_PLAN_SPREAD, 0, 0, need, m, 8);
    assert_true(n > 0);
    assert_int_equal(m[0].to, to[asks]);
    for (size_t k = 1; k < n; k++) infsim_gm_unpropose(gm, &m[k]);
    infsim_gm_record_move(gm, &m[0], 10 + asks);
    need -= m[0].blocks;
  }
  assert_int_equal(infsim_gm_spare_blocks(gm, 1), 0);
  assert_int_equal(infsim_gm_spare_blocks(gm, 2), 5000);
  assert_int_equal(infsim_gm_spare_blocks(gm, 3), 3000);
  infsim_gm_free(gm);
}

static void test_spread_costs(void **state) {
  (void)state;
  infsim_model_shape m;
  assert_true(infsim_model_builtin("llama2-7b", &m));
  assert_float_equal(infsim_planner_holder_tokens(&m, 2.0, 156e12, 25e9), 16448.0 / 25e9 / (16384.0 / 156e12), 1e-6);
  assert_float_equal(infsim_planner_holder_tokens(&m, 2.0, 156e12, 25e9), 6264.375, 1e-3);
  assert_float_equal(infsim_planner_holder_tokens(&m, 2.0, 156e12, 300e9), 522.03125, 1e-3);
}

static void test_names(void **state) {
  (void)state;
  infsim_gm_planner p;
  assert_true(infsim_gm_planner_from_name("fit", &p));
  assert_int_equal(p, INFSIM_PLAN_FIT);
  assert_true(infsim_gm_planner_from_name("level", &p));
  assert_int_equal(p, INFSIM_PLAN_LEVEL);
  assert_true(infsim_gm_planner_from_name("spread", &p));
  assert_int_equal(p, INFSIM_PLAN_SPREAD);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_level_one_ask), cmocka_unit_test(test_level_successive_asks),
      cmocka_unit_test(test_level_small_need_is_greedy), cmocka_unit_test(test_fit), cmocka_unit_test(test_spread_rule),
      cmocka_unit_test(test_spread_with_relay),
      cmocka_unit_test(test_spread_in_the_gmanager), cmocka_unit_test(test_spread_costs), cmocka_unit_test(test_names),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
