/*
** report.h: a run's outputs in DIR (DESIGN.md's contract):
** summary.json, requests.csv, timeseries.csv and results.db (SQLite, STRICT
** tables `requests`, `timeseries`, `summary`; schema version in
** PRAGMA user_version). Every file is written under a temporary name and
** renamed only once all four are complete, so a failed run leaves none.
*/
#ifndef INFSIM_REPORT_H
#define INFSIM_REPORT_H

#include <jansson.h>

#include "infsim/metrics.h"
#include "infsim/sim.h"

enum { INFSIM_RESULTS_DB_VERSION = 1 };

/* The summary as JSON (new reference); config is borrowed into it. */
json_t *infsim_summary_json(const infsim_sim *s, const infsim_summary *sum, json_t *config, double wall_s);

/* Writes all outputs into dir (created if missing). */
infsim_status infsim_report_write(const char *dir, const infsim_sim *s, json_t *summary_json, infsim_error *err);

#endif
