/*
** network.c: links shared max-min fairly by flows (network.h).
**
** Flows live in one slot array that grows by doubling; a freed slot is
** reused, and a flow's id is (slot's generation << 32 | slot), so ids are
** never reused and a lookup is O(1); a free slot keeps its last id
** negated bit by bit (so negative), from which the next one follows (no
** generation array: a new flow writes one line less). Rates are
** recomputed by progressive filling whenever a flow starts competing or
** ends; between two such moments the network only integrates constant
** rates. The earliest next change is cached, so infsim_network_next_ns
** is O(1). An owner's DistAttention probe keeps its last answer found
** without walking the flows (per key: probe_memo) and gives it again
** while the same paths cross links whose loads stayed within the
** topology's reprice_tolerance x bandwidth of the loads it was found at.
**
** Invariants: see network.h; infsim_network_check verifies them.
*/
#include "infsim/network.h"
#include "infsim/grow.h"

#include <assert.h>
#include <math.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* A link counts as saturated when its unused bandwidth is below this
 * fraction of it: the filling subtracts shares in floating point. */
#define SATURATED_FRAC 1e-9

/* A link: links.csv's row but its names (`names`, beside it: nothing hot
 * reads them), the fillings' and the probe's scratch, and its time
 * accounts. A link's bytes and busy time are kept at its changes, not at
 * every advance of the clock: between two changes of its load, its bytes
 * grow by load x time (the sum of its flows' rates, integrated at once
 * rather than flow by flow: the same model, another summation order), and
 * it is busy while at least one flow moves bytes on it (a count, not
 * load > 0: adding and removing steady flows without a filling can leave
 * a rounding remainder in the load with no flow on the link). A steady
 * flow's start and end read and write most of it: one record, one index. */
typedef struct {
  double bytes_per_s;
  int64_t latency_ns;
  double bytes;    /* carried, folded up to bytes_from_ns */
  int64_t busy_ns; /* busy spans that ended */
  double room_bytes_per_s;     /* unsaturated()'s bound: loads above it may saturate the link */
  double residual_bytes_per_s; /* scratch of the filling */
  double load_bytes_per_s;     /* sum of the rates crossing it */
  double top_bytes_per_s;      /* no flow crossing it goes faster (an upper bound: kept when one leaves) */
  int64_t busy_from_ns;        /* since when it has moving flows; -1: none */
  int64_t bytes_from_ns;       /* its bytes are folded up to here */
  double probe_residual_bytes_per_s;
  infsim_link_kind kind;
  int32_t unfixed;       /* scratch: unfixed flows crossing it */
  int32_t listed;        /* in the fillings' list (in_use) */
  int32_t flows_on;      /* flows whose path crosses it (waiting out their latency or not) */
  int32_t moving;        /* flows with rate > 0 crossing it */
  uint32_t probe_epoch;  /* scratch of infsim_network_probe: on the probe's paths */
  int32_t probe_unfixed;
  int32_t probe_local; /* its place in the probe's touched list */
  int32_t unused[2];   /* (128 bytes: a link's index is a shift) */
} net_link;
_Static_assert(sizeof(net_link) == 128, "net_link: the filling and the probe index links; keep it two cache lines");

/* A flow taking part in infsim_network_probe's filling: one of the new
 * flows (no bound; its rate goes straight to the caller's array when it
 * is fixed), or a flow already there, bounded by its rate. */
typedef struct {
  int32_t path[INFSIM_NET_MAX_PATH]; /* its links on the probe's paths */
  int path_len;
  uint64_t mask; /* a bit per link of its path, by probe_local (used when the probe touches at most 64 links) */
  double bound_bytes_per_s;
} probe_part;

typedef struct {
  int64_t id; /* < 0: a free slot (~ its last flow's id, or ~slot before its first) */
  int64_t tag;
  int32_t path[INFSIM_NET_MAX_PATH];
  int path_len;
  bool steady;
  bool fixed;              /* scratch of the filling */
  double bound_bytes_per_s; /* 0: none */
  double remaining_bytes;  /* unused for steady flows */
  double carried_bytes;   /* and remaining_bytes: as of from_ns */
  int64_t from_ns;         /* when its rate was set (carried and remaining are folded up to it) */
  int64_t active_at_ns;    /* start + path latency */
  double rate_bytes_per_s;
  int64_t finish_ns;       /* INT64_MAX: none under current rates */
  int32_t cls;             /* its path's class (flows with no rate bound; -1 for the others) */
  int32_t unused[6];       /* (128 bytes: a slot's flow is a shift away) */
} net_flow;
_Static_assert(sizeof(net_flow) == 128, "net_flow: the scans index flows by slot; keep it two cache lines");

struct infsim_network {
  int64_t now_ns;
  net_link *links;
  size_t link_count, link_cap;
  net_flow *flows;
  size_t flow_cap, flow_count;
  size_t flow_peak; /* most flows at once */
  uint64_t *used;       /* a bit per slot: holds a flow (the scans visit only those, in slot order) */
  size_t *free_slots;
  size_t free_count;
  size_t *done_scratch; /* slots of flows ending at one instant */
  int64_t *done_ids, *done_tags;
  size_t done_cap;
  int64_t next_ns;
  bool held, dirty; /* infsim_network_hold: rates recomputed once, at release */
  bool cluster;
  infsim_topology topo;
  /* scratch of the filling (recompute): classes of unbounded flows by
   * path, each flow slot's class, the bounded flows, a hash of paths */
  struct flow_class_s *classes;
  size_t class_count, class_cap;
  int32_t *live; /* classes with active flows */
  int32_t *buckets;
  size_t bucket_count;
  size_t *bounded;
  size_t bounded_cap;
  /* scratch of infsim_network_probe */
  uint32_t probe_epoch;
  probe_part *parts;
  size_t parts_cap;
  int32_t *touched;
  size_t touched_cap;
  int32_t *act;
  size_t act_cap;
  /* The last answer of infsim_network_probe_keyed per key, and what it
   * may be reused for (probe_memo); reprice_tolerance: the topology's. */
  struct probe_memo_s *memos;
  size_t memo_cap;
  /* Per key, its last probe's transfers and the filling's set-up they
   * made (probe_shape): an owner's batches mostly probe the same paths. */
  struct probe_shape_s *shapes;
  size_t shape_cap;
  double reprice_tolerance;
  size_t probes_reused; /* answers given again by infsim_network_probe_keyed */
  char (*names)[2][16]; /* per link, its src and dst (links.csv) */
  /* The links a filling visits (in_use[0..n_in_use), in no particular
   * order): every link that some flow crosses, that carries a load or
   * that is busy is there; one leaves at the end of a filling that finds
   * it with none of these. A cluster's links are mostly idle (each
   * instance's PCIe, most NVLinks at a time): the filling's passes over
   * every link cost more than the rest of it. */
  int32_t *in_use;
  size_t n_in_use;
  size_t *act_links; /* scratch of the filling: links with unfixed flows */
  size_t act_links_cap;
  /* Every route's rate and latency in a cluster network, built once
   * (routes and links do not change during a run): NULL where the
   * endpoints are too many for a table (then computed per call). */
  struct net_route_s *routes;
  int32_t route_endpoints;
  int32_t *node; /* per endpoint of a cluster network, its node (every route asks for two) */
};

/* A probe's answer kept for its key's next probe: the transfers' paths,
 * the links they touch with the room each had (bandwidth less the load
 * of the flows already there) and the transfers crossing it, and the
 * rates. Valid only for an answer found without the walk (the flows
 * there all slower than the level below which no link fills), which
 * depends on nothing else: the same paths over the same rooms give the
 * same rates, bit for bit. */
typedef struct probe_memo_s {
  bool valid;
  uint64_t paths_id; /* the caller's name for the transfers (0: none) */
  int n;
  size_t nt, parts_cap, links_cap;
  int32_t (*paths)[INFSIM_NET_MAX_PATH];
  int *lens;
  double *rates;
  struct probe_memo_link_s *links;
} probe_memo;

/* A link a kept answer's transfers touch: every check of the answer reads
 * all four, so they sit together. */
typedef struct probe_memo_link_s {
  int32_t link;
  int32_t unfixed;           /* the transfers crossing it */
  double load_lo, load_hi;   /* the loads that leave its room within the tolerance */
} probe_memo_link;

/* A probe's set-up for its transfers, kept for the same key's next probe
 * of the same paths: the links they touch in the order the probe meets
 * them, with the transfers crossing each, and the parts (paths, masks of
 * those links) and active list the probe's first pass builds; it depends
 * on the paths only, so set up again from here it is the same, bit for
 * bit, whatever the links' loads. */
typedef struct probe_shape_s {
  bool valid;
  uint64_t paths_id; /* the caller's name for the transfers (0: none) */
  int n;
  size_t nt, na, parts_cap, links_cap;
  uint64_t (*words)[2]; /* each transfer's path (path_words) */
  int *lens;
  probe_part *parts;
  int32_t *act;
  int32_t *links;
  int32_t *unfixed;
} probe_shape;

typedef struct net_route_s {
  double bytes_per_s; /* the path's narrowest link; 0: no link */
  int64_t latency_ns; /* over its links */
} net_route;

/* Endpoints up to which a cluster network keeps a table of its routes'
 * rates: 256^2 routes of 16 bytes, 1 MiB. */
#define ROUTE_TABLE_MAX_ENDPOINTS 256

const char *infsim_link_kind_name(infsim_link_kind k) {
  switch (k) {
  case INFSIM_LINK_NVLINK: return "nvlink";
  case INFSIM_LINK_NIC: return "nic";
  case INFSIM_LINK_PCIE: return "pcie";
  }
  return "?";
}

