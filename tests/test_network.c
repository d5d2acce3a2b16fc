/*
** test_network.c: the max-min fair network against closed forms and a
** hand-solved allocation: n equal flows get 1/n of a link each and end
** together at n x bytes / bandwidth; unequal demands over two links get
** the progressive-filling answer worked out by hand; path latency is added
** once per flow; every link carries exactly the bytes of the flows that
** crossed it; random workloads keep the max-min optimality invariant;
** crowded paths (hundreds of flows on a few paths) get the rates of a
** flow-by-flow progressive filling written here; the shares a step's
** transfers would get (a probe) match a hand-solved allocation and the
** network's own once they are added; links are busy while they carry
** moving flows, whatever rounding is left in their load; a link's bytes,
** kept as its load x time, agree with its flows' rates x time summed flow
** by flow; a run's steady flows started and ended as a set leave the
** network bit for bit as the calls one by one do; a probe that walks the
** flows already on its links (their rates as bounds) gets the filling's
** shares to the last bit; links that go idle and come back (the list
** of links the fillings visit) keep the flow-by-flow filling's rates and
** the bytes and busy time summed interval by interval.
*/
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <gsl/gsl_rng.h>

#include "infsim/network.h"
#include "infsim/rng.h"

typedef struct {
  int64_t ids[64];
  int64_t tags[64];
  int64_t at_ns[64];
  int n;
} done_log;

static void log_done(void *ctx, int64_t id, int64_t tag, int64_t at_ns) {
  done_log *d = ctx;
  assert_true(d->n < 64);
  d->ids[d->n] = id;
  d->tags[d->n] = tag;
  d->at_ns[d->n] = at_ns;
  d->n++;
}

static infsim_network *one_link(double bytes_per_s, int64_t latency_ns) {
  infsim_network *net = NULL;
  assert_int_equal(infsim_network_new(&net, NULL), INFSIM_OK);
  int32_t id = -1;
  assert_int_equal(infsim_network_add_link(net, INFSIM_LINK_NIC, "a", "b", bytes_per_s, latency_ns, &id, NULL),
                   INFSIM_OK);
  assert_int_equal(id, 0);
  return net;
}

/* n flows of B bytes on one link of bandwidth W: each gets W / n and all
 * end at n B / W (processor sharing, closed form). */
static void test_equal_flows_share_a_link(void **state) {
  (void)state;
  const double bw = 1e9; /* 1 GB/s: 1 byte per ns */
  for (int n = 1; n <= 8; n++) {
    infsim_network *net = one_link(bw, 0);
    const int32_t path[1] = {0};
    int64_t id[8];
    for (int i = 0; i < n; i++)
      assert_int_equal(infsim_network_add_flow(net, 1000000, path, 1, 0, 0, i, &id[i], NULL), INFSIM_OK);
    for (int i = 0; i < n; i++) assert_float_equal(infsim_network_rate(net, id[i]), bw / n, bw * 1e-12);
    infsim_network_check(net);
    int64_t expect_ns = (int64_t)n * 1000000; /* n x bytes / bw, bw = 1 byte/ns */
    assert_int_equal(infsim_network_next_ns(net), expect_ns);
    done_log d = {0};
    assert_int_equal(infsim_network_advance(net, expect_ns - 1, log_done, &d), 0);
    assert_int_equal(infsim_network_advance(net, expect_ns, log_done, &d), (size_t)n);
    for (int i = 0; i < n; i++) {
      assert_int_equal(d.at_ns[i], expect_ns);
      assert_int_equal(d.ids[i], id[i]); /* ties end in id order */
    }
    infsim_link_info li = infsim_network_link(net, 0);
    assert_float_equal(li.bytes, n * 1e6, 1e-3);
    assert_int_equal(li.busy_ns, expect_ns);
    assert_int_equal(infsim_network_flow_count(net), 0);
    infsim_network_free(net);
  }
}

/* Link A (10 GB/s) and link B (4 GB/s); flows: f1 on A, f2 on A and B, f3
 * on B, f4 on A capped at 1 GB/s. Filling by hand: all rise together; at
 * level 1 f4 stops at its cap; at level 2 link B is full (f2 + f3 = 4):
 * f2 = f3 = 2; f1 alone takes A's rest, 10 - 1 - 2 = 7. */
static void test_unequal_demands_two_links(void **state) {
  (void)state;
  infsim_network *net = NULL;
  assert_int_equal(infsim_network_new(&net, NULL), INFSIM_OK);
  assert_int_equal(infsim_network_add_link(net, INFSIM_LINK_NVLINK, "x", "y", 10e9, 0, NULL, NULL), INFSIM_OK);
  assert_int_equal(infsim_network_add_link(net, INFSIM_LINK_NIC, "y", "z", 4e9, 0, NULL, NULL), INFSIM_OK);
  const int32_t a[1] = {0}, ab[2] = {0, 1}, b[1] = {1};
  int64_t f1, f2, f3, f4;
  assert_int_equal(infsim_network_add_flow(net, 7000000000, a, 1, 0, 0, 1, &f1, NULL), INFSIM_OK);
  assert_int_equal(infsim_network_add_flow(net, 1000000000, ab, 2, 0, 0, 2, &f2, NULL), INFSIM_OK);
  assert_int_equal(infsim_network_add_flow(net, 5000000000, b, 1, 0, 0, 3, &f3, NULL), INFSIM_OK);
  assert_int_equal(infsim_network_add_flow(net, 3000000000, a, 1, 0, 1e9, 4, &f4, NULL), INFSIM_OK);
  assert_float_equal(infsim_network_rate(net, f1), 7e9, 1);
  assert_float_equal(infsim_network_rate(net, f2), 2e9, 1);
  assert_float_equal(infsim_network_rate(net, f3), 2e9, 1);
  assert_float_equal(infsim_network_rate(net, f4), 1e9, 1);
  infsim_network_check(net);
  /* f2 (1 GB at 2 GB/s) and f1 (7 GB at 7 GB/s) end first, at 0.5 s and
   * 1 s. After f2: B has f3 alone (4 GB/s), A has f1 (9 GB/s, f4 capped).
   * f1 has 7 - 3.5 = 3.5 GB left at 9 GB/s: ends at 0.5 + 3.5/9 s. */
  done_log d = {0};
  assert_int_equal(infsim_network_advance(net, 500000000, log_done, &d), 1);
  assert_int_equal(d.ids[0], f2);
  assert_float_equal(infsim_network_rate(net, f1), 9e9, 1);
  assert_float_equal(infsim_network_rate(net, f3), 4e9, 1);
  assert_float_equal(infsim_network_rate(net, f4), 1e9, 1);
  int64_t f1_end = 500000000 + (int64_t)(3.5e9 / 9e9 * 1e9 + 0.999999);
  assert_int_equal(infsim_network_next_ns(net), f1_end);
  infsim_network_free(net);
}

/* Latency is paid once: a flow over two links of latency L1, L2 ends at
 * start + L1 + L2 + bytes / bw, and takes no bandwidth before that. */
static void test_latency_added_once(void **state) {
  (void)state;
  infsim_network *net = NULL;
  assert_int_equal(infsim_network_new(&net, NULL), INFSIM_OK);
  assert_int_equal(infsim_network_add_link(net, INFSIM_LINK_NIC, "a", "b", 1e9, 3000, NULL, NULL), INFSIM_OK);
  assert_int_equal(infsim_network_add_link(net, INFSIM_LINK_NIC, "b", "c", 2e9, 7000, NULL, NULL), INFSIM_OK);
  const int32_t path[2] = {0, 1};
  int64_t id;
  assert_int_equal(infsim_network_add_flow(net, 50000, path, 2, 1000, 0, 0, &id, NULL), INFSIM_OK);
  assert_int_equal(infsim_network_next_ns(net), 1000 + 10000); /* it starts competing */
  assert_float_equal(infsim_network_rate(net, id), 0, 0);
  done_log d = {0};
  assert_int_equal(infsim_network_advance(net, 11000, log_done, &d), 0);
  assert_float_equal(infsim_network_rate(net, id), 1e9, 1);
  assert_int_equal(infsim_network_advance(net, 1000000, log_done, &d), 1);
  assert_int_equal(d.at_ns[0], 1000 + 10000 + 50000); /* bottleneck 1 byte/ns */
  assert_int_equal(infsim_network_link(net, 0).busy_ns, 50000);
  /* A zero-byte message takes exactly the latency. */
  assert_int_equal(infsim_network_add_flow(net, 0, path, 2, 2000000, 0, 7, &id, NULL), INFSIM_OK);
  assert_int_equal(infsim_network_advance(net, 3000000, log_done, &d), 1);
  assert_int_equal(d.at_ns[1], 2000000 + 10000);
  assert_int_equal(d.tags[1], 7);
  infsim_network_free(net);
}

/* A steady flow takes its demand while the link has room, its max-min
 * share when it has not, and is never completed. */
static void test_steady_flow(void **state) {
  (void)state;
  infsim_network *net = one_link(10e9, 0);
  const int32_t path[1] = {0};
  int64_t s, f;
  assert_int_equal(infsim_network_add_steady(net, 2e9, path, 1, 0, 0, &s, NULL), INFSIM_OK);
  assert_float_equal(infsim_network_rate(net, s), 2e9, 1);
  assert_int_equal(infsim_network_next_ns(net), INT64_MAX);
  assert_int_equal(infsim_network_add_flow(net, 8000000000, path, 1, 0, 0, 0, &f, NULL), INFSIM_OK);
  assert_float_equal(infsim_network_rate(net, f), 8e9, 1); /* the rest of the link */
  done_log d = {0};
  assert_int_equal(infsim_network_advance(net, 2000000000, log_done, &d), 1);
  assert_int_equal(d.at_ns[0], 1000000000);
  double carried = infsim_network_remove(net, s, 2000000000);
  assert_float_equal(carried, 4e9, 1); /* 2 GB/s for 2 s */
  assert_float_equal(infsim_network_link(net, 0).bytes, 12e9, 10);
  assert_float_equal(infsim_network_remove(net, s, 2000000000), -1, 0);
  /* Three steady demands of 5 on a link of 10: 10/3 each (max-min). */
  int64_t t[3];
  for (int i = 0; i < 3; i++)
    assert_int_equal(infsim_network_add_steady(net, 5e9, path, 1, 2000000000, i, &t[i], NULL), INFSIM_OK);
  for (int i = 0; i < 3; i++) assert_float_equal(infsim_network_rate(net, t[i]), 10e9 / 3, 1);
  infsim_network_check(net);
  infsim_network_free(net);
}

