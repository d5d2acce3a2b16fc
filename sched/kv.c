/*
** kv.c: the KV manager (kv.h): block ids, per-request block tables kept as
** runs of consecutive ids, and each pool's free slots as a bitmap.
**
** A pool is one instance's GPU memory or one host's memory. A block's
** global id is pool x stride + slot. A pool's free slots below its
** high-water mark are the set bits of a bitmap with summary levels above
** it (bit i of level k + 1 is set when word i of level k is non-zero), so
** the lowest or the highest free slot is one word per level, and a run of
** slots is taken or given back 64 slots a word. Freed neighbours coalesce
** by themselves: the bitmap has no notion of who freed what. Slots above
** the mark were never handed out and have no bits yet: a pool's memory
** grows with the blocks in use at once (and the claims below), not with
** its capacity (a tiny model has millions of blocks an instance). The most
** blocks ever in use at once is counted apart (peak).
**
** A request's table is a list of runs (first id, blocks), token order,
** and then its pending blocks: blocks allocated at its owner (a prompt,
** decode boundaries) are counted at once (the pool's in use, local and
** free, the table's blocks: everything decisions read) but take their
** slots only when something needs their ids (settle): a read of the
** table (infsim_kv_table, infsim_kv_runs: an executor that hands tables
** to kernels, a split request's prompt chunk, a move's planning), a
** move or swap, or blocks allocated elsewhere after them. A table that
** is never read (in a simulation, every request that is never split)
** never takes a slot: its decode boundaries cost a few additions each,
** however they are batched, and its release gives back no runs. On
** bench/distkv_speed's hour: 2.573G -> 2.157G instructions (infinite-llm),
** 1.033G -> 0.904G (vllm-multi), the outputs the same: ids are internal
** (no output names one). A decoding request's table may also grow by
** itself (infsim_kv_grow_begin): one block every steps_apart steps of its
** owner's step count, the pool's counts raised once a step for all that
** grow then (infsim_kv_grow_pool), the table's own count and pending
** raised only when something reads or changes it (tab, blocks_of): a
** chunked prefill's one-step batches, which every decoding request of
** the instance rides, then write no table at their boundaries. The rest
** of this comment is about the slots of tables that settle.
** Decode steps add one block per request every block_tokens steps, the
** requests of a batch in turn: placed one by one, each request's blocks
** would interleave with the others' and every one would be a run of its
** own. So a table holds a claim: free slots right after its last run, set
** aside after each allocation (twice the table's blocks, 32 to 256; less
** on a pool short of free slots, claim_make) and counted as free; a
** decode block is the claim's next slot (the run grows by one, no
** search), and the claim's rest goes back with the table. When
** a pool's unclaimed free slots run short, claims go back to the bitmap,
** the latest first, so a claim never makes an allocation fail. Where the
** other blocks go:
**  - after the table's last run when the slots there are free;
**  - a prompt (many blocks): the smallest of the last few freed runs that
**    holds it whole, else the lowest free slots (freed prompts and their
**    claims, coalesced);
**  - one block with no claim: the start of the highest free word's top
**    run, so the next ones can claim the rest;
**  - fresh slots at the mark when the bitmap has none.
** Freed runs go straight back to the bitmap, one-block runs too: kept
** apart (a stack of singles, used only when the bitmap was empty) they
** could not coalesce with their free neighbours, and on a pool kept full
** by lending (infinite-llm's creditors) prompts were cut into more runs.
** Taking or giving back n blocks costs O(runs + n / 64), not O(n); a
** request's table costs O(runs) memory. Tables' run arrays are recycled
** through per-size free lists: steady state allocates nothing.
**
** Invariants (infsim_kv_check, infsim_kv_check_request):
**  - every slot below a pool's high-water mark is either free (its bit
**    set), claimed by one table, or in exactly one run of one table
**    (in_use - pending + free bits + claimed == mark);
**  - a table's pending blocks are its last, in its owner's GPU pool; its
**    runs and pending blocks sum to its count;
**  - a run lies in one pool, its slots not free; a table's runs are
**    maximal (no run continues the one before it); a claim follows the
**    table's last run in its owner's pool;
**  - per instance: local + lent + free == capacity; borrowed and swapped
**    count the instance's requests' blocks held elsewhere;
**  - sum of lent == sum of borrowed over instances.
*/
#include "infsim/kv.h"
#include "infsim/grow.h"
#include "infsim/bigmem.h"

#include <assert.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

/* Blocks of a request in one pool other than its owner's GPU memory. */
typedef struct {
  int32_t pool;
  int32_t blocks;
} kv_holding;

/* A growable list of runs; cap is 0 or a power of two of at least
 * KV_RUN_MIN (the size classes of the spare lists). With claims, a table
 * of a prompt and its decode blocks is a few runs (p50k: 3.6 on average
 * when it is released). */
typedef struct {
  infsim_kv_run *at;
  int32_t n;
  int32_t cap;
} run_list;

/* One per request in flight (infsim_kv_admit; without it, one per request
 * of the run): one cache line each (52 bytes of fields, aligned to 64:
 * the table of a request reads one line, not two; the tables come from
 * aligned_alloc). */
enum { KV_TABLE_ALIGN = 64 };
typedef struct {
  _Alignas(KV_TABLE_ALIGN) infsim_kv_run *at; /* the runs: a run_list of 2^cap_log2 (0: none) */
  int32_t n;
  uint16_t claim;   /* free slots right after the last run set aside for it (owner's pool), <= 256 */
  uint8_t cap_log2;
  kv_holding *holdings; /* where the foreign blocks are, one entry a pool */
  int32_t count;        /* blocks */
  int32_t owner;        /* instance, -1 unset */
  int32_t foreign;      /* blocks not in the owner's GPU pool (borrowed or swapped) */
  int32_t n_holdings;
  int32_t split_slot; /* index in the owner's split list, -1 when no other pool holds any */
  int32_t claim_slot; /* index in the owner pool's claimers, -1 when no claim */
  int32_t pending;    /* the table's last blocks, in the owner's GPU pool, given no slots yet (settle) */
  int32_t grow_apart; /* decode growth (infsim_kv_grow_begin): steps between its blocks */
  int64_t grow_next;   /* the step of its next block by growth not yet in count and pending, INT64_MAX: none */
} kv_table;

_Static_assert(sizeof(kv_table) == KV_TABLE_ALIGN, "kv_table: one per request, one cache line");

static run_list table_runs(const kv_table *t) {
  return (run_list){t->at, t->n, t->at != NULL ? INT32_C(1) << t->cap_log2 : 0};
}

static void table_set_runs(kv_table *t, run_list l) {
  t->at = l.at;
  t->n = l.n;
  t->cap_log2 = (uint8_t)(l.cap > 0 ? __builtin_ctz((unsigned)l.cap) : 0);
}

/* 64^8 slots: more than any pool's capacity can be. */
enum { KV_LEVELS_MAX = 8 };

typedef struct {
  int64_t capacity;
  int64_t high_water; /* slots ever handed out (blocks in use, free below it, or claimed) */
  int64_t in_use;
  int64_t peak; /* the most blocks in use at once */
  /* Claims: free slots set aside right after a table's last run, so its
   * next blocks (a decode step's boundary, mostly) continue the run and
   * need no search; they count as free and are given back to the bitmap
   * when the pool is short of unclaimed slots or the table changes. */
  int64_t claimed;
  /* Blocks counted in use (in_use, local) whose slots are deferred:
   * tables' pending blocks (settle). The slots in use are in_use - pending. */
  int64_t pending;
  /* GPU pools: the last step done (infsim_kv_grow_pool): growing tables'
   * blocks due by then are counted here, in their tables when next read */
  int64_t grown_through;
  int64_t *claimers; /* requests with a claim here */
  int64_t n_claimers;
  int64_t cap_claimers;
  /* Free slots below the mark: the set bits of bits[0].
   * bits[0]: a bit per slot, 1 = free; bits[k + 1]: a bit per word of
   * bits[k], 1 = that word is non-zero. words[k] words allocated. */
  int64_t free_bits;
  uint64_t *bits[KV_LEVELS_MAX];
  int64_t words[KV_LEVELS_MAX];
  int32_t levels; /* the top level is one word at full capacity */
  /* The last KV_HOLES runs of two or more blocks given back (first slot,
   * length; length 0: none): a prompt takes the smallest that holds it
   * whole, if still free, before the lowest free runs. Admission follows
   * finishes, so the hole a finished prompt left is the natural place for
   * the next one; lowest-first alone fills leftover slivers first and
   * cuts a prompt into several runs. */
  int64_t hole_first[8];
  int64_t hole_len[8];
  int32_t hole_next;
  /* GPU pools only: blocks held here by requests owned here / elsewhere */
  int64_t local;
  int64_t lent;
  int64_t guests; /* distinct requests owned elsewhere with blocks here */
  /* GPU pools only: requests owned here with blocks in another pool, and
   * a count of the changes to their holdings (infsim_kv_split_generation) */
  uint64_t split_gen;
  int64_t *split;
  int64_t n_split;
  int64_t cap_split;
} kv_pool;

/* A table written out as ids, for the callers that want them one by one. */
typedef struct {
  int64_t *ids;
  int64_t cap;
} kv_flat;