infsim_status infsim_network_new(infsim_network **out, infsim_error *err) {
  infsim_network *net = calloc(1, sizeof *net);
  if (!net) return infsim_fail(err, INFSIM_ENOMEM, "network: out of memory");
  net->next_ns = INT64_MAX;
  *out = net;
  return INFSIM_OK;
}

void infsim_network_free(infsim_network *net) {
  if (!net) return;
  free(net->links);
  free(net->flows);
  free(net->used);
  free(net->free_slots);
  free(net->done_scratch);
  free(net->done_ids);
  free(net->done_tags);
  free(net->classes);
  free(net->live);
  free(net->bounded);
  free(net->buckets);
  free(net->parts);
  free(net->touched);
  free(net->act);
  for (size_t k = 0; k < net->memo_cap; k++) {
    probe_memo *m = &net->memos[k];
    free(m->paths);
    free(m->lens);
    free(m->rates);
    free(m->links);
  }
  free(net->memos);
  for (size_t k = 0; k < net->shape_cap; k++) {
    probe_shape *h = &net->shapes[k];
    free(h->words);
    free(h->lens);
    free(h->parts);
    free(h->act);
    free(h->links);
    free(h->unfixed);
  }
  free(net->shapes);
  free(net->routes);
  free(net->node);
  free(net->names);
  free(net->in_use);
  free(net->act_links);
  free(net);
}

infsim_status infsim_network_add_link(infsim_network *net, infsim_link_kind kind, const char *src, const char *dst,
                                      double bytes_per_s, int64_t latency_ns, int32_t *id, infsim_error *err) {
  if (!(bytes_per_s > 0) || !isfinite(bytes_per_s) || latency_ns < 0)
    return infsim_fail(err, INFSIM_EINPUT, "network: link %s->%s: bandwidth must be > 0 and latency >= 0", src, dst);
  if (net->link_count == net->link_cap) {
    size_t cap = net->link_cap ? 2 * net->link_cap : 16;
    net_link *l = realloc(net->links, cap * sizeof *l);
    if (!l) return infsim_fail(err, INFSIM_ENOMEM, "network: out of memory");
    net->links = l;
    char(*nm)[2][16] = realloc(net->names, cap * sizeof *nm);
    if (!nm) return infsim_fail(err, INFSIM_ENOMEM, "network: out of memory");
    net->names = nm;
    int32_t *u = realloc(net->in_use, cap * sizeof *u);
    if (!u) return infsim_fail(err, INFSIM_ENOMEM, "network: out of memory");
    net->in_use = u;
    net->link_cap = cap;
  }
  net_link *l = &net->links[net->link_count];
  memset(l, 0, sizeof *l);
  l->kind = kind;
  snprintf(net->names[net->link_count][0], sizeof net->names[0][0], "%s", src);
  snprintf(net->names[net->link_count][1], sizeof net->names[0][1], "%s", dst);
  l->bytes_per_s = bytes_per_s;
  l->latency_ns = latency_ns;
  l->room_bytes_per_s = bytes_per_s * (1 - 1e-6);
  l->busy_from_ns = -1;
  l->bytes_from_ns = net->now_ns;
  if (id) *id = (int32_t)net->link_count;
  net->link_count++;
  return INFSIM_OK;
}

size_t infsim_network_link_count(const infsim_network *net) { return net->link_count; }

infsim_link_info infsim_network_link(const infsim_network *net, int32_t link) {
  assert(link >= 0 && (size_t)link < net->link_count);
  const net_link *a = &net->links[link];
  infsim_link_info i = {.kind = a->kind, .bytes_per_s = a->bytes_per_s, .latency_ns = a->latency_ns,
                        .bytes = a->bytes, .busy_ns = a->busy_ns};
  snprintf(i.src, sizeof i.src, "%s", net->names[link][0]);
  snprintf(i.dst, sizeof i.dst, "%s", net->names[link][1]);
  if (a->busy_from_ns >= 0) i.busy_ns += net->now_ns - a->busy_from_ns;
  i.bytes += a->load_bytes_per_s * (double)(net->now_ns - a->bytes_from_ns) * 1e-9;
  return i;
}

/* Link l's bytes up to now, before its load changes. */
static void fold_link(infsim_network *net, size_t l) {
  net_link *a = &net->links[l];
  int64_t dt = net->now_ns - a->bytes_from_ns;
  if (dt > 0 && a->load_bytes_per_s > 0) a->bytes += a->load_bytes_per_s * (double)dt * 1e-9;
  a->bytes_from_ns = net->now_ns;
}

/* After any change of link l's moving flows: they change only at the
 * network's now, so its busy time is the sum of its spans between them. */
static void load_changed(infsim_network *net, size_t l) {
  bool busy = net->links[l].moving > 0;
  int64_t *from = &net->links[l].busy_from_ns;
  if (busy && *from < 0) {
    *from = net->now_ns;
  } else if (!busy && *from >= 0) {
    net->links[l].busy_ns += net->now_ns - *from;
    *from = -1;
  }
}

/* A flow now crosses link l: the fillings visit it from now on. */
static inline void cross_link(infsim_network *net, int32_t l) {
  net_link *L = &net->links[l];
  L->flows_on++;
  if (!L->listed) {
    L->listed = 1;
    net->in_use[net->n_in_use++] = l;
  }
}

/* A flow's bytes up to now, at its current rate since from_ns. A flow
 * that would pass its end (its end is rounded up to whole ns) moves only
 * its remaining bytes; its links, which integrate the rate, give back
 * the excess. */
static inline void fold_flow(infsim_network *net, net_flow *f) {
  int64_t dt = net->now_ns - f->from_ns;
  f->from_ns = net->now_ns;
  if (dt <= 0 || !(f->rate_bytes_per_s > 0)) return;
  double moved = f->rate_bytes_per_s * (double)dt * 1e-9;
  if (!f->steady) {
    if (moved > f->remaining_bytes)
      for (int k = 0; k < f->path_len; k++) net->links[f->path[k]].bytes -= moved - f->remaining_bytes;
    moved = fmin(moved, f->remaining_bytes);
    f->remaining_bytes -= moved;
  }
  f->carried_bytes += moved;
}

/* Cluster layout: instance i owns links 4i (NVLink up), 4i+1 (NVLink
 * down), 4i+2 (PCIe up), 4i+3 (PCIe down); node n owns 4I+2n (NIC out)
 * and 4I+2n+1 (NIC in). */
static int32_t nodes_of(const infsim_topology *t) {
  return (t->instances + t->instances_per_node - 1) / t->instances_per_node;
}

static void route_table(infsim_network *net);

infsim_status infsim_network_new_cluster(const infsim_topology *t, infsim_network **out, infsim_error *err) {
  if (t->instances < 1 || t->instances_per_node < 1)
    return infsim_fail(err, INFSIM_EINPUT, "network: instances and instances per node must be >= 1");
  infsim_network *net = NULL;
  infsim_status st = infsim_network_new(&net, err);
  if (st != INFSIM_OK) return st;
  net->cluster = true;
  net->topo = *t;
  net->reprice_tolerance = t->reprice_tolerance;
  char a[16], b[16];
  for (int32_t i = 0; i < t->instances && st == INFSIM_OK; i++) {
    int32_t n = i / t->instances_per_node;
    char sw[16], host[16];
    snprintf(a, sizeof a, "i%d", (int)i);
    snprintf(sw, sizeof sw, "sw%d", (int)n);
    snprintf(host, sizeof host, "h%d", (int)n);
    st = infsim_network_add_link(net, INFSIM_LINK_NVLINK, a, sw, t->nvlink_bytes_per_s, t->nvlink_latency_ns, NULL, err);
    if (st == INFSIM_OK)
      st = infsim_network_add_link(net, INFSIM_LINK_NVLINK, sw, a, t->nvlink_bytes_per_s, t->nvlink_latency_ns, NULL,
                                   err);
    if (st == INFSIM_OK)
      st = infsim_network_add_link(net, INFSIM_LINK_PCIE, a, host, t->pcie_bytes_per_s, t->pcie_latency_ns, NULL, err);
    if (st == INFSIM_OK)
      st = infsim_network_add_link(net, INFSIM_LINK_PCIE, host, a, t->pcie_bytes_per_s, t->pcie_latency_ns, NULL, err);
  }
  for (int32_t n = 0; n < nodes_of(t) && st == INFSIM_OK; n++) {
    snprintf(b, sizeof b, "sw%d", (int)n);
    st = infsim_network_add_link(net, INFSIM_LINK_NIC, b, "fabric", t->nic_bytes_per_s, t->nic_latency_ns, NULL, err);
    if (st == INFSIM_OK)
      st = infsim_network_add_link(net, INFSIM_LINK_NIC, "fabric", b, t->nic_bytes_per_s, t->nic_latency_ns, NULL, err);
  }
  int32_t endpoints = t->instances + nodes_of(t);
  net->node = st == INFSIM_OK ? malloc((size_t)endpoints * sizeof *net->node) : NULL;
  if (st == INFSIM_OK && net->node == NULL) st = infsim_fail(err, INFSIM_ENOMEM, "network: out of memory");
  if (st != INFSIM_OK) {
    infsim_network_free(net);
    return st;
  }
  for (int32_t ep = 0; ep < endpoints; ep++)
    net->node[ep] = ep < t->instances ? ep / t->instances_per_node : ep - t->instances;
  route_table(net);
  *out = net;
  return INFSIM_OK;
}

int32_t infsim_network_node_of(const infsim_network *net, int32_t ep) {
  assert(net->cluster);
  const infsim_topology *t = &net->topo;
  assert(ep >= 0 && ep < t->instances + nodes_of(t));
  (void)t;
  return net->node[ep];
}

