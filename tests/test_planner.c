/*
** test_planner.c: the fit and level borrow planners (planner.h) against
** hand-solved cases.
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

static void test_names(void **state) {
  (void)state;
  infsim_gm_planner p;
  assert_true(infsim_gm_planner_from_name("fit", &p));
  assert_int_equal(p, INFSIM_PLAN_FIT);
  assert_true(infsim_gm_planner_from_name("level", &p));
  assert_int_equal(p, INFSIM_PLAN_LEVEL);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_level_one_ask), cmocka_unit_test(test_level_successive_asks),
      cmocka_unit_test(test_level_small_need_is_greedy), cmocka_unit_test(test_fit), cmocka_unit_test(test_names),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