/* Spare run arrays of 2^(c + 3) runs on list c (linked through their first bytes). */
enum { KV_RUN_CLASSES = 28, KV_RUN_MIN = 8 };

struct infsim_kv {
  int32_t instances;
  int32_t hosts;
  int64_t stride;
  kv_pool *pools; /* instances GPU pools, then hosts host pools */
  /* The tables of requests base.. (those before base are forgotten:
   * done, their tables back), request r at tables[r & mask], a ring of
   * mask + 1 slots; without infsim_kv_admit, every request of kv_new. */
  kv_table *tables;
  int64_t mask;
  int64_t base;
  const void *owners; /* forgotten requests' owners: int32_t at owners + req x owners_stride (or none) */
  size_t owners_stride;
  int64_t *borrowed; /* per instance */
  int64_t *swapped;  /* per instance */
  /* per pool: changes to the holdings there of requests owned elsewhere
   * (infsim_kv_guest_generation; apart from the pools, whose size the
   * batch's code indexes by) */
  uint64_t *guest_gen;
  int64_t lent_total;
  int64_t lent_peak;
  void *spare[KV_RUN_CLASSES];
  run_list scratch; /* a table being rebuilt by a move */
  kv_flat *flat;    /* infsim_kv_table's ids (behind a pointer: written from a const kv) */
  infsim_kv_rehome_fn rehome_hook;
  void *rehome_self;
};

/* Blocks a growing table has taken by its pool's last step done that its
 * count does not have yet. */
static inline int64_t grown(const infsim_kv *kv, const kv_table *t) {
  if (t->grow_next == INT64_MAX) return 0;
  int64_t late = kv->pools[t->owner].grown_through - t->grow_next; /* steps since its next block */
  return late < 0 ? 0 : late < t->grow_apart ? 1 : 1 + late / t->grow_apart;
}

/* A request's table (not forgotten), its grown blocks counted (pending
 * like any block at its owner: the pool has them already); through a
 * const kv for the checks and the accessors (the counts it reports do
 * not change). */
static inline kv_table *tab(const infsim_kv *kv, int64_t req) {
  assert(req >= kv->base);
  kv_table *t = &kv->tables[req & kv->mask];
  int64_t g = grown(kv, t);
  if (g > 0) {
    t->count += (int32_t)g;
    t->pending += (int32_t)g;
    t->grow_next += g * t->grow_apart;
  }
  return t;
}

/* What the accessors read of a forgotten request: nothing anywhere, no owner. */
static const kv_table kv_forgotten = {.owner = -1, .split_slot = -1, .claim_slot = -1, .grow_next = INT64_MAX};

/* A request's table for the accessors that read its blocks (blocks_of),
 * forgotten or not. */
static inline const kv_table *rtab(const infsim_kv *kv, int64_t req) {
  return req >= kv->base ? &kv->tables[req & kv->mask] : &kv_forgotten;
}

/* A table's blocks, grown ones included. */
static inline int64_t blocks_of(const infsim_kv *kv, const kv_table *t) { return t->count + grown(kv, t); }

static void tables_empty(kv_table *at, int64_t n) {
  for (int64_t r = 0; r < n; r++) at[r] = kv_forgotten;
}

/* ---- bitmaps ------------------------------------------------------------- */

static int32_t levels_for(int64_t slots) {
  int32_t levels = 1;
  for (int64_t w = (slots + 63) >> 6; w > 1; w = (w + 63) >> 6) levels++;
  return levels;
}

/* Room for bits of slots [0, slots) (new words are zero: not free). */
static bool pool_reserve(kv_pool *p, int64_t slots) {
  int64_t need = (slots + 63) >> 6;
  if (need <= p->words[0]) return true;
  /* Each level covers the whole of the level below as allocated. */
  for (int32_t k = 0; k < p->levels; k++, need = (p->words[k - 1] + 63) >> 6) {
    if (need <= p->words[k]) continue;
    int64_t cap = 2 * p->words[k] > need ? 2 * p->words[k] : need;
    uint64_t *b = realloc(p->bits[k], (size_t)cap * sizeof *b);
    if (b == NULL) return false;
    memset(b + p->words[k], 0, (size_t)(cap - p->words[k]) * sizeof *b);
    p->bits[k] = b;
    p->words[k] = cap;
  }
  return true;
}

static bool slot_free(const kv_pool *p, int64_t s) { return (p->bits[0][s >> 6] >> (s & 63)) & 1; }

/* Bits [from, from + len) of a word, 1 <= len <= 64 - from. */
static uint64_t word_mask(int64_t from, int64_t len) { return (~UINT64_C(0) >> (64 - len)) << from; }

/* Word w of level 0 went from zero to non-zero / from non-zero to zero.
 * Out of line, as the ranges that span words below: the one-word paths
 * of slots_give and slots_take, most of a pool's traffic (a decode
 * block, a short run), are then a few instructions and no call. */
static __attribute__((noinline)) void summary_set(kv_pool *p, int64_t w) {
  for (int32_t k = 1; k < p->levels; k++, w >>= 6) {
    uint64_t old = p->bits[k][w >> 6];
    p->bits[k][w >> 6] = old | (UINT64_C(1) << (w & 63));
    if (old != 0) return;
  }
}

static __attribute__((noinline)) void summary_clear(kv_pool *p, int64_t w) {
  for (int32_t k = 1; k < p->levels; k++, w >>= 6) {
    p->bits[k][w >> 6] &= ~(UINT64_C(1) << (w & 63));
    if (p->bits[k][w >> 6] != 0) return;
  }
}


enum { KV_HOLES = 8 };

/* Bits [a, b) of one bitmap level set (a < b). */
static void bits_set(uint64_t *bits, int64_t a, int64_t b) {
  int64_t first = a >> 6, last = (b - 1) >> 6;
  if (first == last) {
    bits[first] |= word_mask(a & 63, b - a);
    return;
  }
  bits[first] |= ~UINT64_C(0) << (a & 63);
  for (int64_t w = first + 1; w < last; w++) bits[w] = ~UINT64_C(0);
  bits[last] |= ~UINT64_C(0) >> (63 - ((b - 1) & 63));
}

/* Level-0 words [w0, w1) have just gone zero: their summary bits are
 * cleared, and at each level above the bits of the summary words that
 * went zero with them (the range's inner words, and an end one if so). */
static void summary_clear_words(kv_pool *p, int64_t w0, int64_t w1) {
  for (int32_t k = 1; k < p->levels && w0 < w1; k++) {
    uint64_t *bits = p->bits[k];
    int64_t first = w0 >> 6, last = (w1 - 1) >> 6;
    if (first == last) {
      bits[first] &= ~word_mask(w0 & 63, w1 - w0);
    } else {
      bits[first] &= ~(~UINT64_C(0) << (w0 & 63));
      for (int64_t w = first + 1; w < last; w++) bits[w] = 0;
      bits[last] &= ~(~UINT64_C(0) >> (63 - ((w1 - 1) & 63)));
    }
    w0 = bits[first] != 0 ? first + 1 : first;
    w1 = bits[last] != 0 ? last : last + 1;
  }
}

/* slots_give and slots_take for a range over two or more words. Every
 * slot given was in use, so every word of the range has a free bit
 * afterwards, and every summary word above them a set bit: a range set
 * at each level (a long table's run given back: tens of words, one
 * summary word). */
static __attribute__((noinline)) void slots_give_words(kv_pool *p, int64_t a, int64_t b) {
#ifndef NDEBUG
  for (int64_t s = a; s < b; s++) assert(!slot_free(p, s)); /* a double free */
#endif
  for (int32_t k = 0; k < p->levels; k++, a >>= 6, b = ((b - 1) >> 6) + 1) bits_set(p->bits[k], a, b);
}

static __attribute__((noinline)) void slots_take_words(kv_pool *p, int64_t a, int64_t b) {
#ifndef NDEBUG
  for (int64_t s = a; s < b; s++) assert(slot_free(p, s)); /* taking a slot in use */
#endif
  uint64_t *l0 = p->bits[0];
  int64_t first = a >> 6, last = (b - 1) >> 6;
  assert(first < last);
  l0[first] &= ~(~UINT64_C(0) << (a & 63));
  if (last > first + 1) memset(l0 + first + 1, 0, (size_t)(last - first - 1) * sizeof *l0);
  l0[last] &= ~(~UINT64_C(0) >> (63 - ((b - 1) & 63)));
  /* the inner words are empty now, the end ones may not be */
  summary_clear_words(p, l0[first] != 0 ? first + 1 : first, l0[last] != 0 ? last : last + 1);
}

/* Slots [a, b) (in use, below the mark) become free bits. */
static inline void slots_give(kv_pool *p, int64_t a, int64_t b) {
  p->free_bits += b - a;
  if ((a >> 6) != ((b - 1) >> 6)) {
    slots_give_words(p, a, b);
    return;
  }
  uint64_t *at = &p->bits[0][a >> 6], old = *at;
  assert((old & word_mask(a & 63, b - a)) == 0); /* a double free */
  *at = old | word_mask(a & 63, b - a);
  if (old == 0) summary_set(p, a >> 6);
}

/* Slots [a, b) (free bits) are taken. */
static inline void slots_take(kv_pool *p, int64_t a, int64_t b) {
  p->free_bits -= b - a;
  if ((a >> 6) != ((b - 1) >> 6)) {
    slots_take_words(p, a, b);
    return;
  }
  uint64_t *at = &p->bits[0][a >> 6], m = word_mask(a & 63, b - a);
  assert((*at & m) == m); /* taking a slot in use */
  if ((*at &= ~m) == 0) summary_clear(p, a >> 6);
}