/* Steady flows on links that stay unsaturated change no other rate (the
 * network skips its filling then): link A of 10 GB/s, link B of 4; a
 * byte flow over A and B gets 4 (B's bottleneck). A steady 3 on A fits:
 * 4 and 3. A steady 5 on A does not: filling, the steady 3 stops at 3,
 * then A's last 1 is split by the byte flow and the 5: 3.5 each (A full,
 * B not). Removing it at 1 s gives 4 and 3 back; removing the steady 3 at
 * 1.5 s, 4 alone: the byte flow moved 2 + 1.75 GB by 1 s, its last 4.25
 * GB end at 2.0625 s; A carried 8 GB + 3 GB/s x 1.5 s + 3.5 GB/s x 0.5 s. */
static void test_steady_flows_on_free_links(void **state) {
  (void)state;
  infsim_network *net = one_link(10e9, 0);
  int32_t b = -1;
  assert_int_equal(infsim_network_add_link(net, INFSIM_LINK_NIC, "b", "c", 4e9, 0, &b, NULL), INFSIM_OK);
  const int32_t ab[2] = {0, 1}, a[1] = {0};
  int64_t f, s3, s5;
  assert_int_equal(infsim_network_add_flow(net, 8000000000, ab, 2, 0, 0, 0, &f, NULL), INFSIM_OK);
  assert_float_equal(infsim_network_rate(net, f), 4e9, 1);
  assert_int_equal(infsim_network_add_steady(net, 3e9, a, 1, 0, 1, &s3, NULL), INFSIM_OK);
  assert_float_equal(infsim_network_rate(net, f), 4e9, 1);
  assert_float_equal(infsim_network_rate(net, s3), 3e9, 1);
  infsim_network_check(net);
  infsim_network_sync(net, 500000000);
  assert_int_equal(infsim_network_add_steady(net, 5e9, a, 1, 500000000, 2, &s5, NULL), INFSIM_OK);
  assert_float_equal(infsim_network_rate(net, f), 3.5e9, 1);
  assert_float_equal(infsim_network_rate(net, s3), 3e9, 1);
  assert_float_equal(infsim_network_rate(net, s5), 3.5e9, 1);
  infsim_network_check(net);
  assert_float_equal(infsim_network_remove(net, s5, 1000000000), 1.75e9, 1);
  assert_float_equal(infsim_network_rate(net, f), 4e9, 1);
  assert_float_equal(infsim_network_rate(net, s3), 3e9, 1);
  infsim_network_check(net);
  assert_float_equal(infsim_network_remove(net, s3, 1500000000), 4.5e9, 1);
  assert_float_equal(infsim_network_rate(net, f), 4e9, 1);
  infsim_network_check(net);
  done_log d = {0};
  assert_int_equal(infsim_network_advance(net, 3000000000, log_done, &d), 1);
  assert_int_equal(d.at_ns[0], 2062500000);
  assert_float_equal(infsim_network_link(net, 0).bytes, 8e9 + 4.5e9 + 1.75e9, 10);
  infsim_network_free(net);
}

/* Cluster routes: the right links and kinds. */
static void test_cluster_routes(void **state) {
  (void)state;
  infsim_topology t = {.instances = 6, .instances_per_node = 4, .nvlink_bytes_per_s = 300e9,
                       .nic_bytes_per_s = 25e9, .pcie_bytes_per_s = 25e9, .nvlink_latency_ns = 1000,
                       .nic_latency_ns = 5000, .pcie_latency_ns = 2000};
  infsim_network *net = NULL;
  assert_int_equal(infsim_network_new_cluster(&t, &net, NULL), INFSIM_OK);
  assert_int_equal(infsim_network_link_count(net), 6 * 4 + 2 * 2);
  int32_t p[INFSIM_NET_MAX_PATH];
  assert_int_equal(infsim_network_route(net, 1, 1, p), 0);
  assert_int_equal(infsim_network_route(net, 1, 3, p), 2);
  assert_int_equal(infsim_network_link(net, p[0]).kind, INFSIM_LINK_NVLINK);
  assert_string_equal(infsim_network_link(net, p[0]).src, "i1");
  assert_string_equal(infsim_network_link(net, p[1]).dst, "i3");
  assert_int_equal(infsim_network_route(net, 1, 5, p), 2);
  assert_int_equal(infsim_network_link(net, p[0]).kind, INFSIM_LINK_NIC);
  assert_string_equal(infsim_network_link(net, p[0]).src, "sw0");
  assert_string_equal(infsim_network_link(net, p[1]).dst, "sw1");
  assert_int_equal(infsim_network_route(net, 5, 6 + 1, p), 1); /* instance 5 to node 1's host */
  assert_int_equal(infsim_network_link(net, p[0]).kind, INFSIM_LINK_PCIE);
  assert_string_equal(infsim_network_link(net, p[0]).dst, "h1");
  assert_int_equal(infsim_network_route(net, 6 + 0, 2, p), 1);
  assert_string_equal(infsim_network_link(net, p[0]).dst, "i2");
  assert_int_equal(infsim_network_node_of(net, 5), 1);
  assert_int_equal(infsim_network_node_of(net, 6), 0);
  infsim_network_free(net);
}

/* Every route's rate and latency (the table of a small cluster; computed
 * per call in one of more than 256 endpoints) against its path's links:
 * the narrowest bandwidth and the latencies' sum; and a few by hand. */
static void check_route_rates(infsim_network *net, int32_t endpoints) {
  for (int32_t src = 0; src < endpoints; src++)
    for (int32_t dst = 0; dst < endpoints; dst++) {
      int32_t p[INFSIM_NET_MAX_PATH];
      int len = infsim_network_route(net, src, dst, p);
      double bw = 0;
      int64_t lat = 0;
      for (int k = 0; k < len; k++) {
        infsim_link_info l = infsim_network_link(net, p[k]);
        if (bw == 0 || l.bytes_per_s < bw) bw = l.bytes_per_s;
        lat += l.latency_ns;
      }
      double got_bw = -1;
      int64_t got_lat = -1;
      infsim_network_route_rate(net, src, dst, &got_bw, &got_lat);
      assert_true(got_bw == bw);
      assert_int_equal(got_lat, lat);
    }
}

static void test_route_rates(void **state) {
  (void)state;
  infsim_topology t = {.instances = 6, .instances_per_node = 4, .nvlink_bytes_per_s = 300e9,
                       .nic_bytes_per_s = 25e9, .pcie_bytes_per_s = 54e9, .nvlink_latency_ns = 1000,
                       .nic_latency_ns = 5000, .pcie_latency_ns = 2000};
  infsim_network *net = NULL;
  assert_int_equal(infsim_network_new_cluster(&t, &net, NULL), INFSIM_OK);
  assert_true(infsim_network_route_table(net));
  check_route_rates(net, 6 + 2);
  double bw;
  int64_t lat;
  infsim_network_route_rate(net, 1, 3, &bw, &lat); /* NVLink up and down */
  assert_true(bw == 300e9);
  assert_int_equal(lat, 2000);
  infsim_network_route_rate(net, 1, 5, &bw, &lat); /* NIC out and in */
  assert_true(bw == 25e9);
  assert_int_equal(lat, 10000);
  infsim_network_route_rate(net, 5, 6 + 1, &bw, &lat); /* PCIe to its host */
  assert_true(bw == 54e9);
  assert_int_equal(lat, 2000);
  infsim_network_route_rate(net, 4, 4, &bw, &lat);
  assert_true(bw == 0);
  assert_int_equal(lat, 0);
  infsim_network_free(net);
  t.instances = 300;
  t.instances_per_node = 8;
  assert_int_equal(infsim_network_new_cluster(&t, &net, NULL), INFSIM_OK);
  assert_false(infsim_network_route_table(net));
  check_route_rates(net, 300 + 38);
  infsim_network_free(net);
}

/* Steady flows coming and going at random over a cluster, some on free
 * links (no refilling), some crowding a NIC (refilled): every link's busy
 * time is the time at least one of them crossed it, counted here from the
 * flows alone, and its bytes what they carried at their rates. */