int infsim_network_route(const infsim_network *net, int32_t src, int32_t dst, int32_t *links) {
  assert(net->cluster);
  const int32_t inst = net->topo.instances;
  if (src == dst) return 0;
  int32_t ns = infsim_network_node_of(net, src), nd = infsim_network_node_of(net, dst);
  bool src_gpu = src < inst, dst_gpu = dst < inst;
  if (ns != nd) {
    links[0] = 4 * inst + 2 * ns;
    links[1] = 4 * inst + 2 * nd + 1;
    return 2;
  }
  if (src_gpu && dst_gpu) {
    links[0] = 4 * src;
    links[1] = 4 * dst + 1;
    return 2;
  }
  /* A GPU and its node's host memory (two hosts never share a node). */
  links[0] = src_gpu ? 4 * src + 2 : 4 * dst + 3;
  return 1;
}

static void route_rate_compute(const infsim_network *net, const int32_t *path, int len, double *bytes_per_s,
                               int64_t *latency_ns) {
  *bytes_per_s = 0.0;
  *latency_ns = 0;
  for (int i = 0; i < len; i++) {
    const net_link *l = &net->links[path[i]];
    if (*bytes_per_s == 0.0 || l->bytes_per_s < *bytes_per_s) *bytes_per_s = l->bytes_per_s;
    *latency_ns += l->latency_ns;
  }
}

/* The table of every route's rate and latency, when the endpoints are few
 * enough; without memory for it, they are computed per call.
 * DistAttention pricing looks up the rate to each holder of every batch,
 * and every message its route's: hundreds of thousands of lookups an
 * hour, each a path and a walk of its links. */
static void route_table(infsim_network *net) {
  int32_t e = net->topo.instances + nodes_of(&net->topo);
  if (e > ROUTE_TABLE_MAX_ENDPOINTS) return;
  net_route *r = malloc((size_t)e * (size_t)e * sizeof *r);
  if (r == NULL) return;
  for (int32_t src = 0; src < e; src++)
    for (int32_t dst = 0; dst < e; dst++) {
      net_route *q = &r[(size_t)src * (size_t)e + (size_t)dst];
      int32_t path[INFSIM_NET_MAX_PATH];
      int len = infsim_network_route(net, src, dst, path);
      route_rate_compute(net, path, len, &q->bytes_per_s, &q->latency_ns);
    }
  net->routes = r;
  net->route_endpoints = e;
}

void infsim_network_route_rate(const infsim_network *net, int32_t src, int32_t dst, double *bytes_per_s,
                               int64_t *latency_ns) {
  if (net->routes == NULL) {
    int32_t path[INFSIM_NET_MAX_PATH];
    int len = infsim_network_route(net, src, dst, path);
    route_rate_compute(net, path, len, bytes_per_s, latency_ns);
    return;
  }
  assert(src >= 0 && src < net->route_endpoints && dst >= 0 && dst < net->route_endpoints);
  const net_route *q = &net->routes[(size_t)src * (size_t)net->route_endpoints + (size_t)dst];
  *bytes_per_s = q->bytes_per_s;
  *latency_ns = q->latency_ns;
}

bool infsim_network_route_table(const infsim_network *net) { return net->routes != NULL; }

/* ---- flows ---- */

static net_flow *lookup(const infsim_network *net, int64_t id) {
  if (id < 0) return NULL;
  size_t slot = (size_t)(id & 0xffffffff);
  if (slot >= net->flow_cap || net->flows[slot].id != id) return NULL;
  return &net->flows[slot];
}

/* The first slot at or after s that holds a flow, or flow_cap: the scans
 * over the flows (each filling's, a probe's walk, the ends at an advance)
 * visit the flows in slot order, as a scan of every slot does, without
 * the free slots (a table grown to its peak holds a few flows most of the
 * time). */
static inline size_t next_used(const infsim_network *net, size_t s) {
  size_t words = (net->flow_cap + 63) / 64, w = s / 64;
  if (w >= words) return net->flow_cap;
  uint64_t b = net->used[w] & (~0ull << (s % 64));
  while (b == 0) {
    if (++w == words) return net->flow_cap;
    b = net->used[w];
  }
  return w * 64 + (size_t)__builtin_ctzll(b);
}

static inline void set_used(infsim_network *net, size_t s, bool on) {
  if (on)
    net->used[s / 64] |= 1ull << (s % 64);
  else
    net->used[s / 64] &= ~(1ull << (s % 64));
}

static bool is_active(const infsim_network *net, const net_flow *f) {
  return f->id >= 0 && f->active_at_ns <= net->now_ns;
}

/* Flows with no rate bound and the same path always get the same rate
 * (the filling treats them alike), so the filling works on classes of
 * them, one per path, plus the bounded flows one by one: a round costs
 * O(links + paths in use + bounded flows), not O(flows). A saturated
 * network holds thousands of flows over a few hundred paths. The
 * arithmetic is the per-flow filling's, in the same order, so rates are
 * bit for bit the same. A path's class is found once, when a flow is
 * created (a hash of paths; classes are never dropped: there are at most
 * as many as the topology has routes). */
typedef struct flow_class_s {
  int32_t path[INFSIM_NET_MAX_PATH];
  int path_len;
  int32_t flows; /* scratch of the filling: its active flows, all unfixed or all fixed */
  bool fixed;
  double rate_bytes_per_s;
} flow_class;

static uint64_t path_hash(const int32_t *path, int path_len) {
  uint64_t h = 0xcbf29ce484222325ull ^ (uint64_t)path_len;
  for (int k = 0; k < path_len; k++) h = (h ^ (uint32_t)path[k]) * 0x100000001b3ull;
  return h ^ (h >> 29);
}

static bool same_path(const flow_class *k, const int32_t *path, int path_len) {
  if (k->path_len != path_len) return false;
  for (int j = 0; j < path_len; j++)
    if (k->path[j] != path[j]) return false;
  return true;
}

/* Puts class c in the hash (open addressing; buckets at most half full). */
static void bucket_insert(infsim_network *net, int32_t c) {
  const flow_class *k = &net->classes[c];
  size_t mask = net->bucket_count - 1;
  size_t b = (size_t)path_hash(k->path, k->path_len) & mask;
  while (net->buckets[b] >= 0) b = (b + 1) & mask;
  net->buckets[b] = c;
}

/* The class of path, added when new; -1 when out of memory. */
static int32_t class_for(infsim_network *net, const int32_t *path, int path_len) {
  if (net->bucket_count > 0) {
    size_t mask = net->bucket_count - 1;
    for (size_t b = (size_t)path_hash(path, path_len) & mask; net->buckets[b] >= 0; b = (b + 1) & mask)
      if (same_path(&net->classes[net->buckets[b]], path, path_len)) return net->buckets[b];
  }
  if (net->class_count == net->class_cap) {
    size_t cap = net->class_cap ? 2 * net->class_cap : 64;
    flow_class *k = realloc(net->classes, cap * sizeof *k);
    if (!k) return -1;
    net->classes = k;
    int32_t *live = realloc(net->live, cap * sizeof *live);
    if (!live) return -1;
    net->live = live;
    net->class_cap = cap;
  }
  if (2 * (net->class_count + 1) > net->bucket_count) {
    size_t n = net->bucket_count ? 2 * net->bucket_count : 128;
    int32_t *bk = realloc(net->buckets, n * sizeof *bk);
    if (!bk) return -1;
    net->buckets = bk;
    net->bucket_count = n;
    for (size_t j = 0; j < n; j++) bk[j] = -1;
    for (size_t c = 0; c < net->class_count; c++) bucket_insert(net, (int32_t)c);
  }
  int32_t c = (int32_t)net->class_count++;
  flow_class *k = &net->classes[c];
  memset(k, 0, sizeof *k);
  memcpy(k->path, path, (size_t)path_len * sizeof *path);
  k->path_len = path_len;
  bucket_insert(net, c);
  return c;
}

/* The links of act[0..n) still crossed by unfixed flows, in their order. */
static size_t pack_links(const infsim_network *net, size_t *act, size_t n) {
  size_t m = 0;
  for (size_t a = 0; a < n; a++)
    if (net->links[act[a]].unfixed > 0) act[m++] = act[a];
  return m;
}

static bool on_full_link(const infsim_network *net, const int32_t *path, int path_len) {
  bool on_full = false;
  for (int k = 0; k < path_len; k++) on_full |= net->links[path[k]].residual_bytes_per_s == 0;
  return on_full;
}

/* Progressive filling over the flows that compete now; then each flow's
 * end under the new rates and the network's next change. */