/* A run of `blocks` slots from s (in use) is free again; two or more
 * are remembered as a hole (a one-block hole holds no prompt). */
static void run_give(kv_pool *p, int64_t s, int64_t blocks) {
  slots_give(p, s, s + blocks);
  if (blocks > 1) {
    p->hole_first[p->hole_next] = s;
    p->hole_len[p->hole_next] = blocks;
    p->hole_next = (p->hole_next + 1) & (KV_HOLES - 1); /* KV_HOLES is a power of two */
  }
}



/* The lowest non-zero word of level 0 (the pool has a free bit). */
static int64_t lowest_word(const kv_pool *p) {
  int64_t i = 0;
  for (int32_t k = p->levels - 1; k > 0; k--) i = (i << 6) | __builtin_ctzll(p->bits[k][i]);
  return i;
}

static inline bool list_push(infsim_kv *kv, run_list *l, int64_t first, int64_t blocks);

/* Takes the lowest free slots, up to `left` of them, into l, lowest
 * first: each word's free runs in turn (a prompt on a fragmented pool
 * takes dozens of short runs; list_push joins a run that goes on into
 * the next word). The summary levels are walked for the lowest word only
 * where the next word up has no free slot: words emptied one after
 * another have their summary bits cleared at once. The same slots and
 * runs as taking the lowest run again and again. Returns how many were
 * taken, or -1 when memory for l is short (what was taken before stays
 * in l, for the caller to undo). */
static int64_t take_lowest(infsim_kv *kv, kv_pool *p, run_list *l, int64_t base, int64_t left) {
  uint64_t *l0 = p->bits[0];
  int64_t got = 0, words = p->words[0];
  while (got < left && p->free_bits > 0) {
    int64_t j0 = lowest_word(p), j = j0; /* words [j0, j) emptied */
    for (;;) {
      uint64_t w = l0[j];
      if (w == ~UINT64_C(0) && left - got >= 64) {
        /* Whole free words one after another: one run. */
        int64_t k = j + 1;
        while (k < words && l0[k] == ~UINT64_C(0) && left - got >= (k + 1 - j) << 6) k++;
        if (!list_push(kv, l, base + (j << 6), (k - j) << 6)) {
          summary_clear_words(p, j0, j);
          return -1;
        }
        memset(l0 + j, 0, (size_t)(k - j) * sizeof *l0);
        p->free_bits -= (k - j) << 6;
        got += (k - j) << 6;
        j = k;
        if (j == words || got == left || l0[j] == 0) break;
        continue;
      }
      do {
        int32_t b = __builtin_ctzll(w);
        uint64_t x = ~(w >> b); /* zeros where the run goes on; the top b bits are ones */
        int64_t ones = x == 0 ? 64 : __builtin_ctzll(x);
        int64_t len = ones < left - got ? ones : left - got;
        uint64_t m = word_mask(b, len);
        if (!list_push(kv, l, base + (j << 6) + b, len)) {
          l0[j] = w;
          summary_clear_words(p, j0, j);
          return -1;
        }
        w &= ~m;
        p->free_bits -= len;
        got += len;
      } while (w != 0 && got < left);
      l0[j] = w;
      if (w != 0) break;
      /* Every word below j + 1 is empty: the next one, if it has a free
       * slot, is the lowest. */
      if (++j == words || got == left || l0[j] == 0) break;
    }
    summary_clear_words(p, j0, j);
  }
  return got;
}

/* One free slot for a one-block request: the first of a run of free bits,
 * whose free neighbours above it the request can then claim (its next
 * decode blocks continue the run); else a fresh one at the mark (room
 * reserved). Taken. */
static int64_t one_slot(kv_pool *p) {
  if (p->free_bits > 0) {
    /* The highest free word's top run, from its start: the request can
     * claim the rest, and these blocks stay away from the low slots that
     * prompts fill. */
    int64_t j = 0;
    for (int32_t k = p->levels - 1; k > 0; k--) j = (j << 6) | (63 - __builtin_clzll(p->bits[k][j]));
    uint64_t w = p->bits[0][j];
    int32_t top = 63 - __builtin_clzll(w);
    uint64_t below = ~(w << (63 - top)); /* zeros where the run goes on downwards from top */
    int32_t ones = below == 0 ? 64 : __builtin_clzll(below);
    int64_t s = (j << 6) + top - ones + 1;
    slots_take(p, s, s + 1);
    return s;
  }
  return p->high_water++;
}

/* How many free slots follow from slot s on (s included), at most max. */
static int64_t free_run(const kv_pool *p, int64_t s, int64_t max) {
  int64_t n = 0;
  while (n < max && s + n < p->high_water) {
    int64_t at = s + n;
    uint64_t w = p->bits[0][at >> 6] >> (at & 63); /* the bits above the word's top come in as 0 */
    int64_t ones = ~w == 0 ? 64 : __builtin_ctzll(~w);
    n += ones;
    if (ones < 64 - (at & 63)) break;
  }
  return n < max ? n : max;
}

/* ---- run lists ----------------------------------------------------------- */

static int32_t run_class(int32_t cap) { return __builtin_ctz((unsigned)cap) - 3; }

static infsim_kv_run *runs_get(infsim_kv *kv, int32_t cap) {
  int32_t c = run_class(cap);
  void *a = kv->spare[c];
  if (a == NULL) return malloc((size_t)cap * sizeof(infsim_kv_run));
  memcpy(&kv->spare[c], a, sizeof a); /* the next spare */
  return a;
}

static void runs_put(infsim_kv *kv, run_list *l) {
  if (l->at != NULL) {
    int32_t c = run_class(l->cap);
    memcpy(l->at, &kv->spare[c], sizeof kv->spare[c]);
    kv->spare[c] = l->at;
  }
  *l = (run_list){0};
}

static bool list_grow(infsim_kv *kv, run_list *l) {
  if (l->cap >= INT32_MAX / 2) return false;
  int32_t cap = l->cap ? 2 * l->cap : KV_RUN_MIN;
  infsim_kv_run *a = runs_get(kv, cap);
  if (a == NULL) return false;
  if (l->n > 0) memcpy(a, l->at, (size_t)l->n * sizeof *a);
  int32_t n = l->n;
  runs_put(kv, l);
  *l = (run_list){a, n, cap};
  return true;
}

/* Appends blocks [first, first + blocks) to l, continuing its last run when they follow it. */
static inline bool list_push(infsim_kv *kv, run_list *l, int64_t first, int64_t blocks) {
  if (l->n > 0 && l->at[l->n - 1].first + l->at[l->n - 1].blocks == first) {
    l->at[l->n - 1].blocks += blocks;
    return true;
  }
  if (l->n == l->cap && !list_grow(kv, l)) return false;
  l->at[l->n++] = (infsim_kv_run){first, blocks};
  return true;
}

/* ---- setup --------------------------------------------------------------- */

infsim_status infsim_kv_new(int32_t instances, int64_t gpu_blocks, int32_t hosts, int64_t host_blocks,
                            int64_t requests, infsim_kv **out, infsim_error *err) {
  infsim_kv *kv = calloc(1, sizeof *kv);
  if (kv == NULL) return infsim_fail(err, INFSIM_ENOMEM, "out of memory");
  kv->instances = instances;
  kv->hosts = hosts;
  kv->stride = (gpu_blocks > host_blocks ? gpu_blocks : host_blocks) + 1;
  kv->pools = calloc((size_t)(instances + hosts), sizeof *kv->pools);
  int64_t slots = 1;
  while (slots < requests) slots *= 2;
  kv->mask = slots - 1;
  kv->tables = aligned_alloc(KV_TABLE_ALIGN, (size_t)slots * sizeof *kv->tables);
  if (kv->tables != NULL) tables_empty(kv->tables, slots); /* before any failure: infsim_kv_free reads them */
  kv->borrowed = calloc((size_t)instances, sizeof *kv->borrowed);
  kv->swapped = calloc((size_t)instances, sizeof *kv->swapped);
  kv->guest_gen = calloc((size_t)(instances + hosts), sizeof *kv->guest_gen);
  kv->flat = calloc(1, sizeof *kv->flat);
  if (kv->pools == NULL || kv->tables == NULL || kv->borrowed == NULL || kv->swapped == NULL ||
      kv->guest_gen == NULL || kv->flat == NULL) {
    infsim_kv_free(kv);
    return infsim_fail(err, INFSIM_ENOMEM, "out of memory");
  }
  for (int32_t q = 0; q < instances + hosts; q++) {
    kv_pool *p = &kv->pools[q];
    p->capacity = q < instances ? gpu_blocks : host_blocks;
    p->grown_through = -1; /* no step done */
    p->levels = levels_for(p->capacity);
    assert(p->levels <= KV_LEVELS_MAX);
    /* one word a level to start: the top word is always there */
    for (int32_t k = 0; k < p->levels; k++) {
      p->bits[k] = calloc(1, sizeof *p->bits[k]);
      p->words[k] = 1;
      if (p->bits[k] == NULL) {
        infsim_kv_free(kv);
        return infsim_fail(err, INFSIM_ENOMEM, "out of memory");
      }
    }
  }
  *out = kv;
  return INFSIM_OK;
}

