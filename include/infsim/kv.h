/*
** kv.h: the KV manager (the paper's rManager), for every instance of a run.
**
** KV memory is counted in rBlocks of scheduler.block_tokens tokens (all
** layers of one request). Every block has an id; a GPU block belongs to
** exactly one instance's memory (its holder), a host block to one host
** pool. Each request has a block table: its block ids in token order,
** wherever they live. Seen from an instance, a GPU block it holds is
**  - free,
**  - local: it holds KV of a request the instance owns (serves),
**  - lent: it holds KV of a request another instance owns;
** and an instance's own request may have blocks
**  - borrowed: held by another instance (lent there),
**  - swapped: in host memory (preemption by swap, or the CPU tier).
** Ownership is the request's (infsim_kv_set_owner); holding is the block's.
**
** Blocks allocated at a request's owner are counted at once but given
** ids only when the table is next read (infsim_kv_table, infsim_kv_runs)
** or moved: the counts never lag, ids are not fixed before they are
** asked for, and a table nobody reads costs no id work at all.
** A table is held as runs of consecutive ids (a prompt's blocks are one
** run where the free slots allow, and a request's next blocks continue its
** last run: free slots after it are set aside for it, counted free, and
** given way when others need them): taking or giving back n blocks costs
** O(runs + n / 64), not O(n). Freed slots are reused before fresh ones, so
** memory grows with blocks in use at once (and those set aside), not with
** the holder's capacity. Ids are int64: pool p's slot i is
** infsim_kv_first_block(p) + i. A real executor hands the block tables to
** the MA kernels (block id - infsim_kv_first_block(holder) is the slot in
** that GPU's pool).
**
** Invariants (infsim_kv_check, debug builds): every in-use block is in
** exactly one table; free + local + lent == capacity per holder; the sum
** of lent over instances equals the sum of borrowed (zero-sum ledger); the
** blocks host pools hold equal the sum of swapped (host pools as holders).
*/
#ifndef INFSIM_KV_H
#define INFSIM_KV_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "infsim/status.h"

typedef struct infsim_kv infsim_kv;

/* An instance's view of its memory. */
typedef struct {
  int64_t capacity; /* GPU blocks */
  int64_t free;
  int64_t local;    /* held here, owned here */
  int64_t lent;     /* held here, owned elsewhere */
  int64_t borrowed; /* owned here, held by another instance */
  int64_t swapped;  /* owned here, in host memory */
} infsim_kv_counts;

/* `instances` GPU pools of gpu_blocks each, and `hosts` host pools of
 * host_blocks each (host pool h serves the instances that map to it);
 * request ids are 0..requests-1, or any, in order, through infsim_kv_admit. */
infsim_status infsim_kv_new(int32_t instances, int64_t gpu_blocks, int32_t hosts, int64_t host_blocks,
                            int64_t requests, infsim_kv **out, infsim_error *err);
void infsim_kv_free(infsim_kv *kv);

/* Tables for requests in flight only (the scheduler's use): request req
 * is about to be served, and every request before `oldest` is done (its
 * table released). Those are forgotten: their table slots go to later
 * requests, and the accessors read them as holding nothing, with the
 * owner infsim_kv_keep_owners points at (else -1). Memory then grows
 * with the span oldest..req, not with the run (infsim_kv_new's
 * `requests` is then best 0). Calls come in request order, `oldest`
 * never going back. */
infsim_status infsim_kv_admit(infsim_kv *kv, int64_t req, int64_t oldest, infsim_error *err);
/* Where the owners of forgotten requests are kept (the scheduler's
 * records): request r's is the int32_t at first + r x stride, so
 * infsim_kv_owner still answers for them. */
void infsim_kv_keep_owners(infsim_kv *kv, const void *first, size_t stride);
/* Table slots allocated (what the tables' memory grows with). */
int64_t infsim_kv_table_slots(const infsim_kv *kv);

/* The instance that owns (serves) req; -1 before it is set. Blocks of req
 * held by any other instance count as lent there and borrowed here. */
void infsim_kv_set_owner(infsim_kv *kv, int64_t req, int32_t instance);
int32_t infsim_kv_owner(const infsim_kv *kv, int64_t req);

infsim_kv_counts infsim_kv_counts_of(const infsim_kv *kv, int32_t instance);
int64_t infsim_kv_free_blocks(const infsim_kv *kv, int32_t instance);
int64_t infsim_kv_host_free_blocks(const infsim_kv *kv, int32_t host);

/* Appends n new blocks held by GPU pool `holder` to req's table; fails
 * (INFSIM_ERUN, a bug) when the holder has fewer than n free. At req's
 * owner O(1): the blocks are counted, their ids deferred (above). */
