/*
** test_contract.c: the contract protocol over a stand-in transport (a
** message arrives after latency + bytes / bandwidth, or is lost) and a
** stand-in KV memory (free blocks per instance, blocks per request and
** holder). Checked: the message sequence and the time a borrow ends on a
** clean network (sum of the hops worked out by hand); fresh blocks for an
** oversized request; a stale gManager view refused by the creditor,
** retried, then given up; a move slower than its timeout sent once and
** landing at the hand-summed time, and recorded in the gManager's ledger
** from its CONFIRM; a lost move sent again once; a move priced by the KV
** its blocks hold; a move cancelled when its request ends (the creditor's
** reservation freed one hop after the cancel, a lost cancel resent, a
** cancel that overtakes its RESERVE); the gManager's record of a move
** whose debtor or creditor became unreachable dropped after a bounded
** number of checks; and under random loss and delay (with requests ending
** on the way, too): every borrow ends exactly once, no reservation is
** left, blocks are conserved and no creditor lends into its reserve.
*/
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <gsl/gsl_rng.h>

#include "infsim/contract.h"
#include "infsim/event_heap.h"
#include "infsim/rng.h"

enum { INST = 4, REQS = 16, CAPB = 100, RESERVE = 5, MAXMSG = 100000 };
#define LAT_NS 5000
#define BW 25e9
#define BLOCK_BYTES 1000000

typedef struct {
  infsim_event_heap heap;
  infsim_msg *msgs;
  int64_t n_msgs;
  int64_t *arrive_ns; /* per message: its first byte reaches dst then */
  bool *delivered;
  bool *stopped; /* transport.h's abort stopped it: never delivered */
  int kinds[INFSIM_MSG_KIND_COUNT];
  gsl_rng *rng; /* NULL: no faults */
  double loss;
  double bw;      /* link bandwidth (BW unless a test narrows it) */
  int drop_kind;  /* the first drop_count messages of this kind are lost */
  int drop_count;
  int delay_kind; /* the first message of this kind is held back delay_ns before it leaves */
  int64_t delay_ns;
  int32_t cut;      /* messages from or to this endpoint sent from cut_from_ns on are lost */
  int64_t cut_from_ns;
  /* memory */
  int64_t free_blocks[INST];
  int64_t held[REQS][INST];
  int64_t kv[REQS]; /* of the blocks of a request that would move, those holding KV (at most) */
  bool dead[REQS];
  /* outcomes */
  int done_ok, done_fail, cancelled;
  int64_t done_at_ns;
  int commits;
  bool exchanges; /* swap halves may dip into the reserve */
  bool no_abort;  /* a transport that cannot stop a payload */
} world;

static infsim_status w_send(void *self, const infsim_msg *m, int64_t now, infsim_error *err) {
  world *w = self;
  w->kinds[m->kind]++;
  if (m->kind == w->drop_kind && w->drop_count > 0) {
    w->drop_count--;
    return INFSIM_OK; /* lost */
  }
  if ((m->src == w->cut || m->dst == w->cut) && now >= w->cut_from_ns) return INFSIM_OK; /* lost */
  if (w->rng && gsl_rng_uniform(w->rng) < w->loss) return INFSIM_OK; /* lost */
  int64_t held = 0; /* a delay before the message leaves */
  if (w->rng && gsl_rng_uniform(w->rng) < 0.2) held = (int64_t)gsl_rng_uniform_int(w->rng, 40000000);
  if (m->kind == w->delay_kind) {
    held = w->delay_ns;
    w->delay_kind = -1;
  }
  int64_t first = now + held + LAT_NS;
  assert_true(w->n_msgs < MAXMSG);
  w->msgs[w->n_msgs] = *m;
  w->arrive_ns[w->n_msgs] = first;
  return infsim_event_heap_push(&w->heap, first + (int64_t)((double)m->bytes / w->bw * 1e9), 0, 0, w->n_msgs++, err);
}

/* transport.h's in_flight: sent, its first byte arrived, not delivered. */
static bool w_in_flight(const void *self, const infsim_msg *m, int64_t now) {
  const world *w = self;
  for (int64_t k = 0; k < w->n_msgs; k++) {
    const infsim_msg *q = &w->msgs[k];
    if (q->kind == m->kind && q->src == m->src && q->dst == m->dst && q->seq == m->seq && q->a == m->a &&
        !w->delivered[k] && w->arrive_ns[k] <= now)
      return true;
  }
  return false;
}

/* transport.h's abort: a payload not delivered yet stops where it is; the
 * bytes past its first byte's arrival at bw were carried. */
static infsim_status w_abort(void *self, const infsim_msg *m, int64_t now, int64_t *unsent, infsim_error *err) {
  (void)err;
  world *w = self;
  *unsent = 0;
  for (int64_t k = 0; k < w->n_msgs; k++) {
    const infsim_msg *q = &w->msgs[k];
    if (q->kind != m->kind || q->src != m->src || q->dst != m->dst || q->seq != m->seq || q->a != m->a ||
        w->delivered[k] || w->stopped[k] || q->bytes <= 64)
      continue;
    double carried = now > w->arrive_ns[k] ? (double)(now - w->arrive_ns[k]) * w->bw / 1e9 : 0.0;
    *unsent += q->bytes - (carried < (double)q->bytes ? (int64_t)carried : q->bytes);
    w->stopped[k] = true;
  }
  return INFSIM_OK;
}

