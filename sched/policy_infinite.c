/*
** policy_infinite.c: the `infinite-llm` policy, DistKV-LLM over the
** scheduler's hooks (docs/distkv.md).
**
** Dispatch is vllm-multi's. A request larger than one instance is accepted
** when the instance plus the other instances' spare memory (the gManager's
** view) can hold it. When an instance is short of blocks it starts a
** borrow through the contract protocol (contract.h) and tells the
** scheduler to wait (policy.when_short); a borrow that lands kicks the
** instance so that admission runs again. The gManager's ledger
** (gmanager.h) learns the cluster from periodic heartbeats; DGFM
** (dgfm.h) runs on the gManager's own timer and sends each planned move
** to its source as a RECALL, which runs it through the protocol.
**
** Endpoints: instances are 0..n-1; the gManager is INFSIM_ENDPOINT_GMANAGER
** (the transport routes it to policy.gmanager_node's host). Faults:
** messages of this policy pass through a wrapper that loses or delays
** them (faults.message_*), with its own random stream; the gManager can be
** lost at faults.lose_gmanager_at_s and rebuilt from full heartbeats.
**
** Heartbeats: every policy.heartbeat_ms each instance reports its free
** blocks (less what it has reserved for others) and the ledger entries it
** holds that differ from the gManager's ledger; the entries ride with the
** message (kept in the sender's buffer, applied on delivery if no newer
** heartbeat of that instance was sent meanwhile). Comparing with the
** gManager's ledger stands for the instance's record of what it last
** reported, and makes a lost heartbeat heal at the next one.
**
** Invariants: those of the modules it drives (ledger zero-sum, contract
** reservations), checked after every message in debug builds.
*/
#include "infsim/policy_infinite.h"

#include <assert.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include <gsl/gsl_rng.h>

#include "infsim/contract.h"
#include "infsim/cpu_tier.h"
#include "infsim/dgfm.h"
#include "infsim/dispatch.h"
#include "infsim/gmanager.h"
#include "infsim/grow.h"
#include "infsim/planner.h"
#include "infsim/rng.h"
#include "sched_internal.h"

/* The policy's own timers (msg.a); the contract's are 0x71xx. */
enum {
  TIMER_HEARTBEAT = 0x7200,
  TIMER_DGFM = 0x7201,
  TIMER_GM_LOST = 0x7202,
  TIMER_GM_BACK = 0x7203,
  TIMER_KICK = 0x7204, /* an instance whose borrow failed tries admission again */
  TIMER_INSTANCE_LOST = 0x7205, /* faults.lose_instance */
  TIMER_INSTANCE_LOST_RANDOM = 0x7206 /* faults.lose_instance_every_s */
};
enum { WHEN_SHORT_WAIT = 0, WHEN_SHORT_PREEMPT = 1 };
/* Wire sizes (docs/distkv.md): a control message, a heartbeat's header and entry. */
enum { CONTROL_BYTES = 64, HEARTBEAT_BYTES = 32, HEARTBEAT_ENTRY_BYTES = 24 };
/* DGFM moves per pass are bounded by policy.dgfm_max_moves, at most this. */
enum { DGFM_MOVES_CAP = 256 };
/* A quiet instance (nothing to report, free memory within 1% of its last
 * report) heartbeats ever more rarely, up to 2^QUIET_SHIFT_MAX periods, so
 * that a cluster that does not borrow pays few events; any borrow, move
 * or change brings the period back. The same for DGFM passes that find
 * nothing. */
enum { QUIET_SHIFT_MAX = 6 };
/* A walk over requests that reads each one's ledger record (the
 * requests a report says are gone) asks for the record this many places
 * ahead: the records of an hour's run span megabytes and a request's was
 * last read seconds earlier, so each read would wait for memory in turn.
 * A walk that reads their entries and KV holdings too (each another
 * allocation: the lent requests) asks for the records and tables twice
 * as far ahead, then for what they point to. */
enum { LEDGER_AHEAD = 4 };
/* A report's walk of its running requests does little for each but read
 * three lines of it (its KV table, scheduling state and ledger record):
 * it asks for them this many places ahead (perf's samples on the ledger
 * record's read, the hour: a fifth fewer than 8 places ahead; 32 ahead,
 * too many lines asked at once, more than 8). */
enum { RUNNING_AHEAD = 16 };
/* Defaults of policy.heartbeat_ms, policy.heartbeat_band (in percent) and
 * policy.heartbeat_owned_ms (docs/distkv.md, "gManager and heartbeats"). */
enum { HEARTBEAT_MS_DEFAULT = 50, HEARTBEAT_BAND_PCT_DEFAULT = 5, HEARTBEAT_OWNED_MS_DEFAULT = 10000 };

typedef struct {
  int32_t dispatch; /* infsim_dispatch_kind */
  int32_t planner;  /* infsim_gm_planner */
  int32_t when_short;
  int32_t max_retries;
  int32_t probe_backoff_max;
  int32_t cpu_tier; /* infsim_cpu_tier_mode */
  int32_t gmanager_node;
  int32_t wire_bytes_per_value;
  bool dgfm;
  bool overlap;
  bool own_first; /* policy.own_work_first */
  bool tier_recall; /* policy.cpu_tier_recall */
  int64_t heartbeat_ns;
  int64_t timeout_ns;
  int64_t dgfm_period_ns;
  int64_t dgfm_max_moves;
  int64_t dgfm_max_blocks;
  int64_t dgfm_max_piece_blocks;
  int64_t borrow_ahead_blocks;
  double reserve_frac;
  double recall_headroom_frac;
  double heartbeat_band;
  int64_t heartbeat_owned_ns; /* policy.heartbeat_owned_ms */
  double move_bytes_per_s;
  double spread_remote_tokens; /* the spread planner's W over the NIC and NVLink (planner.h) */
  double spread_near_tokens;
  bool spread_relay; /* node relay: the spread planner counts NIC crossings per node */
  int64_t gpus_per_node;
  int64_t gpus_per_instance;
  double message_loss;
  double message_delay_prob;
  int64_t message_delay_ns;
  int64_t lose_gmanager_at_ns; /* -1: never */
  int64_t lose_gmanager_every_ns; /* 0: once; else again this long after each loss */
  int64_t gmanager_restart_ns;
  int32_t lose_instance; /* -1: none */
  int64_t lose_instance_at_ns;
  double lose_instance_every_s; /* 0: none; else the mean time between random losses */
} infinite_settings;

_Static_assert(sizeof(infinite_settings) <= INFSIM_POLICY_SETTINGS_BYTES, "policy settings too large");

typedef struct {
  infsim_gm_entry *e;
  size_t n, cap;
  int64_t *gone; /* requests of this owner that left the GPUs (finished, preempted, swapped) */
  size_t n_gone, cap_gone;
  int64_t free_blocks;
  int64_t snapshot_ns;
  uint32_t gen;
  bool full;      /* this buffer is a full report */
  bool free_known; /* free_blocks is as of now: the next collection keeps it */
  bool full_next; /* the next report must be full (after a gManager restart) */
  /* The report rides on the borrow request (seq, attempt) when carried. */
  bool carried;
  uint32_t carrier_seq;
  int64_t carrier_attempt;
} hb_buf;

/* A request of another owner an instance may hold blocks of, where its
 * entry for that instance last was in the ledger's list
 * (infsim_gm_held_by_hint), and its blocks there as last read. */
typedef struct {
  int64_t req;
  int64_t blocks; /* held there as the last collection walking it found (report's sweep reads it) */
  int32_t gm_k;
  int32_t owner; /* its owner (the KV manager's) as that collection found it, when it settled the list */
} lent_req;

/* An instance's lent requests. A walk that finds each one as the ledger
 * has it, with blocks here, owned elsewhere in both, settles the list:
 * until the ledger changes an entry the instance holds of another
 * owner's request (infsim_gm_guest_generation) or the KV manager a
 * holding here of a request owned elsewhere (infsim_kv_guest_generation),
 * every request is still as it was, and a collection need not look
 * (docs/distkv.md, "gManager and heartbeats"). Ownership moves only with
 * an empty table, so the blocks a request had here go first. */
typedef struct {
  lent_req *r;
  size_t n, cap;
  bool settled;
  uint64_t guest_gen, kv_gen; /* as the settling walk read them */
} req_list;

typedef struct {
  infinite_settings set;
  infsim_sched *s;
  int32_t instances;
  infsim_dispatcher *disp;
  infsim_gm *gm;
  infsim_dgfm *dgfm;
  infsim_contract *contract;
  infsim_cpu_tier *tier; /* NULL: policy.cpu_tier off */
  infsim_transport base; /* the scheduler's transport */
  gsl_rng *fault_rng;
  gsl_rng *loss_rng; /* faults.lose_instance_every_s: when and which */
  int64_t next_loss_ns; /* ... the next such loss */
  hb_buf *hb;     /* per instance: its last heartbeat sent (applied when it arrives) */
  hb_buf hb_next; /* a heartbeat being collected */
  req_list *lent; /* per instance: requests of others it may hold blocks of */
  int32_t *slots; /* hb_collect's scratch: running slots of split requests */
  size_t slots_cap;
  infsim_dgfm_move moves[DGFM_MOVES_CAP];
  bool gm_down;
  /* Waiting prompts larger than their instance's memory that gather new
   * blocks at creditors (each at the head of its instance's queue), oldest
   * first (docs/distkv.md, "Gathering"). */
  int64_t *gatherers;
  int32_t n_gatherers;
  int64_t *retry_after_ns; /* per instance: no new borrow before (after a failure) */
  int64_t *gather_after_ns; /* per instance: its prompt waiting for its turn to gather asks again then */
  int32_t *gather_waits;    /* per instance: such waits in a row (sets their back-off) */
  int32_t *failures;       /* per instance: borrows failed in a row (sets the back-off) */
  int32_t *hb_shift;       /* per instance: heartbeat period x 2^shift while quiet */
  double band_blocks;      /* policy.heartbeat_band x an instance's blocks */
  int64_t *walked_ns;      /* per instance: when a report last walked its running requests */
  int32_t dgfm_shift;      /* DGFM period x 2^shift while passes find nothing */
  bool *lost;              /* per instance: lost (faults.lose_instance) */
  int32_t n_lost;          /* how many are */
  infsim_distkv_stats st;
  int64_t messages_since_ledger_check; /* debug builds */
  infsim_status pending; /* a failure inside a callback, reported by on_message */
  infsim_error pending_err;
} infinite;

/* ---- settings ---- */