static void test_busy_time_of_steady_flows(void **state) {
  (void)state;
  gsl_rng *rng = infsim_rng_new(5, "test.network.busy");
  infsim_topology t = {.instances = 8, .instances_per_node = 4, .nvlink_bytes_per_s = 300e9,
                       .nic_bytes_per_s = 25e9, .pcie_bytes_per_s = 25e9, .nvlink_latency_ns = 1000,
                       .nic_latency_ns = 5000, .pcie_latency_ns = 2000};
  infsim_network *net = NULL;
  assert_int_equal(infsim_network_new_cluster(&t, &net, NULL), INFSIM_OK);
  enum { LINKS = 8 * 4 + 2 * 2, SLOTS = 24 };
  int64_t id[SLOTS], on[LINKS] = {0}, busy[LINKS] = {0}, now = 0;
  int32_t paths[SLOTS][INFSIM_NET_MAX_PATH];
  int lens[SLOTS] = {0};
  double done = 0, expect = 0;
  for (int i = 0; i < SLOTS; i++) id[i] = -1;
  for (int step = 0; step < 3000; step++) {
    int64_t dt = (int64_t)gsl_rng_uniform_int(rng, 100000);
    for (int l = 0; l < LINKS; l++)
      if (on[l] > 0) busy[l] += dt;
    for (int j = 0; j < SLOTS; j++) /* rates hold between two changes */
      if (id[j] >= 0) expect += infsim_network_rate(net, id[j]) * (double)dt * 1e-9 * lens[j];
    now += dt;
    infsim_network_advance(net, now, NULL, NULL);
    int i = (int)gsl_rng_uniform_int(rng, SLOTS);
    if (id[i] >= 0) {
      done += infsim_network_remove(net, id[i], now) * lens[i];
      id[i] = -1;
      for (int k = 0; k < lens[i]; k++) on[paths[i][k]]--;
    } else {
      int32_t src = (int32_t)gsl_rng_uniform_int(rng, 10), dst = (int32_t)gsl_rng_uniform_int(rng, 10);
      lens[i] = infsim_network_route(net, src, dst, paths[i]);
      if (lens[i] == 0) continue;
      /* whole GB/s: loads that flows leave without a refilling come back
       * to exactly 0 (a fraction left by rounding would count as busy) */
      double rate = gsl_rng_uniform(rng) < 0.5 ? 1e9 : 1e9 * (double)(4 + gsl_rng_uniform_int(rng, 10));
      assert_int_equal(infsim_network_add_steady(net, rate, paths[i], lens[i], now, i, &id[i], NULL), INFSIM_OK);
      for (int k = 0; k < lens[i]; k++) on[paths[i][k]]++;
    }
    infsim_network_check(net);
    for (int l = 0; l < LINKS; l++) assert_int_equal(infsim_network_link(net, l).busy_ns, busy[l]);
  }
  for (int i = 0; i < SLOTS; i++)
    if (id[i] >= 0) done += infsim_network_remove(net, id[i], now) * lens[i];
  double bytes = 0;
  for (int l = 0; l < LINKS; l++) bytes += infsim_network_link(net, l).bytes;
  assert_true(bytes > 0);
  assert_float_equal(bytes, expect, expect * 1e-9); /* each flow's rate x time, on every link of its path */
  assert_float_equal(done, expect, expect * 1e-9);  /* and what remove said each carried */
  infsim_network_free(net);
  gsl_rng_free(rng);
}

/* Two steady flows of 1/3 and 1/6 GB/s on a free link, both added and
 * removed without a refilling: their load comes back to 3e-8 bytes/s, not
 * 0, in floating point. The link is busy exactly while it carries them,
 * and idle after. */
static void test_busy_means_flows_not_load(void **state) {
  (void)state;
  infsim_network *net = one_link(100e9, 0);
  const int32_t path[1] = {0};
  int64_t a = -1, b = -1;
  assert_int_equal(infsim_network_add_steady(net, 1e9 / 3, path, 1, 0, 0, &a, NULL), INFSIM_OK);
  assert_int_equal(infsim_network_add_steady(net, 1e9 / 6, path, 1, 1000, 0, &b, NULL), INFSIM_OK);
  infsim_network_advance(net, 1000, NULL, NULL); /* b competes from 1000 */
  infsim_network_advance(net, 3000, NULL, NULL);
  assert_true(infsim_network_remove(net, a, 3000) >= 0);
  assert_true(infsim_network_remove(net, b, 5000) >= 0);
  infsim_network_check(net);
  assert_int_equal(infsim_network_link(net, 0).busy_ns, 5000);
  infsim_network_advance(net, 1000000, NULL, NULL);
  assert_int_equal(infsim_network_link(net, 0).busy_ns, 5000);
  assert_int_equal(infsim_network_flow_count(net), 0);
  infsim_network_free(net);
}

typedef struct {
  int64_t id[32];
  double bytes[32];     /* a sized flow's bytes; 0 for a steady one */
  double carried[32];   /* its rate x time, integrated here */
  int32_t path[32][INFSIM_NET_MAX_PATH];
  int len[32];
  double *link_bytes;   /* per link, the flows' bytes summed flow by flow */
} flow_book;

/* A sized flow ended: its links got its bytes exactly, not the rate x
 * time integrated here (its end is rounded to whole ns). */
static void book_done(void *ctx, int64_t id, int64_t tag, int64_t at_ns) {
  (void)id;
  (void)at_ns;
  flow_book *b = ctx;
  int i = (int)tag;
  assert_int_equal(b->id[i], id);
  for (int k = 0; k < b->len[i]; k++) b->link_bytes[b->path[i][k]] += b->bytes[i] - b->carried[i];
  b->id[i] = -1;
}

/* Sized and steady flows, some with bounds, coming and going at random
 * over a cluster, with a crowded NIC: the network keeps each link's bytes
 * as its load x time, folded when the load changes; here they are summed
 * flow by flow (each flow's rate read after every change, times the time
 * to the next), in another order. Both agree within 1e-9 relative on
 * every link, and busy time is the time a link had a moving flow. */
static void test_link_bytes_per_link_match_per_flow(void **state) {
  (void)state;
  gsl_rng *rng = infsim_rng_new(17, "test.network.link_bytes");
  infsim_topology t = {.instances = 8, .instances_per_node = 4, .nvlink_bytes_per_s = 300e9,
                       .nic_bytes_per_s = 25e9, .pcie_bytes_per_s = 25e9, .nvlink_latency_ns = 1000,
                       .nic_latency_ns = 5000, .pcie_latency_ns = 2000};
  infsim_network *net = NULL;
  assert_int_equal(infsim_network_new_cluster(&t, &net, NULL), INFSIM_OK);
  enum { LINKS = 8 * 4 + 2 * 2, SLOTS = 32 };
  double link_bytes[LINKS] = {0};
  int64_t busy[LINKS] = {0};
  flow_book b = {.link_bytes = link_bytes};
  for (int i = 0; i < SLOTS; i++) b.id[i] = -1;
  int64_t now = 0;
  for (int step = 0; step < 4000; step++) {
    int64_t until = now + (int64_t)gsl_rng_uniform_int(rng, 300000);
    while (now < until) {
      int64_t next = infsim_network_next_ns(net) < until ? infsim_network_next_ns(net) : until;
      int moving[LINKS] = {0};
      for (int i = 0; i < SLOTS; i++) {
        if (b.id[i] < 0) continue;
        double r = infsim_network_rate(net, b.id[i]);
        b.carried[i] += r * (double)(next - now) * 1e-9;
        for (int k = 0; k < b.len[i]; k++) {
          link_bytes[b.path[i][k]] += r * (double)(next - now) * 1e-9;
          moving[b.path[i][k]] += r > 0;
        }
      }
      for (int l = 0; l < LINKS; l++)
        if (moving[l] > 0) busy[l] += next - now;
      now = next;
      infsim_network_advance(net, now, book_done, &b);
    }
    int i = (int)gsl_rng_uniform_int(rng, SLOTS);
    if (b.id[i] >= 0) {
      infsim_network_remove(net, b.id[i], now);
      b.id[i] = -1;
    } else {
      int32_t src = (int32_t)gsl_rng_uniform_int(rng, 10), dst = (int32_t)gsl_rng_uniform_int(rng, 10);
      b.len[i] = infsim_network_route(net, src, dst, b.path[i]);
      if (b.len[i] == 0) continue;
      b.carried[i] = 0;
      double u = gsl_rng_uniform(rng);
      if (u < 0.5) {
        b.bytes[i] = 0;
        double rate = 1e9 * (0.1 + 9.9 * gsl_rng_uniform(rng)); /* fractions: loads that never sum back to 0 */
        assert_int_equal(infsim_network_add_steady(net, rate, b.path[i], b.len[i], now, i, &b.id[i], NULL), INFSIM_OK);
      } else {
        int64_t bytes = 1 + (int64_t)gsl_rng_uniform_int(rng, 10000000);
        double bound = u < 0.7 ? 1e9 + gsl_rng_uniform(rng) * 20e9 : 0;
        b.bytes[i] = (double)bytes;
        assert_int_equal(infsim_network_add_flow(net, bytes, b.path[i], b.len[i], now, bound, i, &b.id[i], NULL),
                         INFSIM_OK);
      }
    }
    infsim_network_check(net);
  }
  double total = 0;
  for (int l = 0; l < LINKS; l++) {
    infsim_link_info info = infsim_network_link(net, l);
    assert_float_equal(info.bytes, link_bytes[l], link_bytes[l] * 1e-9 + 1e-3);
    assert_int_equal(info.busy_ns, busy[l]);
    total += info.bytes;
  }
  assert_true(total > 1e9); /* the comparison had something to compare */
  infsim_network_free(net);
  gsl_rng_free(rng);
}

/* Two networks bit for bit alike after every step: a decode run's
 * steady flows started and ended with infsim_network_add_steady_set and
 * infsim_network_remove_steady_set in one, with the calls one by one
 * under hold and release in the other, beside KV moves (sized flows)
 * added to both. Demands go from a sliver to more than a NIC, so both the
 * paths without a refilling and those with one are taken. */
