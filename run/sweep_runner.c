/* placeholder until the run library lands */
#include "infsim/sweep.h"
infsim_status infsim_sweep_runner_new(infsim_sweep_runner *out, infsim_error *err) {
  (void)out;
  return infsim_fail(err, INFSIM_ERUN, "run library not available");
}
void infsim_sweep_runner_free(infsim_sweep_runner *r) { (void)r; }