static infsim_status read_config(infsim_config *cfg, void *settings, infsim_error *err) {
  infinite_settings *p = settings;
  static const char *const k_dispatch[] = {"least-loaded", "round-robin", NULL};
  static const char *const k_planner[] = {"greedy", "same-node", "affinity", "fit", "level", "spread", NULL};
  static const char *const k_short[] = {"wait", "preempt", NULL};
  static const char *const k_tier[] = {"off", "ma", "fetch", NULL};
  static const char *const k_wire[] = {"fp16", "fp32", NULL};
  int dispatch = 0, planner = 0, when_short = 0, tier = 0, wire = 0;
  int64_t heartbeat_ms = 0, timeout_ms = 0, retries = 0, dgfm_ms = 0, gm_node = 0, restart_ms = 0;
  double move_GBps = 0, delay_ms = 0, lose_gm_s = 0, lose_gm_every_s = 0;
  infsim_status st;
#define TRY(x)                           \
  do {                                   \
    if ((st = (x)) != INFSIM_OK) return st; \
  } while (0)
  TRY(infsim_config_enum(cfg, "policy.dispatch", "least-loaded", k_dispatch, &dispatch, err));
  TRY(infsim_config_enum(cfg, "policy.planner", "greedy", k_planner, &planner, err));
  TRY(infsim_config_int(cfg, "policy.heartbeat_ms", HEARTBEAT_MS_DEFAULT, 1, 3600000, &heartbeat_ms, err));
  TRY(infsim_config_double(cfg, "policy.heartbeat_band", HEARTBEAT_BAND_PCT_DEFAULT / 100.0, 0.0, 1.0,
                           &p->heartbeat_band, err));
  int64_t owned_ms = 0;
  TRY(infsim_config_int(cfg, "policy.heartbeat_owned_ms", HEARTBEAT_OWNED_MS_DEFAULT, 0, 3600000, &owned_ms, err));
  p->heartbeat_owned_ns = owned_ms * 1000000;
  TRY(infsim_config_double(cfg, "policy.reserve_frac", 0.05, 0.0, 0.9, &p->reserve_frac, err));
  TRY(infsim_config_bool(cfg, "policy.own_work_first", true, &p->own_first, err));
  TRY(infsim_config_int(cfg, "policy.borrow_ahead_blocks", 32, 0, 1 << 20, &p->borrow_ahead_blocks, err));
  TRY(infsim_config_enum(cfg, "policy.when_short", "wait", k_short, &when_short, err));
  TRY(infsim_config_int(cfg, "policy.timeout_ms", 10, 1, 3600000, &timeout_ms, err));
  TRY(infsim_config_int(cfg, "policy.max_retries", 3, 0, 100, &retries, err));
  TRY(infsim_config_double(cfg, "policy.move_GBps", 25.0, 0.001, 1e6, &move_GBps, err));
  int64_t probe_max = 0;
  TRY(infsim_config_int(cfg, "policy.probe_backoff_max", 64, 1, 1 << 20, &probe_max, err));
  p->probe_backoff_max = (int32_t)probe_max;
  TRY(infsim_config_bool(cfg, "policy.dgfm", true, &p->dgfm, err));
  TRY(infsim_config_int(cfg, "policy.dgfm_period_ms", 100, 1, 3600000, &dgfm_ms, err));
  TRY(infsim_config_int(cfg, "policy.dgfm_max_moves", 16, 1, DGFM_MOVES_CAP, &p->dgfm_max_moves, err));
  TRY(infsim_config_int(cfg, "policy.dgfm_max_blocks", 4096, 1, INT64_MAX / 2, &p->dgfm_max_blocks, err));
  TRY(infsim_config_double(cfg, "policy.dgfm_recall_headroom", 0.1, 0.0, 1.0, &p->recall_headroom_frac, err));
  TRY(infsim_config_int(cfg, "policy.dgfm_max_piece_blocks", 16, 0, INT64_MAX / 2, &p->dgfm_max_piece_blocks, err));
  TRY(infsim_config_bool(cfg, "policy.overlap", true, &p->overlap, err));
  TRY(infsim_config_enum(cfg, "policy.wire_precision", "fp16", k_wire, &wire, err));
  TRY(infsim_config_enum(cfg, "policy.cpu_tier", "off", k_tier, &tier, err));
  TRY(infsim_config_bool(cfg, "policy.cpu_tier_recall", true, &p->tier_recall, err));
  TRY(infsim_config_int(cfg, "policy.gmanager_node", 0, 0, 1 << 20, &gm_node, err));
  /* The layout keys run/params.c reads too (same defaults): nodes matter
   * to the same-node planner. */
  TRY(infsim_config_int(cfg, "cluster.gpus_per_node", 8, 1, 1024, &p->gpus_per_node, err));
  TRY(infsim_config_int(cfg, "cluster.gpus_per_instance", 1, 1, 4096, &p->gpus_per_instance, err));
  TRY(infsim_config_double(cfg, "faults.message_loss", 0.0, 0.0, 1.0, &p->message_loss, err));
  TRY(infsim_config_double(cfg, "faults.message_delay_prob", 0.0, 0.0, 1.0, &p->message_delay_prob, err));
  TRY(infsim_config_double(cfg, "faults.message_delay_ms", 0.0, 0.0, 3600000.0, &delay_ms, err));
  TRY(infsim_config_double(cfg, "faults.lose_gmanager_at_s", -1.0, -1.0, 1e9, &lose_gm_s, err));
  TRY(infsim_config_int(cfg, "faults.gmanager_restart_ms", 100, 0, 3600000, &restart_ms, err));
  TRY(infsim_config_double(cfg, "faults.lose_gmanager_every_s", 0.0, 0.0, 1e9, &lose_gm_every_s, err));
  int64_t lose = -1, instances = 0;
  double lose_at_s = 0;
  TRY(infsim_config_int(cfg, "faults.lose_instance", -1, -1, INT32_MAX, &lose, err));
  TRY(infsim_config_double(cfg, "faults.lose_instance_at_s", 0.0, 0.0, 1e9, &lose_at_s, err));
  TRY(infsim_config_double(cfg, "faults.lose_instance_every_s", 0.0, 0.0, 1e9, &p->lose_instance_every_s, err));
  TRY(infsim_config_int(cfg, "cluster.instances", 4, 1, 1000000, &instances, err));
#undef TRY
  if (lose >= instances)
    return infsim_config_fail(cfg, "faults.lose_instance", err, "instance %lld does not exist (cluster.instances: %lld)",
                              (long long)lose, (long long)instances);
  if (lose >= 0 && instances < 2)
    return infsim_config_fail(cfg, "faults.lose_instance", err,
                              "losing the only instance leaves nobody to serve its requests");
  if (p->lose_instance_every_s > 0 && instances < 2)
    return infsim_config_fail(cfg, "faults.lose_instance_every_s", err,
                              "losing the only instance leaves nobody to serve its requests");
  p->lose_instance = (int32_t)lose;
  p->lose_instance_at_ns = (int64_t)(lose_at_s * 1e9);
  p->dispatch = dispatch;
  p->planner = planner;
  p->when_short = when_short;
  p->cpu_tier = tier;
  p->wire_bytes_per_value = wire == 0 ? 2 : 4;
  p->max_retries = (int32_t)retries;
  p->gmanager_node = (int32_t)gm_node;
  p->heartbeat_ns = heartbeat_ms * 1000000;
  p->timeout_ns = timeout_ms * 1000000;
  p->dgfm_period_ns = dgfm_ms * 1000000;
  p->move_bytes_per_s = move_GBps * 1e9;
  p->message_delay_ns = (int64_t)(delay_ms * 1e6);
  p->lose_gmanager_at_ns = lose_gm_s < 0 ? -1 : (int64_t)(lose_gm_s * 1e9);
  p->gmanager_restart_ns = restart_ms * 1000000;
  p->lose_gmanager_every_ns = (int64_t)(lose_gm_every_s * 1e9);
  /* A loss while the last one's replacement is still starting would
   * overlap two restarts. */
  if (lose_gm_every_s > 0 && p->lose_gmanager_every_ns <= p->gmanager_restart_ns)
    return infsim_config_fail(cfg, "faults.lose_gmanager_every_s", err,
                              "must exceed faults.gmanager_restart_ms (%lld ms)", (long long)restart_ms);
  return INFSIM_OK;
}

static infsim_policy_layout layout(const void *settings, int64_t instances, int64_t gpus_per_instance) {
  (void)settings;
  return (infsim_policy_layout){instances, gpus_per_instance};
}

/* ---- the transport, with faults ---- */

static void report(infinite *p, int32_t i, int64_t now, bool debts_only, bool collected);
static int64_t report_bytes(const hb_buf *h);

/* m through the faults (faults.message_*): lost, or late. Out of line,
 * as send_borrow_request: the usual message passes without their frames. */
static __attribute__((noinline)) infsim_status send_with_faults(infinite *p, const infsim_msg *m, int64_t now,
                                                                infsim_error *err) {
  if (p->set.message_loss > 0 && gsl_rng_uniform(p->fault_rng) < p->set.message_loss) {
    p->st.messages_lost++;
    return INFSIM_OK;
  }
  int64_t extra = 0;
  if (p->set.message_delay_prob > 0 && gsl_rng_uniform(p->fault_rng) < p->set.message_delay_prob)
    extra = (int64_t)((double)p->set.message_delay_ns * -log1p(-gsl_rng_uniform(p->fault_rng)));
  return p->base.send(p->base.self, m, now + extra, err);
}

static inline infsim_status send_counted(infinite *p, const infsim_msg *m, int64_t now, infsim_error *err) {
  p->st.messages++;
  if (p->fault_rng) return send_with_faults(p, m, now, err);
  return p->base.send(p->base.self, m, now, err);
}

/* A borrow request carries its debtor's report (as a heartbeat would), so
 * the gManager plans from the debtor's own view of its requests: a stale
 * ledger would propose moving KV of requests that have finished. */
static __attribute__((noinline)) infsim_status send_borrow_request(infinite *p, const infsim_msg *msg, int64_t now,
                                                                   infsim_error *err) {
  report(p, msg->src, now, true, false);
  hb_buf *h = &p->hb[msg->src];
  h->carried = true;
  h->carrier_seq = msg->seq;
  h->carrier_attempt = msg->a;
  infsim_msg carrier = *msg;
  carrier.bytes += report_bytes(h);
  return send_counted(p, &carrier, now, err);
}

/* Every message of the policy and the contract leaves through here. */
static infsim_status lossy_send(void *self, const infsim_msg *msg, int64_t now, infsim_error *err) {
  infinite *p = self;
  if (msg->kind == INFSIM_MSG_BORROW_REQUEST && msg->src >= 0 && msg->src < p->instances)
    return send_borrow_request(p, msg, now, err);
  return send_counted(p, msg, now, err);
}

static infsim_status pass_timer(void *self, const infsim_msg *m, int64_t at, infsim_error *err) {
  infinite *p = self;
  return p->base.timer(p->base.self, m, at, err);
}

static bool pass_in_flight(const void *self, const infsim_msg *m, int64_t now) {
  const infinite *p = self;
  return p->base.in_flight != NULL && p->base.in_flight(p->base.self, m, now);
}

static infsim_status pass_abort(void *self, const infsim_msg *m, int64_t now, int64_t *unsent, infsim_error *err) {
  infinite *p = self;
  *unsent = 0;
  return p->base.abort != NULL ? p->base.abort(p->base.self, m, now, unsent, err) : INFSIM_OK;
}

static infsim_status arm(infinite *p, int32_t endpoint, int64_t kind, int64_t at, infsim_error *err) {
  infsim_msg m = {.kind = INFSIM_MSG_TIMER, .src = endpoint, .dst = endpoint, .req = -1, .a = kind};
  return p->base.timer(p->base.self, &m, at, err);
}

static infsim_status send_ctl(infinite *p, infsim_msg_kind kind, int32_t src, int32_t dst, uint32_t seq, int64_t req,
                              int64_t blocks, int64_t bytes, int64_t a, int64_t b, int64_t now, infsim_error *err) {
  infsim_msg m = {.kind = kind, .src = src, .dst = dst, .seq = seq, .req = req, .blocks = blocks, .bytes = bytes,
                  .a = a, .b = b};
  return lossy_send(p, &m, now, err);
}

/* ---- KV moves (the contract's env) ---- */

/* Blocks instance i's own queued work needs to be admitted, with
 * policy.own_work_first (else 0): its swapped requests' KV and its waiting
 * prompts' blocks (less those placed elsewhere already), at most its
 * memory. The walk stops at a waiting prompt larger than its instance
 * less the reserve: that one gathers (the gathering budget counts it) and
 * admission is FCFS, so nothing behind it is admitted first (counting
 * them kept a gatherer elsewhere from the memory the big prompt waited
 * for: tests/test_infinite_random, case seed 390). It stops at the
 * instance's memory too, so a long queue costs what fills one GPU.
 * (docs/distkv.md, "Own work first".) */
static int64_t prompt_blocks(const infinite *p, int64_t req);

static __attribute__((noinline)) int64_t own_demand_walk(const infinite *p, const instance *in);

/* (The check inline, the walk not: an instance's queues are mostly empty
 * when asked, and the walk's frame cost more than the check.) */
static inline int64_t own_demand(const infinite *p, int32_t i) {
  const instance *in = &p->s->inst[i];
  if (!p->set.own_first || (in->swapped.count == 0 && in->waiting.count == 0)) return 0;
  return own_demand_walk(p, in);
}