void infsim_kv_free(infsim_kv *kv) {
  if (kv == NULL) return;
  if (kv->pools != NULL)
    for (int32_t q = 0; q < kv->instances + kv->hosts; q++) {
      for (int32_t k = 0; k < KV_LEVELS_MAX; k++) free(kv->pools[q].bits[k]);
      free(kv->pools[q].claimers);
      free(kv->pools[q].split);
    }
  if (kv->tables != NULL)
    for (int64_t r = 0; r <= kv->mask; r++) {
      free(kv->tables[r].at);
      free(kv->tables[r].holdings);
    }
  for (int32_t c = 0; c < KV_RUN_CLASSES; c++)
    while (kv->spare[c] != NULL) {
      void *a = kv->spare[c];
      memcpy(&kv->spare[c], a, sizeof a);
      free(a);
    }
  free(kv->scratch.at);
  if (kv->flat != NULL) free(kv->flat->ids);
  free(kv->flat);
  free(kv->pools);
  free(kv->tables);
  free(kv->borrowed);
  free(kv->swapped);
  free(kv->guest_gen);
  free(kv);
}

infsim_status infsim_kv_admit(infsim_kv *kv, int64_t req, int64_t oldest, infsim_error *err) {
  assert(oldest >= kv->base && oldest <= req);
  kv->base = oldest;
  if (req - oldest > kv->mask) {
    int64_t slots = kv->mask + 1;
    while (req - oldest >= slots) slots *= 2;
    kv_table *ring = aligned_alloc(KV_TABLE_ALIGN, (size_t)slots * sizeof *ring);
    if (ring == NULL) return infsim_fail(err, INFSIM_ENOMEM, "out of memory");
    tables_empty(ring, slots);
    for (int64_t r = oldest; r < req; r++) {
      kv_table *from = &kv->tables[r & kv->mask];
      ring[r & (slots - 1)] = *from;
      *from = kv_forgotten;
    }
    for (int64_t r = 0; r <= kv->mask; r++) { /* the forgotten: released, maybe with a spare run array */
      kv_table *f = &kv->tables[r];
      assert(f->count == 0 && f->claim == 0 && f->n_holdings == 0);
      run_list l = table_runs(f);
      runs_put(kv, &l);
      free(f->holdings);
    }
    free(kv->tables);
    kv->tables = ring;
    kv->mask = slots - 1;
  }
  kv_table *t = &kv->tables[req & kv->mask];
  assert(t->count == 0 && t->claim == 0 && t->n_holdings == 0 && t->split_slot < 0 && t->claim_slot < 0);
  if (t->at != NULL || t->holdings != NULL) { /* a forgotten table's spare run array */
    run_list l = table_runs(t);
    runs_put(kv, &l);
    free(t->holdings);
  }
  *t = kv_forgotten;
  return INFSIM_OK;
}

int64_t infsim_kv_table_slots(const infsim_kv *kv) { return kv->mask + 1; }

void infsim_kv_set_owner(infsim_kv *kv, int64_t req, int32_t instance) {
  assert(tab(kv, req)->count == 0 && tab(kv, req)->claim == 0); /* ownership moves only with an empty table */
  tab(kv, req)->owner = instance;
}

void infsim_kv_keep_owners(infsim_kv *kv, const void *first, size_t stride) {
  kv->owners = first;
  kv->owners_stride = stride;
}

int32_t infsim_kv_owner(const infsim_kv *kv, int64_t req) {
  if (req >= kv->base || kv->owners == NULL) return rtab(kv, req)->owner;
  int32_t owner;
  memcpy(&owner, (const char *)kv->owners + (size_t)req * kv->owners_stride, sizeof owner);
  return owner;
}

infsim_kv_counts infsim_kv_counts_of(const infsim_kv *kv, int32_t instance) {
  const kv_pool *p = &kv->pools[instance];
  return (infsim_kv_counts){p->capacity, p->capacity - p->in_use, p->local, p->lent, kv->borrowed[instance],
                            kv->swapped[instance]};
}

int64_t infsim_kv_free_blocks(const infsim_kv *kv, int32_t instance) {
  const kv_pool *p = &kv->pools[instance];
  return p->capacity - p->in_use;
}

int64_t infsim_kv_host_free_blocks(const infsim_kv *kv, int32_t host) {
  const kv_pool *p = &kv->pools[kv->instances + host];
  return p->capacity - p->in_use;
}

int32_t infsim_kv_holder_of(const infsim_kv *kv, int64_t block) { return (int32_t)(block / kv->stride); }

int64_t infsim_kv_first_block(const infsim_kv *kv, int32_t pool) { return (int64_t)pool * kv->stride; }

void infsim_kv_set_rehome_hook(infsim_kv *kv, infsim_kv_rehome_fn fn, void *self) {
  kv->rehome_hook = fn;
  kv->rehome_self = self;
}

int64_t infsim_kv_borrowed_peak(const infsim_kv *kv) { return kv->lent_peak; }

void infsim_kv_pool_usage(const infsim_kv *kv, int32_t pool, int64_t *in_use, int64_t *peak, int64_t *capacity) {
  const kv_pool *p = &kv->pools[pool];
  *in_use = p->in_use;
  *peak = p->peak;
  *capacity = p->capacity;
}

/* ---- ownership bookkeeping ------------------------------------------------ */

static bool grow(void **items, int64_t *capacity, int64_t need, size_t item_bytes) {
  size_t cap = (size_t)*capacity;
  if (!infsim_grow(items, &cap, (size_t)need, item_bytes, 64)) return false;
  *capacity = (int64_t)cap;
  return true;
}

/* Adds req to / removes it from its owner's list of split requests. */
static bool split_add(infsim_kv *kv, int64_t req) {
  kv_table *t = tab(kv, req);
  kv_pool *o = &kv->pools[t->owner];
  if (!grow((void **)&o->split, &o->cap_split, o->n_split + 1, sizeof *o->split)) return false;
  t->split_slot = (int32_t)o->n_split;
  o->split[o->n_split++] = req;
  return true;
}

static void split_remove(infsim_kv *kv, int64_t req) {
  kv_table *t = tab(kv, req);
  kv_pool *o = &kv->pools[t->owner];
  int64_t last = o->split[--o->n_split];
  o->split[t->split_slot] = last;
  tab(kv, last)->split_slot = t->split_slot;
  t->split_slot = -1;
}

/* Keeps req's holding in pool (not its owner's GPU pool) right after n
 * blocks came (n > 0) or went (n < 0): the holding list, the pool's
 * guests, the owner's split list. False when memory is short. */
static bool hold(infsim_kv *kv, int32_t pool, int64_t req, int64_t n) {
  kv_table *t = tab(kv, req);
  kv->pools[t->owner].split_gen++;
  kv->guest_gen[pool]++;
  int32_t i = 0;
  while (i < t->n_holdings && t->holdings[i].pool != pool) i++;
  if (i == t->n_holdings) {
    assert(n > 0);
    kv_holding *h = realloc(t->holdings, (size_t)(t->n_holdings + 1) * sizeof *h);
    if (h == NULL) return false;
    t->holdings = h;
    t->holdings[t->n_holdings++] = (kv_holding){pool, 0};
    if (pool < kv->instances) kv->pools[pool].guests++;
    if (t->split_slot < 0 && !split_add(kv, req)) return false;
  }
  t->holdings[i].blocks += (int32_t)n;
  assert(t->holdings[i].blocks >= 0);
  if (t->holdings[i].blocks == 0) {
    if (pool < kv->instances) kv->pools[pool].guests--;
    t->holdings[i] = t->holdings[--t->n_holdings];
    if (t->split_slot >= 0 && t->n_holdings == 0) split_remove(kv, req);
  }
  return true;
}

/* Counts n blocks of req held in pool `pool` (n < 0: given back). A
 * shrinking holding never allocates: false only when n > 0. */
static bool account(infsim_kv *kv, int32_t pool, int64_t req, int64_t n) {
  int32_t owner = tab(kv, req)->owner;
  kv_pool *p = &kv->pools[pool];
  p->in_use += n;
  if (p->in_use > p->peak) p->peak = p->in_use;
  if (pool != owner) {
    tab(kv, req)->foreign += (int32_t)n;
    if (!hold(kv, pool, req, n)) return false;
  }
  if (pool >= kv->instances) {
    kv->swapped[owner] += n;
    return true;
  }
  if (pool == owner) {
    p->local += n;
  } else {
    p->lent += n;
    kv->borrowed[owner] += n;
    kv->lent_total += n;
    if (kv->lent_total > kv->lent_peak) kv->lent_peak = kv->lent_total;
  }
  return true;
}

/* ---- claims ---------------------------------------------------------------- */

/* A claim's size: twice the table, 32 to 256 blocks. Measured on p50k
 * (whole-process instructions): half the table (8-64) left a decode block
 * without a claim at one boundary in six; as big as the table (16-128)
 * about matched one block at a time; twice (32-256) beat it. A claim
 * costs nothing while the pool has room, and gives way when it has not. */
static int64_t claim_size(int64_t blocks) {
  int64_t c = 2 * blocks;
  return c < 32 ? 32 : c > 256 ? 256 : c;
}

