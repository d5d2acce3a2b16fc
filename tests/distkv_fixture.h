/*
** distkv_fixture.h: helpers shared by the tests of infinite-llm runs
** (tests/distkv_fixture.c): the cost model a run prices with, built apart
** for sums by hand, and summary.json's distkv counters. Linked into every
** C test (tests/CMakeLists.txt); errors abort with a line naming the call.
*/
#ifndef INFSIM_TESTS_DISTKV_FIXTURE_H
#define INFSIM_TESTS_DISTKV_FIXTURE_H

#include <stdint.h>

#include "infsim/costmodel.h"
#include "infsim/run.h"

/* The cost model of one A100-80GB per instance on the roofline (the tests
 * name no calibration DB), for p's model and links: what a run of p on
 * `gpu=a100-80gb` prices its iterations with, built independently of it.
 * Free with infsim_cost_model_destroy. */
void fixture_a100_roofline(const infsim_run_params *p, infsim_cost_model *cm);

/* summary.json's distkv.<key> of an infinite-llm run. */
int64_t fixture_distkv_field(const infsim_run_result *res, const char *key);

#endif