static int64_t own_demand_walk(const infinite *p, const instance *in) {
  const infsim_sched *s = p->s;
  int64_t cap = s->p.gpu_blocks_per_instance, bt = s->p.block_tokens, d = 0;
  for (int32_t k = 0; k < in->swapped.count && d < cap; k++)
    d += (rs_of(s, deque_at(&in->swapped, k))->kv0 + 1 + bt - 1) / bt;
  if (in->waiting.count == 0 || d >= cap) return d < cap ? d : cap;
  int64_t big = cap - (int64_t)(p->set.reserve_frac * (double)cap); /* big_prompt's bound */
  for (int32_t k = 0; k < in->waiting.count && d < cap; k++) {
    int32_t r = deque_at(&in->waiting, k);
    int64_t blocks = prompt_blocks(p, r);
    /* big_prompt: FCFS, nothing behind it first (its record, another
     * line, read only for a prompt that big) */
    if (blocks > big && s->rec[r].state == INFSIM_REQ_WAITING) break;
    int64_t need = blocks - infsim_kv_blocks(s->kv, r);
    if (need > 0) d += need;
  }
  return d < cap ? d : cap;
}

/* What a creditor may lend from (the contract's reservations): free blocks
 * as one step at a time would show them (sched.h), less what its own
 * queued work needs (own_demand). */
static int64_t env_free(void *self, int32_t instance) {
  infinite *p = self;
  return infsim_sched_free_blocks_now(p->s, instance, p->s->now_ns) - own_demand(p, instance);
}

/* Room for `more` items more in a growable array of n items. The policy's
 * lists are bounded by the requests in flight, so a failure means the
 * machine is out of memory: the item is not added and the failure is
 * pending (hooks such as short_of_blocks cannot return a status; on_message
 * reports it, and a heartbeat timer comes soon). */
static bool room_for_n(infinite *p, void **items, size_t *cap, size_t n, size_t more, size_t item_bytes,
                       size_t first) {
  if (n + more <= *cap || infsim_grow(items, cap, n + more, item_bytes, first))
    return true; /* no call while there is room */
  if (p->pending == INFSIM_OK) p->pending = infsim_fail(&p->pending_err, INFSIM_ENOMEM, "out of memory");
  return false;
}

static bool room_for_one(infinite *p, void **items, size_t *cap, size_t n, size_t item_bytes, size_t first) {
  return room_for_n(p, items, cap, n, 1, item_bytes, first);
}

static void note_lent(infinite *p, int32_t holder, int64_t req) {
  req_list *l = &p->lent[holder];
  for (size_t k = 0; k < l->n; k++)
    if (l->r[k].req == req) return;
  if (room_for_one(p, (void **)&l->r, &l->cap, l->n, sizeof *l->r, 16)) l->r[l->n++] = (lent_req){req, 0, -1, -1};
  l->settled = false;
}

static int32_t gatherer_slot(const infinite *p, int64_t req);

static int64_t env_commit(void *self, const infsim_gm_move *m, int64_t now) {
  infinite *p = self;
  infsim_sched *s = p->s;
  infsim_request_record *rec = &s->rec[m->req];
  int32_t owner = infsim_kv_owner(s->kv, m->req);
  int64_t room = infsim_sched_free_blocks_now(s, m->to, now);
  int64_t n = m->blocks < room ? m->blocks : room;
  if (n <= 0 || owner < 0) return 0;
  bool new_holder = m->to != owner && infsim_kv_blocks_at(s->kv, m->req, m->to) == 0;
  if (m->fresh) {
    /* New blocks only for a prompt still waiting for admission. */
    if (rec->state != INFSIM_REQ_WAITING || m->from != owner || gatherer_slot(p, m->req) < 0) return 0;
    infsim_status st = infsim_kv_alloc(s->kv, m->req, m->to, n, NULL);
    assert(st == INFSIM_OK);
    (void)st;
  } else {
    if (rec->state != INFSIM_REQ_RUNNING && rec->state != INFSIM_REQ_WAITING) return 0;
    n = infsim_kv_move_tail(p->s->kv, m->req, m->from, m->to, n);
    if (n == 0) return 0;
  }
  /* The instances whose KV changed see it from their next decode step on. */
  infsim_sched_touch(s, m->to, now);
  if (m->from >= 0 && m->from != m->to) infsim_sched_touch(s, m->from, now);
  if (owner != m->to && owner != m->from) infsim_sched_touch(s, owner, now);
  if (m->to != owner) note_lent(p, m->to, m->req);
  p->dgfm_shift = 0;
  if (new_holder) rec->instances_touched++;
  return n;
}

static void wound_youngest(infinite *p, int64_t oldest);
static int32_t gatherer_slot(const infinite *p, int64_t req);
static bool undo_gathering_at(infinite *p, int32_t holder);

/* Back off, then let admission (and with it a new borrow) try again: an
 * idle instance has no batch end to wait for. The back-off doubles with
 * each failure in a row, from one timeout up to the larger of 100 timeouts
 * and 10 heartbeats (1 s by default): under a lasting shortage, retrying
 * faster than the gManager's view changes only floods the network with
 * borrows that fail the same way. */
static int64_t back_off_cap(const infinite *p) {
  return 100 * p->set.timeout_ns > 10 * p->set.heartbeat_ns ? 100 * p->set.timeout_ns : 10 * p->set.heartbeat_ns;
}

/* The k-th back-off in a row ends at *until; a kick timer is armed then. */
static void back_off(infinite *p, int32_t instance, int32_t *k, int64_t *until, int64_t now) {
  int64_t cap = back_off_cap(p);
  int64_t wait = p->set.timeout_ns << (*k < 20 ? *k : 20);
  (*k)++;
  *until = now + (wait < cap ? wait : cap);
  p->pending = arm(p, instance, TIMER_KICK, *until, &p->pending_err);
}

/* A borrow (or a move to host memory) for req on debtor ended. A
 * gathering prompt's failures back off on their own clock, so that the
 * successes of its instance's other borrows do not make it ask again at
 * every batch end while the cluster is full (nor its failures hold back
 * their borrows). */
static void borrow_ended(void *self, int32_t debtor, int64_t req, bool ok, int64_t now) {
  infinite *p = self;
  if (p->pending != INFSIM_OK) return;
  /* A gatherer stays listed after its admission (until the next big
   * prompt's turn sweeps it): once decoding, its borrows at a block
   * boundary are an ordinary request's. Taking its failures for a
   * gatherer's set no retry back-off and kicked nobody: stalled at a
   * boundary it asked again at every gathering back-off, never preempted,
   * and waited for ever when the cluster stayed full. */
  bool gathering = gatherer_slot(p, req) >= 0 && p->s->rec[req].state == INFSIM_REQ_WAITING;
  if (!ok && gathering) {
    back_off(p, debtor, &p->gather_waits[debtor], &p->gather_after_ns[debtor], now);
    wound_youngest(p, req);
    return;
  }
  if (!ok) {
    /* Own work first: no creditor could take the guests' blocks, so a
     * prompt still gathering gives back what it holds here (no KV yet):
     * this instance's own work would otherwise wait for the gatherer's
     * admission and end, and the gatherer for memory the others keep
     * for their own queues. It gathers again when the budget allows. */
    if (p->set.own_first && undo_gathering_at(p, debtor) && p->pending == INFSIM_OK) {
      p->pending = instance_kick(p->s, &p->s->inst[debtor], &p->pending_err);
      return;
    }
    back_off(p, debtor, &p->failures[debtor], &p->retry_after_ns[debtor], now);
    /* A request stalled at a block boundary is preempted now (vLLM). */
    if (p->pending == INFSIM_OK && p->s->inst[debtor].stalled.count > 0)
      p->pending = instance_kick(p->s, &p->s->inst[debtor], &p->pending_err);
    return;
  }
  /* Room arrived: admission may go on. */
  if (gathering)
    p->gather_waits[debtor] = 0;
  else
    p->failures[debtor] = 0;
  p->pending = instance_kick(p->s, &p->s->inst[debtor], &p->pending_err);
}

/* A DGFM move ended at its source: blocks left it, so admission there
 * may go on; a failed one changes nothing (the next pass plans anew). */
static void env_move_done(void *self, int32_t source, int64_t req, bool ok, int64_t now) {
  (void)req;
  (void)now;
  infinite *p = self;
  /* A request stalled at a block boundary waited on this move (it was in
   * flight for its request): it looks again either way. */
  bool stalled = p->s->inst[source].stalled.count > 0;
  if ((ok || stalled) && p->pending == INFSIM_OK)
    p->pending = instance_kick(p->s, &p->s->inst[source], &p->pending_err);
}

/* A borrow, a planned move or a move to host memory was cancelled, its
 * request's KV having ended: the blocks it was to free at the debtor are
 * free already, so a request there waiting on it looks again for room.
 * Not at once: this comes from inside the scheduler's own step
 * (request_ended, kv_dropped): a kick timer now. */
static void env_cancelled(void *self, int32_t debtor, int64_t req, int64_t now) {
  (void)req;
  infinite *p = self;
  if (p->pending == INFSIM_OK) p->pending = arm(p, debtor, TIMER_KICK, now, &p->pending_err);
}

/* req's KV ended: every move of it on the way is cancelled, to a GPU
 * creditor (contract.h) or to and from host memory (cpu_tier.h). */
static void cancel_moves_of(infinite *p, int64_t req, int64_t now) {
  if (p->pending == INFSIM_OK && infsim_contract_borrows(p->contract) > 0)
    p->pending = infsim_contract_cancel(p->contract, req, now, &p->pending_err);
  if (p->tier && p->pending == INFSIM_OK) p->pending = infsim_cpu_tier_cancel(p->tier, req, now, &p->pending_err);
}

/* The request ended (finished or rejected): its moves on the way are
 * cancelled (most requests end with no borrow on record at all, and no
 * host memory: the call is skipped). */
static void request_ended(void *self, int32_t instance, int64_t req, int64_t now) {
  (void)instance;
  infinite *p = self;
  infsim_gm_set_ended(p->gm, req); /* its next report says it is gone */
  if (infsim_contract_borrows(p->contract) > 0 || p->tier) cancel_moves_of(p, req, now);
}

/* req ends when the batch starting now does: its ledger record, read by
 * request_ended then, is fetched now (the other instances' events
 * handled until then hide the wait). */
static void request_ending(const void *self, int64_t req) { infsim_gm_prefetch(((const infinite *)self)->gm, req); }

/* The request was preempted by recompute: its KV is gone (its prefill
 * starts again), so moving it is pointless: its moves are cancelled as
 * for a request that ended. A move landing later would find its blocks
 * freed, or take the blocks of its new prefill, were it admitted again
 * meanwhile. */
static void kv_dropped(void *self, int32_t instance, int64_t req, int64_t now) {
  (void)instance;
  infsim_gm_set_live(((infinite *)self)->gm, req, false);
  cancel_moves_of(self, req, now);
}

/* Table positions, from the head, of req's blocks that hold KV now: all
 * of a decoding request's (a block is taken at the boundary where its
 * first token is written) or a stalled one's; a prefilling one's up to
 * its chunks done; none of a waiting prompt's (blocks gathered for it) or
 * of one that left the GPUs. */
static int64_t kv_positions(const infinite *p, int64_t req) {
  const infsim_sched *s = p->s;
  if (s->rec[req].state != INFSIM_REQ_RUNNING) return 0; /* a finished one's state may be gone */
  const req_sched *r = rs_of(s, req);
  if (r->decoding || r->stalled) return infsim_kv_blocks(s->kv, req);
  return (r->prefilled + s->p.block_tokens - 1) / s->p.block_tokens;
}

/* The bytes of KV moving m now carries (contract.h: env.move_bytes): the
 * blocks that would leave m->from are its newest there, as
 * infsim_kv_move_tail takes them (at most m->blocks); only those that hold
 * KV cost a copy. Blocks that left m->from meanwhile (freed, or moved
 * already) move nothing; a prompt's blocks not prefilled yet are
 * allocated at the destination, their KV written there by its prefill
 * (priced with the prefill: docs/distkv.md, "Prefill"). */