/* req's claim ends: its slots stay as they are (the caller has put them
 * somewhere: the table, or back in the bitmap). */
static void claim_forget(infsim_kv *kv, int64_t req) {
  kv_table *t = tab(kv, req);
  kv_pool *p = &kv->pools[t->owner];
  p->claimed -= t->claim;
  t->claim = 0;
  int64_t moved = p->claimers[--p->n_claimers];
  p->claimers[t->claim_slot] = moved;
  tab(kv, moved)->claim_slot = t->claim_slot;
  t->claim_slot = -1;
}

/* req's claimed slots go back to the bitmap. */
static void claim_drop(infsim_kv *kv, int64_t req) {
  kv_table *t = tab(kv, req);
  if (t->claim == 0) return;
  const infsim_kv_run *last = &t->at[t->n - 1];
  int64_t end = last->first + last->blocks - (int64_t)t->owner * kv->stride;
  slots_give(&kv->pools[t->owner], end, end + t->claim);
  claim_forget(kv, req);
}

/* Claims of pool `pool` back to the bitmap, the latest first, until it
 * holds `need` free slots. */
static void claims_revoke(infsim_kv *kv, int32_t pool, int64_t need) {
  kv_pool *p = &kv->pools[pool];
  while (p->n_claimers > 0 && p->free_bits < need) claim_drop(kv, p->claimers[p->n_claimers - 1]);
}

/* A claim takes at most a KV_CLAIM_SHARE-th of its pool's unclaimed free
 * slots and, when that share is at least KV_CLAIM_MIN, no fewer; below
 * it, down to KV_CLAIM_TIGHT_ROOM unclaimed free slots, a claim of
 * KV_CLAIM_TIGHT (claim_make says why); below that, none. */
enum { KV_CLAIM_MIN = 8, KV_CLAIM_SHARE = 16, KV_CLAIM_TIGHT = 4, KV_CLAIM_TIGHT_ROOM = 32 };

/* Whether pool p has room for any claim: claim_make's first test, made
 * by its callers before the call (a pool kept full by lending often has
 * none: the call saved). */
static inline bool claim_room(const kv_pool *p) {
  return p->capacity - p->in_use - p->claimed >= KV_CLAIM_TIGHT_ROOM;
}

/* Sets aside the free slots right after req's last run (in its owner's
 * GPU pool, which has claim_room): free bits there, or fresh slots when
 * the run ends at the mark. A claim takes at most a sixteenth of the
 * pool's unclaimed free slots, at least 8: a pool kept tight (a creditor
 * that has lent most of its memory) still gives its decoding requests
 * short claims, so their block boundaries stay O(1) instead of searching
 * the bitmap, while most free slots stay unclaimed, coalesced in the
 * bitmap, for prompts and borrowers (claims give way to them anyway:
 * claims_revoke). On bench/distkv_speed's hour (creditors kept full by
 * lending), a quarter cut prompts into more runs: 3.383G instructions, an
 * eighth 3.349G, a sixteenth 3.339G, the outputs the same. With 32 to 127
 * unclaimed free slots (a sixteenth is under 8), a claim of 4: without
 * one, each decode block of such a pool took the start of the highest
 * free run (one_slot), the pool's decoding requests in turn, so their
 * blocks interleaved and each was a run of its own (399K such blocks on
 * the hour); 2.849G -> 2.833G instructions on the hour, the outputs the
 * same (claims of 2 from 16 free slots: 472.1M on its first 10 minutes;
 * 4 from 16: 471.3M; 8 from 64: 471.3M; 4 from 32: 470.6M, against
 * 473.8M with none). Optional: nothing happens when memory for the list
 * is short. */
static void claim_make(infsim_kv *kv, int64_t req) {
  kv_table *t = tab(kv, req);
  assert(t->claim == 0);
  int32_t pool = t->owner;
  if (pool < 0 || pool >= kv->instances || t->n == 0) return;
  const infsim_kv_run *last = &t->at[t->n - 1];
  if (infsim_kv_holder_of(kv, last->first) != pool) return;
  kv_pool *p = &kv->pools[pool];
  int64_t want = claim_size(t->count);
  int64_t slack = (p->capacity - p->in_use - p->claimed) / KV_CLAIM_SHARE;
  if (want > slack) want = slack;
  if (want < KV_CLAIM_MIN) want = KV_CLAIM_TIGHT;
  assert(claim_room(p));
  int64_t end = last->first + last->blocks - (int64_t)pool * kv->stride, c;
  if (end < p->high_water) {
    if (!slot_free(p, end)) return;
    c = free_run(p, end, want);
  } else {
    c = p->capacity - p->high_water < want ? p->capacity - p->high_water : want;
    if (c <= 0 || !pool_reserve(p, p->high_water + c)) return;
  }
  if (!grow((void **)&p->claimers, &p->cap_claimers, p->n_claimers + 1, sizeof *p->claimers)) return;
  if (end < p->high_water)
    slots_take(p, end, end + c);
  else
    p->high_water += c;
  p->claimed += c;
  t->claim = (uint16_t)c;
  t->claim_slot = (int32_t)p->n_claimers;
  p->claimers[p->n_claimers++] = req;
}

/* ---- taking and giving back ----------------------------------------------- */

/* Appends n blocks of pool `pool` (which has them free) to l: after l's
 * last run where free; then, for one block, one_slot(); for more, the
 * lowest free runs of the bitmap; then fresh slots at the mark. Nothing changes when memory is short (false). Counting is the
 * caller's. */
static bool take(infsim_kv *kv, int32_t pool, run_list *l, int64_t n) {
  kv_pool *p = &kv->pools[pool];
  assert(p->capacity - (p->in_use - p->pending) >= n); /* slots: pending blocks have none */
  int64_t free_slots = p->free_bits;
  if (n > free_slots + (p->capacity - p->high_water)) {
    claims_revoke(kv, pool, n); /* the rest of the free slots are claimed */
    free_slots = p->free_bits;
  }
  if (n > free_slots && !pool_reserve(p, p->high_water + n - free_slots)) return false;
  int64_t base = (int64_t)pool * kv->stride;
  int32_t runs0 = l->n;
  int64_t last0 = runs0 > 0 ? l->at[runs0 - 1].blocks : 0;
  int64_t left = n;
  if (runs0 > 0) {
    int64_t s = l->at[runs0 - 1].first + last0 - base;
    if (s >= 0 && s < p->high_water && slot_free(p, s)) {
      int64_t len = free_run(p, s, left);
      slots_take(p, s, s + len);
      l->at[runs0 - 1].blocks += len;
      left -= len;
    }
  }
  if (left == 1) {
    int64_t s = one_slot(p);
    if (!list_push(kv, l, base + s, 1)) {
      run_give(p, s, 1);
      goto undo;
    }
    left = 0;
  }
  if (left > 1 && left <= p->free_bits) {
    /* The smallest remembered hole that holds all of it, if still free. */
    int32_t best = -1;
    for (int32_t h = 0; h < KV_HOLES; h++)
      if (p->hole_len[h] >= left && (best < 0 || p->hole_len[h] < p->hole_len[best])) best = h;
    if (best >= 0) {
      int64_t s = p->hole_first[best];
      if (s + left <= p->high_water && slot_free(p, s) && free_run(p, s, left) == left) {
        slots_take(p, s, s + left);
        if (!list_push(kv, l, base + s, left)) {
          slots_give(p, s, s + left);
          goto undo;
        }
        p->hole_first[best] += left;
        p->hole_len[best] -= left;
        left = 0;
      } else {
        p->hole_len[best] = 0; /* taken since */
      }
    }
  }
  if (left > 0 && p->free_bits > 0) {
    int64_t got = take_lowest(kv, p, l, base, left);
    if (got < 0) goto undo;
    left -= got;
  }
  if (left > 0) {
    int64_t s = p->high_water;
    p->high_water += left;
    if (!list_push(kv, l, base + s, left)) {
      slots_give(p, s, s + left); /* below the mark now: free */
      goto undo;
    }
  }
  return true;
undo:
  for (int32_t i = l->n - 1; i >= runs0; i--) run_give(p, l->at[i].first - base, l->at[i].blocks);
  l->n = runs0;
  if (runs0 > 0 && l->at[runs0 - 1].blocks > last0) {
    int64_t s = l->at[runs0 - 1].first - base;
    slots_give(p, s + last0, s + l->at[runs0 - 1].blocks);
    l->at[runs0 - 1].blocks = last0;
  }
  return false;
}

/* Blocks [first, first + n) (ids of one pool, in use) become free. */
static void give(infsim_kv *kv, int64_t first, int64_t n) {
  int32_t pool = infsim_kv_holder_of(kv, first);
  run_give(&kv->pools[pool], first - (int64_t)pool * kv->stride, n);
}

/* ---- tables -------------------------------------------------------------- */

/* Gives req's pending blocks their slots, after its last run, as an
 * allocation of them at its owner would have (the claim's slots first,
 * then take()'s), and the table a new claim when `claim` and the pool has
 * room. Their counts are already kept. False when memory is short. */
