/*
** bench_soak.c: a long run watched as it goes (bench/README.md, "Soak").
**
**   bench_soak CONFIG.yaml [--set key=value]... [--every-s S] [--rss-tolerance F] --out DIR
**
** Runs the config like `infsim run` (invariants on in a debug or
** -DINFSIM_INVARIANTS=ON build) and, every S simulated seconds (default
** 3600), prints and records the process's resident memory, the events and
** requests done so far and every high-water mark (high_water.h). Then
** checks, and exits 1 naming what failed:
**  - memory: resident memory at every report after the first stays within
**    F (default 0.10; a negative F asks memory to shrink, which tests
**    this check) of the first report's: the first period has touched
**    everything a run keeps (records, pools, the trace), so growth past it
**    is memory that grows with the run's length (a leak or an unbounded
**    queue). Skipped in a sanitizer build, whose allocator keeps freed
**    memory in quarantine.
**  - marks: 0 <= final <= peak <= capacity for every mark;
**  - nothing left: at the end no KV block is in use in any pool, no
**    borrow, reservation or proposal of the protocol, no message in flight
**    and no event queued (a block or record left is one leaked). The
**    gManager's ledger is a view learned from heartbeats, which stop with
**    the run: it may still list the last requests to finish, so its
**    marks are held to their hourly peaks instead, which must level off.
** Writes DIR/summary.json (with its high_water object) and DIR/soak.csv
** (one row per report).
*/
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "infsim/atomic_file.h"
#include "infsim/run.h"

#if defined(__SANITIZE_ADDRESS__)
#define SOAK_SANITIZED 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define SOAK_SANITIZED 1
#endif
#endif
#ifndef SOAK_SANITIZED
#define SOAK_SANITIZED 0
#endif

enum { MAX_SETS = 64, MAX_REPORTS = 10000 };

typedef struct {
  int64_t at_ns;
  int64_t rss_bytes;
  int64_t events;
  int64_t done;
  infsim_high_water_set marks;
} soak_report;

typedef struct {
  soak_report *reports;
  size_t count;
} soak_log;

static int64_t rss_bytes(void) {
  FILE *f = fopen("/proc/self/statm", "r");
  long long size = 0, resident = 0;
  if (f == NULL) return -1;
  int n = fscanf(f, "%lld %lld", &size, &resident);
  fclose(f);
  return n == 2 ? resident * (int64_t)sysconf(_SC_PAGESIZE) : -1;
}

static void on_tick(void *self, const infsim_sim *s, int64_t at_ns) {
  soak_log *log = self;
  if (log->count >= MAX_REPORTS) return;
  soak_report *r = &log->reports[log->count++];
  r->at_ns = at_ns;
  r->rss_bytes = rss_bytes();
  r->events = infsim_sim_counters(s)->events;
  r->done = infsim_sched_done_count(infsim_sim_sched(s));
  infsim_sim_high_water(s, &r->marks);
  printf("soak: t=%.0f s rss=%.1f MB events=%lld done=%lld", (double)at_ns * 1e-9, (double)r->rss_bytes / 1048576.0,
         (long long)r->events, (long long)r->done);
  for (int i = 0; i < r->marks.count; i++)
    if (strcmp(r->marks.mark[i].name, "event_heap") == 0 || strcmp(r->marks.mark[i].name, "kv_gpu_blocks") == 0 ||
        strcmp(r->marks.mark[i].name, "gmanager_ledger_requests") == 0)
      printf(" %s_peak=%lld", r->marks.mark[i].name, (long long)r->marks.mark[i].peak);
  printf("\n");
  fflush(stdout);
}

static infsim_status write_csv(const soak_log *log, const char *dir, infsim_error *err) {
  char path[INFSIM_PATH_BYTES];
  if ((size_t)snprintf(path, sizeof path, "%s/soak.csv", dir) >= sizeof path)
    return infsim_fail(err, INFSIM_EINPUT, "%s: output directory path too long", dir);
  infsim_atomic_file af;
  infsim_status st = infsim_atomic_open(&af, path, err);
  if (st != INFSIM_OK) return st;
  fprintf(af.fp, "sim_time_s,rss_bytes,events,requests_done");
  const infsim_high_water_set *names = log->count ? &log->reports[log->count - 1].marks : NULL;
  for (int i = 0; names && i < names->count; i++) fprintf(af.fp, ",%s_peak", names->mark[i].name);
  fprintf(af.fp, "\n");
  for (size_t k = 0; k < log->count; k++) {
    const soak_report *r = &log->reports[k];
    fprintf(af.fp, "%.0f,%lld,%lld,%lld", (double)r->at_ns * 1e-9, (long long)r->rss_bytes, (long long)r->events,
            (long long)r->done);
    for (int i = 0; names && i < names->count; i++)
      fprintf(af.fp, ",%lld", i < r->marks.count ? (long long)r->marks.mark[i].peak : -1LL);
    fprintf(af.fp, "\n");
  }
  return infsim_atomic_commit(&af, err);
}