static infsim_status w_timer(void *self, const infsim_msg *m, int64_t at, infsim_error *err) {
  world *w = self;
  assert_true(w->n_msgs < MAXMSG);
  w->msgs[w->n_msgs] = *m;
  return infsim_event_heap_push(&w->heap, at, 0, 0, w->n_msgs++, err);
}

static int64_t w_free(void *self, int32_t i) { return ((world *)self)->free_blocks[i]; }

/* contract.h's move_bytes: the blocks that would leave, those holding KV. */
static int64_t w_move_bytes(void *self, const infsim_gm_move *m, int64_t now) {
  (void)now;
  const world *w = self;
  int64_t n = m->blocks < w->held[m->req][m->from] ? m->blocks : w->held[m->req][m->from];
  return (n < w->kv[m->req] ? n : w->kv[m->req]) * BLOCK_BYTES;
}

static void w_cancelled(void *self, int32_t debtor, int64_t req, int64_t now) {
  (void)debtor;
  (void)req;
  (void)now;
  ((world *)self)->cancelled++;
}

/* Request r ends (finished): its blocks are freed wherever held, and a
 * move of them landing later commits nothing. */
static void w_end(world *w, int64_t r) {
  w->dead[r] = true;
  for (int32_t i = 0; i < INST; i++) {
    w->free_blocks[i] += w->held[r][i];
    w->held[r][i] = 0;
  }
}

static int64_t w_commit(void *self, const infsim_gm_move *m, int64_t now) {
  (void)now;
  world *w = self;
  if (w->dead[m->req]) return 0;
  int64_t n = m->blocks;
  if (!m->fresh && w->held[m->req][m->from] < n) n = w->held[m->req][m->from];
  if (w->free_blocks[m->to] < n) return 0;
  w->held[m->req][m->to] += n;
  w->free_blocks[m->to] -= n;
  if (!m->fresh) {
    w->held[m->req][m->from] -= n;
    w->free_blocks[m->from] += n;
  }
  if (!w->exchanges) assert_true(w->free_blocks[m->to] >= RESERVE); /* never into the reserve */
  w->commits++;
  return n;
}

static void w_done(void *self, int32_t debtor, int64_t req, bool ok, int64_t now) {
  (void)debtor;
  (void)req;
  world *w = self;
  if (ok)
    w->done_ok++;
  else
    w->done_fail++;
  w->done_at_ns = now;
}

static world *world_new(void) {
  world *w = calloc(1, sizeof *w);
  w->msgs = calloc(MAXMSG, sizeof *w->msgs);
  w->arrive_ns = calloc(MAXMSG, sizeof *w->arrive_ns);
  w->delivered = calloc(MAXMSG, sizeof *w->delivered);
  w->stopped = calloc(MAXMSG, sizeof *w->stopped);
  w->bw = BW;
  w->drop_kind = -1;
  w->delay_kind = -1;
  w->cut = -100;
  for (int r = 0; r < REQS; r++) w->kv[r] = INT64_MAX;
  infsim_event_heap_init(&w->heap);
  for (int i = 0; i < INST; i++) w->free_blocks[i] = CAPB;
  return w;
}

static void world_free(world *w) {
  infsim_event_heap_free(&w->heap);
  free(w->msgs);
  free(w->arrive_ns);
  free(w->delivered);
  free(w->stopped);
  if (w->rng) gsl_rng_free(w->rng);
  free(w);
}

/* Places n blocks of r at holder i (memory and the gManager's ledger). */
static void place(world *w, infsim_gm *gm, int64_t r, int32_t owner, int32_t i, int64_t n) {
  w->held[r][i] += n;
  w->free_blocks[i] -= n;
  infsim_gm_entry e = {r, owner, i, w->held[r][i]};
  infsim_gm_heartbeat(gm, i, 0, w->free_blocks[i], &e, 1, false);
}

/* Blocks of request r, owned by owner, at holder. */
typedef struct {
  int64_t r;
  int32_t owner, holder;
  int64_t blocks;
} placed;

/* A gManager over w's instances (two a node) with rows[0..n) placed. */
static infsim_gm *cluster_of(world *w, const placed *rows, size_t n) {
  infsim_gm *gm = NULL;
  assert_int_equal(infsim_gm_new(INST, 2, CAPB, REQS, RESERVE, &gm, NULL), INFSIM_OK);
  for (size_t k = 0; k < n; k++) place(w, gm, rows[k].r, rows[k].owner, rows[k].holder, rows[k].blocks);
  return gm;
}

/* The cluster of the clean borrow (below): debtor 0 full with r0 (60
 * blocks) and r1 (40); instance 1 holds r2 (50, 50 free), 2 holds r3
 * (70, 30 free), 3 holds r4 (100, none free). Two instances a node. */
static infsim_gm *clean_cluster(world *w) {
  const placed rows[] = {{0, 0, 0, 60}, {1, 0, 0, 40}, {2, 1, 1, 50}, {3, 2, 2, 70}, {4, 3, 3, 100}};
  return cluster_of(w, rows, sizeof rows / sizeof *rows);
}

static void heartbeat_free(world *w, infsim_gm *gm) {
  for (int32_t i = 0; i < INST; i++) infsim_gm_heartbeat(gm, i, 0, w->free_blocks[i], NULL, 0, false);
}

