/*
** bench_event_loop.c: the bare event-loop ceiling of the simulator.
**
** Pushes and pops events through infsim_event_heap and nothing else, so that
** bench/sim_speed can say how close a whole simulation gets to the speed of
** its own event queue. The workload is the classic "hold" model of
** event-queue benchmarks: the heap is filled with HEAP_SIZE events, then each
** step pops the first event and pushes one new event a random delay after
** it, so the heap size stays constant. The simulator keeps about one live
** event per instance (sim.c: one iteration per instance plus one arrival and
** one sample), so the sizes to compare with are the instance counts of the
** benchmark cases (32 and 1000 by default).
**
** Delays are uniform in [1 us, 40 ms], about the spread of iteration times
** of a 7B model, and priorities take three values, so that ties and the
** (time, priority, seq) order are exercised as in a run. The random numbers
** come from a splitmix64 state local to each measurement: a few
** nanoseconds per event, small beside the heap's O(log n) work.
**
** Output: one row per heap size with the best (highest) events/s over the
** repeats. Every popped event is checked to come no earlier than the one
** before: a heap that broke its order would make the speed meaningless,
** and the check costs one comparison. No timing is asserted anywhere.
*/
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "infsim/event_heap.h"

enum { MAX_SIZES = 16 };
static const int64_t DELAY_MIN_NS = 1000;
static const int64_t DELAY_SPAN_NS = 40000000; /* 40 ms */
static const int32_t PRIORITIES = 3;

static const char k_usage[] =
    "usage: bench_event_loop [--events N] [--sizes S1,S2,...] [--repeat R]\n"
    "\n"
    "Times N pop+push pairs through infsim_event_heap at a constant heap size\n"
    "(hold model) for each size, and prints the best events/s of R repeats.\n"
    "\n"
    "  --events N   events (pops) per measurement (default 10000000)\n"
    "  --sizes L    comma list of heap sizes (default 32,1000)\n"
    "  --repeat R   measurements per size, best one reported (default 3)\n";

typedef struct {
  uint64_t state;
} splitmix64;

/* splitmix64 (Steele, Lea, Flood, OOPSLA 2014): one add and a mixing
 * function per draw. */
static uint64_t splitmix64_next(splitmix64 *r) {
  uint64_t z = (r->state += UINT64_C(0x9E3779B97F4A7C15));
  z = (z ^ (z >> 30)) * UINT64_C(0xBF58476D1CE4E5B9);
  z = (z ^ (z >> 27)) * UINT64_C(0x94D049BB133111EB);
  return z ^ (z >> 31);
}

static double now_s(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static int64_t draw_delay_ns(splitmix64 *r) {
  return DELAY_MIN_NS + (int64_t)(splitmix64_next(r) % (uint64_t)DELAY_SPAN_NS);
}

typedef struct {
  double seconds;
  uint64_t checksum; /* sum of popped times (mod 2^64): keeps the loop observable */
} measurement;

/* One hold-model run: returns 0, or 1 (with a message) if the heap failed
 * to allocate or popped events out of order. */
static int measure(size_t heap_size, int64_t events, uint64_t seed, measurement *out) {
  infsim_event_heap h;
  infsim_error err = {0};
  splitmix64 rng = {seed};
  infsim_event_heap_init(&h);
  for (size_t i = 0; i < heap_size; i++) {
    if (infsim_event_heap_push(&h, draw_delay_ns(&rng), (int32_t)(splitmix64_next(&rng) % (uint64_t)PRIORITIES),
                               (int32_t)i, 0, &err) != INFSIM_OK) {
      fprintf(stderr, "bench_event_loop: %s\n", err.msg);
      infsim_event_heap_free(&h);
      return 1;
    }
  }
  int64_t last_ns = 0;
  uint64_t checksum = 0;
  int ordered = 1;
  infsim_event ev;
  double t0 = now_s();
  for (int64_t n = 0; n < events; n++) {
    infsim_event_heap_pop(&h, &ev);
    ordered &= ev.time_ns >= last_ns;
    last_ns = ev.time_ns;
    checksum += (uint64_t)ev.time_ns;
    uint64_t r = splitmix64_next(&rng);
    /* The heap never grows past its initial size here, so push cannot
     * allocate and cannot fail. */
    (void)infsim_event_heap_push(&h, ev.time_ns + DELAY_MIN_NS + (int64_t)((r >> 8) % (uint64_t)DELAY_SPAN_NS),
                                 (int32_t)(r % (uint64_t)PRIORITIES), ev.target, ev.arg + 1, &err);
  }
  out->seconds = now_s() - t0;
  out->checksum = checksum;
  size_t left = h.count;
  infsim_event_heap_free(&h);
  if (!ordered || left != heap_size) {
    fprintf(stderr, "bench_event_loop: heap of %zu popped events out of order or lost some (%zu left)\n", heap_size,
            left);
    return 1;
  }
  return 0;
}

static int parse_int64(const char *text, int64_t lo, int64_t hi, int64_t *out) {
  char *end = NULL;
  errno = 0;
  long long v = strtoll(text, &end, 10);
  if (errno != 0 || end == text || *end != '\0' || v < lo || v > hi) return 0;
  *out = (int64_t)v;
  return 1;
}

/* Parses "32,1000" into sizes; returns the count, or 0 if malformed. */
static size_t parse_sizes(const char *text, size_t *sizes) {
  char buf[256];
  snprintf(buf, sizeof buf, "%s", text);
  size_t n = 0;
  char *save = NULL;
  for (char *tok = strtok_r(buf, ",", &save); tok != NULL; tok = strtok_r(NULL, ",", &save)) {
    int64_t v = 0;
    if (n == MAX_SIZES || !parse_int64(tok, 1, INT64_C(100000000), &v)) return 0;
    sizes[n++] = (size_t)v;
  }
  return n;
}

int main(int argc, char **argv) {
  int64_t events = 10000000, repeat = 3;
  size_t sizes[MAX_SIZES] = {32, 1000};
  size_t n_sizes = 2;
  for (int i = 1; i < argc; i++) {
    const char *a = argv[i];
    if (strcmp(a, "--help") == 0 || strcmp(a, "-h") == 0) {
      fputs(k_usage, stdout);
      return 0;
    }
    if (i + 1 >= argc) {
      fprintf(stderr, "bench_event_loop: %s: unknown option or missing value (see --help)\n", a);
      return 2;
    }
    const char *v = argv[++i];
    if (strcmp(a, "--events") == 0 && parse_int64(v, 1, INT64_C(1) << 40, &events)) continue;
    if (strcmp(a, "--repeat") == 0 && parse_int64(v, 1, 1000, &repeat)) continue;
    if (strcmp(a, "--sizes") == 0 && (n_sizes = parse_sizes(v, sizes)) > 0) continue;
    fprintf(stderr, "bench_event_loop: %s: bad value '%s' (see --help)\n", a, v);
    return 2;
  }
  printf("%-10s %12s %10s %14s %s\n", "heap_size", "events", "best_s", "events_per_s", "checksum");
  for (size_t s = 0; s < n_sizes; s++) {
    measurement best = {0};
    for (int64_t r = 0; r < repeat; r++) {
      measurement m;
      if (measure(sizes[s], events, UINT64_C(0x5EED) + (uint64_t)r, &m) != 0) return 1;
      if (r == 0 || m.seconds < best.seconds) best = m;
    }
    printf("%-10zu %12" PRId64 " %10.4f %14.0f %" PRIu64 "\n", sizes[s], events, best.seconds,
           best.seconds > 0 ? (double)events / best.seconds : 0.0, best.checksum);
  }
  return 0;
}