/* The checks of the header comment; returns how many failed. */
static int check(const soak_log *log, const infsim_high_water_set *end, double tolerance) {
  int failed = 0;
  if (SOAK_SANITIZED) {
    printf("soak: memory check skipped (sanitizer build)\n");
  } else if (log->count >= 2) {
    int64_t first = log->reports[0].rss_bytes, worst = first;
    for (size_t k = 1; k < log->count; k++) {
      int64_t r = log->reports[k].rss_bytes;
      if (r > worst) worst = r;
      if ((double)r > (double)first * (1.0 + tolerance)) {
        printf("soak: FAIL memory at %.0f s is %.1f MB, %.1f%% above the first report's %.1f MB\n",
               (double)log->reports[k].at_ns * 1e-9, (double)r / 1048576.0, 100.0 * ((double)r / (double)first - 1.0),
               (double)first / 1048576.0);
        failed++;
        break;
      }
    }
    printf("soak: memory after the first report: %.1f MB, at most %.1f MB later (+%.2f%%, bound %.0f%%)\n",
           (double)first / 1048576.0, (double)worst / 1048576.0, 100.0 * ((double)worst / (double)first - 1.0),
           100.0 * tolerance);
  } else {
    printf("soak: FAIL fewer than two memory reports (%zu): make the run longer or --every-s shorter\n", log->count);
    failed++;
  }
  static const char *const must_be_empty[] = {
      "event_heap",           "messages_in_flight",       "network_flows",      "instance_waiting",
      "instance_swapped",     "instance_prefilling",      "instance_running",   "kv_gpu_blocks",
      "kv_host_blocks",
      "contract_borrows",     "contract_reservations",    "contract_proposals"};
  for (int i = 0; i < end->count; i++) {
    const infsim_high_water *m = &end->mark[i];
    printf("soak: high water %-32s peak %12lld  final %12lld  capacity %12lld\n", m->name, (long long)m->peak,
           (long long)m->final, (long long)m->capacity);
    if (!(0 <= m->final && m->final <= m->peak && m->peak <= m->capacity)) {
      printf("soak: FAIL %s: not 0 <= final <= peak <= capacity\n", m->name);
      failed++;
    }
    for (size_t k = 0; k < sizeof must_be_empty / sizeof must_be_empty[0]; k++)
      if (strcmp(m->name, must_be_empty[k]) == 0 && m->final != 0) {
        printf("soak: FAIL %s: %lld left at the end of the run\n", m->name, (long long)m->final);
        failed++;
      }
  }
  return failed;
}

static int usage(void) {
  fprintf(stderr, "usage: bench_soak CONFIG.yaml [--set key=value]... [--every-s S] [--rss-tolerance F] --out DIR\n");
  return 2;
}

int main(int argc, char **argv) {
  const char *sets[MAX_SETS];
  infsim_run_args args = {.sets = sets};
  const char *out = NULL;
  double every_s = 3600.0, tolerance = 0.10;
  for (int i = 1; i < argc; i++) {
    if (strcmp(argv[i], "--set") == 0 && i + 1 < argc && args.set_count < MAX_SETS) sets[args.set_count++] = argv[++i];
    else if (strcmp(argv[i], "--every-s") == 0 && i + 1 < argc) every_s = atof(argv[++i]);
    else if (strcmp(argv[i], "--rss-tolerance") == 0 && i + 1 < argc) tolerance = atof(argv[++i]);
    else if (strcmp(argv[i], "--out") == 0 && i + 1 < argc) out = argv[++i];
    else if (argv[i][0] != '-' && args.config_path == NULL) args.config_path = argv[i];
    else return usage();
  }
  if (args.config_path == NULL || out == NULL || !(every_s >= 1e-9) || !(tolerance > -1)) return usage();
  infsim_error err = {0};
  infsim_run_setup *setup = NULL;
  infsim_run_result *res = NULL;
  soak_log log = {calloc(MAX_REPORTS, sizeof(soak_report)), 0};
  if (log.reports == NULL) {
    fprintf(stderr, "bench_soak: out of memory\n");
    return 1;
  }
  infsim_status st = infsim_run_setup_load(&args, &setup, &err);
  if (st == INFSIM_OK) {
    const infsim_trace *t = infsim_run_setup_trace(setup);
    printf("soak: %zu requests over %.0f s, a report every %.0f s\n", t->count,
           t->count ? (double)t->requests[t->count - 1].arrival_ns * 1e-9 : 0.0, every_s);
    infsim_sim_watch watch = {.self = &log, .every_ns = (int64_t)(every_s * 1e9), .tick = on_tick};
    st = infsim_run_simulate_watched(infsim_run_setup_params(setup), t, infsim_run_setup_config(setup), &watch, &res,
                                     &err);
  }
  if (st == INFSIM_OK) st = infsim_run_write(res, out, INFSIM_OUTPUT_SUMMARY, &err);
  if (st == INFSIM_OK) st = write_csv(&log, out, &err);
  int failed = 0;
  if (st == INFSIM_OK) {
    const infsim_summary *sum = infsim_run_result_summary(res);
    printf("soak: %lld arrived, %lld completed, %lld rejected, %lld events, %.1f s of CPU-bound wall time\n",
           (long long)sum->arrived, (long long)sum->completed, (long long)sum->rejected,
           (long long)infsim_run_result_counters(res)->events, infsim_run_result_wall_s(res));
    infsim_high_water_set end;
    infsim_run_result_high_water(res, &end);
    failed = check(&log, &end, tolerance);
    if (sum->completed + sum->rejected != sum->arrived) {
      printf("soak: FAIL %lld requests neither completed nor rejected\n",
             (long long)(sum->arrived - sum->completed - sum->rejected));
      failed++;
    }
    printf(failed ? "soak: %d check(s) failed\n" : "soak: ok\n", failed);
  }
  infsim_run_result_free(res);
  infsim_run_setup_free(setup);
  free(log.reports);
  if (st != INFSIM_OK) {
    fprintf(stderr, "bench_soak: %s\n", err.msg);
    return st == INFSIM_EINPUT ? 2 : 1;
  }
  return failed ? 1 : 0;
}