infsim_status infsim_kv_alloc(infsim_kv *kv, int64_t req, int32_t holder, int64_t n, infsim_error *err);
/* infsim_kv_alloc(kv, req, holder, 1, err): a decode step's block
 * boundary (O(1) at req's owner, deferred like any allocation there). */
infsim_status infsim_kv_alloc_one(infsim_kv *kv, int64_t req, int32_t holder, infsim_error *err);
/* infsim_kv_alloc_one in two parts, for a caller that takes one step's
 * boundaries at pool `holder` in a row: infsim_kv_step_table counts req's
 * new block in its table only (true), and infsim_kv_step_pool(kv,
 * holder, n) then counts the n blocks so added in the pool, once for
 * them all. In between the pool's counts lag: the caller has made sure
 * the pool has room for every one and calls nothing else of the KV
 * manager. False, nothing done, where holder is not req's owner or the
 * table is full: the pool's count of those before, then
 * infsim_kv_alloc_one. */
bool infsim_kv_step_table(infsim_kv *kv, int64_t req, int32_t holder);
void infsim_kv_step_pool(infsim_kv *kv, int32_t holder, int64_t n);
/* Decode growth: a table that takes one block at its owner's GPU pool
 * at steps next_step, next_step + steps_apart, ... of that pool's step
 * count, without a write to it at each. The pool's counts take them as
 * the caller says a step is done (infsim_kv_grow_pool, the number of
 * growing tables due at that step: the caller keeps each one's next
 * step); the table's own counts catch up when anything reads or changes
 * it (every function here sees its blocks as of the pool's last step
 * done). infsim_kv_grow_begin starts it where next_step lies after the
 * pool's last step done, the table is its owner's and it could grow
 * through last_step; false, nothing done, otherwise (the caller takes
 * those blocks itself). infsim_kv_grow_end stops it (the blocks due by
 * the pool's last step done are the table's). */
bool infsim_kv_grow_begin(infsim_kv *kv, int64_t req, int64_t next_step, int64_t steps_apart, int64_t last_step);
void infsim_kv_grow_end(infsim_kv *kv, int64_t req);
/* Step `step` of GPU pool `pool` is done (steps only go up): n growing
 * tables took their block at it (all of those due then). Counted as
 * infsim_kv_step_pool counts. */
void infsim_kv_grow_pool(infsim_kv *kv, int32_t pool, int64_t step, int64_t n);
/* The next step at which req's table grows by itself, INT64_MAX when it
 * does not (checks). */
int64_t infsim_kv_grow_next(const infsim_kv *kv, int64_t req);
/* Asks the CPU for the line of req's table ahead of a use (the next
 * arrival's: its slot in the ring was last used by a request that ended
 * long before). Changes nothing. */
void infsim_kv_prefetch(const infsim_kv *kv, int64_t req);
/* The same for the list of req's foreign holdings (another allocation):
 * reads the table, so a walk asks for it some places after
 * infsim_kv_prefetch. */
void infsim_kv_prefetch_holdings(const infsim_kv *kv, int64_t req);
/* One new block held by GPU pool `holder` appended to the table of each
 * of reqs[0..n) (decode steps' block boundaries, one call a step); fails
 * (INFSIM_ERUN) when the holder has fewer than n free. */
infsim_status infsim_kv_alloc_each(infsim_kv *kv, const int32_t *reqs, int32_t n, int32_t holder,
                                   infsim_error *err);
/* Frees every block of req, wherever it is. */
void infsim_kv_release(infsim_kv *kv, int64_t req);
/* Frees the last n blocks of req's table (a shrink, e.g. a recall that recomputes). */
void infsim_kv_release_tail(infsim_kv *kv, int64_t req, int64_t n);

/* Moves every GPU block of req into host pool `host` (swap out), or back to
 * GPU pool `holder` (swap in, n blocks at the front of the table kept, the
 * rest dropped: swap-in may need fewer). Fail when space is short. */
infsim_status infsim_kv_swap_out(infsim_kv *kv, int64_t req, int32_t host, infsim_error *err);
infsim_status infsim_kv_swap_in(infsim_kv *kv, int64_t req, int32_t holder, infsim_error *err);

/* Moves the blocks of req's table at [first, first + n) to pool `holder`,
 * a GPU or a host pool (lending, recall, DGFM swaps, the CPU tier): new ids
 * there, old ones freed. */
infsim_status infsim_kv_move(infsim_kv *kv, int64_t req, int64_t first, int64_t n, int32_t holder,
                             infsim_error *err);