static void recompute(infsim_network *net) {
  /* A link that no flow crosses and that carries no load (most of a
   * cluster's PCIe and NVLink links) keeps its bytes and its idle time as
   * they are; its unfixed count is 0 outside a filling. */
  const int32_t *in_use = net->in_use;
  const size_t n_in_use = net->n_in_use;
  for (size_t u = 0; u < n_in_use; u++) {
    size_t l = (size_t)in_use[u];
    if (net->links[l].flows_on == 0 && net->links[l].load_bytes_per_s == 0) {
      net->links[l].top_bytes_per_s = 0;
      continue;
    }
    fold_link(net, l);
    net->links[l].moving = 0;
    net->links[l].residual_bytes_per_s = net->links[l].bytes_per_s;
    net->links[l].unfixed = net->links[l].flows_on; /* less the flows waiting out their latency, below */
    net->links[l].load_bytes_per_s = 0;
    net->links[l].top_bytes_per_s = 0;
  }
  if (net->bounded_cap < net->flow_cap) {
    size_t *bd = realloc(net->bounded, net->flow_cap * sizeof *bd);
    assert(bd); /* the size of the flow table; out of memory here is fatal */
    net->bounded = bd;
    net->bounded_cap = net->flow_cap;
  }
  if (net->act_links_cap < net->link_count) {
    size_t *al = realloc(net->act_links, net->link_count * sizeof *al);
    assert(al); /* the size of the link table; out of memory here is fatal */
    net->act_links = al;
    net->act_links_cap = net->link_count;
  }
  size_t unfixed = 0, n_live = 0, n_bounded = 0;
  for (size_t s = next_used(net, 0); s < net->flow_cap; s = next_used(net, s + 1)) {
    net_flow *f = &net->flows[s];
    fold_flow(net, f);
    f->rate_bytes_per_s = 0;
    f->fixed = !is_active(net, f);
    if (f->fixed) {
      for (int k = 0; k < f->path_len; k++) net->links[f->path[k]].unfixed--;
      continue;
    }
    unfixed++;
    if (f->bound_bytes_per_s > 0) {
      net->bounded[n_bounded++] = s;
    } else {
      flow_class *k = &net->classes[f->cls];
      if (k->flows++ == 0) {
        k->fixed = false;
        net->live[n_live++] = f->cls;
      }
    }
  }
  /* Each round first finds the level x at which the first link would
   * fill with every unfixed flow growing; every bounded flow whose bound
   * is at most x reaches it before any link fills (fixing a flow at its
   * bound only leaves more room), so all of them are fixed at once and x
   * is found again; when none is left below x, the level moves to x and
   * the flows of the links that filled are fixed there. Rounds: a few
   * batches of bounds plus one per link that fills, not one per distinct
   * bound (a network of many steady flows). Links that no unfixed flow
   * crosses take no part in a round, and none joins later (counts only
   * fall), so the rounds scan only the links still crossed by unfixed
   * flows (act, packed after each round in its first order): the same
   * arithmetic on the same values, rates bit for bit those of a scan of
   * every link. */
  size_t *act = net->act_links, n_act = 0;
  for (size_t u = 0; u < n_in_use; u++)
    if (net->links[in_use[u]].unfixed > 0) act[n_act++] = (size_t)in_use[u];
  double level = 0;
  while (unfixed > 0) {
    double delta = INFINITY;
    for (size_t a = 0; a < n_act; a++) {
      const net_link *L = &net->links[act[a]];
      if (L->unfixed > 0 && L->residual_bytes_per_s / L->unfixed < delta)
        delta = L->residual_bytes_per_s / L->unfixed;
    }
    assert(isfinite(delta));
    delta = delta > 0 ? delta : 0;
    double x = level + delta;
    /* bounded[0..n_bounded) holds the unfixed bounded flows only, in slot
     * order: each pass that fixes some packs the rest (the passes skipped
     * the fixed ones; the same flows in the same order remain) */
    size_t fixed_now = 0, kept_bounded = 0;
    for (size_t b = 0; b < n_bounded; b++) {
      net_flow *f = &net->flows[net->bounded[b]];
      if (f->bound_bytes_per_s > x) {
        net->bounded[kept_bounded++] = net->bounded[b];
        continue;
      }
      f->fixed = true;
      f->rate_bytes_per_s = f->bound_bytes_per_s;
      double more = f->bound_bytes_per_s > level ? f->bound_bytes_per_s - level : 0;
      for (int k = 0; k < f->path_len; k++) {
        net_link *L = &net->links[f->path[k]];
        L->residual_bytes_per_s -= more;
        L->unfixed--;
      }
      fixed_now++;
    }
    n_bounded = kept_bounded;
    if (fixed_now > 0) {
      unfixed -= fixed_now;
      n_act = pack_links(net, act, n_act);
      continue;
    }
    level = x;
    /* Which links are now full (the one that set delta at least). */
    for (size_t a = 0; a < n_act; a++) {
      net_link *L = &net->links[act[a]];
      if (L->unfixed == 0) continue;
      L->residual_bytes_per_s -= delta * L->unfixed;
      if (L->residual_bytes_per_s <= SATURATED_FRAC * L->bytes_per_s) L->residual_bytes_per_s = 0;
    }
    for (size_t c = 0; c < n_live; c++) {
      flow_class *k = &net->classes[net->live[c]];
      if (k->fixed || !on_full_link(net, k->path, k->path_len)) continue;
      k->fixed = true;
      k->rate_bytes_per_s = level;
      fixed_now += (size_t)k->flows;
    }
    kept_bounded = 0;
    for (size_t b = 0; b < n_bounded; b++) {
      net_flow *f = &net->flows[net->bounded[b]];
      bool at_bound = level >= f->bound_bytes_per_s * (1 - SATURATED_FRAC);
      if (!at_bound && !on_full_link(net, f->path, f->path_len)) {
        net->bounded[kept_bounded++] = net->bounded[b];
        continue;
      }
      f->fixed = true;
      f->rate_bytes_per_s = at_bound && f->bound_bytes_per_s < level ? f->bound_bytes_per_s : level;
      fixed_now++;
    }
    n_bounded = kept_bounded;
    /* Fixed flows leave the counts only now, so that every flow of a link
     * that filled in this round saw it full. */
    for (size_t a = 0; a < n_act; a++) net->links[act[a]].unfixed = 0;
    for (size_t c = 0; c < n_live; c++) {
      const flow_class *k = &net->classes[net->live[c]];
      if (!k->fixed)
        for (int j = 0; j < k->path_len; j++) net->links[k->path[j]].unfixed += k->flows;
    }
    for (size_t b = 0; b < n_bounded; b++) {
      const net_flow *f = &net->flows[net->bounded[b]];
      for (int k = 0; k < f->path_len; k++) net->links[f->path[k]].unfixed++;
    }
    assert(fixed_now > 0); /* the link that set delta fixes someone */
    unfixed -= fixed_now;
    n_act = pack_links(net, act, n_act);
  }
  net->next_ns = INT64_MAX;
  for (size_t s = next_used(net, 0); s < net->flow_cap; s = next_used(net, s + 1)) {
    net_flow *f = &net->flows[s];
    f->finish_ns = INT64_MAX;
    if (!is_active(net, f)) {
      if (f->active_at_ns < net->next_ns) net->next_ns = f->active_at_ns;
      continue;
    }
    if (!(f->bound_bytes_per_s > 0)) {
      f->fixed = true;
      f->rate_bytes_per_s = net->classes[f->cls].rate_bytes_per_s;
    }
    bool moving = f->rate_bytes_per_s > 0;
    for (int k = 0; k < f->path_len; k++) {
      net_link *L = &net->links[f->path[k]];
      L->load_bytes_per_s += f->rate_bytes_per_s;
      if (f->rate_bytes_per_s > L->top_bytes_per_s) L->top_bytes_per_s = f->rate_bytes_per_s;
      net->links[f->path[k]].moving += moving;
    }
    if (f->steady) continue;
    if (f->remaining_bytes <= 0)
      f->finish_ns = net->now_ns;
    else if (f->rate_bytes_per_s > 0)
      f->finish_ns = net->now_ns + (int64_t)ceil(f->remaining_bytes * 1e9 / f->rate_bytes_per_s);
    if (f->finish_ns < net->next_ns) net->next_ns = f->finish_ns;
  }
  for (size_t c = 0; c < n_live; c++) net->classes[net->live[c]].flows = 0;
  /* The links' busy spans; a link left with no flow, no load and no
   * busy span leaves the list (its top rate was reset above). */
  size_t kept = 0;
  for (size_t u = 0; u < n_in_use; u++) {
    size_t l = (size_t)net->in_use[u];
    if (net->links[l].flows_on > 0 || net->links[l].busy_from_ns >= 0) load_changed(net, l);
    if (net->links[l].flows_on == 0 && net->links[l].load_bytes_per_s == 0 && net->links[l].busy_from_ns < 0)
      net->links[l].listed = 0;
    else
      net->in_use[kept++] = (int32_t)l;
  }
  net->n_in_use = kept;
}

/* Moves the clock to t (no change of rates before t): links and flows
 * integrate their rates when they change (fold_link, fold_flow). */
static void progress(infsim_network *net, int64_t t) {
  assert(t >= net->now_ns);
  net->now_ns = t;
}

/* The id of the next flow in free slot `slot` (holding f): the slot's
 * generation one more, as uint32 counts (wrapping alike). */
static inline int64_t next_id(const net_flow *f, size_t slot) {
  uint32_t generation = (uint32_t)((uint64_t)~f->id >> 32) + 1;
  return (int64_t)((uint64_t)generation << 32 | slot);
}

/* Doubles the flow slots (the new ones free, the lowest on top). */
static bool grow_flows(infsim_network *net) {
  size_t cap = net->flow_cap ? 2 * net->flow_cap : 16;
  net_flow *f = realloc(net->flows, cap * sizeof *f);
  if (!f) return false;
  net->flows = f;
  size_t *fs = realloc(net->free_slots, cap * sizeof *fs);
  if (!fs) return false;
  net->free_slots = fs;
  size_t words = (cap + 63) / 64, had = (net->flow_cap + 63) / 64;
  uint64_t *u = realloc(net->used, words * sizeof *u);
  if (!u) return false;
  net->used = u;
  for (size_t w = had; w < words; w++) u[w] = 0;
  for (size_t s = cap; s-- > net->flow_cap;) {
    net->flows[s].id = ~(int64_t)s; /* generation 0 */
    net->free_slots[net->free_count++] = s;
  }
  net->flow_cap = cap;
  return true;
}

/* A new flow over path; `bounded`: it will have a rate bound, so it
 * takes part in the filling on its own and needs no class. */
