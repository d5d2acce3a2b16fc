/*
** network.h: the simulated network, links shared max-min fairly by flows.
**
** A network is a set of directed links, each with a bandwidth and a
** latency, of three kinds: NVLink-class links between an instance's GPUs
** and its node's switch, a NIC per node towards the other nodes, and PCIe
** between an instance's GPUs and its node's host memory. A flow carries
** bytes along a path (a list of links). Concurrent flows share every link
** max-min fairly, computed by progressive filling (water-filling): all
** unfixed flows grow at the same rate until a link saturates or a flow
** reaches its own rate bound; the flows of a saturated link are fixed, the
** rest keep growing. This is the fluid model of SimGrid's LMM solver (Velho
** et al., "On the validity of flow-level TCP network models for grid and
** cloud simulations", ACM TOMACS 2013), without its TCP corrections.
**
** Rates are recomputed only when a flow starts using the links or ends,
** never per unit of time: between two such events every rate is constant
** and every link's bytes grow linearly, so advancing costs O(events).
**
** Latency: a flow's path latency (the sum of its links' latencies) is added
** once: the flow occupies no bandwidth during it and starts competing at
** start + latency. A flow of b bytes alone on a path of bandwidth w thus
** ends at start + latency + b / w.
**
** Steady flows carry no byte count: a steady per-step traffic (the queries
** and partials of a request split over instances, over a decode run) is one
** flow whose rate bound is its demand, kept until removed. It takes its
** demand when the links have room and its max-min share when they do not.
** It competes from its start (no path latency: its user prices the latency
** of each step's messages), so its rate is known as soon as it is added.
**
** Invariants (infsim_network_check): no link carries more than its
** bandwidth; every active flow is limited by a saturated link of its path
** or by its own bound (max-min optimality); link bytes are the integral of
** the rates of the flows crossing it, so a finished flow has put exactly
** its bytes on every link of its path (byte conservation).
*/
#ifndef INFSIM_NETWORK_H
#define INFSIM_NETWORK_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "infsim/status.h"

/* policy.distattn_reprice_tolerance's default (infsim_topology's
 * reprice_tolerance; docs/distkv.md, "The network"). */
#define INFSIM_DEFAULT_REPRICE_TOLERANCE 0.01

/* Longest path a flow may take (a cluster network's routes take 1 or 2). */
enum { INFSIM_NET_MAX_PATH = 4 };

typedef enum { INFSIM_LINK_NVLINK = 0, INFSIM_LINK_NIC = 1, INFSIM_LINK_PCIE = 2 } infsim_link_kind;

/* "nvlink", "nic", "pcie" (links.csv's kind column). */
const char *infsim_link_kind_name(infsim_link_kind k);

typedef struct infsim_network infsim_network;

/* One row of links.csv: link, kind, src, dst, bytes, busy_s. */
typedef struct {
  infsim_link_kind kind;
  char src[16]; /* "i3" (instance 3), "sw0" (node 0's switch), "h0" (node 0's host), "fabric" */
  char dst[16];
  double bytes_per_s;
  int64_t latency_ns;
  double bytes;    /* carried so far */
  int64_t busy_ns; /* time with at least one flow moving bytes on it */
} infsim_link_info;

/* An empty network (links are added with infsim_network_add_link). */
infsim_status infsim_network_new(infsim_network **out, infsim_error *err);
void infsim_network_free(infsim_network *net);

/* A directed link; returns its id (0, 1, ... in order of addition) in *id. */
infsim_status infsim_network_add_link(infsim_network *net, infsim_link_kind kind, const char *src, const char *dst,
                                      double bytes_per_s, int64_t latency_ns, int32_t *id, infsim_error *err);
size_t infsim_network_link_count(const infsim_network *net);
infsim_link_info infsim_network_link(const infsim_network *net, int32_t link);

/* A cluster of `instances` instances, instances_per_node per node (the last
 * node may hold fewer), with per instance an NVLink up and down link to its
 * node's switch and a PCIe up and down link to its node's host memory, and
 * per node a NIC out and in link. Bandwidths are per link and per direction
 * (an instance of several GPUs has their NVLink bandwidth together).
 * Endpoints: instance i is i; node n's host memory is instances + n (as
 * host pool n in kv.h). */
