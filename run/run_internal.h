/*
** run_internal.h: the run result's fields, shared by run.c (which fills
** them) and report.c (which writes them). Not a public header.
*/
#ifndef INFSIM_RUN_INTERNAL_H
#define INFSIM_RUN_INTERNAL_H

#include "infsim/run.h"
#include "infsim/sim.h"

struct infsim_run_result {
  infsim_run_params params;
  json_t *config; /* resolved, shared with the setup */
  const infsim_trace *trace; /* borrowed */
  infsim_sim *sim; /* NULL for a result from records (then the copies below) */
  infsim_timeline *timeline; /* streamed during the run, committed by infsim_run_write */
  infsim_request_record *requests;
  size_t request_count;
  infsim_sample_row *samples;
  size_t sample_count;
  infsim_iteration_row *iterations;
  size_t iteration_count;
  infsim_run_counters counters;
  int64_t sample_interval_ns;
  infsim_summary summary;
  char cost_model[2 * INFSIM_NAME_BYTES];
  double wall_s;
};

#endif