static infsim_status new_flow(infsim_network *net, const int32_t *path, int path_len, int64_t start_ns, bool bounded,
                              net_flow **out, infsim_error *err) {
  if (path_len < 1 || path_len > INFSIM_NET_MAX_PATH)
    return infsim_fail(err, INFSIM_EINPUT, "network: a flow's path has 1 to %d links, not %d", INFSIM_NET_MAX_PATH,
                       path_len);
  for (int k = 0; k < path_len; k++) {
    if (path[k] < 0 || (size_t)path[k] >= net->link_count)
      return infsim_fail(err, INFSIM_EINPUT, "network: no link %d", (int)path[k]);
    for (int j = 0; j < k; j++)
      if (path[j] == path[k]) return infsim_fail(err, INFSIM_EINPUT, "network: link %d twice in a path", (int)path[k]);
  }
  assert(start_ns >= net->now_ns);
  int32_t cls = bounded ? -1 : class_for(net, path, path_len);
  if (!bounded && cls < 0) return infsim_fail(err, INFSIM_ENOMEM, "network: out of memory");
  if (net->free_count == 0 && !grow_flows(net)) return infsim_fail(err, INFSIM_ENOMEM, "network: out of memory");
  size_t slot = net->free_slots[--net->free_count];
  set_used(net, slot, true);
  net_flow *f = &net->flows[slot];
  int64_t id = next_id(f, slot);
  memset(f, 0, sizeof *f);
  f->id = id;
  f->path_len = path_len;
  int64_t latency_ns = 0;
  for (int k = 0; k < path_len; k++) {
    f->path[k] = path[k];
    latency_ns += net->links[path[k]].latency_ns;
  }
  for (int k = 0; k < path_len; k++) cross_link(net, path[k]);
  f->active_at_ns = start_ns + latency_ns;
  f->from_ns = net->now_ns;
  f->finish_ns = INT64_MAX;
  f->cls = cls;
  net->flow_count++;
  if (net->flow_count > net->flow_peak) net->flow_peak = net->flow_count;
  *out = f;
  return INFSIM_OK;
}

/* A new flow changes rates only if it competes at once; otherwise its
 * activation is the only new moment. */
static void admitted(infsim_network *net, net_flow *f) {
  if (is_active(net, f) && net->held)
    net->dirty = true;
  else if (is_active(net, f))
    recompute(net);
  else if (f->active_at_ns < net->next_ns)
    net->next_ns = f->active_at_ns;
}

infsim_status infsim_network_add_flow(infsim_network *net, int64_t bytes, const int32_t *path, int path_len,
                                      int64_t start_ns, double rate_bound_bytes_per_s, int64_t tag, int64_t *id,
                                      infsim_error *err) {
  if (bytes < 0 || rate_bound_bytes_per_s < 0 || !isfinite(rate_bound_bytes_per_s))
    return infsim_fail(err, INFSIM_EINPUT, "network: a flow needs bytes >= 0 and a rate bound >= 0");
  net_flow *f = NULL;
  infsim_status st = new_flow(net, path, path_len, start_ns, rate_bound_bytes_per_s > 0, &f, err);
  if (st != INFSIM_OK) return st;
  f->remaining_bytes = (double)bytes;
  f->bound_bytes_per_s = rate_bound_bytes_per_s;
  f->tag = tag;
  *id = f->id;
  admitted(net, f);
  return INFSIM_OK;
}

/* Whether extra bytes/s on f's path leave every link of it below
 * saturation (with a margin above the filling's): a link that stays
 * unsaturated bounds no flow, so every other max-min rate stays as it is
 * when a steady flow of that rate comes or (extra = 0, its rate still on
 * the links) goes; no recompute then. */
static bool unsaturated(const infsim_network *net, const net_flow *f, double extra) {
  for (int k = 0; k < f->path_len; k++) {
    const net_link *l = &net->links[f->path[k]];
    if (l->load_bytes_per_s + extra > l->room_bytes_per_s) return false;
  }
  return true;
}


infsim_status infsim_network_add_steady(infsim_network *net, double rate_bytes_per_s, const int32_t *path,
                                        int path_len, int64_t start_ns, int64_t tag, int64_t *id, infsim_error *err) {
  if (!(rate_bytes_per_s > 0) || !isfinite(rate_bytes_per_s))
    return infsim_fail(err, INFSIM_EINPUT, "network: a steady flow needs a rate > 0");
  net_flow *f = NULL;
  infsim_status st = new_flow(net, path, path_len, start_ns, true, &f, err);
  if (st != INFSIM_OK) return st;
  f->steady = true;
  f->active_at_ns = start_ns; /* its user prices the path latency per step */
  f->bound_bytes_per_s = rate_bytes_per_s;
  f->tag = tag;
  *id = f->id;
  if (is_active(net, f) && unsaturated(net, f, rate_bytes_per_s)) {
    f->rate_bytes_per_s = rate_bytes_per_s;
    for (int k = 0; k < f->path_len; k++) {
      net_link *L = &net->links[f->path[k]];
      fold_link(net, (size_t)f->path[k]);
      L->load_bytes_per_s += rate_bytes_per_s;
      if (rate_bytes_per_s > L->top_bytes_per_s) L->top_bytes_per_s = rate_bytes_per_s;
      L->moving++;
      load_changed(net, (size_t)f->path[k]);
    }
    return INFSIM_OK;
  }
  admitted(net, f);
  return INFSIM_OK;
}

static void drop(infsim_network *net, net_flow *f) {
  size_t slot = (size_t)(f - net->flows);
  bool moving = f->rate_bytes_per_s > 0;
  for (int k = 0; k < f->path_len; k++) {
    net->links[f->path[k]].flows_on--;
    net->links[f->path[k]].moving -= moving;
  }
  f->id = ~f->id;
  set_used(net, slot, false);
  net->free_slots[net->free_count++] = slot;
  net->flow_count--;
}

double infsim_network_remove(infsim_network *net, int64_t id, int64_t now_ns) {
  net_flow *f = lookup(net, id);
  if (!f) return -1;
  assert(now_ns <= net->next_ns || now_ns == net->now_ns); /* advance first: nothing may end before now */
  progress(net, now_ns);
  fold_flow(net, f);
  double carried = f->carried_bytes;
  bool was_active = is_active(net, f);
  if (was_active && f->steady && unsaturated(net, f, 0.0)) {
    for (int k = 0; k < f->path_len; k++) {
      fold_link(net, (size_t)f->path[k]);
      net->links[f->path[k]].load_bytes_per_s -= f->rate_bytes_per_s;
    }
    drop(net, f);
    for (int k = 0; k < f->path_len; k++) load_changed(net, (size_t)f->path[k]);
    return carried;
  }
  drop(net, f);
  if (net->held)
    net->dirty = true;
  else if (was_active)
    recompute(net);
  else if (net->next_ns == f->active_at_ns)
    recompute(net); /* only to refresh the cached next change */
  return carried;
}

void infsim_network_sync(infsim_network *net, int64_t t_ns) {
  assert(t_ns <= net->next_ns || t_ns == net->now_ns);
  if (t_ns > net->now_ns) progress(net, t_ns);
}

void infsim_network_hold(infsim_network *net) { net->held = true; }

void infsim_network_release(infsim_network *net) {
  net->held = false;
  if (net->dirty) recompute(net);
  net->dirty = false;
}

/* A decode run's flows start and end together, a dozen at a time, some
 * hundred thousand times an hour: these do what the calls one by one
 * under hold and release do, in the same order and with the same
 * arithmetic (so rates, link bytes and busy times are bit for bit the
 * same), without the per-call checks and lookups. */
bool infsim_network_add_steady_set(infsim_network *net, int n, const int32_t (*paths)[INFSIM_NET_MAX_PATH],
                                   const int *lens, const double *rates, int64_t start_ns, int64_t *ids) {
  assert(start_ns >= net->now_ns);
  bool dirty = false, all_active = start_ns <= net->now_ns;
  for (int i = 0; i < n; i++) {
    const int32_t *path = paths[i];
    int len = lens[i];
    double rate = rates[i];
    assert(len >= 1 && len <= INFSIM_NET_MAX_PATH && rate > 0 && isfinite(rate));
    if (net->free_count == 0 && !grow_flows(net)) abort(); /* a flow lost would misprice the run: fatal */
    size_t slot = net->free_slots[--net->free_count];
    set_used(net, slot, true);
    net_flow *f = &net->flows[slot];
    /* every field but the path's unused entries (nothing reads them) */
    f->id = next_id(f, slot);
    f->tag = 0;
    f->path_len = len;
    f->steady = true;
    f->fixed = false;
    f->bound_bytes_per_s = rate;
    f->remaining_bytes = 0;
    f->carried_bytes = 0;
    f->from_ns = net->now_ns;
    f->active_at_ns = start_ns;
    f->rate_bytes_per_s = 0;
    f->finish_ns = INT64_MAX;
    f->cls = -1;
    /* the path, its links crossed, and unsaturated()'s test of them with
     * the rate added (crossing a link leaves its load as it is) */
    bool fits = true;
    net_link *on[INFSIM_NET_MAX_PATH]; /* its links, for the pass below */
    for (int k = 0; k < len; k++) {
      assert(path[k] >= 0 && (size_t)path[k] < net->link_count);
      f->path[k] = path[k];
      cross_link(net, path[k]);
      net_link *L = on[k] = &net->links[path[k]];
      fits &= !(L->load_bytes_per_s + rate > L->room_bytes_per_s);
    }
    ids[i] = f->id;
    if (!all_active) {
      if (start_ns < net->next_ns) net->next_ns = start_ns;
      continue;
    }
    if (!fits) {
      dirty = true;
      continue;
    }
    f->rate_bytes_per_s = rate;
    /* fold_link, the load and top rate, then load_changed with one more
     * moving flow (busy from now if it was not) */
    for (int k = 0; k < len; k++) {
      net_link *L = on[k];
      int64_t dt = net->now_ns - L->bytes_from_ns;
      if (dt > 0 && L->load_bytes_per_s > 0) L->bytes += L->load_bytes_per_s * (double)dt * 1e-9;
      L->bytes_from_ns = net->now_ns;
      L->load_bytes_per_s += rate;
      if (rate > L->top_bytes_per_s) L->top_bytes_per_s = rate;
      L->moving++;
      if (L->busy_from_ns < 0) L->busy_from_ns = net->now_ns;
    }
  }
  net->flow_count += (size_t)(n > 0 ? n : 0);
  if (net->flow_count > net->flow_peak) net->flow_peak = net->flow_count;
  if (dirty && net->held)
    net->dirty = true;
  else if (dirty)
    recompute(net);
  return all_active && !dirty;
}