static int64_t env_move_bytes(void *self, const infsim_gm_move *m, int64_t now) {
  (void)now;
  const infinite *p = self;
  const infsim_kv *kv = p->s->kv;
  int64_t written = kv_positions(p, m->req);
  if (written == 0) return 0;
  int64_t n_runs = 0, pos = infsim_kv_blocks(kv, m->req), left = m->blocks, with_kv = 0;
  const infsim_kv_run *runs = infsim_kv_runs(kv, m->req, &n_runs);
  for (int64_t k = n_runs; k-- > 0 && left > 0;) {
    int64_t hi = pos;
    pos -= runs[k].blocks;
    if (infsim_kv_holder_of(kv, runs[k].first) != m->from) continue;
    int64_t take = runs[k].blocks < left ? runs[k].blocks : left, lo = hi - take;
    left -= take;
    if (lo < written) with_kv += (hi < written ? hi : written) - lo;
  }
  return with_kv * p->s->p.block_bytes;
}

/* No GPU creditor: host memory, last (cpu_tier.h), else the back-off. */
static void env_borrow_done(void *self, int32_t debtor, int64_t req, bool ok, int64_t now) {
  infinite *p = self;
  if (!ok && p->tier && p->pending == INFSIM_OK) {
    bool started = false;
    bool fresh_ok = gatherer_slot(p, req) >= 0 && p->s->rec[req].state == INFSIM_REQ_WAITING;
    p->pending = infsim_cpu_tier_fallback(p->tier, debtor, req, fresh_ok, now, &started, &p->pending_err);
    if (started || p->pending != INFSIM_OK) return;
  }
  borrow_ended(self, debtor, req, ok, now);
}

/* A fresh move to host memory may still land for req: it gathers. */
static bool tier_may_gather(void *self, int64_t req) { return gatherer_slot((infinite *)self, req) >= 0; }

/* ---- heartbeats ---- */

/* Adds (req, holder)'s entry to h if it differs from the gManager's ledger
 * (ledger_blocks, read by the caller; every non-zero entry for a full
 * report); true when added. Inline: a report calls it for each running,
 * owned and lent request, and the call cost about as much as the check. */
static inline bool hb_add_vs(infinite *p, hb_buf *h, int32_t holder, int64_t req, int32_t owner, int64_t blocks,
                             int64_t ledger_blocks) {
  if (!h->full && ledger_blocks == blocks) return false;
  if (h->full && blocks == 0) return false;
  if (!room_for_one(p, (void **)&h->e, &h->cap, h->n, sizeof *h->e, 32)) return false;
  h->e[h->n++] = (infsim_gm_entry){req, owner, holder, blocks};
  return true;
}

/* hb_add_vs, the ledger read here. */
static inline bool hb_add(infinite *p, hb_buf *h, int32_t holder, int64_t req, int32_t owner, int64_t blocks) {
  return hb_add_vs(p, h, holder, req, owner, blocks, h->full ? 0 : infsim_gm_held_by(p->gm, req, holder));
}

/* Blocks instance i holds of req, one of the requests of others it may
 * hold (infsim_sched_blocks_now, asked of the KV manager directly when
 * another instance owns req: only an owner's blocks grow within a run). */
static int64_t lent_blocks_now(infinite *p, int64_t req, int32_t owner, int32_t i, int64_t now) {
  return owner != i ? infsim_kv_blocks_at(p->s->kv, req, i) : infsim_sched_blocks_now(p->s, req, i, now);
}

static void hb_gone(infinite *p, hb_buf *h, int64_t req) {
  if (room_for_one(p, (void **)&h->gone, &h->cap_gone, h->n_gone, sizeof *h->gone, 16)) h->gone[h->n_gone++] = req;
}

/* True when the gManager's ledger has req's KV partly away from its owner. */
static bool gm_split(const infinite *p, int64_t req) { return infsim_gm_remote_blocks(p->gm, req) > 0; }

/* Instance i's free memory as lendable: less what it promised others and
 * what its own queued work needs (own_demand), so the gManager neither
 * proposes it nor counts it in the gathering budget. */
static int64_t hb_free_blocks(infinite *p, int32_t i, int64_t now) {
  return infsim_sched_free_blocks_now(p->s, i, now) - infsim_contract_reserved(p->contract, i) - own_demand(p, i);
}

/* Request r's slot in instance in's running list, -1 when it does not run
 * there. The list holds a request exactly while it runs there, so the
 * slot found in its scheduling state (which its blocks are read from
 * next) says it, and its record, another line, is not read. */
static inline int32_t running_slot(const infsim_sched *s, const instance *in, int64_t r) {
  if (sched_forgotten(s, r)) return -1;
  int32_t slot = rs_of(s, r)->run_slot;
  slot = slot >= 0 && slot < in->running_count && in->running[slot] == r ? slot : -1;
  assert(slot < 0 || (s->rec[r].state == INFSIM_REQ_RUNNING && s->rec[r].instance == in->id));
  return slot;
}

/* Asks for the lines a report's walk reads of running request r: its KV
 * table, its scheduling state and (ledger) its ledger record. */
static inline void prefetch_running(const infinite *p, int64_t r, bool ledger) {
  infsim_kv_prefetch(p->s->kv, r);
  __builtin_prefetch(rs_of(p->s, r));
  if (ledger) infsim_gm_prefetch(p->gm, r);
}

/* The running slots at instance `in` of the requests listed in a (the
 * KV manager's split requests of its instance) and b (the ledger's; it
 * lists most of a's too, passed over as split in the KV manager's);
 * either may list one that does not run there. Into p->slots, ascending
 * and distinct; how many. */
static size_t running_slots(infinite *p, const instance *in, const int64_t *a, size_t na, const int64_t *b,
                            size_t nb) {
  const infsim_sched *s = p->s;
  if (p->slots_cap < na + nb) {
    int32_t *grown = realloc(p->slots, (na + nb) * sizeof *grown);
    if (!grown) {
      if (p->pending == INFSIM_OK) p->pending = infsim_fail(&p->pending_err, INFSIM_ENOMEM, "out of memory");
      return 0;
    }
    p->slots = grown;
    p->slots_cap = na + nb;
  }
  size_t n = 0;
  for (size_t k = 0; k < na + nb; k++) {
    int64_t r = k < na ? a[k] : b[k - na];
    if (k >= na && infsim_kv_foreign_blocks(s->kv, r) > 0) continue; /* listed in a */
    int32_t slot = running_slot(s, in, r);
    if (slot < 0) continue;
    /* Insertion, dropping a repeat: the lists are short, so the larger
     * slots move up as the search passes them (a repeat, rare, moves
     * them back) rather than by a call. */
    size_t j = n;
    while (j > 0 && p->slots[j - 1] > slot) {
      p->slots[j] = p->slots[j - 1];
      j--;
    }
    if (j > 0 && p->slots[j - 1] == slot) {
      for (; j < n; j++) p->slots[j] = p->slots[j + 1];
      continue;
    }
    p->slots[j] = slot;
    n++;
  }
  return n;
}

/* Owned request r of instance i, as a report sees it: nothing while it
 * runs; else gone when it holds no GPU blocks (swapped out, finished,
 * dropped), or its own entry when it differs (a prompt gathering).
 * *debt is set when a debt changed. */
static inline void owned_stopped(infinite *p, hb_buf *h, int32_t i, int64_t r, int64_t now, bool *debt) {
  const infsim_sched *s = p->s;
  int32_t state = s->rec[r].state;
  if (state == INFSIM_REQ_RUNNING) return;
  if (state == INFSIM_REQ_SWAPPED || infsim_kv_blocks(s->kv, r) == 0) {
    hb_gone(p, h, r); /* cheap, and keeps the planner off finished requests */
    *debt |= gm_split(p, r);
  } else if (hb_add(p, h, i, r, i, infsim_sched_blocks_now(p->s, r, i, now))) {
    *debt = true;
  }
}

/* True when instance i's lent requests are as the walk that settled
 * them found them (req_list): at once while neither count moved; when
 * one did (mostly for other requests: another guest here), each
 * request's blocks are read again on that side only (the KV manager's, or
 * the ledger's), and the list stays settled, as of the new count, when
 * none changed. */
static bool lent_settled(infinite *p, req_list *l, int32_t i) {
  if (!l->settled) return false;
  const infsim_kv *kv = p->s->kv;
  uint64_t kv_gen = infsim_kv_guest_generation(kv, i);
  if (kv_gen != l->kv_gen) {
    for (size_t k = 0; k < l->n; k++) {
      const lent_req *e = &l->r[k];
      if (infsim_kv_owner(kv, e->req) != e->owner || infsim_kv_blocks_at(kv, e->req, i) != e->blocks)
        return l->settled = false;
    }
    l->kv_gen = kv_gen;
  }
  uint64_t guest_gen = infsim_gm_guest_generation(p->gm, i);
  if (guest_gen != l->guest_gen) {
    for (size_t k = 0; k < l->n; k++) {
      lent_req *e = &l->r[k];
      if (infsim_gm_owner(p->gm, e->req) == i || infsim_gm_held_by_hint(p->gm, e->req, i, &e->gm_k) != e->blocks)
        return l->settled = false;
    }
    l->guest_gen = guest_gen;
  }
  return true;
}

/* Instance i's report as of now into h; true when a debt changed: an
 * entry of a request split in the truth or in the ledger, or one it holds
 * for another owner (docs/distkv.md, "gManager and heartbeats"). With
 * debts_only, entries of requests wholly on their owner are left out
 * (a tick that finds the instance quiet need not price them: reading a
 * request's blocks inside a run of decode steps costs a search). Without
 * debts_only the collection goes out whatever it finds (a report): its
 * running requests are not told apart, and the answer does not count
 * them. */