/* Moves up to n of req's blocks held at `from` to pool `to`, the newest
 * first (the oldest KV stays with the owner's local attention); returns
 * how many moved. The caller has checked that `to` has the room. */
int64_t infsim_kv_move_tail(infsim_kv *kv, int64_t req, int32_t from, int32_t to, int64_t n);

/* req's block table (global ids, token order) and its length. Written
 * out from its runs into a buffer the manager keeps (O(its blocks)): valid
 * until the next call, one caller at a time; infsim_kv_runs reads the
 * table as it is held. Both first give the table's deferred blocks their
 * ids (the manager's state changes, none of its counts: hence const). */
const int64_t *infsim_kv_table(const infsim_kv *kv, int64_t req, int64_t *n);
/* `blocks` consecutive ids from `first`, all in one pool. */
typedef struct {
  int64_t first;
  int64_t blocks;
} infsim_kv_run;
/* req's block table as runs (token order; a run never continues the one
 * before it) and how many; valid until req's table next changes. */
const infsim_kv_run *infsim_kv_runs(const infsim_kv *kv, int64_t req, int64_t *n);
int64_t infsim_kv_blocks(const infsim_kv *kv, int64_t req);
/* Blocks of req not in its owner's GPU memory (borrowed or swapped); O(1). */
int64_t infsim_kv_foreign_blocks(const infsim_kv *kv, int64_t req);
/* Blocks of req held by GPU pool `holder`. O(holders). */
int64_t infsim_kv_blocks_at(const infsim_kv *kv, int64_t req, int32_t holder);
/* The pools other than its owner's GPU memory where req has blocks (other
 * GPUs, host pools as instances + h), with their block counts; writes at
 * most max entries and returns how many there are. O(holders). */
int32_t infsim_kv_holdings(const infsim_kv *kv, int64_t req, int32_t *pools, int64_t *blocks, int32_t max);
/* Holdings (or holders of a batch) that pricing and the scheduler read at
 * most: DGFM keeps a request on few instances, far below this. */
enum { INFSIM_KV_MAX_HOLDINGS = 64 };
/* The requests owned by instance with blocks outside its GPU memory
 * (another instance's GPU or host memory: split, CPU tier or swapped), in
 * no particular order. */
const int64_t *infsim_kv_split_requests(const infsim_kv *kv, int32_t instance, int64_t *n);
/* A number that changes whenever the holdings (infsim_kv_holdings) of a
 * request owned by `instance` change, or its split list does: what a
 * caller derived from them holds while it stays the same. */
uint64_t infsim_kv_split_generation(const infsim_kv *kv, int32_t instance);
/* A number that changes whenever the blocks in instance's memory of a
 * request owned elsewhere (infsim_kv_blocks_at) change. While it stays the
 * same, such a request with blocks there keeps them, and its owner (its
 * table is not empty). */
uint64_t infsim_kv_guest_generation(const infsim_kv *kv, int32_t instance);
/* Distinct requests owned elsewhere with blocks in instance's GPU memory. */
int64_t infsim_kv_guests(const infsim_kv *kv, int32_t instance);

/* Where a block lives: a GPU pool id in [0, instances), or
 * instances + h for host pool h. */
int32_t infsim_kv_holder_of(const infsim_kv *kv, int64_t block);
/* The first global id of a pool (the pool's slot 0). */
int64_t infsim_kv_first_block(const infsim_kv *kv, int32_t pool);

/* The most blocks lent cluster-wide at any moment so far. */
int64_t infsim_kv_borrowed_peak(const infsim_kv *kv);
/* Pool `pool` (GPU pools first, then host pools, as infsim_kv_holder_of):
 * blocks in use now, the most ever in use at once, and its capacity. */
void infsim_kv_pool_usage(const infsim_kv *kv, int32_t pool, int64_t *in_use, int64_t *peak, int64_t *capacity);

/* Called for each block a move (infsim_kv_move, move_tail) or a swap
 * rehomes, before the old id is freed: request req's block at table index
 * `index` leaves id `from` for id `to`. Cluster mode copies the KV bytes
 * there; the simulator sets none (NULL). */
typedef void (*infsim_kv_rehome_fn)(void *self, int64_t req, int64_t index, int64_t from, int64_t to);
void infsim_kv_set_rehome_hook(infsim_kv *kv, infsim_kv_rehome_fn fn, void *self);

/* Debug builds: the invariants above; aborts with the broken one.
 * infsim_kv_check is O(pools); infsim_kv_check_request checks one table
 * (its holders exist, its foreign count is right) in O(its blocks). */
void infsim_kv_check(const infsim_kv *kv);
void infsim_kv_check_request(const infsim_kv *kv, int64_t req);

#endif