static infsim_contract *contract_planned_by(world *w, infsim_gm *gm, int32_t max_retries,
                                           infsim_gm_planner planner) {
  infsim_contract_params p = {.timeout_ns = 10000000, .max_retries = max_retries, .reserve_blocks = RESERVE,
                              .block_bytes = BLOCK_BYTES, .control_bytes = 64, .move_bytes_per_s = BW,
                              .probe_backoff_max = 64, .planner = planner};
  infsim_transport t = {.self = w, .send = w_send, .timer = w_timer, .in_flight = w_in_flight,
                        .abort = w->no_abort ? NULL : w_abort};
  infsim_contract_env env = {.self = w, .free_blocks = w_free, .commit = w_commit, .borrow_done = w_done,
                             .move_done = w_done, .move_bytes = w_move_bytes, .cancelled = w_cancelled};
  infsim_contract *c = NULL;
  assert_int_equal(infsim_contract_new(&p, gm, t, env, INST, &c, NULL), INFSIM_OK);
  return c;
}

static void teardown(world *w, infsim_gm *gm, infsim_contract *c) {
  infsim_contract_free(c);
  infsim_gm_free(gm);
  world_free(w);
}

static infsim_contract *contract(world *w, infsim_gm *gm, int32_t max_retries) {
  return contract_planned_by(w, gm, max_retries, INFSIM_PLAN_GREEDY);
}

/* Starts the clean borrow (below: r1 on debtor 0 needs 10 blocks, greedy
 * moves 10 of r0 to instance 1) at 0 ns in w, whose faults and links the
 * caller has set. */
static infsim_contract *start_clean_borrow(world *w, infsim_gm **gm) {
  *gm = clean_cluster(w);
  infsim_contract *c = contract(w, *gm, 3);
  assert_int_equal(infsim_contract_borrow(c, 0, 1, 10, false, 0, NULL), INFSIM_OK);
  return c;
}

/* Delivers every event due by until_ns. */
static void run_until(world *w, infsim_contract *c, int64_t until_ns) {
  infsim_event ev;
  while (infsim_event_heap_peek(&w->heap) && infsim_event_heap_peek(&w->heap)->time_ns <= until_ns &&
         infsim_event_heap_pop(&w->heap, &ev)) {
    infsim_msg m = w->msgs[ev.arg];
    if (w->stopped[ev.arg]) continue;
    w->delivered[ev.arg] = true;
    assert_true(infsim_contract_handles(&m));
    assert_int_equal(infsim_contract_deliver(c, &m, ev.time_ns, NULL), INFSIM_OK);
    infsim_contract_check(c);
  }
}

static void run(world *w, infsim_contract *c) { run_until(w, c, INT64_MAX); }

/* The clean borrow's r0 ends at end_ns: the run goes on until then, its
 * blocks are freed wherever held, and its moves are cancelled. */
static void end_r0_at(world *w, infsim_contract *c, int64_t end_ns) {
  run_until(w, c, end_ns);
  w_end(w, 0);
  assert_int_equal(infsim_contract_cancel(c, 0, end_ns, NULL), INFSIM_OK);
}

/* After r0's move was cancelled and the run ended: nothing committed,
 * nothing of r0 at instance 1 nor held for it, nothing reserved. */
static void check_cancel_left_nothing(const world *w, infsim_contract *c) {
  assert_int_equal(infsim_contract_counters_of(c)->cancelled, 1);
  assert_int_equal(w->commits, 0);
  assert_int_equal(w->free_blocks[1], 50);
  for (int32_t i = 0; i < INST; i++) assert_int_equal(infsim_contract_reserved(c, i), 0);
}

/* Debtor 0 is full with r0 (60 blocks) and r1 (40); instance 1 has 50
 * free, 2 has 30, 3 none. r1 needs 10 and may not take new blocks
 * remotely: greedy moves 10 of r0 (the longest) to instance 1 (most spare). Six hops: request, propose,
 * reserve, ack, move (10 MB at 25 GB/s = 400 us), confirm. */
static void test_clean_borrow(void **state) {
  (void)state;
  world *w = world_new();
  infsim_gm *gm = NULL;
  infsim_contract *c = start_clean_borrow(w, &gm);
  assert_int_equal(infsim_contract_borrow(c, 0, 1, 10, false, 0, NULL), INFSIM_OK); /* already in flight */
  assert_true(infsim_contract_in_flight(c, 0, 1));
  run(w, c);
  assert_int_equal(w->done_ok, 1);
  assert_int_equal(w->done_fail, 0);
  assert_int_equal(w->done_at_ns, 6 * LAT_NS + 400000 + 5 * (64 * 1000000000LL / 25000000000LL));
  assert_int_equal(w->held[0][0], 50);
  assert_int_equal(w->held[0][1], 10);
  assert_int_equal(w->free_blocks[0], 10);
  assert_int_equal(infsim_gm_held_by(gm, 0, 1), 10); /* the gManager recorded it */
  assert_int_equal(infsim_gm_lent(gm, 1), 10);
  const infsim_contract_counters *n = infsim_contract_counters_of(c);
  assert_int_equal(n->borrows, 1);
  assert_int_equal(n->kv_moves, 1);
  assert_int_equal(n->kv_moved_bytes, 10 * BLOCK_BYTES);
  assert_int_equal(n->messages, 7);
  assert_int_equal(w->kinds[INFSIM_MSG_CONFIRM], 2); /* to the debtor and the gManager */
  assert_int_equal(infsim_contract_reserved(c, 1), 0);
  assert_int_equal(infsim_contract_pending(c, 0), 0);
  teardown(w, gm, c);
}