static bool settle(infsim_kv *kv, int64_t req, bool claim) {
  kv_table *t = tab(kv, req);
  int64_t left = t->pending;
  if (left == 0) return true;
  kv_pool *p = &kv->pools[t->owner];
  if (t->claim > 0) {
    /* The claimed slots first: they continue the last run. */
    int64_t k = left < t->claim ? left : t->claim;
    t->at[t->n - 1].blocks += k;
    p->claimed -= k;
    p->pending -= k;
    t->pending -= (int32_t)k;
    t->claim = (uint16_t)(t->claim - k);
    if (t->claim == 0) claim_forget(kv, req);
    left -= k;
  }
  if (left > 0) {
    run_list l = table_runs(t);
    bool ok = take(kv, t->owner, &l, left);
    table_set_runs(t, l);
    if (!ok) return false;
    p->pending -= left;
    t->pending = 0;
  }
  if (claim && t->claim == 0 && claim_room(p)) claim_make(kv, req);
  return true;
}

/* settle() from an accessor that reads the table's ids or runs: the
 * counts do not change, only which slots the pending blocks take. */
static void settle_for_read(const infsim_kv *kv, int64_t req) {
  if (req < kv->base || tab(kv, req)->pending == 0) return;
  if (!settle((infsim_kv *)kv, req, true)) abort(); /* out of memory in an accessor that cannot fail */
}

/* infsim_kv_alloc but for its deferred path (below): blocks at another
 * pool, or too few free. */
static __attribute__((noinline)) infsim_status alloc_general(infsim_kv *kv, int64_t req, int32_t holder, int64_t n,
                                                             infsim_error *err) {
  kv_table *t = tab(kv, req);
  assert(t->owner >= 0);
  if (n <= 0) return INFSIM_OK;
  if (infsim_kv_free_blocks(kv, holder) < n)
    return infsim_fail(err, INFSIM_ERUN, "KV manager: instance %d has %lld free blocks, %lld asked for request %lld",
                       (int)holder, (long long)infsim_kv_free_blocks(kv, holder), (long long)n, (long long)req);
  if (t->count + n > INT32_MAX) return infsim_fail(err, INFSIM_ENOMEM, "out of memory");
  /* Blocks elsewhere come after the pending ones: those take their slots first. */
  if (!settle(kv, req, false)) return infsim_fail(err, INFSIM_ENOMEM, "out of memory");
  int64_t left = n;
  if (t->claim > 0 && holder == t->owner) {
    /* The claimed slots first: they continue the last run. */
    int64_t k = left < t->claim ? left : t->claim;
    t->at[t->n - 1].blocks += k;
    kv->pools[holder].claimed -= k;
    t->claim = (uint16_t)(t->claim - k);
    if (t->claim == 0) claim_forget(kv, req);
    left -= k;
  } else if (t->claim > 0) {
    claim_drop(kv, req); /* blocks elsewhere end the table: the claim no longer follows it */
  }
  if (left > 0) {
    run_list l = table_runs(t);
    bool ok = take(kv, holder, &l, left);
    table_set_runs(t, l);
    if (!ok) return infsim_fail(err, INFSIM_ENOMEM, "out of memory");
  }
  t->count += (int32_t)n;
  if (holder != t->owner) return account(kv, holder, req, n) ? INFSIM_OK : infsim_fail(err, INFSIM_ENOMEM, "out of memory");
  kv_pool *p = &kv->pools[holder]; /* as account() for local blocks */
  p->local += n;
  if ((p->in_use += n) > p->peak) p->peak = p->in_use;
  if (t->claim == 0 && claim_room(p)) claim_make(kv, req);
  return INFSIM_OK;
}

/* n blocks at req's owner, deferred: counted now (the pool's free, local,
 * in use and peak, the table's blocks), their slots taken only when
 * something reads or moves the table (settle). Most tables never are
 * read in a simulation: no executor asks for block ids, and only split
 * requests' prompt chunks and KV moves walk runs. */
static inline void deferred_table(kv_table *t, int64_t n) {
  t->pending += (int32_t)n;
  t->count += (int32_t)n;
}

static inline void deferred_pool(kv_pool *p, int64_t n) {
  p->pending += n;
  p->local += n;
  if ((p->in_use += n) > p->peak) p->peak = p->in_use;
}

static inline bool alloc_deferred(infsim_kv *kv, kv_table *t, int32_t holder, int64_t n) {
  if (holder != t->owner || n <= 0 || t->count + n > INT32_MAX) return false;
  kv_pool *p = &kv->pools[holder];
  if (p->capacity - p->in_use < n) return false;
  deferred_table(t, n);
  deferred_pool(p, n);
  return true;
}

infsim_status infsim_kv_alloc(infsim_kv *kv, int64_t req, int32_t holder, int64_t n, infsim_error *err) {
  if (alloc_deferred(kv, tab(kv, req), holder, n)) return INFSIM_OK;
  return alloc_general(kv, req, holder, n, err);
}

infsim_status infsim_kv_alloc_one(infsim_kv *kv, int64_t req, int32_t holder, infsim_error *err) {
  if (alloc_deferred(kv, tab(kv, req), holder, 1)) return INFSIM_OK;
  return alloc_general(kv, req, holder, 1, err);
}

/* alloc_deferred of one block in two parts: the table's, then (once
 * for a step's boundaries at that pool) the pool's. */
bool infsim_kv_step_table(infsim_kv *kv, int64_t req, int32_t holder) {
  kv_table *t = tab(kv, req);
  if (holder != t->owner || t->count == INT32_MAX) return false;
  deferred_table(t, 1);
  return true;
}

void infsim_kv_step_pool(infsim_kv *kv, int32_t holder, int64_t n) {
  kv_pool *p = &kv->pools[holder];
  assert(n >= 0 && p->capacity - p->in_use >= n);
  deferred_pool(p, n);
}

bool infsim_kv_grow_begin(infsim_kv *kv, int64_t req, int64_t next_step, int64_t steps_apart, int64_t last_step) {
  kv_table *t = tab(kv, req);
  assert(t->grow_next == INT64_MAX && steps_apart > 0 && steps_apart <= INT32_MAX);
  if (t->owner < 0 || t->owner >= kv->instances || next_step <= kv->pools[t->owner].grown_through) return false;
  /* room for its blocks up to last_step (the division only where the steps alone do not say) */
  int64_t steps = last_step - next_step, room = (int64_t)INT32_MAX - t->count - 1;
  if (steps >= 0 && steps > room && steps / steps_apart > room) return false;
  t->grow_next = next_step;
  t->grow_apart = (int32_t)steps_apart;
  return true;
}

void infsim_kv_grow_end(infsim_kv *kv, int64_t req) {
  kv_table *t = tab(kv, req); /* its grown blocks counted */
  t->grow_next = INT64_MAX;
}

void infsim_kv_grow_pool(infsim_kv *kv, int32_t pool, int64_t step, int64_t n) {
  kv_pool *p = &kv->pools[pool];
  assert(pool < kv->instances && step >= p->grown_through && n >= 0 && p->capacity - p->in_use >= n);
  p->grown_through = step;
  deferred_pool(p, n);
}

int64_t infsim_kv_grow_next(const infsim_kv *kv, int64_t req) { return tab(kv, req)->grow_next; }

void infsim_kv_prefetch(const infsim_kv *kv, int64_t req) { __builtin_prefetch(rtab(kv, req), 1); }

void infsim_kv_prefetch_holdings(const infsim_kv *kv, int64_t req) {
  const kv_table *t = rtab(kv, req);
  if (t->holdings != NULL) __builtin_prefetch(t->holdings);
}

infsim_status infsim_kv_alloc_each(infsim_kv *kv, const int32_t *reqs, int32_t n, int32_t holder,
                                   infsim_error *err) {
  kv_pool *p = &kv->pools[holder];
  if (p->capacity - p->in_use < n)
    return infsim_fail(err, INFSIM_ERUN, "KV manager: instance %d has %lld free blocks, %d asked for", (int)holder,
                       (long long)(p->capacity - p->in_use), (int)n);
  int64_t counted = 0; /* blocks in tables, not yet in the pool */
  for (int32_t i = 0; i < n; i++) {
    if (infsim_kv_step_table(kv, reqs[i], holder)) {
      counted++;
      continue;
    }
    infsim_kv_step_pool(kv, holder, counted);
    counted = 0;
    infsim_status st = alloc_general(kv, reqs[i], holder, 1, err);
    if (st != INFSIM_OK) return st;
  }
  infsim_kv_step_pool(kv, holder, counted);
  return INFSIM_OK;
}

void infsim_kv_release_tail(infsim_kv *kv, int64_t req, int64_t n) {
  kv_table *t = tab(kv, req);
  assert(n >= 0 && n <= t->count);
  claim_drop(kv, req);
  if (t->pending > 0) {
    /* The last blocks first: the pending ones, which hold no slots. */
    int64_t k = n < t->pending ? n : t->pending;
    t->pending -= (int32_t)k;
    kv->pools[t->owner].pending -= k;
    t->count -= (int32_t)k;
    (void)account(kv, t->owner, req, -k);
    n -= k;
    if (n == 0) return;
  }
  t->count -= (int32_t)n;
  if (t->foreign == 0) {
    /* Every block in the owner's pool (no borrowing, no swap): no pool lookups. */
    kv_pool *p = &kv->pools[t->owner];
    int64_t base = (int64_t)t->owner * kv->stride, left = n;
    while (left > 0) {
      infsim_kv_run *r = &t->at[t->n - 1];
      int64_t c = r->blocks < left ? r->blocks : left;
      r->blocks -= c;
      run_give(p, r->first + r->blocks - base, c);
      if (r->blocks == 0) t->n--;
      left -= c;
    }
    (void)account(kv, t->owner, req, -n);
    return;
  }
  /* Pool by pool: each stretch of runs in one pool counted at once. */
  int32_t pool = -1;
  int64_t pending = 0, left = n;
  while (left > 0) {
    infsim_kv_run *r = &t->at[t->n - 1];
    int64_t c = r->blocks < left ? r->blocks : left;
    int32_t q = infsim_kv_holder_of(kv, r->first);
    if (q != pool && pending > 0) (void)account(kv, pool, req, -pending);
    if (q != pool) pending = 0;
    pool = q;
    r->blocks -= c;
    give(kv, r->first + r->blocks, c);
    if (r->blocks == 0) t->n--;
    pending += c;
    left -= c;
  }
  if (pending > 0) (void)account(kv, pool, req, -pending);
}