void infsim_network_remove_steady_set(infsim_network *net, const int64_t *ids, int n, int64_t now_ns) {
  bool dirty = false;
  for (int i = 0; i < n; i++) {
    net_flow *f = lookup(net, ids[i]);
    if (!f) continue;
    assert(f->steady);
    assert(now_ns <= net->next_ns || now_ns == net->now_ns); /* advance first: nothing may end before now */
    progress(net, now_ns);
    /* (its carried bytes are not folded: nobody reads them once it is gone) */
    bool moving = f->rate_bytes_per_s > 0;
    if (is_active(net, f) && unsaturated(net, f, 0.0)) {
      /* fold_link, the load, then load_changed with one moving flow less */
      for (int k = 0; k < f->path_len; k++) {
        net_link *L = &net->links[f->path[k]];
        int64_t dt = net->now_ns - L->bytes_from_ns;
        if (dt > 0 && L->load_bytes_per_s > 0) L->bytes += L->load_bytes_per_s * (double)dt * 1e-9;
        L->bytes_from_ns = net->now_ns;
        L->load_bytes_per_s -= f->rate_bytes_per_s;
        L->flows_on--;
        if ((L->moving -= moving) == 0 && L->busy_from_ns >= 0) {
          L->busy_ns += net->now_ns - L->busy_from_ns;
          L->busy_from_ns = -1;
        }
      }
    } else {
      for (int k = 0; k < f->path_len; k++) {
        net->links[f->path[k]].flows_on--;
        net->links[f->path[k]].moving -= moving;
      }
      dirty = true; /* as a removal under hold marks it, active or not */
    }
    f->id = ~f->id;
    set_used(net, (size_t)(f - net->flows), false);
    net->free_slots[net->free_count++] = (size_t)(f - net->flows);
    net->flow_count--;
  }
  if (dirty && net->held)
    net->dirty = true;
  else if (dirty)
    recompute(net);
}

int64_t infsim_network_next_ns(const infsim_network *net) { return net->next_ns; }

/* Insertion sort by id: a handful of flows end at one instant. */
static void sort_done(size_t *slots, size_t n, const net_flow *flows) {
  for (size_t i = 1; i < n; i++) {
    size_t s = slots[i], j = i;
    while (j > 0 && flows[slots[j - 1]].id > flows[s].id) {
      slots[j] = slots[j - 1];
      j--;
    }
    slots[j] = s;
  }
}

__attribute__((noinline)) size_t infsim_network_advance(infsim_network *net, int64_t t_ns, infsim_flow_done_fn done,
                                                        void *ctx) {
  assert(t_ns >= net->now_ns);
  size_t completed = 0;
  while (net->next_ns <= t_ns) {
    int64_t e = net->next_ns;
    progress(net, e);
    size_t n = 0;
    for (size_t s = next_used(net, 0); s < net->flow_cap; s = next_used(net, s + 1)) {
      net_flow *f = &net->flows[s];
      if (f->steady || f->finish_ns > e) continue;
      if (n == net->done_cap) {
        size_t cap = net->done_cap ? 2 * net->done_cap : 16;
        size_t *d = realloc(net->done_scratch, cap * sizeof *d);
        int64_t *di = realloc(net->done_ids, cap * sizeof *di);
        if (di) net->done_ids = di;
        int64_t *dt = realloc(net->done_tags, cap * sizeof *dt);
        if (d) net->done_scratch = d;
        if (dt) net->done_tags = dt;
        assert(d && di && dt); /* a handful of slots; out of memory here is fatal */
        net->done_cap = cap;
      }
      net->done_scratch[n++] = s;
      fold_flow(net, f);
      /* The rounding of its end to whole ns leaves a sliver: it is on the
       * wire too, so every link of the path gets the flow's full bytes. */
      for (int k = 0; k < f->path_len; k++) net->links[f->path[k]].bytes += f->remaining_bytes;
      f->carried_bytes += f->remaining_bytes;
      f->remaining_bytes = 0;
    }
    sort_done(net->done_scratch, n, net->flows);
    /* Record the ends, recompute, then tell the caller (who may add flows
     * from the callback, reusing the freed slots). */
    for (size_t k = 0; k < n; k++) {
      net_flow *f = &net->flows[net->done_scratch[k]];
      net->done_ids[k] = f->id;
      net->done_tags[k] = f->tag;
      drop(net, f);
    }
    /* One filling, also when nothing ended (a flow started competing):
     * a second one at the same time, with nothing changed, found the same
     * rates. */
    recompute(net);
    for (size_t k = 0; k < n; k++)
      if (done) done(ctx, net->done_ids[k], net->done_tags[k], e);
    completed += n;
  }
  progress(net, t_ns);
  return completed;
}

double infsim_network_rate(const infsim_network *net, int64_t id) {
  const net_flow *f = lookup(net, id);
  return f ? f->rate_bytes_per_s : -1;
}

/* The probe's scratch grown to hold at least `want` parts (doubling from
 * 64; out of memory here is fatal, as in the filling's scratch). */
static void probe_reserve(infsim_network *net, size_t want) {
  bool ok = (net->parts_cap >= want ||
             infsim_grow((void **)&net->parts, &net->parts_cap, want, sizeof *net->parts, 64)) &&
            (net->act_cap >= want || infsim_grow((void **)&net->act, &net->act_cap, want, sizeof *net->act, 64));
  assert(ok);
  (void)ok;
}

/* A bit for the probe's j-th touched link; past 64 links the bits alias
 * and the probe checks paths link by link instead. */
static inline uint64_t probe_bit(int32_t j) { return (uint64_t)1 << (j & 63); }

/* Room for a memo of n transfers over up to nt links; false when out of
 * memory (the answer is then not kept). */
static bool memo_reserve(probe_memo *m, size_t n, size_t nt) {
  void **const parts[] = {(void **)&m->paths, (void **)&m->lens, (void **)&m->rates};
  const size_t part_bytes[] = {sizeof *m->paths, sizeof *m->lens, sizeof *m->rates};
  void **const links[] = {(void **)&m->links};
  const size_t link_bytes[] = {sizeof *m->links};
  return infsim_grow_each(&m->parts_cap, n, 16, 3, parts, part_bytes) &&
         infsim_grow_each(&m->links_cap, nt, 16, 1, links, link_bytes);
}

/* A path's links as two words, the entries past its length masked off
 * (a caller's path leaves them unset): two paths of one length are the
 * same when their words are. */
static inline void path_words(const int32_t *path, int len, uint64_t *w) {
  static const uint64_t keep[3] = {0, UINT64_C(0xffffffff), ~UINT64_C(0)};
  uint64_t a = 0, b = 0;
  memcpy(&a, path, sizeof a);
  if (len > 2) memcpy(&b, path + 2, sizeof b);
  w[0] = a & keep[len < 2 ? len : 2];
  w[1] = len > 2 ? b & keep[len - 2] : 0;
}

/* Whether shape was made by a probe of these transfers (named paths_id
 * by the caller when not 0: then the same when the names are). */
static bool shape_holds(const probe_shape *h, uint64_t paths_id, int n, const int32_t (*paths)[INFSIM_NET_MAX_PATH],
                        const int *lens) {
  if (!h->valid || h->n != n) return false;
#ifndef INFSIM_CHECK_INVARIANTS
  if (paths_id != 0 && paths_id == h->paths_id) return true;
#else
  (void)paths_id; /* compared anyway: probe() checks the name against the paths */
#endif
  for (int i = 0; i < n; i++) {
    if (lens[i] != h->lens[i]) return false;
    uint64_t w[2];
    path_words(paths[i], lens[i], w);
    if (w[0] != h->words[i][0] || w[1] != h->words[i][1]) return false;
  }
  return true;
}

/* Room in shape for n transfers over up to nt links; false when out of
 * memory (the set-up is then not kept). */
static bool shape_reserve(probe_shape *h, size_t n, size_t nt) {
  void **const parts[] = {(void **)&h->words, (void **)&h->lens, (void **)&h->parts, (void **)&h->act};
  const size_t part_bytes[] = {sizeof *h->words, sizeof *h->lens, sizeof *h->parts, sizeof *h->act};
  void **const links[] = {(void **)&h->links, (void **)&h->unfixed};
  const size_t link_bytes[] = {sizeof *h->links, sizeof *h->unfixed};
  return infsim_grow_each(&h->parts_cap, n, 16, 4, parts, part_bytes) &&
         infsim_grow_each(&h->links_cap, nt, 16, 2, links, link_bytes);
}

/* The probe (infsim_network_probe); with memo, its answer is kept there
 * when it needed no walk of the flows. */