/* The clean borrow's move over a link 250 times narrower (0.1 GB/s): its
 * 10 MB take 100 ms, far past the MOVE's timeout (10 ms + 2 x 0.4 ms at
 * the 25 GB/s the contract assumes) and past the reservation's first
 * lease (4 x 10 ms + 0.8 ms). Slow is not lost: the KV is sent exactly
 * once, the debtor only probes (at 10.8 ms after the send, then 21.6 and
 * 43.2 ms after each "arriving" answer: three probes before 100 ms), the
 * creditor keeps the reservation while the bytes arrive, and the borrow
 * ends when the one copy lands: six hops of 5 us latency, five control
 * messages of 64 B at 0.1 GB/s (640 ns each) and the 100 ms transfer.
 * The gManager keeps its record of the move past 8 timeouts (80 ms):
 * checked at the first message after that (the landing, 100.03 ms) with
 * one probe to the creditor, it is still there when the creditor's
 * CONFIRM comes, and the ledger records the move (before, the record had
 * expired and the ledger learnt of it only from a later heartbeat). */
static void test_slow_move_sent_once(void **state) {
  (void)state;
  world *w = world_new();
  w->bw = 0.1e9;
  infsim_gm *gm = NULL;
  infsim_contract *c = start_clean_borrow(w, &gm);
  run(w, c);
  assert_int_equal(w->done_ok, 1);
  assert_int_equal(w->done_fail, 0);
  assert_int_equal(w->done_at_ns, 6 * LAT_NS + 5 * 640 + 100000000);
  assert_int_equal(w->kinds[INFSIM_MSG_MOVE], 1);
  const infsim_contract_counters *n = infsim_contract_counters_of(c);
  assert_int_equal(n->kv_sends, 1);
  assert_int_equal(n->kv_resends, 0);
  assert_int_equal(n->kv_sent_bytes, 10 * BLOCK_BYTES);
  assert_int_equal(n->kv_moves, 1);
  assert_int_equal(n->kv_moved_bytes, 10 * BLOCK_BYTES);
  assert_int_equal(n->retries, 0);
  assert_int_equal(n->probes, 3);
  assert_int_equal(n->ledger_probes, 1);
  assert_int_equal(w->kinds[INFSIM_MSG_PROBE], 4);
  assert_int_equal(w->held[0][1], 10);
  assert_int_equal(w->held[0][0], 50);
  assert_int_equal(infsim_gm_held_by(gm, 0, 1), 10); /* the ledger has it, from the CONFIRM */
  assert_int_equal(infsim_gm_lent(gm, 1), 10);
  assert_int_equal(infsim_gm_borrowed(gm, 0), 10);
  assert_int_equal(infsim_contract_proposals(c), 0); /* confirmed, then dropped at its next check */
  assert_int_equal(infsim_contract_reserved(c, 1), 0);
  teardown(w, gm, c);
}

/* The clean borrow with its MOVE lost. The debtor's timer fires at the
 * MOVE's deadline (sent at 4 hops of 5,002 ns = 20,008 ns; deadline
 * 10 ms + 2 x 0.4 ms later), its probe finds nothing at the creditor, the
 * KV goes again on the answer and lands: two more control hops, the
 * 400 us transfer plus its latency, the confirmation. One resend, one
 * retry, the blocks moved once, nothing left reserved. */
static void test_lost_move_resent(void **state) {
  (void)state;
  world *w = world_new();
  w->drop_kind = INFSIM_MSG_MOVE;
  w->drop_count = 1;
  infsim_gm *gm = NULL;
  infsim_contract *c = start_clean_borrow(w, &gm);
  run(w, c);
  assert_int_equal(w->done_ok, 1);
  assert_int_equal(w->done_fail, 0);
  int64_t hop = LAT_NS + 2; /* 64 B at 25 GB/s: 2.56 ns, truncated */
  assert_int_equal(w->done_at_ns, 4 * hop + 10800000 + 2 * hop + LAT_NS + 400000 + hop);
  assert_int_equal(w->kinds[INFSIM_MSG_MOVE], 2);
  const infsim_contract_counters *n = infsim_contract_counters_of(c);
  assert_int_equal(n->kv_sends, 2);
  assert_int_equal(n->kv_resends, 1);
  assert_int_equal(n->retries, 1);
  assert_int_equal(n->probes, 1);
  assert_int_equal(n->kv_moves, 1);
  assert_int_equal(n->kv_moved_bytes, 10 * BLOCK_BYTES);
  assert_int_equal(w->held[0][1], 10);
  assert_int_equal(w->held[0][0], 50);
  assert_int_equal(w->free_blocks[0], 10);
  assert_int_equal(w->free_blocks[1], 40);
  assert_int_equal(infsim_contract_reserved(c, 1), 0);
  assert_int_equal(infsim_contract_pending(c, 0), 0);
  teardown(w, gm, c);
}

/* The clean borrow (greedy's move of r0's 10 blocks from 0 to 1), where
 * only some of the blocks that leave hold KV: the MOVE carries their KV,
 * not 10 full blocks. With 4 of them: 4 MB at 25 GB/s = 160 us instead of
 * 400 us, and 4 MB sent and moved. With none (a prompt's blocks not
 * prefilled yet): the MOVE is a control message (64 B, 2 ns), nothing is
 * copied, and the 10 blocks still change holder. */