static void test_steady_sets_match_calls_one_by_one(void **state) {
  (void)state;
  gsl_rng *rng = infsim_rng_new(23, "test.network.steady_sets");
  infsim_topology t = {.instances = 8, .instances_per_node = 4, .nvlink_bytes_per_s = 300e9,
                       .nic_bytes_per_s = 25e9, .pcie_bytes_per_s = 25e9, .nvlink_latency_ns = 1000,
                       .nic_latency_ns = 5000, .pcie_latency_ns = 2000};
  infsim_network *one = NULL, *set = NULL;
  assert_int_equal(infsim_network_new_cluster(&t, &one, NULL), INFSIM_OK);
  assert_int_equal(infsim_network_new_cluster(&t, &set, NULL), INFSIM_OK);
  enum { OWNERS = 8, MAXF = 12, LINKS = 8 * 4 + 2 * 2 };
  int64_t ids_one[OWNERS][MAXF], ids_set[OWNERS][MAXF];
  int flows[OWNERS] = {0};
  int64_t moves_one[256], moves_set[256];
  int n_moves = 0, refilled = 0, free_runs = 0;
  int64_t now = 0;
  for (int step = 0; step < 3000; step++) {
    now += (int64_t)gsl_rng_uniform_int(rng, 200000);
    if (infsim_network_next_ns(one) < now) now = infsim_network_next_ns(one);
    assert_int_equal(infsim_network_next_ns(one), infsim_network_next_ns(set));
    infsim_network_advance(one, now, NULL, NULL);
    infsim_network_advance(set, now, NULL, NULL);
    int32_t o = (int32_t)gsl_rng_uniform_int(rng, OWNERS);
    double u = gsl_rng_uniform(rng);
    if (u < 0.15 && n_moves < 256) {
      int32_t dst = (int32_t)gsl_rng_uniform_int(rng, OWNERS + 2), path[INFSIM_NET_MAX_PATH];
      int len = infsim_network_route(one, o, dst, path);
      int64_t bytes = 1 + (int64_t)gsl_rng_uniform_int(rng, 50000000);
      if (len > 0) {
        assert_int_equal(infsim_network_add_flow(one, bytes, path, len, now, 0, 1, &moves_one[n_moves], NULL), INFSIM_OK);
        assert_int_equal(infsim_network_add_flow(set, bytes, path, len, now, 0, 1, &moves_set[n_moves], NULL), INFSIM_OK);
        n_moves++;
      }
    } else if (flows[o] > 0) { /* the run ends */
      infsim_network_hold(one);
      for (int f = 0; f < flows[o]; f++) infsim_network_remove(one, ids_one[o][f], now);
      infsim_network_release(one);
      infsim_network_remove_steady_set(set, ids_set[o], flows[o], now);
      flows[o] = 0;
    } else { /* a run starts, to a few holders, both ways */
      int32_t paths[MAXF][INFSIM_NET_MAX_PATH];
      int lens[MAXF], n = 0;
      double rates[MAXF];
      int holders = 1 + (int)gsl_rng_uniform_int(rng, MAXF / 2);
      for (int h = 0; h < holders; h++) {
        int32_t holder = (int32_t)gsl_rng_uniform_int(rng, OWNERS + 2);
        if (holder == o) continue;
        for (int dir = 0; dir < 2; dir++) {
          lens[n] = dir == 0 ? infsim_network_route(one, o, holder, paths[n]) : infsim_network_route(one, holder, o, paths[n]);
          rates[n] = 1e9 * pow(10.0, -2.0 + 3.5 * gsl_rng_uniform(rng)); /* 10 MB/s to 30 GB/s */
          n++;
        }
      }
      infsim_network_hold(one);
      for (int f = 0; f < n; f++)
        assert_int_equal(infsim_network_add_steady(one, rates[f], paths[f], lens[f], now, 0, &ids_one[o][f], NULL),
                         INFSIM_OK);
      infsim_network_release(one);
      bool at_demand = infsim_network_add_steady_set(set, n, (const int32_t(*)[INFSIM_NET_MAX_PATH])paths, lens, rates,
                                                     now, ids_set[o]);
      bool all = true;
      for (int f = 0; f < n; f++) all &= infsim_network_rate(one, ids_one[o][f]) == rates[f];
      if (at_demand) assert_true(all); /* its answer: every flow at its demand */
      refilled += !at_demand;
      free_runs += at_demand;
      flows[o] = n;
    }
    infsim_network_check(set);
    assert_int_equal(infsim_network_flow_count(one), infsim_network_flow_count(set));
    assert_int_equal(infsim_network_next_ns(one), infsim_network_next_ns(set));
    for (int32_t w = 0; w < OWNERS; w++)
      for (int f = 0; f < flows[w]; f++) {
        assert_int_equal(ids_one[w][f], ids_set[w][f]);
        double a = infsim_network_rate(one, ids_one[w][f]), b = infsim_network_rate(set, ids_set[w][f]);
        assert_memory_equal(&a, &b, sizeof a);
      }
    for (int m = 0; m < n_moves; m++) {
      double a = infsim_network_rate(one, moves_one[m]), b = infsim_network_rate(set, moves_set[m]);
      assert_memory_equal(&a, &b, sizeof a);
    }
    for (int32_t l = 0; l < LINKS; l++) {
      infsim_link_info a = infsim_network_link(one, l), b = infsim_network_link(set, l);
      assert_memory_equal(&a.bytes, &b.bytes, sizeof a.bytes);
      assert_int_equal(a.busy_ns, b.busy_ns);
    }
  }
  assert_true(refilled > 50 && free_runs > 50); /* both ways were taken */
  infsim_network_free(one);
  infsim_network_free(set);
  gsl_rng_free(rng);
}

/* An owner's probe that reuses its last answer (infsim_network_probe_keyed)
 * against a fresh probe of the same network, over a random sequence of
 * steady flows and KV moves starting and ending on a cluster, three owners
 * probing their own sets of paths (sometimes new ones): at tolerance 0 the
 * same rates bit for bit, with answers reused when nothing on their links
 * changed; at 0.01 each rate within the room the tolerance lets the links
 * move (0.01 x the bandwidth of each link of the probe), with most answers
 * reused. `named`: the owners name their paths (infsim_network_probe_keyed_id),
 * a new name whenever their holders change (and now and then for the same
 * paths): the same answers. */
static void keyed_probes_against_fresh(double tolerance, bool named, size_t *reused, int *probes) {
  gsl_rng *rng = infsim_rng_new(37, "test.network.keyed_probe");
  infsim_topology t = {.instances = 8, .instances_per_node = 2, .nvlink_bytes_per_s = 300e9,
                       .nic_bytes_per_s = 25e9, .pcie_bytes_per_s = 25e9, .nvlink_latency_ns = 1000,
                       .nic_latency_ns = 5000, .pcie_latency_ns = 2000, .reprice_tolerance = tolerance};
  infsim_network *net = NULL;
  assert_int_equal(infsim_network_new_cluster(&t, &net, NULL), INFSIM_OK);
  enum { OWNERS = 3, PARTS = 8, LIVE = 32 };
  int32_t paths[OWNERS][PARTS][INFSIM_NET_MAX_PATH];
  int lens[OWNERS][PARTS], parts[OWNERS] = {0};
  uint64_t name[OWNERS] = {0}, names = 0;
  double last[OWNERS][PARTS]; /* each owner's last answer (named) */
  int last_parts[OWNERS] = {0};
  int64_t live[LIVE];
  int n_live = 0;
  int64_t now = 0;
  *probes = 0;
  for (int step = 0; step < 4000; step++) {
    now += (int64_t)gsl_rng_uniform_int(rng, 20000);
    if (infsim_network_next_ns(net) < now) now = infsim_network_next_ns(net);
    infsim_network_advance(net, now, NULL, NULL);
    double u = gsl_rng_uniform(rng);
    int32_t a = (int32_t)gsl_rng_uniform_int(rng, 8), b = (int32_t)gsl_rng_uniform_int(rng, 8), path[INFSIM_NET_MAX_PATH];
    int len = infsim_network_route(net, a, b, path);
    if (u < 0.2 && n_live < LIVE && len > 0) { /* a steady flow of 1 to 100 MB/s (another owner's run) */
      assert_int_equal(infsim_network_add_steady(net, 1e6 * (double)(1 + gsl_rng_uniform_int(rng, 100)), path, len, now,
                                                 0, &live[n_live++], NULL),
                       INFSIM_OK);
    } else if (u < 0.205 && len > 0) { /* a KV move: its share until it ends */
      int64_t id;
      assert_int_equal(infsim_network_add_flow(net, 1 + (int64_t)gsl_rng_uniform_int(rng, 20000000), path, len, now, 0,
                                               0, &id, NULL),
                       INFSIM_OK);
    } else if (u < 0.4 && n_live > 0) {
      int k = (int)gsl_rng_uniform_int(rng, (unsigned long)n_live);
      infsim_network_remove(net, live[k], now);
      live[k] = live[--n_live];
    } else {
      int32_t o = (int32_t)gsl_rng_uniform_int(rng, OWNERS);
      if (gsl_rng_uniform(rng) < 0.02) name[o] = ++names; /* named again: the same paths */
      if (parts[o] == 0 || gsl_rng_uniform(rng) < 0.05) { /* its holders change */
        name[o] = ++names;
        parts[o] = 0;
        int holders = 1 + (int)gsl_rng_uniform_int(rng, PARTS / 2);
        for (int h = 0; h < holders; h++) {
          int32_t holder = (int32_t)gsl_rng_uniform_int(rng, 8);
          if (holder == o) continue;
          lens[o][parts[o]] = infsim_network_route(net, o, holder, paths[o][parts[o]]);
          parts[o]++;
          lens[o][parts[o]] = infsim_network_route(net, holder, o, paths[o][parts[o]]);
          parts[o]++;
        }
      }
      double kept[PARTS], fresh[PARTS];
      if (named) {
        bool again = infsim_network_probe_keyed_id(net, o, name[o], parts[o],
                                                   (const int32_t(*)[INFSIM_NET_MAX_PATH])paths[o], lens[o], kept, false);
        /* "again": the owner's last answer, to the bit */
        if (again && (last_parts[o] != parts[o] || memcmp(last[o], kept, (size_t)parts[o] * sizeof *kept) != 0))
          fail_msg("step %d owner %d: an answer given again is not its last one", step, o);
        last_parts[o] = parts[o];
        memcpy(last[o], kept, (size_t)parts[o] * sizeof *kept);
      } else
        infsim_network_probe_keyed(net, o, parts[o], (const int32_t(*)[INFSIM_NET_MAX_PATH])paths[o], lens[o], kept);
      infsim_network_probe(net, parts[o], (const int32_t(*)[INFSIM_NET_MAX_PATH])paths[o], lens[o], fresh);
      (*probes)++;
      double slack = 0; /* the room the links may have moved by */
      for (int j = 0; j < parts[o]; j++)
        for (int k = 0; k < lens[o][j]; k++) slack += tolerance * infsim_network_link(net, paths[o][j][k]).bytes_per_s;
      for (int j = 0; j < parts[o]; j++) {
        if (tolerance == 0 && memcmp(&kept[j], &fresh[j], sizeof kept[j]) != 0)
          fail_msg("step %d owner %d part %d: kept %.17g, fresh %.17g", step, o, j, kept[j], fresh[j]);
        if (fabs(kept[j] - fresh[j]) > slack)
          fail_msg("step %d owner %d part %d: kept %.17g, fresh %.17g (slack %g)", step, o, j, kept[j], fresh[j], slack);
      }
    }
  }
  *reused = infsim_network_probes_reused(net);
  infsim_network_free(net);
  gsl_rng_free(rng);
}