static bool hb_collect(infinite *p, int32_t i, int64_t now, bool debts_only, hb_buf *h) {
  infsim_sched *s = p->s;
  bool debt = false;
  h->n = h->n_gone = 0;
  /* A tick (send_heartbeat) has just read its free memory, as of now. */
  if (!h->free_known) h->free_blocks = hb_free_blocks(p, i, now);
  h->free_known = false;
  h->snapshot_ns = now;
  const instance *in = &s->inst[i];
  /* With debts_only, only split running requests count: split in the
   * truth (their blocks away from i: the KV manager's split requests of
   * i) or in the ledger (its split requests owned by i; a running
   * request's owner is where it runs). Those lists hold a few requests
   * where i runs tens: their running ones are walked, in the order of
   * the running list (their slots, sorted), as a walk of it would find
   * them. */
  if (debts_only) {
    int64_t kv_n = 0;
    const int64_t *kv_split = infsim_kv_split_requests(s->kv, i, &kv_n);
    const int64_t *gm_list;
    size_t gm_n = infsim_gm_split_owned_requests(p->gm, i, &gm_list);
    size_t ns = running_slots(p, in, kv_split, (size_t)kv_n, gm_list, gm_n);
#ifdef INFSIM_CHECK_INVARIANTS
    /* The slots are those a walk of the running list keeps. */
    size_t kept = 0;
    for (int32_t k = 0; k < in->running_count; k++) {
      int64_t r = in->running[k];
      if (infsim_kv_foreign_blocks(s->kv, r) == 0 && !gm_split(p, r)) continue;
      assert(kept < ns && p->slots[kept] == k);
      kept++;
    }
    assert(kept == ns);
#endif
    int64_t done = -2; /* the executor's steps done, looked up at the first request that needs them */
    for (size_t k = 0; k < ns; k++) {
      int64_t r = in->running[p->slots[k]];
      int64_t b = sched_blocks_now_lazy(s, in, r, now, &done);
      assert(b == infsim_sched_blocks_now(s, r, i, now));
      if (hb_add(p, h, i, r, i, b)) debt = true;
    }
  } else {
    /* The executor's steps done are looked up once for all running
     * requests (not as above: skipping that one call for a request would
     * read its scheduling state, a cache line each, 5.8M instructions
     * more on bench/distkv_speed's hour). Each request's lines (its KV
     * table, its scheduling state, its ledger record) are asked for
     * RUNNING_AHEAD places ahead, the first ones before that lookup,
     * which then hides their wait. */
    int32_t n = in->running_count, asked = 0;
    for (; asked < n && asked < RUNNING_AHEAD; asked++) prefetch_running(p, in->running[asked], !h->full);
    int64_t done = n > 0 ? sched_steps_done_now(s, in, now) : -1;
    for (int32_t k = 0; k < n; k++) {
      int64_t r = in->running[k];
      if (asked < n) prefetch_running(p, in->running[asked++], !h->full);
      int64_t b = sched_blocks_now_done(s, in, r, done);
      assert(b == infsim_sched_blocks_now(s, r, i, now));
      hb_add(p, h, i, r, i, b);
    }
  }
  /* Requests the gManager has here that stopped running (finished,
   * preempted, swapped out): the owner says they are gone (no GPU blocks
   * anywhere: the gManager drops every entry, however rarely their
   * holders report), or, for a prompt gathering blocks, reports its own.
   * Those running here when the gManager took them in (apply_report marks
   * them live in the ledger) are skipped: they still run, or ended (request_ended and
   * kv_dropped clear the mark) or were swapped out (its swapped queue). */
  /* Ended requests (request_ended marks them in the ledger) are finished
   * or rejected: no KV anywhere, so each is gone, a debt when the ledger
   * has it split: the ledger's count of those split settles the answer,
   * and they join the gone list as they are (after the others, as a walk
   * of the not-live list would find them). Only the others are walked
   * (the not-live list's first ones); mostly finished requests wait there
   * for their owner's next report, tens of ticks of a quiet instance. */
  if (infsim_gm_ended_split(p->gm, i) > 0) debt = true;
  const int64_t *owned;
  size_t no = infsim_gm_owned_pending(p->gm, i, &owned);
#ifdef INFSIM_CHECK_INVARIANTS
  {
    const int64_t *all;
    size_t na = infsim_gm_owned(p->gm, i, &all);
    for (size_t k = 0; k < na; k++) {
      int32_t state = s->rec[all[k]].state;
      assert(!infsim_gm_live(p->gm, all[k]) || (s->rec[all[k]].instance == i && (state == INFSIM_REQ_RUNNING ||
                                                                                  state == INFSIM_REQ_SWAPPED)));
      assert(!infsim_gm_ended(p->gm, all[k]) || ((state == INFSIM_REQ_FINISHED || state == INFSIM_REQ_REJECTED) &&
                                                 infsim_kv_blocks(s->kv, all[k]) == 0));
    }
  }
#endif
  for (size_t k = 0; k < no; k++) owned_stopped(p, h, i, owned[k], now, &debt);
  const int64_t *ended;
  size_t ne = infsim_gm_owned_ended(p->gm, i, &ended);
  if (ne > 0 && room_for_n(p, (void **)&h->gone, &h->cap_gone, h->n_gone, ne, sizeof *h->gone, 16)) {
    memcpy(h->gone + h->n_gone, ended, ne * sizeof *ended);
    h->n_gone += ne;
  }
  for (int32_t k = 0; k < in->swapped.count; k++) {
    int64_t r = deque_at(&in->swapped, k);
    if (infsim_gm_owner(p->gm, r) == i && infsim_gm_live(p->gm, r)) owned_stopped(p, h, i, r, now, &debt);
  }
  req_list *l = &p->lent[i];
  if (!h->full && lent_settled(p, l, i)) {
#ifdef INFSIM_CHECK_INVARIANTS
    /* A walk would find each as the settling one did, as the ledger has it. */
    for (size_t k = 0; k < l->n; k++) {
      int64_t r = l->r[k].req;
      assert(infsim_kv_owner(s->kv, r) == l->r[k].owner && infsim_gm_owner(p->gm, r) != i);
      assert(lent_blocks_now(p, r, l->r[k].owner, i, now) == l->r[k].blocks && l->r[k].blocks > 0);
      assert(infsim_gm_held_by(p->gm, r, i) == l->r[k].blocks);
    }
#endif
    return debt;
  }
  /* Whether this walk settles the list (req_list). */
  bool settles = !h->full;
  l->settled = false;
  for (size_t k = 0; k < l->n; k++) {
    int64_t r = l->r[k].req;
    if (k + 2 * LEDGER_AHEAD < l->n) {
      infsim_kv_prefetch(s->kv, l->r[k + 2 * LEDGER_AHEAD].req);
      if (!h->full) infsim_gm_prefetch(p->gm, l->r[k + 2 * LEDGER_AHEAD].req);
    }
    if (k + LEDGER_AHEAD < l->n) {
      infsim_kv_prefetch_holdings(s->kv, l->r[k + LEDGER_AHEAD].req);
      if (!h->full) infsim_gm_prefetch_entries(p->gm, l->r[k + LEDGER_AHEAD].req, i);
    }
    int32_t owner = infsim_kv_owner(s->kv, r);
    int64_t ledger = h->full ? 0 : infsim_gm_held_by_hint(p->gm, r, i, &l->r[k].gm_k);
    int64_t b = lent_blocks_now(p, r, owner, i, now);
    l->r[k].blocks = b;
    bool differs = hb_add_vs(p, h, i, r, owner >= 0 ? owner : i, b, ledger);
    debt |= differs;
    settles = settles && !differs && b > 0 && owner >= 0 && owner != i && infsim_gm_owner(p->gm, r) != i;
    if (settles) l->r[k].owner = owner;
  }
  if (settles) {
    l->settled = true;
    l->guest_gen = infsim_gm_guest_generation(p->gm, i);
    l->kv_gen = infsim_kv_guest_generation(s->kv, i);
  }
  return debt;
}

/* Instance i's report as of now becomes its report in flight (a new
 * generation; the buffers swap): every entry that changed, or with
 * debts_only its debts, free memory and the requests that left the GPUs
 * (a borrow request's report: what the planner must not get wrong). With
 * collected, p->hb_next holds i's collection of its debts as of now
 * (hb_collect with debts_only, its free memory known): a report of debts
 * only sends it as it is. */
static void report(infinite *p, int32_t i, int64_t now, bool debts_only, bool collected) {
  hb_buf *h = &p->hb[i], *t = &p->hb_next;
  t->full = h->full_next;
  /* Entries of requests wholly on their owner change at nearly every
   * block boundary and steer nothing but the planner's pick of a debtor's
   * longest request: a report walks the running requests for them at most
   * every policy.heartbeat_owned_ms (0: every report), carrying the debts,
   * the free memory and the requests gone in between (docs/distkv.md,
   * "gManager and heartbeats"). */
  if (!debts_only && !t->full && p->set.heartbeat_owned_ns > 0) {
    if (now - p->walked_ns[i] < p->set.heartbeat_owned_ns) debts_only = true;
    else p->walked_ns[i] = now;
  }
  if (collected && debts_only && !t->full) t->free_known = false; /* as the collection leaves it */
  else hb_collect(p, i, now, debts_only && !t->full, t);
  /* The lent entries reported at 0 leave the list: the report goes now.
   * The collection has just read each one's blocks, as of this instant. */
  req_list *l = &p->lent[i];
  for (size_t k = 0; k < l->n;)
    if (l->r[k].blocks == 0) {
      assert(lent_blocks_now(p, l->r[k].req, infsim_kv_owner(p->s->kv, l->r[k].req), i, now) == 0);
      l->r[k] = l->r[--l->n];
      l->settled = false; /* (never settled with such a request) */
    } else {
      k++;
    }
  hb_buf sent = *t;
  sent.gen = h->gen + 1;
  sent.full_next = h->full_next;
  sent.carried = false;
  t->e = h->e;
  t->cap = h->cap;
  t->gone = h->gone;
  t->cap_gone = h->cap_gone;
  *h = sent;
}

static int64_t report_bytes(const hb_buf *h) { return HEARTBEAT_ENTRY_BYTES * (int64_t)(h->n + h->n_gone); }

/* True when free memory free_blocks is within policy.heartbeat_band of
 * the gManager's last_free. */
static bool in_band(const infinite *p, int64_t free_blocks, int64_t last_free) {
  int64_t moved = free_blocks > last_free ? free_blocks - last_free : last_free - free_blocks;
  return (double)moved <= p->band_blocks;
}

/* A heartbeat tick of instance i. A quiet instance (no debt changed, its
 * free memory within policy.heartbeat_band of what the gManager has)
 * sends nothing and doubles its period, up to 2^QUIET_SHIFT_MAX; one that
 * sends halves it (down to one period). Entries
 * of requests wholly on their owner ride along with the next report that
 * goes (a heartbeat, or a borrow request: lossy_send). */
static infsim_status send_heartbeat(infinite *p, int32_t i, int64_t now, infsim_error *err) {
  hb_buf *t = &p->hb_next;
  t->full = p->hb[i].full_next;
  int64_t last_free = infsim_gm_free_blocks(p->gm, i);
  /* Only a tick whose free memory stayed in the band, and that owes no
   * full report, can be quiet: only it needs to look for changed debts
   * (a tick that sends collects everything, below). The free memory's
   * bounds over the current batch settle the band most of the time (|x -
   * last_free| is largest at an end of the range); only a tick that sends,
   * or one they leave open, asks for the exact count. */
  int64_t lo = 0, hi = 0, free_blocks = 0;
  bool free_known = false;
  /* hb_free_blocks less the scheduler's part: the tick changes neither (read once). */
  int64_t adjust = 0;
  if (!t->full) {
    infsim_sched_free_blocks_bounds(p->s, i, &lo, &hi);
    adjust = infsim_contract_reserved(p->contract, i) + own_demand(p, i);
    lo -= adjust;
    hi -= adjust;
    free_known = lo == hi;
    free_blocks = hi;
#ifdef INFSIM_CHECK_INVARIANTS
    int64_t exact = hb_free_blocks(p, i, now);
    assert(lo <= exact && exact <= hi);
#endif
  }
  bool quiet = !t->full && in_band(p, lo, last_free) && in_band(p, hi, last_free);
  if (!t->full && !quiet && !free_known) {
    free_blocks = infsim_sched_free_blocks_now(p->s, i, now) - adjust;
    assert(free_blocks == hb_free_blocks(p, i, now));
    free_known = true;
    quiet = in_band(p, free_blocks, last_free);
  }
  /* A quiet tick's test is the collection of its debts: a tick that then
   * sends a report of debts only (most do, policy.heartbeat_owned_ms)
   * sends that collection. (A pass for the answer alone, stopping at the
   * first debt, and a second collection for the report cost the hour
   * 2.3M instructions more: a quarter of the tests find a debt.) */
  bool collected = false;
  if (quiet) {
    t->free_known = true; /* unread unless the tick sends: then it is set again below */
    t->free_blocks = free_blocks;
    collected = hb_collect(p, i, now, true, t);
    quiet = !collected;
  }
  if (quiet) {
    if (p->hb_shift[i] < QUIET_SHIFT_MAX) p->hb_shift[i]++;
    return INFSIM_OK;
  }
  if (p->hb_shift[i] > 0) p->hb_shift[i]--; /* halves: a busy instance settles near its pace of change */
  if (!free_known)
    free_blocks = t->full ? hb_free_blocks(p, i, now) : infsim_sched_free_blocks_now(p->s, i, now) - adjust;
  assert(free_blocks == hb_free_blocks(p, i, now));
  t->free_known = true;
  t->free_blocks = free_blocks;
  report(p, i, now, false, collected);
  const hb_buf *h = &p->hb[i];
  p->st.heartbeats++;
  return send_ctl(p, INFSIM_MSG_HEARTBEAT, i, INFSIM_ENDPOINT_GMANAGER, h->gen, -1, (int64_t)(h->n + h->n_gone),
                  HEARTBEAT_BYTES + report_bytes(h), 0, 0, now, err);
}

/* A creditor refused a reservation the gManager proposed from its view:
 * the view is wrong, so the creditor reports at once (else the gManager
 * would propose the same blocks until its next heartbeat, which may be
 * periods away when it was quiet). */