void infsim_kv_release(infsim_kv *kv, int64_t req) {
  kv_table *t = tab(kv, req);
  t->grow_next = INT64_MAX; /* an empty table does not grow */
  if (t->foreign == 0 && t->count > 0) {
    /* All in the owner's pool: each run back whole, one count. */
    kv_pool *p = &kv->pools[t->owner];
    int64_t base = (int64_t)t->owner * kv->stride, claim = t->claim;
    if (claim > 0) claim_forget(kv, req); /* its slots go back with the last run, as one range */
    for (int32_t i = 0; i < t->n; i++)
      run_give(p, t->at[i].first - base, t->at[i].blocks + (i == t->n - 1 ? claim : 0));
    p->pending -= t->pending; /* no slots to give back */
    t->pending = 0;
    (void)account(kv, t->owner, req, -(int64_t)t->count);
    t->n = 0;
    t->count = 0;
  }
  if (t->count > 0 || t->claim > 0) infsim_kv_release_tail(kv, req, t->count);
  /* A finished request's table goes back: memory stays bounded by live requests. */
  run_list l = table_runs(t);
  runs_put(kv, &l);
  table_set_runs(t, l);
  free(t->holdings);
  t->holdings = NULL;
  assert(t->n_holdings == 0 && t->split_slot < 0);
}

/* Re-homes table entries [first, first + n) into pool `to` (all or nothing
 * when `to` is short; out of memory leaves the table unusable: the run
 * stops). The table is rebuilt in kv->scratch: runs before, the moved
 * blocks' new runs, runs after. */
static infsim_status rehome(infsim_kv *kv, int64_t req, int64_t first, int64_t n, int32_t to, infsim_error *err) {
  kv_table *t = tab(kv, req);
  assert(first >= 0 && n >= 0 && first + n <= t->count);
  if (!settle(kv, req, false)) return infsim_fail(err, INFSIM_ENOMEM, "out of memory");
  claim_drop(kv, req);
  int64_t arriving = 0, pos = 0, pos0 = -1;
  int32_t i0 = 0; /* the first run reaching past `first`, from table entry pos0 */
  for (int32_t i = 0; i < t->n && pos < first + n; i++) {
    const infsim_kv_run *r = &t->at[i];
    if (pos0 < 0 && pos + r->blocks > first) {
      i0 = i;
      pos0 = pos;
    }
    int64_t a = pos > first ? pos : first, b = pos + r->blocks < first + n ? pos + r->blocks : first + n;
    if (b > a && infsim_kv_holder_of(kv, r->first) != to) arriving += b - a;
    pos += r->blocks;
  }
  const kv_pool *p = &kv->pools[to];
  if (p->capacity - p->in_use < arriving)
    return infsim_fail(err, INFSIM_ERUN, "KV manager: pool %d has %lld free blocks, %lld needed for request %lld",
                       (int)to, (long long)(p->capacity - p->in_use), (long long)arriving, (long long)req);
  if (arriving == 0) return INFSIM_OK;
  run_list *out = &kv->scratch;
  /* The runs before the moved stretch stay as they are (maximal: none
   * continues another), copied whole: a move of a long table's tail (the
   * DGFM's, lending's) touches its last runs only. */
  out->n = 0;
  while (out->cap < i0 + 1)
    if (!list_grow(kv, out)) return infsim_fail(err, INFSIM_ENOMEM, "out of memory");
  if (i0 > 0) memcpy(out->at, t->at, (size_t)i0 * sizeof *out->at);
  out->n = i0;
  pos = pos0;
  for (int32_t i = i0; i < t->n; i++) {
    infsim_kv_run r = t->at[i];
    if (pos >= first + n && out->n > 0 && out->at[out->n - 1].first + out->at[out->n - 1].blocks != r.first) {
      /* Past the stretch, and the first run after it is its own: the rest
       * are maximal too, copied whole. */
      int32_t rest = t->n - i;
      while (out->cap < out->n + rest)
        if (!list_grow(kv, out)) return infsim_fail(err, INFSIM_ENOMEM, "out of memory");
      memcpy(out->at + out->n, t->at + i, (size_t)rest * sizeof *out->at);
      out->n += rest;
      break;
    }
    int64_t lo = pos, hi = pos + r.blocks;
    pos = hi;
    int32_t from = infsim_kv_holder_of(kv, r.first);
    if (hi <= first || lo >= first + n || from == to) {
      if (!list_push(kv, out, r.first, r.blocks)) return infsim_fail(err, INFSIM_ENOMEM, "out of memory");
      continue;
    }
    int64_t a = lo > first ? lo : first, b = hi < first + n ? hi : first + n;
    if (a > lo && !list_push(kv, out, r.first, a - lo)) return infsim_fail(err, INFSIM_ENOMEM, "out of memory");
    /* New ids first, then the hook sees each block's old and new id, then
     * the old ones are freed (another pool: the order changes no slot).
     * Counted as moving one block at a time would: all but one leave,
     * all arrive, the last leaves; a move between two lenders then lends
     * one block more for a moment, not b - a (borrowed_blocks_peak). */
    int32_t n0 = out->n;
    int64_t last0 = n0 > 0 ? out->at[n0 - 1].blocks : 0;
    if (b - a > 1) (void)account(kv, from, req, -(b - a - 1));
    if (!take(kv, to, out, b - a) || !account(kv, to, req, b - a))
      return infsim_fail(err, INFSIM_ENOMEM, "out of memory");
    (void)account(kv, from, req, -1);
    if (kv->rehome_hook != NULL) {
      int64_t k = 0, old_first = r.first + (a - lo);
      for (int32_t j = n0 > 0 ? n0 - 1 : 0; j < out->n; j++)
        for (int64_t q = j == n0 - 1 ? last0 : 0; q < out->at[j].blocks; q++, k++)
          kv->rehome_hook(kv->rehome_self, req, a + k, old_first + k, out->at[j].first + q);
      assert(k == b - a);
    }
    give(kv, r.first + (a - lo), b - a);
    if (hi > b && !list_push(kv, out, r.first + (b - lo), hi - b))
      return infsim_fail(err, INFSIM_ENOMEM, "out of memory");
  }
  run_list old = table_runs(t);
  table_set_runs(t, *out);
  *out = old;
  return INFSIM_OK;
}

infsim_status infsim_kv_swap_out(infsim_kv *kv, int64_t req, int32_t host, infsim_error *err) {
  return rehome(kv, req, 0, tab(kv, req)->count, kv->instances + host, err);
}

infsim_status infsim_kv_swap_in(infsim_kv *kv, int64_t req, int32_t holder, infsim_error *err) {
  return rehome(kv, req, 0, tab(kv, req)->count, holder, err);
}

infsim_status infsim_kv_move(infsim_kv *kv, int64_t req, int64_t first, int64_t n, int32_t holder,
                             infsim_error *err) {
  assert(holder < kv->instances + kv->hosts);
  return rehome(kv, req, first, n, holder, err);
}

int64_t infsim_kv_move_tail(infsim_kv *kv, int64_t req, int32_t from, int32_t to, int64_t n) {
  const kv_table *t = tab(kv, req);
  if (!settle(kv, req, false)) abort(); /* out of memory: the caller cannot fail */
  int64_t moved = 0, limit = t->count; /* blocks from limit on are done */
  while (moved < n) {
    /* The last stretch of consecutive blocks held at `from` below limit
     * (up to n - moved of them): [lo, hi). */
    int64_t hi = -1, lo = -1, pos = t->count;
    for (int32_t i = t->n - 1; i >= 0; i--) {
      const infsim_kv_run *r = &t->at[i];
      int64_t rlo = pos - r->blocks, rhi = pos < limit ? pos : limit;
      pos = rlo;
      if (rlo >= limit) continue;
      bool at_from = infsim_kv_holder_of(kv, r->first) == from;
      if (!at_from) {
        if (hi >= 0) break;
        continue;
      }
      if (hi < 0) hi = rhi;
      lo = rlo > hi - (n - moved) ? rlo : hi - (n - moved);
      if (lo > rlo) break;
    }
    if (hi < 0) break;
    infsim_status st = rehome(kv, req, lo, hi - lo, to, NULL);
    assert(st == INFSIM_OK); /* the caller checked the room */
    (void)st;
    moved += hi - lo;
    limit = lo;
  }
  return moved;
}