static void probe(infsim_network *net, uint64_t paths_id, int n, const int32_t (*paths)[INFSIM_NET_MAX_PATH],
                  const int *lens, double *rates, probe_memo *memo, probe_shape *shape) {
  if (n <= 0) return;
  size_t want = (size_t)n * INFSIM_NET_MAX_PATH;
  if (net->touched_cap < want) {
    int32_t *t = realloc(net->touched, want * sizeof *t);
    assert(t);
    net->touched = t;
    net->touched_cap = want;
  }
  probe_reserve(net, (size_t)n);
  uint32_t epoch = ++net->probe_epoch;
  int32_t *touched = net->touched;
  /* walked: parts for flows already there, not fixed at their bound; act:
   * the unfixed parts, in part order, kept packed so that later rounds
   * skip the fixed. */
  size_t nt = 0, parts = (size_t)n, walked = 0, na = 0;
  bool loaded = false;
  bool kept = shape != NULL && shape_holds(shape, paths_id, n, paths, lens);
#ifdef INFSIM_CHECK_INVARIANTS
  /* a set-up kept for the same name holds: the caller named the paths right */
  assert(!(shape != NULL && shape->valid && paths_id != 0 && paths_id == shape->paths_id) || kept);
#endif
  if (kept) shape->paths_id = paths_id; /* found the same: the caller's name for them now */
  if (kept) { /* the first pass's answer, as it made it for these paths */
    nt = shape->nt;
    na = shape->na;
    /* (its links' scratch is set in the first pass below) */
    memcpy(net->act, shape->act, na * sizeof *net->act);
    if (na < (size_t)n)
      for (int i = 0; i < n; i++)
        if (lens[i] == 0) rates[i] = INFINITY;
  }
  for (int i = 0; i < n && !kept; i++) {
    probe_part *p = &net->parts[i];
    assert(lens[i] >= 0 && lens[i] <= INFSIM_NET_MAX_PATH);
    p->path_len = lens[i];
    p->bound_bytes_per_s = INFINITY;
    uint64_t mask = 0;
    for (int k = 0; k < lens[i]; k++) {
      int32_t l = paths[i][k];
      net_link *L = &net->links[l];
      p->path[k] = l;
      if (L->probe_epoch != epoch) {
        L->probe_epoch = epoch;
        L->probe_unfixed = 0;
        L->probe_local = (int32_t)nt;
        touched[nt++] = l;
      }
      L->probe_unfixed++;
      mask |= probe_bit(L->probe_local);
    }
    p->mask = mask;
    if (lens[i] > 0)
      net->act[na++] = (int32_t)i;
    else
      rates[i] = INFINITY;
  }
  if (shape != NULL && !kept) {
    shape->valid = shape_reserve(shape, (size_t)n, nt);
    if (shape->valid) {
      shape->paths_id = paths_id;
      shape->n = n;
      shape->nt = nt;
      shape->na = na;
      for (int i = 0; i < n; i++) {
        shape->lens[i] = lens[i];
        path_words(paths[i], lens[i], shape->words[i]);
      }
      memcpy(shape->parts, net->parts, (size_t)n * sizeof *net->parts);
      memcpy(shape->act, net->act, na * sizeof *net->act);
      for (size_t t = 0; t < nt; t++) {
        shape->links[t] = touched[t];
        shape->unfixed[t] = net->links[touched[t]].probe_unfixed;
      }
    }
  }
  bool masks = nt <= 64;
  /* The parts: a kept set-up's own while the rounds only read them (no
   * walk appends flows' parts, no path check past 64 links rewrites the
   * masks), else the scratch's copy. */
  probe_part *P = kept ? shape->parts : net->parts;
  if (kept && !masks) {
    memcpy(net->parts, shape->parts, (size_t)n * sizeof *net->parts);
    P = net->parts;
  }
  /* No link fills below x_low: at most the new flows and every flow on it
   * grow there. A flow already there whose rate is below it keeps its rate
   * (the filling's first round would fix it there): it only takes its
   * rate off the links' room, without taking part.
   * When no flow on these links goes faster than x_low (the fastest of
   * them, top, does not), they all keep their rates: the links' room is
   * what their loads leave, and the flows need not be walked. One pass
   * finds x_low and top and sets that room; the rare walk, and links that
   * carry nothing, start again from the links' bandwidths. */
  double x_low = INFINITY, top = -INFINITY, first = INFINITY; /* first: the first round's delta, but after a reset */
  for (size_t t = 0; t < nt; t++) {
    net_link *L;
    if (kept) { /* the set-up's links, in its order, with its counts */
      int32_t l = shape->links[t];
      L = &net->links[l];
      L->probe_epoch = epoch;
      L->probe_unfixed = shape->unfixed[t];
      L->probe_local = (int32_t)t;
      touched[t] = l;
    } else {
      L = &net->links[touched[t]];
    }
    double x = L->bytes_per_s / (double)(L->probe_unfixed + L->flows_on);
    if (x < x_low) x_low = x;
    if (L->top_bytes_per_s > top) top = L->top_bytes_per_s;
    loaded |= L->load_bytes_per_s > 0;
    L->probe_residual_bytes_per_s =
        L->load_bytes_per_s < L->bytes_per_s ? L->bytes_per_s - L->load_bytes_per_s : 0;
    double d = L->probe_residual_bytes_per_s / L->probe_unfixed;
    if (d < first) first = d;
  }
  bool walk = loaded && top > x_low;
  bool first_known = loaded && !walk; /* every link here has unfixed parts: the first round's scan is this one */
  if (memo != NULL) {
    memo->valid = !walk && memo_reserve(memo, (size_t)n, nt);
    if (memo->valid) {
      memo->paths_id = paths_id;
      memo->n = n;
      memo->nt = nt;
      for (int i = 0; i < n; i++) {
        memo->lens[i] = lens[i];
        for (int k = 0; k < lens[i]; k++) memo->paths[i][k] = paths[i][k];
      }
      for (size_t t = 0; t < nt; t++) {
        const net_link *L = &net->links[touched[t]];
        probe_memo_link *ml = &memo->links[t];
        ml->link = touched[t];
        ml->unfixed = L->probe_unfixed;
        /* its room is its bandwidth less its load: a load within the
         * tolerance x bandwidth of this one (this one only, at 0) */
        double slack = net->reprice_tolerance * L->bytes_per_s;
        ml->load_lo = L->load_bytes_per_s - slack;
        ml->load_hi = L->load_bytes_per_s + slack;
      }
    }
  }
  for (size_t t = 0; t < nt && (walk || !loaded); t++) {
    net_link *L = &net->links[touched[t]];
    L->probe_residual_bytes_per_s = L->bytes_per_s;
  }
  if (walk && P != net->parts) {
    memcpy(net->parts, shape->parts, (size_t)n * sizeof *net->parts);
    P = net->parts;
  }
  /* The flows already on these links, each bounded by its rate now. */
  for (size_t s = walk ? next_used(net, 0) : net->flow_cap; s < net->flow_cap; s = next_used(net, s + 1)) {
    const net_flow *f = &net->flows[s];
    if (!is_active(net, f) || !(f->rate_bytes_per_s > 0)) continue;
    int len = 0;
    int32_t on[INFSIM_NET_MAX_PATH];
    for (int k = 0; k < f->path_len; k++)
      if (net->links[f->path[k]].probe_epoch == epoch) on[len++] = f->path[k];
    if (len == 0) continue;
    if (f->rate_bytes_per_s <= x_low) {
      for (int k = 0; k < len; k++) net->links[on[k]].probe_residual_bytes_per_s -= f->rate_bytes_per_s;
      continue;
    }
    probe_reserve(net, parts + 1);
    P = net->parts; /* (grown) */
    probe_part *p = &P[parts];
    net->act[na++] = (int32_t)parts++;
    walked++;
    uint64_t mask = 0;
    for (int k = 0; k < len; k++) {
      net_link *L = &net->links[on[k]];
      p->path[k] = on[k];
      L->probe_unfixed++;
      mask |= probe_bit(L->probe_local);
    }
    p->path_len = len;
    p->mask = mask;
    p->bound_bytes_per_s = f->rate_bytes_per_s;
  }
  int32_t *act = net->act;
  /* Progressive filling, in recompute's rounds: bounds below the level at
   * which the first link fills are taken at once, then that link fills.
   * touched[0..nl) keeps the links still crossed by unfixed parts (a
   * link's count never grows back once the filling runs). */
  size_t nl = nt;
  double level = 0.0;
  while (na > 0) {
    double delta = INFINITY;
    size_t live = 0;
    if (first_known) {
      delta = first;
      live = nl;
      first_known = false;
    } else {
      for (size_t t = 0; t < nl; t++) {
        const net_link *L = &net->links[touched[t]];
        if (L->probe_unfixed == 0) continue;
        touched[live++] = touched[t];
        double d = L->probe_residual_bytes_per_s / L->probe_unfixed;
        if (d < delta) delta = d;
      }
    }
    nl = live;
    assert(isfinite(delta));
    delta = delta > 0 ? delta : 0;
    double x = level + delta;
    /* Only the flows already there have bounds (the new parts have none,
     * and none of those is below x): without them, nothing to scan. */
    size_t kept = 0, walked_before = walked;
    for (size_t a = 0; a < na && walked_before > 0; a++) {
      probe_part *p = &P[act[a]];
      if (p->bound_bytes_per_s > x) {
        act[kept++] = act[a];
        continue;
      }
      walked--; /* a flow already there: it keeps its rate, of no interest to the caller */
      double more = p->bound_bytes_per_s > level ? p->bound_bytes_per_s - level : 0;
      for (int k = 0; k < p->path_len; k++) {
        net_link *L = &net->links[p->path[k]];
        L->probe_residual_bytes_per_s -= more;
        L->probe_unfixed--;
      }
    }
    if (walked_before > walked) {
      na = kept;
      continue;
    }
    level = x;
    /* Every link here has unfixed parts (the scan above fixed none). */
    uint64_t full = 0;
    for (size_t t = 0; t < nl; t++) {
      net_link *L = &net->links[touched[t]];
      L->probe_residual_bytes_per_s -= delta * L->probe_unfixed;
      if (L->probe_residual_bytes_per_s <= SATURATED_FRAC * L->bytes_per_s) {
        L->probe_residual_bytes_per_s = 0;
        full |= probe_bit(L->probe_local);
      }
    }
    /* Parts on a full link stop at the level; they leave the counts only
     * after the scan, so that every part of a link that filled sees it. */
    if (!masks) { /* past 64 links the bits alias: each part's path is asked instead, its answer its mask */
      for (size_t a = 0; a < na; a++) {
        probe_part *p = &P[act[a]];
        bool on_full = false;
        for (int k = 0; k < p->path_len && !on_full; k++)
          on_full = net->links[p->path[k]].probe_residual_bytes_per_s == 0;
        p->mask = on_full;
      }
      full = 1;
    }
    kept = 0;
    for (size_t a = 0; a < na; a++) {
      probe_part *p = &P[act[a]];
      if (!(p->mask & full)) {
        act[kept++] = act[a];
        continue;
      }
      /* A new flow's rate (its bound is infinite: the level); a flow
       * already there only leaves the counts. */
      if (act[a] < n) rates[act[a]] = level;
      for (int k = 0; k < p->path_len; k++) net->links[p->path[k]].probe_unfixed--;
    }
    assert(kept < na); /* the link that set delta fixes someone */
    na = kept;
  }
  if (memo != NULL && memo->valid)
    for (int i = 0; i < n; i++) memo->rates[i] = rates[i];
}