static void env_refused(void *self, int32_t creditor, int64_t now) {
  infinite *p = self;
  if (p->pending != INFSIM_OK) return;
  p->hb_shift[creditor] = 0;
  report(p, creditor, now, true, false);
  const hb_buf *h = &p->hb[creditor];
  p->st.heartbeats++;
  p->pending = send_ctl(p, INFSIM_MSG_HEARTBEAT, creditor, INFSIM_ENDPOINT_GMANAGER, h->gen, -1,
                        (int64_t)(h->n + h->n_gone), HEARTBEAT_BYTES + report_bytes(h), 0, 0, now, &p->pending_err);
}

/* The gManager takes instance `from`'s report in flight. */
static void apply_report(infinite *p, int32_t from) {
  if (p->gm_down) return;
  hb_buf *h = &p->hb[from];
  for (size_t k = 0; k < h->n_gone; k++) {
    if (k + LEDGER_AHEAD < h->n_gone) infsim_gm_prefetch(p->gm, h->gone[k + LEDGER_AHEAD]);
    infsim_gm_forget(p->gm, h->gone[k], h->snapshot_ns);
  }
  infsim_gm_heartbeat(p->gm, from, h->snapshot_ns, h->free_blocks, h->e, h->n, h->full);
  if (h->full) h->full_next = false;
  /* Its own requests new to the ledger that run there are marked live
   * (hb_collect's walk of the owned requests passes over them). */
  const infsim_sched *s = p->s;
  const int64_t *fresh;
  size_t nf = infsim_gm_new_owned(p->gm, &fresh);
  for (size_t k = 0; k < nf; k++) {
    int64_t r = fresh[k];
    if (infsim_gm_owner(p->gm, r) == from && running_slot(s, &s->inst[from], r) >= 0)
      infsim_gm_set_live(p->gm, r, true);
  }
}

static void take_heartbeat(infinite *p, const infsim_msg *m) {
  if (m->seq == p->hb[m->src].gen) apply_report(p, m->src); /* else a newer one is on its way */
}

/* A borrow request reached the gManager: the report it carries first. */
static void take_carried_report(infinite *p, const infsim_msg *m) {
  const hb_buf *h = &p->hb[m->src];
  if (h->carried && h->carrier_seq == m->seq && h->carrier_attempt == m->a) apply_report(p, m->src);
}

/* ---- DGFM ---- */

static infsim_status run_dgfm(infinite *p, int64_t now, infsim_error *err) {
  /* A pass plans from the view its last moves will change: it waits until
   * they have landed (or failed), so that passes never pile moves onto the
   * same links and blocks. */
  if (infsim_contract_planned_in_flight(p->contract) > 0) return INFSIM_OK;
  infsim_dgfm_limits lim = {
      .max_moves = p->set.dgfm_max_moves,
      .max_blocks = p->set.dgfm_max_blocks,
      .max_piece_blocks = p->set.dgfm_max_piece_blocks,
      .recall_headroom_blocks = (int64_t)(p->set.recall_headroom_frac * (double)p->s->p.gpu_blocks_per_instance)};
  size_t n = infsim_dgfm_pass(p->dgfm, p->gm, &lim, p->moves, DGFM_MOVES_CAP);
  if (n > 0)
    p->dgfm_shift = 0;
  else if (p->dgfm_shift < QUIET_SHIFT_MAX)
    p->dgfm_shift++;
  for (size_t k = 0; k < n; k++) {
    const infsim_dgfm_move *d = &p->moves[k];
    if (d->kind != INFSIM_DGFM_SWAP) infsim_gm_propose(p->gm, &d->move); /* a swap frees as much as it takes */
    if (d->kind == INFSIM_DGFM_RECALL) p->st.recalls++;
    if (d->kind == INFSIM_DGFM_CONSOLIDATE) p->st.consolidations++;
    if (d->kind == INFSIM_DGFM_SWAP && d->pair > (int32_t)k) p->st.swaps++;
    infsim_status st = send_ctl(p, INFSIM_MSG_RECALL, INFSIM_ENDPOINT_GMANAGER, d->move.from, 0, d->move.req,
                                d->move.blocks, CONTROL_BYTES, d->move.to, d->kind, now, err);
    if (st != INFSIM_OK) return st;
  }
  return INFSIM_OK;
}

/* ---- random losses of instances (faults.lose_instance_every_s) ---- */

/* Losses form a Poisson process of mean gap faults.lose_instance_every_s
 * (independent failures of a constant rate, the usual model of hardware
 * failures between repairs), on a random stream of their own: the next
 * one after `now`. */
static int64_t next_loss_ns(infinite *p, int64_t now) {
  double gap_s = p->set.lose_instance_every_s * -log1p(-gsl_rng_uniform(p->loss_rng));
  double at = (double)now + gap_s * 1e9;
  return at < (double)INT64_MAX / 2 ? (int64_t)at : INT64_MAX / 2;
}

/* The loss timer wakes at the next loss, or one longest heartbeat period
 * (64 x policy.heartbeat_ms) from now if that comes first, so that it
 * stops within that long of the run's last request instead of firing
 * long after (a far draw of the exponential gap). */
static int64_t loss_wake_ns(const infinite *p, int64_t now) {
  int64_t horizon = now + (p->set.heartbeat_ns << QUIET_SHIFT_MAX);
  return p->next_loss_ns < horizon ? p->next_loss_ns : horizon;
}

static int32_t alive_count(const infinite *p) {
  int32_t alive = 0;
  for (int32_t k = 0; k < p->instances; k++) alive += !p->lost[k];
  return alive;
}

/* ---- hooks ---- */

static infsim_status create(const void *settings, struct infsim_sched *s, int32_t instances, void **self,
                            infsim_error *err) {
  const infinite_settings *set = settings;
  infinite *p = calloc(1, sizeof *p);
  if (!p) return infsim_fail(err, INFSIM_ENOMEM, "out of memory");
  *self = p;
  p->set = *set;
  p->s = s;
  p->instances = instances;
  p->base = s->net;
  p->band_blocks = set->heartbeat_band * (double)s->p.gpu_blocks_per_instance;
  p->hb = calloc((size_t)instances, sizeof *p->hb);
  p->lent = calloc((size_t)instances, sizeof *p->lent);
  p->retry_after_ns = calloc((size_t)instances, sizeof *p->retry_after_ns);
  p->failures = calloc((size_t)instances, sizeof *p->failures);
  p->hb_shift = calloc((size_t)instances, sizeof *p->hb_shift);
  p->walked_ns = malloc((size_t)instances * sizeof *p->walked_ns);
  p->lost = calloc((size_t)instances, sizeof *p->lost);
  p->gather_after_ns = calloc((size_t)instances, sizeof *p->gather_after_ns);
  p->gather_waits = calloc((size_t)instances, sizeof *p->gather_waits);
  p->gatherers = calloc((size_t)instances, sizeof *p->gatherers);
  if (!p->hb || !p->lent || !p->retry_after_ns || !p->failures || !p->hb_shift || !p->gatherers ||
      !p->gather_after_ns || !p->gather_waits || !p->lost || !p->walked_ns)
    return infsim_fail(err, INFSIM_ENOMEM, "out of memory");
  for (int32_t i = 0; i < instances; i++) p->walked_ns[i] = INT64_MIN / 4; /* never: the first report walks */
  if (set->message_loss > 0 || set->message_delay_prob > 0) p->fault_rng = infsim_rng_new(s->p.seed, "faults.messages");
  if (set->lose_instance_every_s > 0) p->loss_rng = infsim_rng_new(s->p.seed, "faults.instances");
  int64_t per_node = set->gpus_per_node / set->gpus_per_instance;
  if (per_node < 1) per_node = 1;
  int64_t reserve = (int64_t)(set->reserve_frac * (double)s->p.gpu_blocks_per_instance);
  infsim_status st = infsim_gm_new(instances, (int32_t)per_node, s->p.gpu_blocks_per_instance,
                                   (int64_t)s->n_requests, reserve, &p->gm, err);
  if (st == INFSIM_OK) infsim_gm_set_guests_first(p->gm, set->own_first);
  if (st == INFSIM_OK) infsim_gm_set_small_piece(p->gm, set->dgfm_max_piece_blocks);
  if (st == INFSIM_OK)
    infsim_gm_set_spread_costs(p->gm, llround(set->spread_remote_tokens / (double)s->p.block_tokens),
                               llround(set->spread_near_tokens / (double)s->p.block_tokens));
  if (st == INFSIM_OK) infsim_gm_set_spread_relay(p->gm, set->spread_relay);
  if (st == INFSIM_OK) st = infsim_dgfm_new(instances, &p->dgfm, err);
  if (st == INFSIM_OK) st = infsim_dispatcher_new((infsim_dispatch_kind)set->dispatch, instances, &p->disp, err);
  if (st != INFSIM_OK) return st;
  infsim_contract_params cp = {.timeout_ns = set->timeout_ns, .max_retries = set->max_retries,
                               .reserve_blocks = reserve, .block_bytes = s->p.block_bytes,
                               .control_bytes = CONTROL_BYTES, .move_bytes_per_s = set->move_bytes_per_s,
                               .probe_backoff_max = set->probe_backoff_max,
                               .planner = (infsim_gm_planner)set->planner};
  infsim_transport t = {.self = p, .send = lossy_send, .timer = pass_timer, .bytes_sent = p->base.bytes_sent,
                         .in_flight = pass_in_flight, .abort = pass_abort};
  infsim_contract_env env = {.self = p, .free_blocks = env_free, .commit = env_commit,
                             .borrow_done = env_borrow_done, .move_done = env_move_done,
                             .refused = env_refused, .move_bytes = env_move_bytes,
                             .cancelled = env_cancelled};
  st = infsim_contract_new(&cp, p->gm, t, env, instances, &p->contract, err);
  if (st == INFSIM_OK && set->cpu_tier != INFSIM_CPU_TIER_OFF)
    st = infsim_cpu_tier_new(s, p->base, set->borrow_ahead_blocks, borrow_ended, tier_may_gather, env_cancelled, p,
                             &p->tier, err);
  /* Heartbeats staggered over one period, so they do not all arrive at once. */
  for (int32_t i = 0; st == INFSIM_OK && i < instances; i++)
    st = arm(p, i, TIMER_HEARTBEAT, set->heartbeat_ns * (i + 1) / instances, err);
  if (st == INFSIM_OK && set->dgfm) st = arm(p, INFSIM_ENDPOINT_GMANAGER, TIMER_DGFM, set->dgfm_period_ns, err);
  if (st == INFSIM_OK && set->lose_gmanager_at_ns >= 0)
    st = arm(p, INFSIM_ENDPOINT_GMANAGER, TIMER_GM_LOST, set->lose_gmanager_at_ns, err);
  if (st == INFSIM_OK && set->lose_instance >= 0)
    st = arm(p, INFSIM_ENDPOINT_GMANAGER, TIMER_INSTANCE_LOST, set->lose_instance_at_ns, err);
  if (st == INFSIM_OK && p->loss_rng) {
    p->next_loss_ns = next_loss_ns(p, 0);
    st = arm(p, INFSIM_ENDPOINT_GMANAGER, TIMER_INSTANCE_LOST_RANDOM, loss_wake_ns(p, 0), err);
  }
  return st;
}

static void destroy(void *self) {
  infinite *p = self;
  if (!p) return;
  if (p->hb)
    for (int32_t i = 0; i < p->instances; i++) {
      free(p->hb[i].e);
      free(p->hb[i].gone);
    }
  if (p->lent)
    for (int32_t i = 0; i < p->instances; i++) free(p->lent[i].r);
  free(p->hb);
  free(p->hb_next.e);
  free(p->hb_next.gone);
  free(p->lent);
  free(p->slots);
  free(p->retry_after_ns);
  free(p->failures);
  free(p->hb_shift);
  free(p->walked_ns);
  free(p->lost);
  free(p->gatherers);
  free(p->gather_after_ns);
  free(p->gather_waits);
  infsim_contract_free(p->contract);
  infsim_cpu_tier_free(p->tier);
  infsim_dgfm_free(p->dgfm);
  infsim_gm_free(p->gm);
  infsim_dispatcher_free(p->disp);
  if (p->fault_rng) gsl_rng_free(p->fault_rng);
  if (p->loss_rng) gsl_rng_free(p->loss_rng);
  free(p);
}