const int64_t *infsim_kv_table(const infsim_kv *kv, int64_t req, int64_t *n) {
  settle_for_read(kv, req);
  const kv_table *t = rtab(kv, req);
  kv_flat *f = kv->flat;
  if (t->count > f->cap) {
    int64_t cap = 2 * f->cap > t->count ? 2 * f->cap : t->count;
    int64_t *ids = realloc(f->ids, (size_t)cap * sizeof *ids);
    if (ids == NULL) abort(); /* out of memory in an accessor that cannot fail */
    f->ids = ids;
    f->cap = cap;
  }
  int64_t k = 0;
  for (int32_t i = 0; i < t->n; i++)
    for (int64_t q = 0; q < t->at[i].blocks; q++) f->ids[k++] = t->at[i].first + q;
  *n = k;
  return f->ids;
}

const infsim_kv_run *infsim_kv_runs(const infsim_kv *kv, int64_t req, int64_t *n) {
  settle_for_read(kv, req);
  const kv_table *t = rtab(kv, req);
  *n = t->n;
  return t->at;
}

int64_t infsim_kv_blocks(const infsim_kv *kv, int64_t req) { return blocks_of(kv, rtab(kv, req)); }

int64_t infsim_kv_foreign_blocks(const infsim_kv *kv, int64_t req) { return rtab(kv, req)->foreign; }

/* infsim_kv_blocks_at at a holder other than the owner: kept out of
 * line, so that the owner's case (every running request in a
 * heartbeat) stays small enough to be inlined where it is called. */
static __attribute__((noinline)) int64_t blocks_held(const kv_table *t, int32_t holder) {
  for (int32_t i = 0; i < t->n_holdings; i++)
    if (t->holdings[i].pool == holder) return t->holdings[i].blocks;
  return 0;
}

int64_t infsim_kv_blocks_at(const infsim_kv *kv, int64_t req, int32_t holder) {
  const kv_table *t = rtab(kv, req);
  return holder == t->owner ? blocks_of(kv, t) - t->foreign : blocks_held(t, holder);
}

int32_t infsim_kv_holdings(const infsim_kv *kv, int64_t req, int32_t *pools, int64_t *blocks, int32_t max) {
  const kv_table *t = rtab(kv, req);
  for (int32_t i = 0; i < t->n_holdings && i < max; i++) {
    pools[i] = t->holdings[i].pool;
    blocks[i] = t->holdings[i].blocks;
  }
  return t->n_holdings;
}

const int64_t *infsim_kv_split_requests(const infsim_kv *kv, int32_t instance, int64_t *n) {
  *n = kv->pools[instance].n_split;
  return kv->pools[instance].split;
}

int64_t infsim_kv_guests(const infsim_kv *kv, int32_t instance) { return kv->pools[instance].guests; }

uint64_t infsim_kv_split_generation(const infsim_kv *kv, int32_t instance) { return kv->pools[instance].split_gen; }

uint64_t infsim_kv_guest_generation(const infsim_kv *kv, int32_t instance) { return kv->guest_gen[instance]; }

/* ---- checks -------------------------------------------------------------- */

void infsim_kv_check_request(const infsim_kv *kv, int64_t req) {
#ifndef NDEBUG
  const kv_table *t = tab(kv, req);
  int64_t foreign = 0, count = 0;
  assert(t->n <= table_runs(t).cap);
  for (int32_t i = 0; i < t->n; i++) {
    const infsim_kv_run *r = &t->at[i];
    int32_t pool = infsim_kv_holder_of(kv, r->first);
    assert(r->blocks > 0 && pool >= 0 && pool < kv->instances + kv->hosts);
    const kv_pool *p = &kv->pools[pool];
    int64_t s = r->first - infsim_kv_first_block(kv, pool);
    assert(s + r->blocks <= p->high_water); /* one pool, slots handed out */
    for (int64_t k = s; k < s + r->blocks; k++) assert(!slot_free(p, k));
    assert(i == 0 || t->at[i - 1].first + t->at[i - 1].blocks != r->first); /* maximal runs */
    foreign += pool != t->owner ? r->blocks : 0;
    count += r->blocks;
  }
  /* pending blocks: the table's last, in its owner's GPU pool, no slots yet */
  assert(t->pending >= 0 && (t->pending == 0 || (t->owner >= 0 && t->owner < kv->instances)));
  /* a growing table: its owner's, its grown blocks counted (tab) */
  assert(t->grow_next == INT64_MAX ||
         (t->owner >= 0 && t->owner < kv->instances && t->grow_next > kv->pools[t->owner].grown_through));
  assert(t->pending <= kv->pools[t->owner >= 0 ? t->owner : 0].pending);
  assert(count + t->pending == t->count);
  assert(foreign == t->foreign);
  if (t->claim > 0) {
    /* the claim follows the last run, in the owner's pool, its slots not free bits */
    const infsim_kv_run *last = &t->at[t->n - 1];
    assert(infsim_kv_holder_of(kv, last->first) == t->owner);
    const kv_pool *p = &kv->pools[t->owner];
    int64_t end = last->first + last->blocks - infsim_kv_first_block(kv, t->owner);
    assert(end + t->claim <= p->high_water && p->claimers[t->claim_slot] == req);
    for (int64_t k = end; k < end + t->claim; k++) assert(!slot_free(p, k));
  } else {
    assert(t->claim_slot < 0);
  }
  int64_t held = 0;
  for (int32_t i = 0; i < t->n_holdings; i++) {
    assert(t->holdings[i].pool != t->owner && t->holdings[i].blocks > 0);
    held += t->holdings[i].blocks;
  }
  assert(held == foreign);
  assert((t->split_slot >= 0) == (t->n_holdings > 0));
  assert(t->split_slot < 0 || kv->pools[t->owner].split[t->split_slot] == req);
  (void)foreign;
  (void)held;
  (void)count;
#else
  (void)kv;
  (void)req;
#endif
}

#ifndef NDEBUG
/* A pool's bitmap against its counts and summaries: O(its
 * slots), so only for pools of up to 2^16 slots handed out. */
static void check_bitmap(const kv_pool *p) {
  if (p->high_water > 65536) return;
  int64_t words = (p->high_water + 63) >> 6, set = 0;
  for (int64_t w = 0; w < words; w++) {
    set += __builtin_popcountll(p->bits[0][w]);
    if (w == words - 1 && (p->high_water & 63) != 0) assert((p->bits[0][w] >> (p->high_water & 63)) == 0);
  }
  assert(set == p->free_bits);
  for (int32_t k = 1; k < p->levels; k++, words = (words + 63) >> 6)
    for (int64_t w = 0; w < words; w++) {
      bool any = p->bits[k - 1][w] != 0, marked = (p->bits[k][w >> 6] >> (w & 63)) & 1;
      assert(any == marked);
      (void)any;
      (void)marked;
    }
}
#endif

void infsim_kv_check(const infsim_kv *kv) {
#ifndef NDEBUG
  int64_t lent = 0, borrowed = 0;
  for (int32_t i = 0; i < kv->instances; i++) {
    const kv_pool *p = &kv->pools[i];
    assert(p->local + p->lent == p->in_use);
    lent += p->lent;
    borrowed += kv->borrowed[i];
  }
  assert(lent == borrowed && lent == kv->lent_total);
  /* Every GPU pool's local and pending blocks are its own requests'
   * tables' (a growing table's grown ones included): O(tables). */
  int64_t *own = calloc(2 * (size_t)kv->instances, sizeof *own);
  if (own != NULL) {
    for (int64_t r = 0; r <= kv->mask; r++) {
      const kv_table *t = &kv->tables[r];
      if (t->owner < 0 || t->owner >= kv->instances) continue;
      own[2 * t->owner] += blocks_of(kv, t) - t->foreign;
      own[2 * t->owner + 1] += t->pending + grown(kv, t);
    }
    for (int32_t i = 0; i < kv->instances; i++)
      assert(own[2 * i] == kv->pools[i].local && own[2 * i + 1] == kv->pools[i].pending);
    free(own);
  }
  /* Host pools as holders: what they hold is what the instances' requests
   * have in host memory (swapped or the CPU tier). */
  int64_t host_held = 0, host_owed = 0;
  for (int32_t q = 0; q < kv->instances + kv->hosts; q++) {
    const kv_pool *p = &kv->pools[q];
    assert(p->pending >= 0 && p->pending <= p->in_use && (q < kv->instances || p->pending == 0));
    assert(p->in_use - p->pending + p->free_bits + p->claimed == p->high_water); /* slots */
    /* pending blocks may count on claimed slots: those give way when they settle */
    assert(p->in_use - p->pending + p->claimed <= p->capacity && p->in_use <= p->peak);
    int64_t claimed = 0;
    for (int64_t i = 0; i < p->n_claimers; i++) {
      const kv_table *t = tab(kv, p->claimers[i]);
      assert(t->owner == q && t->claim > 0 && t->claim_slot == i);
      claimed += t->claim;
    }
    assert(claimed == p->claimed);
    (void)claimed;
    assert(p->in_use <= p->capacity);
    check_bitmap(p);
    if (q >= kv->instances) host_held += p->in_use;
  }
  for (int32_t i = 0; i < kv->instances; i++) host_owed += kv->swapped[i];
  assert(host_held == host_owed);
  (void)host_held;
  (void)host_owed;
  (void)lent;
  (void)borrowed;
#else
  (void)kv;
#endif
}