static void test_move_priced_by_kv_carried(void **state) {
  (void)state;
  const int64_t kv_blocks[] = {4, 0};
  const int64_t transfer_ns[] = {160000, 2};
  for (int k = 0; k < 2; k++) {
    world *w = world_new();
    w->kv[0] = kv_blocks[k];
    infsim_gm *gm = NULL;
    infsim_contract *c = start_clean_borrow(w, &gm);
    run(w, c);
    assert_int_equal(w->done_ok, 1);
    assert_int_equal(w->done_at_ns, 6 * LAT_NS + transfer_ns[k] + 5 * (64 * 1000000000LL / 25000000000LL));
    assert_int_equal(w->held[0][1], 10);
    assert_int_equal(w->held[0][0], 50);
    const infsim_contract_counters *n = infsim_contract_counters_of(c);
    assert_int_equal(n->kv_sends, 1);
    assert_int_equal(n->kv_sent_bytes, kv_blocks[k] * BLOCK_BYTES);
    assert_int_equal(n->kv_moves, 1);
    assert_int_equal(n->kv_moved_bytes, kv_blocks[k] * BLOCK_BYTES);
    assert_int_equal(infsim_gm_held_by(gm, 0, 1), 10);
    teardown(w, gm, c);
  }
}

/* The slow move (10 MB over 0.1 GB/s, landing at 100.03 ms), but r0,
 * whose KV it carries, finishes at 50 ms: its blocks are freed wherever
 * they are, and the move is cancelled. The debtor stops its payload: its
 * first byte reached instance 1 at 27.56 us, so 49.97244 ms at 0.1 GB/s
 * carried 4,997,244 bytes, and the other 5,002,756 are never sent. Its
 * RELEASE reaches the creditor one hop later (50.00564 ms), which drops
 * the reservation then (before, it held the 10 blocks until the dead
 * request's KV had all arrived); the creditor's answer ends the debtor's
 * record one hop after. The policy hears of the cancel at once
 * (env.cancelled), not through borrow_done. With the first RELEASE lost,
 * the debtor sends it again at its timeout (60 ms) and the reservation
 * goes one hop after that, with one retry. Over a transport that cannot
 * stop a payload, all 10 MB land at 100.03 ms on the creditor's kept
 * refusal and commit nothing. Nothing is committed, the ledger never has
 * the move, nothing stays reserved. */
static void test_cancel_when_request_ends(void **state) {
  (void)state;
  for (int variant = 0; variant < 3; variant++) {
    bool lose_first = variant == 1, can_stop = variant != 2;
    world *w = world_new();
    w->bw = 0.1e9;
    w->no_abort = !can_stop;
    if (lose_first) {
      w->drop_kind = INFSIM_MSG_RELEASE;
      w->drop_count = 1;
    }
    infsim_gm *gm = NULL;
    infsim_contract *c = start_clean_borrow(w, &gm);
    int64_t end_ns = 50000000, hop = LAT_NS + 640;
    run_until(w, c, end_ns);
    assert_int_equal(infsim_contract_reserved(c, 1), 10); /* the KV is on its way */
    end_r0_at(w, c, end_ns);
    assert_int_equal(w->cancelled, 1);
    assert_false(infsim_contract_in_flight(c, 0, 1)); /* over for the debtor's policy */
    assert_int_equal(infsim_contract_pending(c, 0), 0);
    int64_t released_ns = end_ns + (lose_first ? 10000000 : 0) + hop;
    run_until(w, c, released_ns - 1);
    assert_int_equal(infsim_contract_reserved(c, 1), 10);
    run_until(w, c, released_ns);
    assert_int_equal(infsim_contract_reserved(c, 1), 0);
    run(w, c);
    const infsim_contract_counters *n = infsim_contract_counters_of(c);
    assert_int_equal(n->retries, lose_first);
    assert_int_equal(w->kinds[INFSIM_MSG_RELEASE], 1 + lose_first);
    assert_int_equal(n->kv_sends, 1);
    assert_int_equal(n->kv_sent_bytes, can_stop ? 4997244 : 10 * BLOCK_BYTES);
    assert_int_equal(n->kv_moves, 0);
    assert_int_equal(w->done_ok + w->done_fail, 0);
    assert_int_equal(infsim_gm_held_by(gm, 0, 1), 0);
    check_cancel_left_nothing(w, c);
    teardown(w, gm, c);
  }
}

/* A cancel that overtakes its RESERVE: the RESERVE is held back 20 ms
 * before it leaves, r0 ends at 1 ms and the cancel reaches the creditor
 * first, with no reservation there yet. The creditor keeps a refusal, so
 * the RESERVE, arriving at 20.015 ms, reserves nothing (before, it
 * reserved 10 blocks for a dead request, held until the lease ran out
 * 40.8 ms later) and is answered as refused. */
static void test_cancel_overtakes_reserve(void **state) {
  (void)state;
  world *w = world_new();
  w->delay_kind = INFSIM_MSG_RESERVE;
  w->delay_ns = 20000000;
  infsim_gm *gm = NULL;
  infsim_contract *c = start_clean_borrow(w, &gm);
  end_r0_at(w, c, 1000000);
  int64_t hop = LAT_NS + 2, reserve_at = 2 * hop + 20000000 + hop;
  run_until(w, c, reserve_at);
  assert_int_equal(w->kinds[INFSIM_MSG_RESERVE_ACK], 1);
  assert_int_equal(infsim_contract_reserved(c, 1), 0);
  run(w, c);
  /* the kept refusal answered it: the creditor never looked at its memory */
  assert_int_equal(infsim_contract_counters_of(c)->refused, 0);
  assert_int_equal(w->kinds[INFSIM_MSG_MOVE], 0);
  check_cancel_left_nothing(w, c);
  teardown(w, gm, c);
}