/* Never a lost instance: least-loaded sees it infinitely loaded,
 * round-robin skips it. */
static int32_t dispatch(void *self, int64_t req) {
  (void)req;
  infinite *p = self;
  int32_t i = infsim_dispatcher_pick(p->disp);
  for (int32_t k = 0; k < p->instances && p->lost[i]; k++) i = infsim_dispatcher_pick(p->disp);
  return i;
}

static void load_changed(void *self, int32_t instance, int64_t load) {
  infinite *p = self;
  infsim_dispatcher_set_load(p->disp, instance, p->lost[instance] ? INT64_MAX / 4 : load);
}

/* ---- the loss of an instance (faults.lose_instance) ---- */

/* The ledger forgets req's entries, and every report as of the loss
 * instant too (now + 1): a report collected at the same nanosecond was
 * collected before the loss was processed, and a borrow request carrying
 * it would otherwise bring back debts of a lost owner (property test seed
 * 19570). */
static void forget_request(void *self, int64_t req) {
  infinite *p = self;
  infsim_gm_forget(p->gm, req, p->s->now_ns + 1);
  /* Its KV is gone (or doomed): moves of it on the way are cancelled. */
  cancel_moves_of(p, req, p->s->now_ns);
}

/* A message to a lost instance, or from it to anyone but its node's host
 * memory (the CPU tier's copies end by themselves), dies with it. */
static bool dead_letter(const infinite *p, const infsim_msg *m) {
  if (p->n_lost == 0) return false; /* (every message, nearly always none lost) */
  /* (A recall from host memory to a lost instance arrives: the tier drops
   * it and its record.) */
  if (m->dst >= 0 && m->dst < p->instances && p->lost[m->dst]) return m->src < p->instances;
  return m->src >= 0 && m->src < p->instances && p->lost[m->src] && m->dst < p->instances;
}

static infsim_status lose_instance(infinite *p, int32_t i, int64_t now, infsim_error *err) {
  p->lost[i] = true;
  p->n_lost++;
  infsim_dispatcher_set_load(p->disp, i, INT64_MAX / 4);
  /* The most one request can ever hold now: its instance whole, the other
   * instances left less their reserve, host memory with the tier. */
  int64_t cap = p->s->p.gpu_blocks_per_instance;
  int64_t reserve = (int64_t)(p->set.reserve_frac * (double)cap), alive = 0;
  for (int32_t k = 0; k < p->instances; k++) alive += !p->lost[k];
  int64_t most = cap + (alive - 1) * (cap - reserve);
  if (p->tier) most += p->s->p.host_blocks; /* its own node's */
  p->s->loss.max_blocks = most;
  /* Its reservations went with its memory; its borrows and the DGFM moves
   * it was running end with it (their timers, addressed to it, are dead
   * letters: a DGFM move left in flight would stop every later pass).
   * First, so that the cancels of the requests it drops (forget_request)
   * find none of its own borrows to cancel from a lost sender. */
  infsim_contract_instance_lost(p->contract, i);
  infsim_status st = instance_lose(p->s, i, forget_request, p, err);
  /* The gManager hears of it at once: nothing held there, no memory, and
   * nothing owned there (its requests were dispatched again; requests it
   * finished but had not reported yet never would be: a lost instance
   * sends nothing). */
  if (!p->gm_down) {
    const int64_t *owned;
    size_t n = infsim_gm_owned(p->gm, i, &owned);
    int64_t *copy = n ? malloc(n * sizeof *copy) : NULL;
    if (n && !copy) return infsim_fail(err, INFSIM_ENOMEM, "out of memory");
    if (n) memcpy(copy, owned, n * sizeof *copy);
    for (size_t k = 0; k < n; k++) infsim_gm_forget(p->gm, copy[k], now + 1); /* as forget_request */
    free(copy);
    infsim_gm_heartbeat(p->gm, i, now, 0, NULL, 0, true);
  }
  return st;
}

/* Servable when this instance and the others' spare (the gManager's view)
 * hold it; the rest of the cluster keeps its reserve. (Accepting whatever
 * the cluster could ever hold, and letting it wait, was tried: a prompt
 * that fits only an emptied cluster can wait forever while the others
 * keep serving: tests/test_infinite_random, seed 331 of 1,000.) */
static bool accept_oversized(void *self, int32_t instance, int64_t req, int64_t blocks_needed) {
  (void)req;
  const infinite *p = self;
  int64_t room = p->s->p.gpu_blocks_per_instance;
  for (int32_t i = 0; i < p->instances; i++)
    if (i != instance && !p->lost[i]) room += infsim_gm_spare_blocks(p->gm, i); /* a lost one lends nothing */
  if (p->tier) room += infsim_cpu_tier_room(p->tier, instance);
  return blocks_needed <= room;
}

/* True while req waits at the head of its instance's queue (admission
 * considers only the head: a request behind it, e.g. after a preempted one
 * came back in front, must not keep the gatherer's role). */
static bool at_head(const infinite *p, int64_t req) {
  const infsim_sched *s = p->s;
  if (s->rec[req].state != INFSIM_REQ_WAITING) return false;
  const instance *in = &s->inst[s->rec[req].instance];
  return in->waiting.count > 0 && deque_front(&in->waiting) == req;
}

static int32_t gatherer_slot(const infinite *p, int64_t req) {
  for (int32_t k = 0; k < p->n_gatherers; k++)
    if (p->gatherers[k] == req) return k;
  return -1;
}

static void drop_gatherer(infinite *p, int32_t k) {
  for (int32_t j = k + 1; j < p->n_gatherers; j++) p->gatherers[j - 1] = p->gatherers[j];
  p->n_gatherers--;
}

/* req's KV at other instances changed: their guest work changes from
 * their next decode step on, as one step at a time would see it. */
static void touch_holders(infinite *p, int64_t req, int64_t now) {
  int32_t pools[INFSIM_KV_MAX_HOLDINGS];
  int64_t blocks[INFSIM_KV_MAX_HOLDINGS];
  int32_t nh = infsim_kv_holdings(p->s->kv, req, pools, blocks, INFSIM_KV_MAX_HOLDINGS);
  for (int32_t i = 0; i < nh && i < INFSIM_KV_MAX_HOLDINGS; i++)
    if (pools[i] < p->instances) infsim_sched_touch(p->s, pools[i], now);
}

/* A gatherer that lost the head of its queue (a preempted request came
 * back in front) gives back what it gathered (no KV yet): holding it while
 * the request in front waits for memory could deadlock the two (found with
 * host memory full of a former gatherer's blocks). */
static void undo_gathering(infinite *p, int32_t k) {
  int64_t req = p->gatherers[k];
  drop_gatherer(p, k);
  if (p->s->rec[req].state != INFSIM_REQ_WAITING || infsim_kv_blocks(p->s->kv, req) == 0) return;
  touch_holders(p, req, p->s->now_ns);
  infsim_kv_release(p->s->kv, req);
  p->st.gathers_undone++;
}

/* The youngest prompt still gathering (waiting) with blocks at holder
 * gives back all it gathered; true when one did. */
static bool undo_gathering_at(infinite *p, int32_t holder) {
  for (int32_t k = p->n_gatherers; k-- > 0;) {
    int64_t req = p->gatherers[k];
    if (p->s->rec[req].state != INFSIM_REQ_WAITING || p->s->rec[req].instance == holder ||
        infsim_kv_blocks_at(p->s->kv, req, holder) == 0)
      continue;
    undo_gathering(p, k);
    /* Its instance asks again (its borrows in flight land nothing now). */
    if (p->pending == INFSIM_OK)
      p->pending = instance_kick(p->s, &p->s->inst[p->s->rec[req].instance], &p->pending_err);
    return true;
  }
  return false;
}

/* A prompt may gather new blocks at creditors when it is larger than its
 * instance's memory less the reserve (smaller ones make room by moving KV
 * away instead: their KV then stays local) and either it is the oldest
 * gatherer or what all gatherers still lack, its own included, fits the
 * cluster's spare in the gManager's view (every instance's, the
 * gatherers' own included: a gatherer's blocks may land at another's
 * instance): prompts that could not all complete do not start, so that
 * two of them never hold parts of the cluster while each waits for the
 * rest. GATHER_LATER: it must wait for its turn. */
typedef enum { GATHER_YES = 0, GATHER_LATER } gather_verdict;

static int64_t prompt_blocks(const infinite *p, int64_t req) {
  const infsim_sched *s = p->s;
  return (rs_of(s, req)->prefill_target + s->p.block_tokens - 1) / s->p.block_tokens;
}

/* A waiting prompt larger than its instance's memory less the reserve. */
static bool big_prompt(const infinite *p, int64_t req) {
  const infsim_sched *s = p->s;
  int64_t reserve = (int64_t)(p->set.reserve_frac * (double)s->p.gpu_blocks_per_instance);
  return s->rec[req].state == INFSIM_REQ_WAITING && prompt_blocks(p, req) > s->p.gpu_blocks_per_instance - reserve;
}

/* For a big prompt (big_prompt). */
static gather_verdict may_gather(infinite *p, int32_t instance, int64_t req) {
  const infsim_sched *s = p->s;
  for (int32_t k = p->n_gatherers; k-- > 0;)
    if (!at_head(p, p->gatherers[k])) undo_gathering(p, k);
  if (gatherer_slot(p, req) >= 0) return GATHER_YES;
  if (!at_head(p, req)) return GATHER_LATER;
  int64_t owed = prompt_blocks(p, req) - infsim_kv_blocks(s->kv, req), spare = 0;
  for (int32_t j = 0; j < p->n_gatherers; j++) owed += prompt_blocks(p, p->gatherers[j]) - infsim_kv_blocks(s->kv, p->gatherers[j]);
  for (int32_t i = 0; i < p->instances; i++) spare += infsim_gm_spare_blocks(p->gm, i);
  if (p->tier) spare += infsim_cpu_tier_room(p->tier, instance);
  if (p->n_gatherers > 0 && owed > spare) return GATHER_LATER;
  /* Oldest first: by arrival, then id. */
  int32_t at = p->n_gatherers;
  while (at > 0) {
    int64_t q = p->gatherers[at - 1];
    if (s->rec[q].arrival_ns < s->rec[req].arrival_ns ||
        (s->rec[q].arrival_ns == s->rec[req].arrival_ns && q < req))
      break;
    p->gatherers[at] = q;
    at--;
  }
  p->gatherers[at] = req;
  p->n_gatherers++;
  return GATHER_YES;
}

/* The oldest gatherer found no room: the youngest other gatherer gives
 * back what it gathered (it starts over when the budget allows), so the
 * oldest always completes once memory frees up, as a lone gatherer would. */
static void wound_youngest(infinite *p, int64_t oldest) {
  if (p->n_gatherers < 2 || p->gatherers[0] != oldest) return;
  /* The youngest still waiting: one already admitted prefills into what
   * it gathered, and taking that back would leave it prefilling with no
   * KV (tests/test_infinite_random, seed 10578). */
  for (int32_t k = p->n_gatherers; k-- > 1;)
    if (p->s->rec[p->gatherers[k]].state == INFSIM_REQ_WAITING) {
      undo_gathering(p, k);
      return;
    }
}