static void test_keyed_probe_reuses_only_what_holds(void **state) {
  (void)state;
  size_t reused = 0;
  int probes = 0;
  for (int named = 0; named < 2; named++) {
    keyed_probes_against_fresh(0.0, named, &reused, &probes);
    assert_int_equal(reused, 0); /* at 0 every batch is probed afresh */
    keyed_probes_against_fresh(0.01, named, &reused, &probes);
    assert_true(reused > (size_t)probes * 2 / 3);
  }
}

/* A kept answer is not given again once a flow on its links goes faster
 * than the level below which no link fills and a link there is loaded
 * (the probe would walk the flows): a link's top rate outlives the flow
 * that set it, and flows waiting out their latency lower that level. */
static void test_kept_answer_not_reused_past_a_fast_flow(void **state) {
  (void)state;
  infsim_topology t = {.instances = 2, .instances_per_node = 1, .nvlink_bytes_per_s = 300e9,
                       .nic_bytes_per_s = 100e9, .pcie_bytes_per_s = 25e9, .nvlink_latency_ns = 1000,
                       .nic_latency_ns = 5000, .pcie_latency_ns = 2000, .reprice_tolerance = 0.01};
  infsim_network *net = NULL;
  assert_int_equal(infsim_network_new_cluster(&t, &net, NULL), INFSIM_OK);
  int32_t paths[1][INFSIM_NET_MAX_PATH];
  int lens[1] = {infsim_network_route(net, 0, 1, paths[0])};
  double rates[1] = {0}, fresh[1] = {0};
  assert_false(infsim_network_probe_keyed_id(net, 0, 1, 1, (const int32_t(*)[INFSIM_NET_MAX_PATH])paths, lens,
                                             rates, false));
  assert_float_equal(rates[0], 100e9, 0);
  /* a fast flow comes and goes: the links' loads are back, their top rate 60 GB/s */
  int64_t fast, tiny, wait[2];
  assert_int_equal(infsim_network_add_steady(net, 60e9, paths[0], lens[0], 0, 0, &fast, NULL), INFSIM_OK);
  assert_true(infsim_network_remove(net, fast, 0) >= 0);
  /* the same paths again: kept */
  assert_true(infsim_network_probe_keyed_id(net, 0, 1, 1, (const int32_t(*)[INFSIM_NET_MAX_PATH])paths, lens, rates,
                                            false));
  /* two moves waiting out their latency: the level 100 / 3 GB/s, under
   * the top rate; a flow of 0.1 GB/s loads the links within the tolerance */
  for (int i = 0; i < 2; i++)
    assert_int_equal(infsim_network_add_flow(net, 1000000, paths[0], lens[0], 0, 0, i, &wait[i], NULL), INFSIM_OK);
  assert_int_equal(infsim_network_add_steady(net, 0.1e9, paths[0], lens[0], 0, 0, &tiny, NULL), INFSIM_OK);
  assert_false(infsim_network_probe_keyed_id(net, 0, 1, 1, (const int32_t(*)[INFSIM_NET_MAX_PATH])paths, lens,
                                             rates, false));
  infsim_network_probe(net, 1, (const int32_t(*)[INFSIM_NET_MAX_PATH])paths, lens, fresh);
  assert_float_equal(rates[0], fresh[0], 0);
  assert_float_equal(rates[0], 99.9e9, 1e3);
  infsim_network_free(net);
}

static void sum_done(void *ctx, int64_t id, int64_t tag, int64_t at_ns) {
  (void)id;
  (void)at_ns;
  ((double *)ctx)[0] += (double)tag; /* tag = bytes x path length */
  ((double *)ctx)[1] += 1;
}

/* Random flows over a cluster: after every change the allocation is
 * max-min (checker), and at the end every link's bytes sum to the bytes x
 * hops of the flows that finished (byte conservation). */
static void test_random_flows_conserve_bytes(void **state) {
  (void)state;
  gsl_rng *rng = infsim_rng_new(11, "test.network");
  infsim_topology t = {.instances = 8, .instances_per_node = 4, .nvlink_bytes_per_s = 300e9,
                       .nic_bytes_per_s = 25e9, .pcie_bytes_per_s = 25e9, .nvlink_latency_ns = 1000,
                       .nic_latency_ns = 5000, .pcie_latency_ns = 2000};
  infsim_network *net = NULL;
  assert_int_equal(infsim_network_new_cluster(&t, &net, NULL), INFSIM_OK);
  int64_t now = 0;
  double got[2] = {0, 0}, expect = 0;
  int flows = 0;
  for (int i = 0; i < 2000; i++) {
    now += (int64_t)gsl_rng_uniform_int(rng, 200000);
    infsim_network_advance(net, now, sum_done, got);
    int32_t src = (int32_t)gsl_rng_uniform_int(rng, 10), dst = (int32_t)gsl_rng_uniform_int(rng, 10);
    int32_t p[INFSIM_NET_MAX_PATH];
    int len = infsim_network_route(net, src, dst, p);
    if (len == 0) continue;
    int64_t bytes = (int64_t)gsl_rng_uniform_int(rng, 20000000);
    double bound = gsl_rng_uniform(rng) < 0.3 ? 1e9 + gsl_rng_uniform(rng) * 20e9 : 0;
    int64_t id;
    assert_int_equal(infsim_network_add_flow(net, bytes, p, len, now, bound, bytes * len, &id, NULL), INFSIM_OK);
    expect += (double)(bytes * len);
    flows++;
    infsim_network_check(net);
  }
  infsim_network_advance(net, INT64_MAX - 1, sum_done, got);
  assert_int_equal(infsim_network_flow_count(net), 0);
  assert_float_equal(got[1], flows, 0);
  assert_float_equal(got[0], expect, 0);
  double links = 0;
  for (size_t l = 0; l < infsim_network_link_count(net); l++) links += infsim_network_link(net, (int32_t)l).bytes;
  assert_float_equal(links, expect, expect * 1e-9);
  infsim_network_free(net);
  gsl_rng_free(rng);
}

/* Max-min rates by progressive filling, flow by flow (the textbook
 * water-filling: every unfixed flow's rate rises together; a flow is fixed
 * when a link it crosses is full or it reaches its bound). The independent
 * truth for the network's filling, which works on classes of flows. */
typedef struct {
  int64_t id;
  int32_t path[INFSIM_NET_MAX_PATH];
  int len;
  double bound; /* 0: none */
} ref_flow;

static void ref_rates(const double *cap, int links, const ref_flow *f, int n, double *rate) {
  double residual[16];
  bool fixed[512];
  assert_true(links <= 16 && n <= 512);
  for (int l = 0; l < links; l++) residual[l] = cap[l];
  for (int k = 0; k < n; k++) fixed[k] = false;
  int left = n;
  double level = 0;
  while (left > 0) {
    int count[16] = {0};
    for (int k = 0; k < n; k++)
      for (int j = 0; j < f[k].len && !fixed[k]; j++) count[f[k].path[j]]++;
    double delta = INFINITY;
    for (int l = 0; l < links; l++)
      if (count[l] > 0 && residual[l] / count[l] < delta) delta = residual[l] / count[l];
    for (int k = 0; k < n; k++)
      if (!fixed[k] && f[k].bound > 0 && f[k].bound - level < delta) delta = f[k].bound - level;
    if (delta < 0) delta = 0;
    level += delta;
    for (int l = 0; l < links; l++) {
      residual[l] -= delta * count[l];
      if (residual[l] <= 1e-9 * cap[l]) residual[l] = 0;
    }
    for (int k = 0; k < n; k++) {
      if (fixed[k]) continue;
      bool full = false;
      for (int j = 0; j < f[k].len; j++) full |= count[f[k].path[j]] > 0 && residual[f[k].path[j]] == 0;
      bool at_bound = f[k].bound > 0 && level >= f[k].bound * (1 - 1e-9);
      if (!full && !at_bound) continue;
      fixed[k] = true;
      rate[k] = at_bound && f[k].bound < level ? f[k].bound : level;
      left--;
    }
  }
}

static void drop_done(void *ctx, int64_t id, int64_t tag, int64_t at_ns) {
  (void)tag;
  (void)at_ns;
  ref_flow *live = ((ref_flow **)ctx)[0];
  int *n = ((int **)ctx)[1];
  for (int k = 0; k < *n; k++)
    if (live[k].id == id) {
      live[k] = live[--*n];
      return;
    }
  fail_msg("flow %lld ended but was not live", (long long)id);
}

/* Hundreds of flows crowd five paths over six links (many share a path,
 * as KV moves do on a saturated NIC), some with rate bounds, some steady;
 * flows start, are removed and end at random. After every change each
 * live flow's rate equals the flow-by-flow filling's. */