/* A move between instances of node 0 (same-node planner: debtor 0's r0 to
 * instance 1) whose debtor (cut = 0) or creditor (cut = 1) stops being
 * reachable just before the MOVE is sent (20 us), with nobody told: the
 * MOVE and everything after it from or to that instance is lost, and the
 * debtor gives up at 50.82 ms. The gManager keeps its record (the move
 * could still land) until, at 100 ms, an unrelated borrow on node 1 (3's
 * r4 to instance 2) brings a message: then it checks. A lost debtor: the
 * creditor's reservation ran out at 40.82 ms (nobody probed it) and its
 * kept refusal answers the gManager's one probe: the record goes. A lost
 * creditor: no probe is answered; after max_retries + 1 = 4 probes, at
 * 10 ms intervals, the record goes (140 ms). Either way the ledger never
 * records a move that did not land, and nothing stays reserved. */
static void test_ledger_record_bounded(void **state) {
  (void)state;
  for (int32_t cut = 0; cut < 2; cut++) {
    world *w = world_new();
    w->cut = cut;
    w->cut_from_ns = 20000;
    infsim_gm *gm = clean_cluster(w);
    infsim_contract *c = contract_planned_by(w, gm, 3, INFSIM_PLAN_SAME_NODE);
    assert_int_equal(infsim_contract_borrow(c, 0, 1, 10, false, 0, NULL), INFSIM_OK);
    run(w, c);
    assert_int_equal(w->done_fail, 1);
    assert_int_equal(w->done_at_ns, 4 * (LAT_NS + 2) + 10800000 + 4 * 10000000);
    assert_true(infsim_contract_proposal_open(c, 0, 0)); /* kept: the move might still land */
    assert_int_equal(infsim_contract_reserved(c, 1), 0);
    assert_int_equal(infsim_contract_borrow(c, 3, 4, 10, false, 100000000, NULL), INFSIM_OK);
    run(w, c);
    assert_int_equal(w->done_ok, 1);
    assert_int_equal(w->held[4][2], 10);
    assert_false(infsim_contract_proposal_open(c, 0, 0));
    const infsim_contract_counters *n = infsim_contract_counters_of(c);
    assert_int_equal(n->ledger_probes, cut == 0 ? 1 : 4);
    assert_int_equal(n->ledger_lost, cut == 0 ? 0 : 1);
    assert_int_equal(infsim_gm_held_by(gm, 0, 1), 0);
    assert_int_equal(infsim_gm_held_by(gm, 4, 2), 10);
    assert_int_equal(w->held[0][1], 0);
    for (int32_t i = 0; i < INST; i++) assert_int_equal(infsim_contract_reserved(c, i), 0);
    teardown(w, gm, c);
  }
}

/* r5 (owned by 0, nothing yet) needs 70: it is then the longest, so its
 * new blocks go straight to instance 1 (45 spare): fresh, nothing moved. */
static void test_fresh_blocks(void **state) {
  (void)state;
  world *w = world_new();
  const placed rows[] = {{0, 0, 0, 60}, {2, 1, 1, 50}, {3, 2, 2, 70}, {4, 3, 3, 100}};
  infsim_gm *gm = cluster_of(w, rows, sizeof rows / sizeof *rows);
  infsim_contract *c = contract(w, gm, 3);
  assert_int_equal(infsim_contract_borrow(c, 0, 5, 70, true, 0, NULL), INFSIM_OK);
  run(w, c);
  assert_int_equal(w->done_ok, 1);
  assert_int_equal(w->held[5][1], 45);
  assert_int_equal(w->free_blocks[1], 5);
  assert_int_equal(w->kinds[INFSIM_MSG_MOVE], 0);
  assert_int_equal(infsim_contract_counters_of(c)->kv_moved_bytes, 0);
  assert_int_equal(infsim_gm_held_by(gm, 5, 1), 45);
  assert_int_equal(infsim_gm_borrowed(gm, 0), 45);
  teardown(w, gm, c);
}

/* The gManager believes instance 1 has 50 free; it has 5, its reserve.
 * The creditor refuses (its own truth decides), the debtor asks again,
 * gets the same creditor (the view is stale until a heartbeat), and gives
 * up after max_retries; nothing is reserved or moved. Each new attempt
 * tells the gManager that the one before was refused: of its three
 * records, the last attempt's alone is left (until its check). */
static void test_stale_view_refused_then_given_up(void **state) {
  (void)state;
  world *w = world_new();
  const placed rows[] = {{0, 0, 0, 100}, {2, 1, 1, 50}, {3, 2, 2, 70}, {4, 3, 3, 100}};
  infsim_gm *gm = cluster_of(w, rows, sizeof rows / sizeof *rows);
  w->free_blocks[1] = RESERVE; /* something else took them; no heartbeat yet */
  infsim_contract *c = contract(w, gm, 2);
  assert_int_equal(infsim_contract_borrow(c, 0, 0, 10, true, 0, NULL), INFSIM_OK);
  run(w, c);
  assert_int_equal(w->done_fail, 1);
  assert_int_equal(w->commits, 0);
  const infsim_contract_counters *n = infsim_contract_counters_of(c);
  assert_int_equal(n->refused, 3);
  assert_int_equal(n->retries, 2);
  assert_int_equal(n->failed, 1);
  assert_int_equal(w->kinds[INFSIM_MSG_RELEASE], 1);
  for (int32_t i = 0; i < INST; i++) assert_int_equal(infsim_contract_reserved(c, i), 0);
  assert_int_equal(infsim_contract_proposals(c), 1);
  teardown(w, gm, c);
}

/* First come, first served at the creditor: two debtors are sent to
 * instance 1 (the gManager believes it has 100 free; it has 20, 15 above
 * its reserve). The first reservation holds 10 until its KV lands; the
 * second, arriving meanwhile, gets the 5 left (a borrow takes what is
 * there), and a third, after both, is refused. */