typedef struct {
  int32_t instances;
  int32_t instances_per_node;
  double nvlink_bytes_per_s;
  double nic_bytes_per_s;
  double pcie_bytes_per_s;
  int64_t nvlink_latency_ns;
  int64_t nic_latency_ns;
  int64_t pcie_latency_ns;
  /* infsim_network_probe_keyed reuses a key's last answer while each of
   * its links' room stays within this share of the link's bandwidth of
   * the room it was found at (0: only when bit for bit the same). */
  double reprice_tolerance;
} infsim_topology;

infsim_status infsim_network_new_cluster(const infsim_topology *topo, infsim_network **out, infsim_error *err);

/* The path from endpoint src to endpoint dst of a cluster network, into
 * links[0..INFSIM_NET_MAX_PATH); returns its length (0 when src == dst).
 * Same node: instance -> instance is NVLink up, NVLink down; instance <->
 * host is PCIe up or down. Across nodes: NIC out of src's node, NIC in of
 * dst's node (GPUDirect RDMA on both ends: the NIC, not the GPU's PCIe, is
 * what limits it). */
int infsim_network_route(const infsim_network *net, int32_t src, int32_t dst, int32_t *links);
/* The narrowest bandwidth (0: src == dst) and the latency sum of the
 * route from src to dst: O(1) from a table built with the network while
 * it has at most 256 endpoints (instances + nodes); computed per call
 * beyond. */
void infsim_network_route_rate(const infsim_network *net, int32_t src, int32_t dst, double *bytes_per_s,
                               int64_t *latency_ns);
/* Whether the cluster network keeps that table (tests). */
bool infsim_network_route_table(const infsim_network *net);
/* The node of an endpoint of a cluster network. */
int32_t infsim_network_node_of(const infsim_network *net, int32_t endpoint);

/* Adds a flow of `bytes` (>= 0) over path[0..path_len) (1 to
 * INFSIM_NET_MAX_PATH distinct links) starting at start_ns (>= the
 * network's time); rate_bound_bytes_per_s > 0 caps its rate, 0 leaves it
 * uncapped. `tag` is the caller's, handed back at completion. Returns the
 * flow's id (never reused) in *id. */
infsim_status infsim_network_add_flow(infsim_network *net, int64_t bytes, const int32_t *path, int path_len,
                                      int64_t start_ns, double rate_bound_bytes_per_s, int64_t tag, int64_t *id,
                                      infsim_error *err);
/* A steady flow of demand rate_bytes_per_s (> 0) from start_ns until removed. */
infsim_status infsim_network_add_steady(infsim_network *net, double rate_bytes_per_s, const int32_t *path,
                                        int path_len, int64_t start_ns, int64_t tag, int64_t *id, infsim_error *err);
/* Removes a flow (a steady one, or one cancelled before its end) at now_ns
 * (>= the network's time; the network advances there first, completing
 * what ends before). Returns the bytes it carried. Unknown ids: -1. */
double infsim_network_remove(infsim_network *net, int64_t id, int64_t now_ns);

/* Several adds and removes at one time (a decode run's flows): after
 * hold, they recompute no rates (rates and next_ns read meanwhile are
 * stale); release recomputes once, as the last of them alone would. */
void infsim_network_hold(infsim_network *net);
/* Moves the network's time to t_ns (no later than its next change), so
 * that a flow added at t_ns competes at once. */
void infsim_network_sync(infsim_network *net, int64_t t_ns);
void infsim_network_release(infsim_network *net);

/* A decode run's steady flows, all at once: the same as hold, then
 * infsim_network_add_steady of each (paths[i][0..lens[i]), demand
 * rates[i] > 0, tag 0) at start_ns (the network's time), then release;
 * ids[i] gets each one's id. Returns whether every one got its demand
 * without a refilling (then each one's rate is its demand). Paths are
 * the network's routes (not checked here as add_steady checks them). */
bool infsim_network_add_steady_set(infsim_network *net, int n, const int32_t (*paths)[INFSIM_NET_MAX_PATH],
                                   const int *lens, const double *rates, int64_t start_ns, int64_t *ids);