static void test_crowded_paths_match_flow_by_flow_filling(void **state) {
  (void)state;
  gsl_rng *rng = infsim_rng_new(17, "test.network.crowded");
  const double cap[6] = {10e9, 25e9, 25e9, 40e9, 5e9, 300e9};
  const int32_t paths[5][3] = {{0, 1, -1}, {1, 2, -1}, {3, -1, -1}, {0, 4, 5}, {2, 3, 5}};
  const int lens[5] = {2, 2, 1, 3, 3};
  infsim_network *net = NULL;
  assert_int_equal(infsim_network_new(&net, NULL), INFSIM_OK);
  for (int l = 0; l < 6; l++)
    assert_int_equal(infsim_network_add_link(net, INFSIM_LINK_NIC, "a", "b", cap[l], 0, NULL, NULL), INFSIM_OK);
  static ref_flow live[512];
  int n = 0;
  void *ctx[2] = {live, &n};
  double rate[512];
  int64_t now = 0;
  for (int step = 0; step < 3000; step++) {
    double u = gsl_rng_uniform(rng);
    if (u < 0.6 && n < 400) {
      int p = (int)gsl_rng_uniform_int(rng, 5);
      ref_flow *f = &live[n];
      f->len = lens[p];
      for (int j = 0; j < f->len; j++) f->path[j] = paths[p][j];
      double v = gsl_rng_uniform(rng);
      if (v < 0.1) {
        f->bound = 0.05e9 + gsl_rng_uniform(rng) * 2e9;
        assert_int_equal(infsim_network_add_steady(net, f->bound, f->path, f->len, now, 0, &f->id, NULL), INFSIM_OK);
      } else {
        f->bound = v < 0.25 ? 0.01e9 + gsl_rng_uniform(rng) * 1e9 : 0;
        int64_t bytes = 1 + (int64_t)gsl_rng_uniform_int(rng, 50000000);
        assert_int_equal(infsim_network_add_flow(net, bytes, f->path, f->len, now, f->bound, 0, &f->id, NULL),
                         INFSIM_OK);
      }
      n++;
    } else if (u < 0.75 && n > 0) {
      int k = (int)gsl_rng_uniform_int(rng, (unsigned long)n);
      assert_true(infsim_network_remove(net, live[k].id, now) >= 0);
      live[k] = live[--n];
    } else {
      now += (int64_t)gsl_rng_uniform_int(rng, 2000000);
      infsim_network_advance(net, now, drop_done, ctx);
    }
    assert_int_equal((int)infsim_network_flow_count(net), n);
    ref_rates(cap, 6, live, n, rate);
    for (int k = 0; k < n; k++)
      assert_float_equal(infsim_network_rate(net, live[k].id), rate[k], 1e-6 * rate[k] + 1e-3);
  }
  infsim_network_free(net);
  gsl_rng_free(rng);
}

/* Removes the flow of id from live[0..*n) (it must be there). */
static void live_drop(ref_flow *live, int *n, int64_t id) {
  for (int k = 0; k < *n; k++)
    if (live[k].id == id) {
      live[k] = live[--*n];
      return;
    }
  fail_msg("flow %lld was not live", (long long)id);
}

/* A cluster of three instances, two a node (16 links, most of them idle
 * at a time), where decode runs' steady sets and KV moves come and go,
 * with spells in which everything ends, so that links leave the list of
 * those the fillings visit and come back to it. After every change each
 * live flow's rate equals the flow-by-flow filling's, and every link's
 * bytes and busy time equal the ones summed here interval by interval
 * (the flows' rates x time over its path; the time with a moving flow on
 * it): a link a filling skipped would keep a stale load, rate or span. */
static void test_idle_links_match_reference(void **state) {
  (void)state;
  gsl_rng *rng = infsim_rng_new(41, "test.network.idle_links");
  infsim_topology t = {.instances = 3, .instances_per_node = 2, .nvlink_bytes_per_s = 40e9, .nic_bytes_per_s = 10e9,
                       .pcie_bytes_per_s = 8e9};
  infsim_network *net = NULL;
  assert_int_equal(infsim_network_new_cluster(&t, &net, NULL), INFSIM_OK);
  enum { LINKS = 16, ENDPOINTS = 5, OWNERS = 3, MAXF = 8 };
  assert_int_equal((int)infsim_network_link_count(net), LINKS);
  double cap[LINKS], want_bytes[LINKS] = {0};
  int64_t want_busy[LINKS] = {0};
  for (int32_t l = 0; l < LINKS; l++) cap[l] = infsim_network_link(net, l).bytes_per_s;
  static ref_flow live[512];
  int n = 0, idle_spells = 0, refilled = 0;
  void *ctx[2] = {live, &n};
  int64_t run_ids[OWNERS][MAXF];
  int run_flows[OWNERS] = {0};
  double rate[512];
  int64_t now = 0;
  for (int step = 0; step < 4000; step++) {
    /* time passes up to the network's next change at most: rates stay */
    int64_t t1 = now + (int64_t)gsl_rng_uniform_int(rng, gsl_rng_uniform(rng) < 0.1 ? 50000000 : 500000);
    if (infsim_network_next_ns(net) < t1) t1 = infsim_network_next_ns(net);
    bool moving[LINKS] = {false};
    for (int k = 0; k < n; k++) {
      double r = infsim_network_rate(net, live[k].id);
      for (int j = 0; j < live[k].len; j++) {
        want_bytes[live[k].path[j]] += r * (double)(t1 - now) * 1e-9;
        moving[live[k].path[j]] |= r > 0;
      }
    }
    for (int l = 0; l < LINKS; l++) want_busy[l] += moving[l] ? t1 - now : 0;
    infsim_network_advance(net, t1, drop_done, ctx);
    now = t1;
    int32_t o = (int32_t)gsl_rng_uniform_int(rng, OWNERS);
    double u = gsl_rng_uniform(rng);
    if (u < 0.3 && run_flows[o] == 0) { /* a run starts, to a few holders, both ways */
      int32_t paths[MAXF][INFSIM_NET_MAX_PATH];
      int lens[MAXF], m = 0;
      double demand[MAXF];
      int holders = 1 + (int)gsl_rng_uniform_int(rng, MAXF / 2);
      for (int h = 0; h < holders; h++) {
        int32_t holder = (int32_t)gsl_rng_uniform_int(rng, ENDPOINTS);
        if (holder == o) continue;
        for (int dir = 0; dir < 2; dir++) {
          lens[m] = dir == 0 ? infsim_network_route(net, o, holder, paths[m]) : infsim_network_route(net, holder, o, paths[m]);
          demand[m] = 1e8 + 8e9 * gsl_rng_uniform(rng); /* a few of them fill a NIC */
          m++;
        }
      }
      refilled += !infsim_network_add_steady_set(net, m, (const int32_t(*)[INFSIM_NET_MAX_PATH])paths, lens, demand,
                                                 now, run_ids[o]);
      for (int f = 0; f < m; f++) {
        ref_flow *r = &live[n++];
        r->id = run_ids[o][f];
        r->len = lens[f];
        memcpy(r->path, paths[f], sizeof r->path);
        r->bound = demand[f];
      }
      run_flows[o] = m;
    } else if (u < 0.55 && run_flows[o] > 0) { /* the run ends */
      infsim_network_remove_steady_set(net, run_ids[o], run_flows[o], now);
      for (int f = 0; f < run_flows[o]; f++) live_drop(live, &n, run_ids[o][f]);
      run_flows[o] = 0;
    } else if (u < 0.8 && n < 400) { /* a KV move */
      int32_t dst = (int32_t)gsl_rng_uniform_int(rng, ENDPOINTS);
      ref_flow *r = &live[n];
      r->len = infsim_network_route(net, o, dst, r->path);
      r->bound = 0;
      if (r->len > 0) {
        int64_t bytes = 1 + (int64_t)gsl_rng_uniform_int(rng, 20000000);
        assert_int_equal(infsim_network_add_flow(net, bytes, r->path, r->len, now, 0, 0, &r->id, NULL), INFSIM_OK);
        n++;
      }
    } else if (u < 0.85) { /* everything ends: the links go idle */
      for (int32_t w = 0; w < OWNERS; w++) {
        infsim_network_remove_steady_set(net, run_ids[w], run_flows[w], now);
        for (int f = 0; f < run_flows[w]; f++) live_drop(live, &n, run_ids[w][f]);
        run_flows[w] = 0;
      }
      while (n > 0) assert_true(infsim_network_remove(net, live[--n].id, now) >= 0);
      idle_spells++;
    }
    infsim_network_check(net);
    assert_int_equal((int)infsim_network_flow_count(net), n);
    ref_rates(cap, LINKS, live, n, rate);
    for (int k = 0; k < n; k++)
      assert_float_equal(infsim_network_rate(net, live[k].id), rate[k], 1e-6 * rate[k] + 1e-3);
    for (int32_t l = 0; l < LINKS; l++) {
      infsim_link_info got = infsim_network_link(net, l);
      /* a KV move's end, rounded up to a whole ns, puts its exact bytes
       * on the links (a few bytes less than its rate x time here) */
      assert_float_equal(got.bytes, want_bytes[l], 1e-9 * want_bytes[l] + 1e4);
      assert_int_equal(got.busy_ns, want_busy[l]);
    }
  }
  assert_true(idle_spells > 100 && refilled > 20); /* links went idle; some runs filled a link */
  infsim_network_free(net);
  gsl_rng_free(rng);
}

/* The shares a step's transfers would get (infsim_network_probe), on 4
 * nodes of one instance, NIC B = 24 GB/s each way. Owner i0 with holders
 * i1, i2, i3: alone, its three partials share its node's NIC in, B/3 = 8
 * GB/s each (and its queries its NIC out, as much). With three KV moves
 * leaving node 2 (8 GB/s each) i2's partial meets them on node 2's NIC
 * out: 4 flows there, B/4 = 6; the NIC in gives i1's and i3's the rest,
 * (24 - 6) / 2 = 9 each. With another run's steady flow of 2.4 GB/s into
 * node 0 too: it keeps its 2.4, i2's partial 6, and i1's and i3's split
 * 24 - 2.4 - 6: 7.8 each. Probing changes no rate; adding the partials as
 * flows gives the network's own max-min answer, the probe's. */