static void test_creditor_first_come_first_served(void **state) {
  (void)state;
  world *w = world_new();
  const placed rows[] = {{0, 0, 0, 100}, {2, 2, 2, 100}, {3, 3, 3, 100}};
  infsim_gm *gm = cluster_of(w, rows, sizeof rows / sizeof *rows);
  w->free_blocks[1] = 20;
  infsim_contract *c = contract(w, gm, 1);
  /* Requests 1 (on 0) and 6 (on 2) need 10 each and may not take new
   * blocks remotely: each debtor's longest request (r0, r2) sends 10
   * blocks away, KV to copy. */
  assert_int_equal(infsim_contract_borrow(c, 0, 1, 10, false, 0, NULL), INFSIM_OK);
  assert_int_equal(infsim_contract_borrow(c, 2, 6, 10, false, 1000, NULL), INFSIM_OK);
  run(w, c);
  assert_int_equal(w->done_ok, 2);
  assert_int_equal(w->done_fail, 0);
  assert_int_equal(w->kinds[INFSIM_MSG_MOVE], 2);
  assert_int_equal(w->free_blocks[1], RESERVE);
  assert_int_equal(w->held[0][1], 10);
  assert_int_equal(w->held[2][1], 5);
  assert_int_equal(infsim_contract_reserved(c, 1), 0);
  /* the third borrow starts now, at the last event delivered (the clock
   * never goes back) */
  assert_int_equal(infsim_contract_borrow(c, 0, 1, 10, false, w->heap.last_ns, NULL), INFSIM_OK);
  run(w, c);
  assert_int_equal(w->done_fail, 1);
  assert_int_equal(w->held[0][1], 10);
  teardown(w, gm, c);
}

/* DGFM's own moves: a recall of r0's 10 blocks from instance 1 to its
 * owner 0 runs from the reservation on and the gManager records it; a
 * swap half needs free blocks at its destination, not spare. */
static void test_planned_moves(void **state) {
  (void)state;
  world *w = world_new();
  /* instance 2: 3 free, below its reserve */
  const placed rows[] = {{0, 0, 0, 50}, {0, 0, 1, 10}, {1, 2, 2, 97}, {2, 3, 1, 4}};
  infsim_gm *gm = cluster_of(w, rows, sizeof rows / sizeof *rows);
  infsim_contract *c = contract(w, gm, 3);
  w->exchanges = true;
  infsim_gm_move recall = {.req = 0, .from = 1, .to = 0, .blocks = 10};
  assert_int_equal(infsim_contract_move(c, &recall, false, 0, NULL), INFSIM_OK);
  infsim_gm_move half = {.req = 2, .from = 1, .to = 2, .blocks = 3};
  assert_int_equal(infsim_contract_move(c, &half, true, 0, NULL), INFSIM_OK);
  run(w, c);
  assert_int_equal(w->done_ok, 2);
  assert_int_equal(w->held[0][0], 60);
  assert_int_equal(w->held[0][1], 0);
  assert_int_equal(infsim_gm_held_by(gm, 0, 1), 0);
  assert_int_equal(infsim_gm_borrowed(gm, 0), 0);
  assert_int_equal(w->held[2][2], 3);
  assert_int_equal(w->kinds[INFSIM_MSG_BORROW_REQUEST], 0);
  /* The same half as a plain move is refused (3 free, reserve 5). */
  infsim_gm_move again = {.req = 2, .from = 1, .to = 3, .blocks = 1};
  w->free_blocks[3] = 5;
  assert_int_equal(infsim_contract_move(c, &again, false, w->heap.last_ns, NULL), INFSIM_OK);
  run(w, c);
  assert_int_equal(w->done_fail, 1);
  teardown(w, gm, c);
}

/* Random borrows under 15% message loss and random delays (some past the
 * timeout): every borrow ends once, nothing stays reserved, blocks are
 * conserved, nobody lends into its reserve (checked in w_commit). */
static void test_lossy_network_leaks_nothing(void **state) {
  (void)state;
  int64_t oks = 0, fails = 0, retries = 0;
  for (int trial = 0; trial < 20; trial++) {
    world *w = world_new();
    w->rng = infsim_rng_new((uint64_t)(100 + trial), "test.contract");
    w->loss = 0.15;
    infsim_gm *gm = NULL;
    assert_int_equal(infsim_gm_new(INST, 2, CAPB, REQS, RESERVE, &gm, NULL), INFSIM_OK);
    int64_t total = 0;
    for (int64_t r = 0; r < REQS; r++) {
      int32_t owner = (int32_t)(r % INST);
      int64_t n = (int64_t)gsl_rng_uniform_int(w->rng, 20);
      if (n > 0 && w->free_blocks[owner] - n >= 0) {
        place(w, gm, r, owner, owner, n);
        total += n;
      }
    }
    heartbeat_free(w, gm);
    infsim_contract *c = contract(w, gm, 3);
    int started = 0;
    for (int k = 0; k < 30; k++) {
      int32_t d = (int32_t)gsl_rng_uniform_int(w->rng, INST);
      int64_t r = d + INST * (int64_t)gsl_rng_uniform_int(w->rng, REQS / INST);
      if (infsim_contract_in_flight(c, d, r)) continue;
      assert_int_equal(infsim_contract_borrow(c, d, r, 1 + (int64_t)gsl_rng_uniform_int(w->rng, 15), k % 2, 0, NULL),
                       INFSIM_OK);
      started++;
    }
    run(w, c);
    assert_int_equal(w->done_ok + w->done_fail, started);
    const infsim_contract_counters *n = infsim_contract_counters_of(c);
    assert_int_equal(n->borrows, w->done_ok);
    assert_int_equal(n->failed, w->done_fail);
    assert_true(w->commits >= w->done_ok);
    int64_t after = 0;
    for (int32_t i = 0; i < INST; i++) {
      assert_int_equal(infsim_contract_reserved(c, i), 0);
      assert_int_equal(infsim_contract_pending(c, i), 0);
      assert_true(w->free_blocks[i] >= 0);
      int64_t held = 0;
      for (int64_t r = 0; r < REQS; r++) held += w->held[r][i];
      assert_int_equal(held + w->free_blocks[i], CAPB);
    }
    for (int64_t r = 0; r < REQS; r++)
      for (int32_t i = 0; i < INST; i++) after += w->held[r][i];
    assert_true(after >= total); /* fresh blocks add, moves conserve */
    oks += w->done_ok;
    fails += w->done_fail;
    retries += n->retries;
    teardown(w, gm, c);
  }
  /* The faults were felt: retries happened, and borrows both landed and failed. */
  assert_true(oks > 100 && fails > 0 && retries > 50);
}

