/*
** gmanager.h: DistKV-LLM's global manager: the debt ledger and the borrow
** planner (Infinite-LLM, arXiv 2401.02669, v1 sec. 5 and v2's planner).
**
** The ledger says, per request, which instances hold how many of its
** rBlocks (its placement) and which instance owns it; seen per instance,
** blocks it holds for others are lent, blocks of its own requests held
** elsewhere are borrowed. It is the gManager's *view*: it learns it from
** heartbeats (each instance reports the entries it holds that changed,
** with its free memory) and from confirmed moves, so it may be stale; the
** KV managers (kv.h) are the truth. Holders are authoritative for what
** they hold: an entry (req, holder) is only ever written from the holder's
** report or a confirmed move, each stamped with a time, and an older report
** never overwrites a newer entry. The gManager can be lost and rebuilt
** from full heartbeats (every entry each instance holds).
**
** The planner answers "instance d is short of n blocks" with moves: which
** request's blocks go from where to which creditor. A creditor keeps a
** reserve of free blocks for its own growth; only free blocks above it are
** offered (its spare). The gManager deducts what it proposes from its view
** of the creditor's free memory at once, so that two debtors asking at
** nearly the same time are not both sent to the same last blocks; the
** creditor's next heartbeat restores the truth.
**
** Invariants (infsim_gm_check): per instance, lent = sum of entries held
** there for other owners, borrowed = sum of entries of its requests held
** elsewhere, held = sum of all entries held there; the sum of lent equals
** the sum of borrowed (zero-sum ledger); a request is in the split list
** exactly when some holder other than its owner holds blocks of it.
*/
#ifndef INFSIM_GMANAGER_H
#define INFSIM_GMANAGER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "infsim/status.h"

typedef struct infsim_gm infsim_gm;

typedef enum {
  /* The paper's v2 greedy: the debtor's longest request goes, in pieces,
   * to the creditors with the most spare memory first. */
  INFSIM_PLAN_GREEDY = 0,
  /* The same, but creditors on the debtor's node first (NVLink, not the
   * NIC), most spare first within each group. */
  INFSIM_PLAN_SAME_NODE = 1,
  /* Creditors already holding blocks of the moved request first (the
   * request then spans no new instance: fewer partials to merge, less work
   * for DGFM), then the same node, then the most spare. */
  INFSIM_PLAN_AFFINITY = 2,
  /* Pieces whole, to a holder of the request, the same node or any
   * (planner.h). */
  INFSIM_PLAN_FIT = 3,
  /* Creditors levelled by water-filling, not drained one by one
   * (planner.h). */
  INFSIM_PLAN_LEVEL = 4,
  /* A request's new blocks spread to keep its prompt chunks' step short:
   * the owner's node first, levelled, and few holders behind the NIC
   * (planner.h). */
  INFSIM_PLAN_SPREAD = 5
} infsim_gm_planner;

/* "greedy", "same-node", "affinity", "fit", "level". */
const char *infsim_gm_planner_name(infsim_gm_planner p);
/* The planner named `name`; false when there is none. */
bool infsim_gm_planner_from_name(const char *name, infsim_gm_planner *out);

/* One ledger entry: `holder` holds `blocks` of req (owned by `owner`). */
typedef struct {
  int64_t req;
  int32_t owner;
  int32_t holder;
  int64_t blocks;
} infsim_gm_entry;

/* A proposed move of `blocks` of req's KV from one instance to another
 * (the debtor's own blocks to a creditor, a recall, a swap half). */
typedef struct {
  int64_t req;
  int32_t from;
  int32_t to;
  int64_t blocks;
  bool fresh; /* new blocks placed at `to` (nothing leaves `from`) */
} infsim_gm_move;

/* The ledger keeps holders in 16 bits and list positions in 32. */
enum { INFSIM_GM_INSTANCES_MAX = 32767 };

/* A ledger for `instances` instances of capacity_blocks each,
 * instances_per_node per node, requests 0..requests-1; creditors keep
 * reserve_blocks free for themselves. At most INFSIM_GM_INSTANCES_MAX
 * instances and 2^31 - 1 requests (INFSIM_EINPUT beyond). */
infsim_status infsim_gm_new(int32_t instances, int32_t instances_per_node, int64_t capacity_blocks, int64_t requests,
                            int64_t reserve_blocks, infsim_gm **out, infsim_error *err);
void infsim_gm_free(infsim_gm *gm);
/* True once a ledger list could not grow (the machine is out of memory):
 * the entry was not recorded, and the policy ends the run with
 * INFSIM_ENOMEM. The ledger's functions return no status, so the failure
 * is kept here. */
bool infsim_gm_out_of_memory(const infsim_gm *gm);

/* A heartbeat from `from`, describing its state at snapshot_ns: its free
 * blocks and entries it holds (blocks 0: it no longer holds any of that
 * request). Full: the entries are everything it holds (entries held there
 * and not listed are dropped). Entries with holder != from are bugs. */
void infsim_gm_heartbeat(infsim_gm *gm, int32_t from, int64_t snapshot_ns, int64_t free_blocks,
                         const infsim_gm_entry *entries, size_t n, bool full);
