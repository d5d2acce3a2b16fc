/* placeholder */
#include "plot_common.h"
infsim_status plot_calib_db(plot_job *pj, const char *path, infsim_error *err) { (void)pj; return infsim_fail(err, INFSIM_EINPUT, "%s: todo", path); }
