/*
** timeline.h: a run as Chrome/Perfetto trace events (the JSON "trace event
** format"), for looking at one run by eye in ui.perfetto.dev.
**
** One track per instance with a complete event per batch (a run of
** identical decode steps is one event, its steps in args) named by its
** composition; preemptions as instant events on the instance's track;
** messages and KV moves on a network track, from send to delivery.
** Only events overlapping the window [from_ns, to_ns] are written, so a
** million-request run can be looked at without writing gigabytes. The
** file is streamed to a temporary name in an output set (atomic_file.h),
** which the run's other outputs join: it appears with them or not at all.
*/
#ifndef INFSIM_TIMELINE_H
#define INFSIM_TIMELINE_H

#include <stdbool.h>
#include <stdint.h>

#include "infsim/atomic_file.h"
#include "infsim/batch.h"
#include "infsim/status.h"
#include "infsim/transport.h"

typedef struct infsim_timeline infsim_timeline;

/* to_ns < 0: no upper bound. */
infsim_status infsim_timeline_open(const char *path, int64_t from_ns, int64_t to_ns, infsim_timeline **out,
                                   infsim_error *err);
void infsim_timeline_batch(infsim_timeline *tl, int32_t instance, int64_t start_ns, int64_t end_ns, int64_t steps,
                           const infsim_batch_agg *agg);
void infsim_timeline_preemption(infsim_timeline *tl, int32_t instance, int64_t req, int64_t t_ns, bool swapped);
void infsim_timeline_message(infsim_timeline *tl, const infsim_msg *msg, int64_t sent_ns, int64_t delivered_ns);
/* Closes the JSON and frees tl; returns the output set holding the file
 * (and any directory made for it), for the caller to add to, commit and
 * free. */
infsim_atomic_set *infsim_timeline_finish(infsim_timeline *tl);
/* Removes the temporary file (and any directory made for it); frees tl.
 * NULL is fine. */
void infsim_timeline_abort(infsim_timeline *tl);
/* Events written so far. */
int64_t infsim_timeline_events(const infsim_timeline *tl);

#endif