/* The lossy network's borrows, with requests ending while they are in
 * flight (a random request at each of 12 random times in the first
 * 60 ms), each end cancelling the moves of its KV: every borrow ends
 * exactly once (landed, failed or cancelled), nothing stays reserved, no
 * ended request holds a block anywhere, blocks are conserved. */
static void test_cancels_under_loss_leak_nothing(void **state) {
  (void)state;
  int64_t cancels = 0;
  for (int trial = 0; trial < 20; trial++) {
    world *w = world_new();
    w->rng = infsim_rng_new((uint64_t)(500 + trial), "test.contract");
    w->loss = 0.15;
    infsim_gm *gm = NULL;
    assert_int_equal(infsim_gm_new(INST, 2, CAPB, REQS, RESERVE, &gm, NULL), INFSIM_OK);
    for (int64_t r = 0; r < REQS; r++) {
      int32_t owner = (int32_t)(r % INST);
      int64_t n = (int64_t)gsl_rng_uniform_int(w->rng, 20);
      if (n > 0 && w->free_blocks[owner] - n >= 0) place(w, gm, r, owner, owner, n);
      w->kv[r] = (int64_t)gsl_rng_uniform_int(w->rng, 20); /* part of a request's blocks hold KV */
    }
    heartbeat_free(w, gm);
    infsim_contract *c = contract(w, gm, 3);
    int started = 0;
    for (int k = 0; k < 30; k++) {
      int32_t d = (int32_t)gsl_rng_uniform_int(w->rng, INST);
      int64_t r = d + INST * (int64_t)gsl_rng_uniform_int(w->rng, REQS / INST);
      if (infsim_contract_in_flight(c, d, r)) continue;
      assert_int_equal(infsim_contract_borrow(c, d, r, 1 + (int64_t)gsl_rng_uniform_int(w->rng, 15), k % 2, 0, NULL),
                       INFSIM_OK);
      started++;
    }
    int64_t ends[12];
    for (int k = 0; k < 12; k++) ends[k] = (int64_t)gsl_rng_uniform_int(w->rng, 60000000);
    for (int k = 0; k < 12; k++) /* in time order */
      for (int j = k + 1; j < 12; j++)
        if (ends[j] < ends[k]) {
          int64_t t = ends[k];
          ends[k] = ends[j];
          ends[j] = t;
        }
    for (int k = 0; k < 12; k++) {
      run_until(w, c, ends[k]);
      int64_t r = (int64_t)gsl_rng_uniform_int(w->rng, REQS);
      if (w->dead[r]) continue;
      w_end(w, r);
      assert_int_equal(infsim_contract_cancel(c, r, ends[k], NULL), INFSIM_OK);
    }
    run(w, c);
    assert_int_equal(w->done_ok + w->done_fail + w->cancelled, started);
    const infsim_contract_counters *n = infsim_contract_counters_of(c);
    assert_int_equal(n->cancelled, w->cancelled);
    assert_true(n->kv_moved_bytes <= n->kv_sent_bytes);
    for (int32_t i = 0; i < INST; i++) {
      assert_int_equal(infsim_contract_reserved(c, i), 0);
      assert_int_equal(infsim_contract_pending(c, i), 0);
      int64_t held = 0;
      for (int64_t r = 0; r < REQS; r++) {
        if (w->dead[r]) assert_int_equal(w->held[r][i], 0);
        held += w->held[r][i];
      }
      assert_int_equal(held + w->free_blocks[i], CAPB);
    }
    cancels += w->cancelled;
    teardown(w, gm, c);
  }
  assert_true(cancels > 30); /* the ends met moves on the way (62 with these seeds) */
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_clean_borrow),
      cmocka_unit_test(test_fresh_blocks),
      cmocka_unit_test(test_slow_move_sent_once),
      cmocka_unit_test(test_lost_move_resent),
      cmocka_unit_test(test_move_priced_by_kv_carried),
      cmocka_unit_test(test_cancel_when_request_ends),
      cmocka_unit_test(test_cancel_overtakes_reserve),
      cmocka_unit_test(test_ledger_record_bounded),
      cmocka_unit_test(test_stale_view_refused_then_given_up),
      cmocka_unit_test(test_creditor_first_come_first_served),
      cmocka_unit_test(test_planned_moves),
      cmocka_unit_test(test_lossy_network_leaks_nothing),
      cmocka_unit_test(test_cancels_under_loss_leak_nothing),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