static infsim_short_action short_of_blocks(void *self, int32_t instance, int64_t req, int64_t need, int64_t now) {
  infinite *p = self;
  infsim_short_action act = p->set.when_short == WHEN_SHORT_WAIT ? INFSIM_SHORT_WAIT : INFSIM_SHORT_PREEMPT;
  if (p->pending != INFSIM_OK || infsim_contract_in_flight(p->contract, instance, req) ||
      (p->tier && infsim_cpu_tier_in_flight(p->tier, instance, req)))
    return act;
  /* A prompt larger than its instance gathers new blocks at creditors
   * (after a failed or refused gathering, on its own back-off); any other
   * shortage moves existing KV away (the debtor's longest request), so a
   * request's new KV stays local. A gatherer asks for the reserve on top,
   * so that its instance keeps room for its other requests' growth once
   * it is admitted. */
  int64_t reserve = (int64_t)(p->set.reserve_frac * (double)p->s->p.gpu_blocks_per_instance);
  if (big_prompt(p, req)) {
    if (now < p->gather_after_ns[instance]) return act;
    if (may_gather(p, instance, req) == GATHER_LATER) {
      /* Moving other KV away would not make room for it: it waits for
       * its turn, asking again after its back-off. */
      back_off(p, instance, &p->gather_waits[instance], &p->gather_after_ns[instance], now);
      return act;
    }
    p->pending = infsim_contract_borrow(p->contract, instance, req, need + p->set.borrow_ahead_blocks + reserve, true,
                                        now, &p->pending_err);
    return act;
  }
  /* After a failed borrow a kick timer is armed: admission waits for it, a
   * decoding request at a block boundary does not wait (vLLM preempts). */
  if (now < p->retry_after_ns[instance])
    return p->s->rec[req].state == INFSIM_REQ_RUNNING ? INFSIM_SHORT_PREEMPT : act;
  p->pending = infsim_contract_borrow(p->contract, instance, req, need + p->set.borrow_ahead_blocks, false, now,
                                      &p->pending_err);
  return act;
}

static infsim_status on_message(void *self, const infsim_msg *m, int64_t now, infsim_error *err) {
  infinite *p = self;
  infsim_status st = INFSIM_OK;
  bool more = !infsim_sched_all_done(p->s); /* periodic timers stop with the run */
  if (dead_letter(p, m)) {
    /* dropped */
  } else if (p->tier && infsim_cpu_tier_handles(p->tier, m)) {
    st = infsim_cpu_tier_deliver(p->tier, m, now, err);
  } else if (infsim_contract_handles(m)) {
    if (m->kind == INFSIM_MSG_BORROW_REQUEST) take_carried_report(p, m);
    st = infsim_contract_deliver(p->contract, m, now, err);
  } else if (m->kind == INFSIM_MSG_HEARTBEAT) {
    take_heartbeat(p, m);
  } else if (m->kind == INFSIM_MSG_RECALL) {
    /* A DGFM move, run by its source. */
    infsim_gm_move mv = {.req = m->req, .from = m->dst, .to = (int32_t)m->a, .blocks = m->blocks};
    if (infsim_kv_blocks_at(p->s->kv, mv.req, mv.from) >= mv.blocks)
      st = infsim_contract_move(p->contract, &mv, m->b == INFSIM_DGFM_SWAP, now, err);
  } else if (m->kind == INFSIM_MSG_TIMER) {
    switch (m->a) {
    case TIMER_HEARTBEAT:
      st = send_heartbeat(p, m->src, now, err);
      /* The rManager's periodic look at its host blocks: they come home
       * when the GPU has room for a request's whole host part and keeps
       * what it must (the reserve, DGFM's recall headroom, its promises
       * to others and its own queue's needs). */
      if (st == INFSIM_OK && p->tier && p->set.tier_recall && !p->lost[m->src])
        st = infsim_cpu_tier_recall(p->tier, m->src,
                                    (int64_t)((p->set.reserve_frac + p->set.recall_headroom_frac) *
                                              (double)p->s->p.gpu_blocks_per_instance) +
                                        infsim_contract_reserved(p->contract, m->src) + own_demand(p, m->src),
                                    now, err);
      if (st == INFSIM_OK && more)
        st = arm(p, m->src, TIMER_HEARTBEAT, now + (p->set.heartbeat_ns << p->hb_shift[m->src]), err);
      break;
    case TIMER_DGFM:
      if (!p->gm_down) st = run_dgfm(p, now, err);
      if (st == INFSIM_OK && more)
        st = arm(p, INFSIM_ENDPOINT_GMANAGER, TIMER_DGFM, now + (p->set.dgfm_period_ns << p->dgfm_shift), err);
      break;
    case TIMER_KICK:
      st = instance_kick(p->s, &p->s->inst[m->src], err);
      break;
    case TIMER_GM_LOST:
      p->gm_down = true;
      infsim_gm_reset(p->gm);
      infsim_contract_set_gm_down(p->contract, true);
      st = arm(p, INFSIM_ENDPOINT_GMANAGER, TIMER_GM_BACK, now + p->set.gmanager_restart_ns, err);
      if (st == INFSIM_OK && more && p->set.lose_gmanager_every_ns > 0)
        st = arm(p, INFSIM_ENDPOINT_GMANAGER, TIMER_GM_LOST, now + p->set.lose_gmanager_every_ns, err);
      break;
    case TIMER_INSTANCE_LOST:
      if (!p->lost[p->set.lose_instance] && alive_count(p) > 1) st = lose_instance(p, p->set.lose_instance, now, err);
      break;
    case TIMER_INSTANCE_LOST_RANDOM: {
      /* A live instance, uniformly; never the last one (nobody would be
       * left to serve), and none after the run's last request. Lost
       * instances do not come back. */
      if (!more || alive_count(p) < 2) break;
      if (now >= p->next_loss_ns) {
        int32_t pick = (int32_t)gsl_rng_uniform_int(p->loss_rng, (unsigned long)alive_count(p)), i = 0;
        for (;; i++)
          if (!p->lost[i] && pick-- == 0) break;
        st = lose_instance(p, i, now, err);
        p->next_loss_ns = next_loss_ns(p, now);
      }
      if (st == INFSIM_OK && alive_count(p) > 1)
        st = arm(p, INFSIM_ENDPOINT_GMANAGER, TIMER_INSTANCE_LOST_RANDOM, loss_wake_ns(p, now), err);
      break;
    }
    case TIMER_GM_BACK:
      /* A new gManager: every instance's next heartbeat is a full one. */
      p->gm_down = false;
      infsim_contract_set_gm_down(p->contract, false);
      for (int32_t i = 0; i < p->instances; i++) p->hb[i].full_next = true;
      p->st.gmanager_rebuilds++;
      break;
    default:
      st = infsim_fail(err, INFSIM_ERUN, "infinite-llm: unknown timer %lld", (long long)m->a);
    }
  }
  if (st == INFSIM_OK && p->pending == INFSIM_OK && infsim_gm_out_of_memory(p->gm))
    p->pending = infsim_fail(&p->pending_err, INFSIM_ENOMEM, "gManager: out of memory");
  if (st == INFSIM_OK && p->pending != INFSIM_OK) {
    st = p->pending;
    if (err) *err = p->pending_err;
  }
#ifdef INFSIM_CHECK_INVARIANTS
  /* The ledger's check is O(requests): after every message up to 64
   * requests, else every requests/64 messages, so checking stays O(64) a
   * message on a soak's million requests. */
  if (++p->messages_since_ledger_check >= (int64_t)p->s->n_requests / 64) {
    p->messages_since_ledger_check = 0;
    infsim_gm_check(p->gm);
  }
  infsim_contract_check(p->contract);
  if (p->tier) infsim_cpu_tier_check(p->tier);
  /* A lost instance holds nothing in the gManager's ledger (its entries
   * went at the loss, its own requests were forgotten) and no
   * reservation for anyone (docs/distkv.md, "Faults"). */
  for (int32_t i = 0; p->s->loss.instances_lost > 0 && i < p->instances; i++)
    if (p->lost[i]) {
      assert(infsim_gm_held(p->gm, i) == 0 && infsim_gm_borrowed(p->gm, i) == 0);
      assert(infsim_contract_reserved(p->contract, i) == 0);
    }
#endif
  return st;
}

const infsim_policy_ops infsim_policy_infinite = {
    .name = "infinite-llm",
    .read_config = read_config,
    .layout = layout,
    .create = create,
    .dispatch = dispatch,
    .load_changed = load_changed,
    .accept_oversized = accept_oversized,
    .short_of_blocks = short_of_blocks,
    .on_message = on_message,
    .destroy = destroy,
    .request_ended = request_ended,
    .request_ending = request_ending,
    .kv_dropped = kv_dropped,
};

bool infsim_policy_infinite_stats(const struct infsim_sched *s, infsim_distkv_stats *out) {
  if (s->policy != &infsim_policy_infinite || !s->policy_self) return false;
  const infinite *p = s->policy_self;
  *out = p->st;
  const infsim_contract_counters *c = infsim_contract_counters_of(p->contract);
  out->borrows = c->borrows;
  out->borrows_failed = c->failed;
  out->kv_moves = c->kv_moves;
  out->kv_moved_bytes = c->kv_moved_bytes;
  out->retries = c->retries;
  out->kv_sends = c->kv_sends;
  out->kv_resends = c->kv_resends;
  out->kv_sent_bytes = c->kv_sent_bytes;
  out->probes = c->probes;
  out->kv_moves_cancelled = c->cancelled;
  out->ledger_probes = c->ledger_probes;
  out->blocks_recomputed = s->loss.blocks_recomputed;
  out->instances_lost = s->loss.instances_lost;
  out->requests_requeued = s->loss.requests_requeued;
  if (p->tier) {
    const infsim_cpu_tier_counters *h = infsim_cpu_tier_counters_of(p->tier);
    out->host_moves = h->moves;
    out->host_moved_bytes = h->moved_bytes + h->recalled_bytes; /* both ways over PCIe */
    out->host_blocks = h->blocks;
    out->recalls += h->recalls; /* DGFM's and the tier's */
    out->kv_moves_cancelled += h->cancelled; /* the GPU creditors' and the tier's */
  }
  return true;
}

void infsim_policy_infinite_high_water(const struct infsim_sched *s, infsim_high_water_set *out) {
  if (s->policy != &infsim_policy_infinite || !s->policy_self) return;
  const infinite *p = s->policy_self;
  int64_t ledger_now, ledger_peak, split_now, split_peak;
  infsim_gm_high_water(p->gm, &ledger_now, &ledger_peak, &split_now, &split_peak);
  /* Both are bounded by the requests of the run (one record each). */
  infsim_high_water_note(out, "gmanager_ledger_requests", ledger_peak, ledger_now, (int64_t)s->n_requests);
  infsim_high_water_note(out, "gmanager_split_requests", split_peak, split_now, (int64_t)s->n_requests);
  infsim_contract_high_water(p->contract, out);
  if (p->tier) infsim_cpu_tier_high_water(p->tier, out);
}

void infsim_policy_infinite_wire(const char *policy_name, const void *settings, double *wire_bytes_per_value,
                                 bool *overlap, int32_t *gmanager_node) {
  *wire_bytes_per_value = 2.0; /* fp16: the paper's sizes imply it (DESIGN.md) */
  *overlap = true;
  *gmanager_node = 0;
  if (strcmp(policy_name, infsim_policy_infinite.name) != 0) return;
  const infinite_settings *p = settings;
  *wire_bytes_per_value = (double)p->wire_bytes_per_value;
  *overlap = p->overlap;
  *gmanager_node = p->gmanager_node;
}

void infsim_policy_infinite_set_link_costs(const char *policy_name, void *settings, const infsim_model_shape *model,
                                           double attn_flops_per_s, double nic_bytes_per_s, double nvlink_bytes_per_s,
                                           bool relay) {
  if (strcmp(policy_name, infsim_policy_infinite.name) != 0) return;
  infinite_settings *p = settings;
  if (p->planner != INFSIM_PLAN_SPREAD) return;
  p->spread_relay = relay;
  double wire_b = (double)p->wire_bytes_per_value;
  p->spread_remote_tokens = infsim_planner_holder_tokens(model, wire_b, attn_flops_per_s, nic_bytes_per_s);
  p->spread_near_tokens = infsim_planner_holder_tokens(model, wire_b, attn_flops_per_s, nvlink_bytes_per_s);
}

int32_t infsim_policy_infinite_cpu_tier(const char *policy_name, const void *settings) {
  if (strcmp(policy_name, infsim_policy_infinite.name) != 0) return INFSIM_CPU_TIER_OFF;
  return ((const infinite_settings *)settings)->cpu_tier;
}