void infsim_network_probe(infsim_network *net, int n, const int32_t (*paths)[INFSIM_NET_MAX_PATH], const int *lens,
                          double *rates) {
  probe(net, 0, n, paths, lens, rates, NULL, NULL);
}

/* Whether memo's answer holds for these transfers now: the same paths,
 * every link's load, hence its room, within the tolerance of the one the
 * answer was found at (the same at 0: the room bit for bit), and still
 * no flow there fast enough to take part (the walk's condition, as the
 * probe asks it). */
static bool memo_holds(const infsim_network *net, const probe_memo *m, uint64_t paths_id, int n,
                       const int32_t (*paths)[INFSIM_NET_MAX_PATH], const int *lens) {
  if (!m->valid || m->n != n) return false;
  bool named = paths_id != 0 && paths_id == m->paths_id; /* the same transfers: the caller says so */
#ifdef INFSIM_CHECK_INVARIANTS
  named = false; /* compared anyway, and found the same (below) */
#endif
  for (int i = 0; i < n && !named; i++) {
    if (lens[i] != m->lens[i]) break;
    int k = 0;
    while (k < lens[i] && paths[i][k] == m->paths[i][k]) k++;
    if (k < lens[i]) break;
    if (i == n - 1) named = true;
  }
#ifdef INFSIM_CHECK_INVARIANTS
  assert(named || paths_id == 0 || paths_id != m->paths_id);
#endif
  if (!named) return false;
  /* (x and top are positive or 0, never NaN: the minimum and maximum
   * below are the probe's comparisons, written so that they need no move) */
  double x_low = INFINITY, top = -INFINITY;
  for (size_t t = 0; t < m->nt; t++) {
    const probe_memo_link *ml = &m->links[t];
    const net_link *L = &net->links[ml->link];
    double load = L->load_bytes_per_s;
    if (!(load >= ml->load_lo && load <= ml->load_hi)) return false;
    double x = L->bytes_per_s / (double)(ml->unfixed + L->flows_on);
    x_low = x_low < x ? x_low : x;
    top = top > L->top_bytes_per_s ? top : L->top_bytes_per_s;
  }
  if (!(top > x_low)) return true;
  /* the walk's condition needs a loaded link too (asked only here: a flow
   * faster than x_low is rare) */
  for (size_t t = 0; t < m->nt; t++)
    if (net->links[m->links[t].link].load_bytes_per_s > 0) return false;
  return true;
}

/* Room for items [0, need) of a per-owner array, the new ones zeroed (an
 * owner's first probe finds an empty shape or memo); *cap moves only on
 * success. */
static bool grow_zeroed(void **items, size_t *cap, size_t need, size_t item_bytes) {
  size_t old = *cap;
  if (!infsim_grow(items, cap, need, item_bytes, 16)) return false;
  memset((char *)*items + old * item_bytes, 0, (*cap - old) * item_bytes);
  return true;
}

void infsim_network_probe_keyed(infsim_network *net, int32_t key, int n,
                                const int32_t (*paths)[INFSIM_NET_MAX_PATH], const int *lens, double *rates) {
  (void)infsim_network_probe_keyed_id(net, key, 0, n, paths, lens, rates, false);
}

/* A kept answer is the key's last call's: every call that does not reuse
 * it either keeps its own answer there or drops the memo (a walk, or out
 * of memory). */
bool infsim_network_probe_keyed_id(infsim_network *net, int32_t key, uint64_t paths_id, int n,
                                   const int32_t (*paths)[INFSIM_NET_MAX_PATH], const int *lens, double *rates,
                                   bool rates_held) {
  assert(key >= 0);
  /* At 0 every batch is probed afresh: keeping answers for loads equal to
   * the bit would reuse 15-24% of them on bench/distkv_speed's hour and
   * cost more than it saves. */
  if (!(net->reprice_tolerance > 0)) {
    if ((size_t)key >= net->shape_cap &&
        !grow_zeroed((void **)&net->shapes, &net->shape_cap, (size_t)key + 1, sizeof *net->shapes)) {
      probe(net, 0, n, paths, lens, rates, NULL, NULL);
      return false;
    }
    probe(net, paths_id, n, paths, lens, rates, NULL, &net->shapes[key]);
    return false;
  }
  if ((size_t)key >= net->memo_cap &&
      !grow_zeroed((void **)&net->memos, &net->memo_cap, (size_t)key + 1, sizeof *net->memos)) {
    probe(net, 0, n, paths, lens, rates, NULL, NULL);
    return false;
  }
  probe_memo *m = &net->memos[key];
  if (n > 0 && memo_holds(net, m, paths_id, n, paths, lens)) {
    m->paths_id = paths_id;
    for (int i = 0; i < n && !rates_held; i++) rates[i] = m->rates[i];
    net->probes_reused++;
    return true;
  }
  probe(net, paths_id, n, paths, lens, rates, m, NULL);
  return false;
}

size_t infsim_network_probes_reused(const infsim_network *net) { return net->probes_reused; }

void infsim_network_account(infsim_network *net, const int32_t *path, int path_len, double bytes, int64_t busy_ns) {
  for (int k = 0; k < path_len; k++) {
    assert(path[k] >= 0 && (size_t)path[k] < net->link_count);
    net->links[path[k]].bytes += bytes;
    net->links[path[k]].busy_ns += busy_ns;
  }
}

size_t infsim_network_flow_count(const infsim_network *net) { return net->flow_count; }

size_t infsim_network_flow_peak(const infsim_network *net, size_t *slots) {
  *slots = net->flow_cap;
  return net->flow_peak;
}

int64_t infsim_network_now_ns(const infsim_network *net) { return net->now_ns; }

void infsim_network_check(const infsim_network *net) {
  double *load = calloc(net->link_count ? net->link_count : 1, sizeof *load);
  assert(load);
  /* The scans' bit per slot: set exactly where a flow is. */
  for (size_t s = 0; s < net->flow_cap; s++) assert((net->flows[s].id >= 0) == (next_used(net, s) == s));
  for (size_t s = 0; s < net->flow_cap; s++) {
    const net_flow *f = &net->flows[s];
    if (!is_active(net, f)) continue;
    assert(f->rate_bytes_per_s >= 0);
    assert(f->steady || f->remaining_bytes >= 0);
    for (int k = 0; k < f->path_len; k++) load[f->path[k]] += f->rate_bytes_per_s;
  }
  /* Busy means moving flows: the count agrees with the flows. */
  for (size_t l = 0; l < net->link_count; l++) {
    int32_t moving = 0;
    for (size_t s = 0; s < net->flow_cap; s++) {
      const net_flow *f = &net->flows[s];
      if (!is_active(net, f) || !(f->rate_bytes_per_s > 0)) continue;
      for (int k = 0; k < f->path_len; k++) moving += f->path[k] == (int32_t)l;
    }
    assert(moving == net->links[l].moving);
    assert((moving > 0) == (net->links[l].busy_from_ns >= 0));
  }
  for (size_t l = 0; l < net->link_count; l++) assert(load[l] <= net->links[l].bytes_per_s * (1 + 1e-6));
  /* The fillings' list of links: each listed link once; a link with a
   * flow, a load or a busy span listed; one off the list at top rate 0. */
  size_t listed = 0;
  for (size_t u = 0; u < net->n_in_use; u++) assert(net->links[net->in_use[u]].listed);
  for (size_t l = 0; l < net->link_count; l++) {
    const net_link *L = &net->links[l];
    listed += L->listed != 0;
    if (L->flows_on > 0 || L->load_bytes_per_s != 0 || net->links[l].busy_from_ns >= 0) assert(L->listed);
    if (!L->listed) assert(L->top_bytes_per_s == 0);
  }
  assert(listed == net->n_in_use);
  /* Max-min: a flow below its bound crosses a full link on which no flow
   * goes faster than it (its bottleneck). */
  for (size_t s = 0; s < net->flow_cap; s++) {
    const net_flow *f = &net->flows[s];
    if (!is_active(net, f)) continue;
    if (f->bound_bytes_per_s > 0 && f->rate_bytes_per_s >= f->bound_bytes_per_s * (1 - 1e-6)) continue;
    bool bottleneck = false;
    for (int k = 0; k < f->path_len && !bottleneck; k++) {
      int32_t l = f->path[k];
      if (load[l] < net->links[l].bytes_per_s * (1 - 1e-6)) continue;
      bool fastest = true;
      for (size_t o = 0; o < net->flow_cap && fastest; o++) {
        const net_flow *g = &net->flows[o];
        if (!is_active(net, g)) continue;
        for (int j = 0; j < g->path_len; j++)
          if (g->path[j] == l && g->rate_bytes_per_s > f->rate_bytes_per_s * (1 + 1e-6)) fastest = false;
      }
      bottleneck = fastest;
    }
    assert(bottleneck);
  }
  free(load);
}