static void test_probe_shares_of_a_step(void **state) {
  (void)state;
  const double B = 24e9;
  infsim_topology t = {.instances = 4, .instances_per_node = 1, .nvlink_bytes_per_s = 300e9,
                       .nic_bytes_per_s = B, .pcie_bytes_per_s = 25e9, .nvlink_latency_ns = 1000,
                       .nic_latency_ns = 5000, .pcie_latency_ns = 2000};
  infsim_network *net = NULL;
  assert_int_equal(infsim_network_new_cluster(&t, &net, NULL), INFSIM_OK);
  int32_t paths[7][INFSIM_NET_MAX_PATH];
  int lens[7];
  double rates[7];
  for (int j = 1; j <= 3; j++) {
    lens[j - 1] = infsim_network_route(net, j, 0, paths[j - 1]); /* partials in */
    lens[j + 2] = infsim_network_route(net, 0, j, paths[j + 2]); /* queries out */
  }
  lens[6] = infsim_network_route(net, 0, 0, paths[6]); /* no link */
  infsim_network_probe(net, 7, (const int32_t(*)[INFSIM_NET_MAX_PATH])paths, lens, rates);
  for (int i = 0; i < 6; i++) assert_float_equal(rates[i], B / 3, 1);
  assert_true(isinf(rates[6]));

  int32_t p[INFSIM_NET_MAX_PATH];
  int64_t move[3], steady, part[3];
  const int to[3] = {1, 3, 3};
  for (int i = 0; i < 3; i++) {
    int len = infsim_network_route(net, 2, to[i], p);
    assert_int_equal(infsim_network_add_flow(net, 1000000000000, p, len, 0, 0, i, &move[i], NULL), INFSIM_OK);
  }
  done_log d = {0};
  infsim_network_advance(net, 10000, log_done, &d); /* past their latency */
  for (int i = 0; i < 3; i++) assert_float_equal(infsim_network_rate(net, move[i]), B / 3, 1);
  int64_t next = infsim_network_next_ns(net);
  infsim_network_probe(net, 3, (const int32_t(*)[INFSIM_NET_MAX_PATH])paths, lens, rates);
  assert_float_equal(rates[0], 9e9, 1);
  assert_float_equal(rates[1], 6e9, 1);
  assert_float_equal(rates[2], 9e9, 1);
  for (int i = 0; i < 3; i++) assert_float_equal(infsim_network_rate(net, move[i]), B / 3, 1);
  assert_int_equal(infsim_network_next_ns(net), next);

  int len = infsim_network_route(net, 1, 0, p);
  assert_int_equal(infsim_network_add_steady(net, 2.4e9, p, len, 10000, 9, &steady, NULL), INFSIM_OK);
  infsim_network_probe(net, 3, (const int32_t(*)[INFSIM_NET_MAX_PATH])paths, lens, rates);
  assert_float_equal(rates[0], 7.8e9, 1);
  assert_float_equal(rates[1], 6e9, 1);
  assert_float_equal(rates[2], 7.8e9, 1);
  assert_float_equal(infsim_network_rate(net, steady), 2.4e9, 1);
  infsim_network_check(net);
  for (int j = 0; j < 3; j++)
    assert_int_equal(infsim_network_add_flow(net, 1000000000, paths[j], lens[j], 10000, 0, 10 + j, &part[j], NULL),
                     INFSIM_OK);
  infsim_network_advance(net, 20000, log_done, &d);
  for (int j = 0; j < 3; j++) assert_float_equal(infsim_network_rate(net, part[j]), rates[j], 1);
  for (int i = 0; i < 3; i++) assert_float_equal(infsim_network_rate(net, move[i]), 6e9, 1);
  infsim_network_check(net);
  infsim_network_free(net);
}

/* The probe against the filling itself: random flows on a cluster, then
 * a random step's transfers probed; the same transfers as flows of a
 * network holding the flows there at their rates as bounds (what the
 * probe lets them keep at most) get the probe's shares. */
static int random_route(const infsim_network *net, gsl_rng *rng, int32_t endpoints, int32_t *path) {
  return infsim_network_route(net, (int32_t)gsl_rng_uniform_int(rng, (unsigned long)endpoints),
                              (int32_t)gsl_rng_uniform_int(rng, (unsigned long)endpoints), path);
}

/* `cases` random cases on a cluster of `instances` (per_node a node), up to
 * max_flows flows there and max_parts probed transfers; returns the most
 * distinct links one probe touched. */
static int probe_against_filling(uint64_t seed, int32_t instances, int32_t per_node, int max_flows, int max_parts,
                                 int cases) {
  int32_t endpoints = instances + instances / per_node; /* instances, then the nodes' hosts */
  gsl_rng *rng = infsim_rng_new(seed, "test.network.probe");
  infsim_topology t = {.instances = instances, .instances_per_node = per_node, .nvlink_bytes_per_s = 300e9,
                       .nic_bytes_per_s = 25e9, .pcie_bytes_per_s = 25e9, .nvlink_latency_ns = 1000,
                       .nic_latency_ns = 5000, .pcie_latency_ns = 2000};
  int most_links = 0;
  for (int c = 0; c < cases; c++) {
    infsim_network *net = NULL, *ref = NULL;
    assert_int_equal(infsim_network_new_cluster(&t, &net, NULL), INFSIM_OK);
    assert_int_equal(infsim_network_new_cluster(&t, &ref, NULL), INFSIM_OK);
    enum { FLOWS = 64, PARTS = 64 };
    assert_true(max_flows <= FLOWS && max_parts <= PARTS);
    int32_t fp[FLOWS][INFSIM_NET_MAX_PATH], pp[PARTS][INFSIM_NET_MAX_PATH];
    int fl[FLOWS], pl[PARTS];
    int nf = (int)gsl_rng_uniform_int(rng, (unsigned long)max_flows + 1);
    int np = 1 + (int)gsl_rng_uniform_int(rng, (unsigned long)max_parts);
    int64_t id[FLOWS];
    for (int i = 0; i < nf; i++) {
      do fl[i] = random_route(net, rng, endpoints, fp[i]);
      while (fl[i] == 0);
      if (gsl_rng_uniform(rng) < 0.5) {
        double bound = gsl_rng_uniform(rng) < 0.5 ? 0 : 1e9 * (double)(1 + gsl_rng_uniform_int(rng, 20));
        assert_int_equal(infsim_network_add_flow(net, INT64_C(1) << 50, fp[i], fl[i], 0, bound, i, &id[i], NULL),
                         INFSIM_OK);
      } else {
        double rate = 1e9 * (double)(1 + gsl_rng_uniform_int(rng, 15));
        assert_int_equal(infsim_network_add_steady(net, rate, fp[i], fl[i], 0, i, &id[i], NULL), INFSIM_OK);
      }
    }
    infsim_network_advance(net, 1000000, NULL, NULL); /* every flow past its latency */
    int32_t seen[PARTS * INFSIM_NET_MAX_PATH];
    int links = 0;
    for (int j = 0; j < np; j++) {
      do pl[j] = random_route(net, rng, endpoints, pp[j]);
      while (pl[j] == 0);
      for (int k = 0; k < pl[j]; k++) {
        int m = 0;
        while (m < links && seen[m] != pp[j][k]) m++;
        if (m == links) seen[links++] = pp[j][k];
      }
    }
    if (links > most_links) most_links = links;
    double rates[PARTS];
    infsim_network_probe(net, np, (const int32_t(*)[INFSIM_NET_MAX_PATH])pp, pl, rates);
    int64_t rid;
    for (int i = 0; i < nf; i++) {
      double r = infsim_network_rate(net, id[i]);
      assert_true(r > 0);
      assert_int_equal(infsim_network_add_steady(ref, r, fp[i], fl[i], 0, i, &rid, NULL), INFSIM_OK);
    }
    int64_t part[PARTS];
    for (int j = 0; j < np; j++)
      assert_int_equal(infsim_network_add_steady(ref, 1e30, pp[j], pl[j], 0, 100 + j, &part[j], NULL), INFSIM_OK);
    infsim_network_check(ref);
    for (int j = 0; j < np; j++) {
      double want = infsim_network_rate(ref, part[j]);
      if (fabs(rates[j] - want) > 1e-6 * want)
        fail_msg("case %d part %d: probe %.6g, filling %.6g", c, j, rates[j], want);
    }
    infsim_network_free(net);
    infsim_network_free(ref);
  }
  gsl_rng_free(rng);
  return most_links;
}

static void test_probe_matches_filling_with_rates_as_bounds(void **state) {
  (void)state;
  probe_against_filling(17, 8, 4, 24, 8, 300);
}

/* A probe touching more than 64 links asks its parts' paths link by link
 * (its bit per link would alias): many transfers within a 96-instance
 * node (a link up and a link down per instance), some probes past 64
 * links, against the filling too. */
static void test_probe_over_many_links_matches_filling(void **state) {
  (void)state;
  assert_true(probe_against_filling(23, 96, 96, 64, 64, 60) > 64);
}

/* A random path of 1 to 3 distinct links of links 0..nl; returns its length. */
static int random_links(gsl_rng *rng, int nl, int32_t *path) {
  int len = 1 + (int)gsl_rng_uniform_int(rng, (unsigned long)(nl < 3 ? nl : 3));
  for (int k = 0; k < len; k++) {
    bool dup;
    do {
      path[k] = (int32_t)gsl_rng_uniform_int(rng, (unsigned long)nl);
      dup = false;
      for (int j = 0; j < k; j++) dup |= path[j] == path[k];
    } while (dup);
  }
  return len;
}

/* The probe's walk, bit for bit: on a few links of their own (so that the
 * network's filling and the probe's cover the same links), random flows
 * already there (KV moves with no bound, bounded moves, steady flows)
 * that go faster than the level below which no link fills, so that the
 * probe walks them and their rates take part as bounds; the same
 * transfers as flows of a network holding those flows at their rates
 * (added first, in the same order) get the probe's shares to the last
 * bit: the flows slower than that level are the filling's first batch of
 * bounds in both, in slot order, and the rounds after it are the same
 * arithmetic on the same links. Returns the cases that walked. */