/* A move confirmed at now_ns (the debtor's CONFIRM). */
void infsim_gm_record_move(infsim_gm *gm, const infsim_gm_move *m, int64_t now_ns);
/* req finished or was dropped everywhere at now_ns (its owner says so);
 * reports about it from before now_ns are ignored from then on, and
 * entries set after now_ns stay. */
void infsim_gm_forget(infsim_gm *gm, int64_t req, int64_t now_ns);
/* Asks the CPU for req's record ahead of a use (a walk over requests, a
 * request about to end): per-request records of an hour's run span
 * megabytes, and one read again seconds later comes from memory. Changes
 * nothing. */
void infsim_gm_prefetch(const infsim_gm *gm, int64_t req);
/* The same for req's entries (another allocation), their line with
 * holder's: reads the record, so a walk asks for it some places after
 * infsim_gm_prefetch. */
void infsim_gm_prefetch_entries(const infsim_gm *gm, int64_t req, int32_t holder);
/* The gManager was lost: an empty ledger, every instance's free memory
 * unknown (0) until it reports again. */
void infsim_gm_reset(infsim_gm *gm);

int32_t infsim_gm_instances(const infsim_gm *gm);
int32_t infsim_gm_node_of(const infsim_gm *gm, int32_t instance);
int32_t infsim_gm_owner(const infsim_gm *gm, int64_t req);
int64_t infsim_gm_blocks(const infsim_gm *gm, int64_t req); /* over all holders */
int64_t infsim_gm_held_by(const infsim_gm *gm, int64_t req, int32_t holder);
/* The same, given *k, where holder's entry was in req's list at an earlier
 * call (-1 at first): O(1) while it is still there, else a search that
 * sets *k. */
int64_t infsim_gm_held_by_hint(const infsim_gm *gm, int64_t req, int32_t holder, int32_t *k);
/* req's blocks held away from its owner (0 when unknown); O(1). */
int64_t infsim_gm_remote_blocks(const infsim_gm *gm, int64_t req);
/* req's placement: its entries, into out[0..cap); returns how many it has. */
size_t infsim_gm_placement(const infsim_gm *gm, int64_t req, infsim_gm_entry *out, size_t cap);
/* How many instances other than req's owner hold blocks of it (its
 * remote pieces), and in *small_n how many of those pieces are of at
 * most max_blocks blocks (max_blocks <= 0: all). O(1) when max_blocks is
 * the ledger's small piece (infsim_gm_set_small_piece; it keeps the
 * count), else O(holders). */
int64_t infsim_gm_remote_pieces(const infsim_gm *gm, int64_t req, int64_t max_blocks, int64_t *small_n);
/* The pieces the ledger counts as small (DGFM's policy.dgfm_max_piece_blocks). */
void infsim_gm_set_small_piece(infsim_gm *gm, int64_t blocks);
/* How many requests have two remote pieces or more and one of them of at
 * most max_blocks (DGFM's candidates to consolidate or swap), O(1), when
 * max_blocks is the ledger's small piece; else -1 (not counted). */
int64_t infsim_gm_defrag_candidates(const infsim_gm *gm, int64_t max_blocks);

/* Per instance, in the gManager's view. */
int64_t infsim_gm_free_blocks(const infsim_gm *gm, int32_t instance);
int64_t infsim_gm_spare_blocks(const infsim_gm *gm, int32_t instance); /* free above the reserve */
int64_t infsim_gm_most_spare(const infsim_gm *gm); /* the most any instance has; O(1) */
int64_t infsim_gm_lent(const infsim_gm *gm, int32_t instance);
int64_t infsim_gm_borrowed(const infsim_gm *gm, int32_t instance);
int64_t infsim_gm_held(const infsim_gm *gm, int32_t instance);
/* A count of the changes to the entries `instance` holds of requests the
 * ledger has owned elsewhere (set, zeroed or forgotten; reset; a change
 * to the same value may count): while it stays, so does
 * infsim_gm_held_by(gm, req, instance) for each req the ledger has with
 * blocks there and owned elsewhere (req leaves the ledger, or changes
 * owner, only once that entry went). Never decreases. */
uint64_t infsim_gm_guest_generation(const infsim_gm *gm, int32_t instance);

/* Requests `instance` owns that have blocks somewhere (the planner's
 * candidates), in no particular order. */
size_t infsim_gm_owned(const infsim_gm *gm, int32_t instance, const int64_t **reqs);
/* A mark per owned request for its owner's reports (what the owner knows
 * of it, kept here beside the entry it describes): infsim_gm_set_live
 * sets or clears it (nothing for a request the ledger does not hold; a
 * request enters the ledger unmarked), infsim_gm_live reads it, and
 * infsim_gm_owned_not_live lists the owned requests of instance without
 * it (a part of infsim_gm_owned's list), in no particular order; O(1). */
