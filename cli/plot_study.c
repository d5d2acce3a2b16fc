/* placeholder */
#include "plot_common.h"
infsim_status plot_compare_dirs(plot_job *pj, const char *dir, int *found, infsim_error *err) { (void)pj; (void)dir; (void)err; *found = 0; return INFSIM_OK; }
infsim_status plot_capacity_csv(plot_job *pj, const char *path, infsim_error *err) { (void)pj; return infsim_fail(err, INFSIM_EINPUT, "%s: todo", path); }
infsim_status plot_sweep_db(plot_job *pj, const char *path, const plot_sweep_opts *o, infsim_error *err) { (void)pj; (void)o; return infsim_fail(err, INFSIM_EINPUT, "%s: todo", path); }
infsim_status plot_calib_db(plot_job *pj, const char *path, infsim_error *err) { (void)pj; return infsim_fail(err, INFSIM_EINPUT, "%s: todo", path); }