static int probe_walks_match_filling(uint64_t seed, int cases) {
  gsl_rng *rng = infsim_rng_new(seed, "test.network.probe_walk");
  static const double bw[] = {10e9, 25e9, 40e9, 100e9};
  int walked = 0;
  for (int c = 0; c < cases; c++) {
    enum { LINKS = 6, FLOWS = 16, PARTS = 12 };
    int nl = 2 + (int)gsl_rng_uniform_int(rng, LINKS - 1);
    double link_bw[LINKS];
    infsim_network *net = NULL, *ref = NULL;
    assert_int_equal(infsim_network_new(&net, NULL), INFSIM_OK);
    assert_int_equal(infsim_network_new(&ref, NULL), INFSIM_OK);
    for (int l = 0; l < nl; l++) {
      link_bw[l] = bw[gsl_rng_uniform_int(rng, 4)];
      assert_int_equal(infsim_network_add_link(net, INFSIM_LINK_NIC, "a", "b", link_bw[l], 0, NULL, NULL), INFSIM_OK);
      assert_int_equal(infsim_network_add_link(ref, INFSIM_LINK_NIC, "a", "b", link_bw[l], 0, NULL, NULL), INFSIM_OK);
    }
    int32_t fp[FLOWS][INFSIM_NET_MAX_PATH], pp[PARTS + LINKS][INFSIM_NET_MAX_PATH];
    int fl[FLOWS], pl[PARTS + LINKS];
    int64_t id[FLOWS];
    int nf = 1 + (int)gsl_rng_uniform_int(rng, FLOWS);
    for (int i = 0; i < nf; i++) {
      fl[i] = random_links(rng, nl, fp[i]);
      double u = gsl_rng_uniform(rng);
      if (u < 0.4) { /* a KV move: its max-min share */
        assert_int_equal(infsim_network_add_flow(net, INT64_C(1) << 50, fp[i], fl[i], 0, 0.0, i, &id[i], NULL),
                         INFSIM_OK);
      } else if (u < 0.6) {
        double bound = 1e9 * (double)(1 + gsl_rng_uniform_int(rng, 30));
        assert_int_equal(infsim_network_add_flow(net, INT64_C(1) << 50, fp[i], fl[i], 0, bound, i, &id[i], NULL),
                         INFSIM_OK);
      } else {
        double rate = 0.25e9 * (double)(1 + gsl_rng_uniform_int(rng, 40));
        assert_int_equal(infsim_network_add_steady(net, rate, fp[i], fl[i], 0, i, &id[i], NULL), INFSIM_OK);
      }
    }
    int np = 1 + (int)gsl_rng_uniform_int(rng, PARTS);
    bool covered[LINKS] = {false};
    for (int j = 0; j < np; j++) {
      pl[j] = random_links(rng, nl, pp[j]);
      for (int k = 0; k < pl[j]; k++) covered[pp[j][k]] = true;
    }
    for (int l = 0; l < nl; l++) /* the probe covers every link the flows cross */
      if (!covered[l]) {
        pp[np][0] = l;
        pl[np++] = 1;
      }
    /* Whether the probe walks: a flow faster than the lowest level at
     * which a link could fill, the probe's transfers and every flow on it
     * growing together. */
    int on[LINKS] = {0}, parts_on[LINKS] = {0};
    for (int i = 0; i < nf; i++)
      for (int k = 0; k < fl[i]; k++) on[fp[i][k]]++;
    for (int j = 0; j < np; j++)
      for (int k = 0; k < pl[j]; k++) parts_on[pp[j][k]]++;
    double x_low = INFINITY, fastest = 0;
    for (int l = 0; l < nl; l++) x_low = fmin(x_low, link_bw[l] / (double)(on[l] + parts_on[l]));
    for (int i = 0; i < nf; i++) fastest = fmax(fastest, infsim_network_rate(net, id[i]));
    walked += fastest > x_low;
    double rates[PARTS + LINKS];
    infsim_network_probe(net, np, (const int32_t(*)[INFSIM_NET_MAX_PATH])pp, pl, rates);
    int64_t rid, part[PARTS + LINKS];
    for (int i = 0; i < nf; i++) {
      double r = infsim_network_rate(net, id[i]);
      assert_true(r > 0);
      assert_int_equal(infsim_network_add_steady(ref, r, fp[i], fl[i], 0, i, &rid, NULL), INFSIM_OK);
    }
    for (int j = 0; j < np; j++)
      assert_int_equal(infsim_network_add_steady(ref, 1e30, pp[j], pl[j], 0, 100 + j, &part[j], NULL), INFSIM_OK);
    infsim_network_check(ref);
    for (int j = 0; j < np; j++)
      if (rates[j] != infsim_network_rate(ref, part[j]))
        fail_msg("seed %llu case %d part %d: probe %.17g, filling %.17g", (unsigned long long)seed, c, j, rates[j],
                 infsim_network_rate(ref, part[j]));
    infsim_network_free(net);
    infsim_network_free(ref);
  }
  gsl_rng_free(rng);
  return walked;
}

static void test_probe_walk_matches_filling_bit_for_bit(void **state) {
  (void)state;
  int cases = 2000;
  int walked = probe_walks_match_filling(29, cases);
  assert_true(walked > cases * 3 / 4); /* the walk, not the closed form, is what this checks */
}

static void test_bad_input(void **state) {
  (void)state;
  infsim_network *net = one_link(1e9, 0);
  infsim_error err = {0};
  int64_t id;
  const int32_t bad[2] = {0, 0}, none[1] = {3};
  assert_int_equal(infsim_network_add_flow(net, 10, bad, 2, 0, 0, 0, &id, &err), INFSIM_EINPUT);
  assert_int_equal(infsim_network_add_flow(net, 10, none, 1, 0, 0, 0, &id, &err), INFSIM_EINPUT);
  assert_int_equal(infsim_network_add_flow(net, -1, bad, 1, 0, 0, 0, &id, &err), INFSIM_EINPUT);
  assert_int_equal(infsim_network_add_link(net, INFSIM_LINK_NIC, "a", "b", 0, 0, NULL, &err), INFSIM_EINPUT);
  assert_int_equal(infsim_network_flow_count(net), 0);
  infsim_network_free(net);
}

static int cmp_ids(const void *a, const void *b) {
  int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
  return (x > y) - (x < y);
}

/* Flow ids are never reused (network.h): slots are, as flows come and go
 * one by one and as steady sets, and as the table grows; every id ever
 * given stays distinct, and one whose flow is gone is unknown (rate and
 * removal -1) while a later flow holds its slot. */
static void test_flow_ids_never_reused(void **state) {
  (void)state;
  infsim_network *net = one_link(1e12, 0);
  enum { ROUNDS = 6, MOST = 70, ALL = ROUNDS * (MOST + 2) };
  int64_t seen[ALL];
  int n_seen = 0, n_gone = 0;
  int32_t paths[MOST][INFSIM_NET_MAX_PATH];
  int lens[MOST];
  double rates[MOST];
  for (int i = 0; i < MOST; i++) {
    paths[i][0] = 0;
    lens[i] = 1;
    rates[i] = 1e6 * (i + 1);
  }
  int64_t now = 0;
  for (int r = 0; r < ROUNDS; r++, now += 1000) {
    int n = 3 + r * 13; /* past 16, 32 and 64 slots: the table grows under live flows */
    int64_t ids[MOST], one = -1, steady = -1;
    infsim_network_sync(net, now);
    assert_true(infsim_network_add_steady_set(net, n, (const int32_t(*)[INFSIM_NET_MAX_PATH])paths, lens, rates,
                                              now, ids));
    assert_int_equal(infsim_network_add_flow(net, 1000, paths[0], 1, now, 0, 0, &one, NULL), INFSIM_OK);
    assert_int_equal(infsim_network_add_steady(net, 5e6, paths[0], 1, now, 0, &steady, NULL), INFSIM_OK);
    /* the flows gone before hold no slot any more: unknown */
    for (int g = 0; g < n_gone; g++) {
      assert_float_equal(infsim_network_rate(net, seen[g]), -1, 0);
      assert_float_equal(infsim_network_remove(net, seen[g], now), -1, 0);
    }
    seen[n_seen++] = one;
    for (int i = 0; i < n; i++) seen[n_seen++] = ids[i];
    seen[n_seen++] = steady;
    for (int i = 0; i < n; i++) assert_float_equal(infsim_network_rate(net, ids[i]), rates[i], 0);
    infsim_network_remove_steady_set(net, ids, n, now);
    assert_true(infsim_network_remove(net, steady, now) >= 0);
    assert_true(infsim_network_remove(net, one, now) >= 0);
    assert_int_equal(infsim_network_flow_count(net), 0);
    n_gone = n_seen;
  }
  qsort(seen, (size_t)n_seen, sizeof *seen, cmp_ids);
  for (int i = 0; i < n_seen; i++) assert_true(seen[i] >= 0);
  for (int i = 1; i < n_seen; i++) assert_true(seen[i] != seen[i - 1]);
  infsim_network_check(net);
  infsim_network_free(net);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_equal_flows_share_a_link),    cmocka_unit_test(test_unequal_demands_two_links),
      cmocka_unit_test(test_latency_added_once),          cmocka_unit_test(test_steady_flow),
      cmocka_unit_test(test_steady_flows_on_free_links),
      cmocka_unit_test(test_cluster_routes),              cmocka_unit_test(test_random_flows_conserve_bytes),
      cmocka_unit_test(test_bad_input),
      cmocka_unit_test(test_route_rates),
      cmocka_unit_test(test_busy_time_of_steady_flows),
      cmocka_unit_test(test_probe_matches_filling_with_rates_as_bounds),
      cmocka_unit_test(test_probe_over_many_links_matches_filling),
      cmocka_unit_test(test_crowded_paths_match_flow_by_flow_filling),
      cmocka_unit_test(test_probe_shares_of_a_step),
      cmocka_unit_test(test_busy_means_flows_not_load),
      cmocka_unit_test(test_link_bytes_per_link_match_per_flow),
      cmocka_unit_test(test_steady_sets_match_calls_one_by_one),
      cmocka_unit_test(test_probe_walk_matches_filling_bit_for_bit),
      cmocka_unit_test(test_keyed_probe_reuses_only_what_holds),
      cmocka_unit_test(test_kept_answer_not_reused_past_a_fast_flow),
      cmocka_unit_test(test_idle_links_match_reference),
      cmocka_unit_test(test_flow_ids_never_reused),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