void infsim_gm_set_live(infsim_gm *gm, int64_t req, bool live);
bool infsim_gm_live(const infsim_gm *gm, int64_t req);
size_t infsim_gm_owned_not_live(const infsim_gm *gm, int32_t instance, const int64_t **reqs);
/* infsim_gm_set_ended: req ended (finished or rejected: it holds no KV and
 * never runs again); it leaves the live part (as infsim_gm_set_live's
 * false) for an ended part of its owner's list, where it stays until it
 * leaves the ledger; an ended request is never marked live again.
 * infsim_gm_ended reads it. infsim_gm_owned_pending lists the owned
 * requests of instance neither live nor ended (infsim_gm_owned_not_live's
 * list less the ended part, its first ones), and infsim_gm_ended_split
 * counts the ended ones some of whose blocks are held away from their
 * owner in the ledger (in the split list); O(1). */
void infsim_gm_set_ended(infsim_gm *gm, int64_t req);
bool infsim_gm_ended(const infsim_gm *gm, int64_t req);
size_t infsim_gm_owned_pending(const infsim_gm *gm, int32_t instance, const int64_t **reqs);
/* The ended ones (infsim_gm_owned_not_live's list less the pending ones,
 * its last), in that list's order; O(1). */
size_t infsim_gm_owned_ended(const infsim_gm *gm, int32_t instance, const int64_t **reqs);
int64_t infsim_gm_ended_split(const infsim_gm *gm, int32_t instance);
/* The requests that joined an owned list while the last
 * infsim_gm_heartbeat applied its entries (some may have left it since). */
size_t infsim_gm_new_owned(const infsim_gm *gm, const int64_t **reqs);

/* Requests some of whose blocks are held away from their owner (DGFM's
 * work list), in no particular order. */
size_t infsim_gm_split_requests(const infsim_gm *gm, const int64_t **reqs);
/* How many of those `instance` owns; O(1). */
int64_t infsim_gm_split_owned(const infsim_gm *gm, int32_t instance);
/* Those requests (infsim_gm_split_owned of them), in no particular order. */
size_t infsim_gm_split_owned_requests(const infsim_gm *gm, int32_t instance, const int64_t **reqs);

/* Instances with no spare memory (short: candidate debtors), and instances
 * by spare memory, most first, ties by id (creditors; only those with
 * spare > 0). Each writes ids into out[0..instances) and returns the count. */
size_t infsim_gm_debtors(const infsim_gm *gm, int32_t *out);
size_t infsim_gm_creditors(const infsim_gm *gm, int32_t *out);

/* Plans `need` blocks for `debtor`, where request `req` (owned there)
 * needs them: moves into out[0..cap), returning how many; their blocks
 * sum to `need` or less (when spare is short). req >= 0 means req may take
 * new blocks at creditors (-1: only existing KV moves). Every planner takes
 * req first (its new blocks placed at the creditor cost no copy), then the
 * debtor's requests longest first (v2: the longest request is the one to
 * spread), and gives each creditors in the planner's order. A move of
 * another request is that many of its blocks held at the debtor, to be
 * copied there, which frees as many on the debtor. Proposals are deducted
 * from the creditors' spare. */
size_t infsim_gm_plan(infsim_gm *gm, infsim_gm_planner planner, int32_t debtor, int64_t req, int64_t need,
                      infsim_gm_move *out, size_t cap);
/* With on, infsim_gm_plan takes, after req, the guests the debtor holds
 * (pieces of other owners' requests), most blocks held there first, before
 * the debtor's own requests (policy.own_work_first). Off by default. */
void infsim_gm_set_guests_first(infsim_gm *gm, bool on);
/* The spread planner's costs, in blocks of micro-attention: what one more
 * holder behind the owner's NIC (remote) or its NVLink (near) adds to
 * every holder's step on that link (planner.h). */
void infsim_gm_set_spread_costs(infsim_gm *gm, int64_t remote_blocks, int64_t near_blocks);
/* With node relay (policy.distattn_relay: node) the spread planner counts
 * the NIC per remote node, not per holder (planner.h). Off by default. */
void infsim_gm_set_spread_relay(infsim_gm *gm, bool relay);
/* A proposal that did not happen (refused, timed out): gives its blocks
 * back to the creditor's spare in the gManager's view. */
void infsim_gm_unpropose(infsim_gm *gm, const infsim_gm_move *m);
/* A move the gManager planned outside infsim_gm_plan (DGFM): deducted from
 * its destination's free memory in the view at once, as proposals are, so
 * that the next plan or pass does not count the same blocks again. */
void infsim_gm_propose(infsim_gm *gm, const infsim_gm_move *m);

/* True when both ledgers hold the same entries and owners (free memory
 * views aside). */
bool infsim_gm_same_ledger(const infsim_gm *a, const infsim_gm *b);

/* Requests with entries in the ledger (now, most at once) and split
 * requests (now, most at once): the ledger's high-water marks. */
void infsim_gm_high_water(const infsim_gm *gm, int64_t *ledger_now, int64_t *ledger_peak, int64_t *split_now,
                          int64_t *split_peak);

/* Aborts when an invariant of the header comment is broken. */
void infsim_gm_check(const infsim_gm *gm);

#endif