/* The same as hold, then infsim_network_remove of each of ids[0..n)
 * (steady flows) at now_ns, then release. */
void infsim_network_remove_steady_set(infsim_network *net, const int64_t *ids, int n, int64_t now_ns);

/* The earliest time at which something changes (a flow ends or starts
 * competing), or INT64_MAX when nothing will. The driver advances there. */
int64_t infsim_network_next_ns(const infsim_network *net);

/* Called once per finished flow, in order of completion time (ties by id). */
typedef void (*infsim_flow_done_fn)(void *ctx, int64_t id, int64_t tag, int64_t at_ns);

/* Advances to t_ns (>= the network's time), completing every flow that ends
 * at or before it. Returns the number completed. */
size_t infsim_network_advance(infsim_network *net, int64_t t_ns, infsim_flow_done_fn done, void *ctx);

/* The max-min rates that n new uncapped flows (paths[i][0..lens[i]),
 * lens[i] >= 0) would get if they all competed now, beside the flows
 * already competing, into rates[0..n); changes nothing. A flow of no
 * link gets INFINITY. The filling runs over the new flows' links only:
 * a flow already there takes part bounded by its current rate (the
 * newcomers may take share from it, it gains none elsewhere), so the
 * answer is the network's max-min allocation with the new flows whenever
 * the flows they meet are limited on these links or by their own bounds
 * (a DistAttention step's queries or partials over a few links, beside
 * other runs' steady flows and KV moves). */
void infsim_network_probe(infsim_network *net, int n, const int32_t (*paths)[INFSIM_NET_MAX_PATH], const int *lens,
                          double *rates);
/* infsim_network_probe for a caller identified by key (>= 0: a DistAttention
 * owner): the same transfers as the key's last probe over links whose
 * room (bandwidth less the load of the flows there) each moved by at most
 * the topology's reprice_tolerance x the link's bandwidth since that
 * probe's answer was found, with no flow there fast enough that the probe
 * would walk the flows, get that answer again without a filling. With
 * tolerance 0 the answer is always infsim_network_probe's, bit for bit;
 * above, it may lag the network's by that much room. */
void infsim_network_probe_keyed(infsim_network *net, int32_t key, int n,
                                const int32_t (*paths)[INFSIM_NET_MAX_PATH], const int *lens, double *rates);
/* infsim_network_probe_keyed with paths_id, a number that names the
 * transfers (n, paths, lens): the caller gives a new one whenever key's
 * transfers differ from those of its last call with that id; a kept
 * set-up or answer made for the same id is then taken without comparing
 * the paths (an owner's batches mostly repeat its holders). 0 names
 * nothing: the paths are compared. Returns true when the answer is the
 * one key's last call gave, again (a kept answer: the same rates); then,
 * with rates_held (the caller keeps that last answer), rates is not
 * written. */
bool infsim_network_probe_keyed_id(infsim_network *net, int32_t key, uint64_t paths_id, int n,
                                   const int32_t (*paths)[INFSIM_NET_MAX_PATH], const int *lens, double *rates,
                                   bool rates_held);
/* How many infsim_network_probe_keyed calls gave a kept answer. */
size_t infsim_network_probes_reused(const infsim_network *net);
/* Traffic carried outside the flows (priced by its user at a share it
 * probed: a prompt batch's DistAttention transfers): `bytes` go on every
 * link of path[0..path_len), and busy_ns on each (the time they took at
 * that share; added to the flows' busy time, not merged with it). */
void infsim_network_account(infsim_network *net, const int32_t *path, int path_len, double bytes, int64_t busy_ns);
/* A flow's current rate (0 before it starts competing); -1 if unknown or ended. */
double infsim_network_rate(const infsim_network *net, int64_t id);
/* The flows now in the network (waiting out their latency or moving). */
size_t infsim_network_flow_count(const infsim_network *net);
/* The most flows at once so far; *slots: flow slots allocated. */
size_t infsim_network_flow_peak(const infsim_network *net, size_t *slots);
int64_t infsim_network_now_ns(const infsim_network *net);

/* Aborts when an invariant of the header comment is broken. */
void infsim_network_check(const infsim_network *net);

#endif
