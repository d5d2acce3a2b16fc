/*
** kv.c: the KV manager (kv.h): block ids, per-request block tables, and
** each block's holder and state.
**
** A pool is one instance's GPU memory or one host's memory. Its slots are
** handed out from a stack of freed slots, else from a high-water mark, so a
** pool's arrays grow with the blocks in use at once, not with its
** capacity (a tiny model has millions of blocks an instance). A block's
** global id is pool x stride + slot.
**
** Invariants (infsim_kv_check):
**  - every slot below a pool's high-water mark is either on its free stack
**    or in exactly one table (in_use + free stack == high-water mark);
**  - per instance: local + lent + free == capacity; borrowed and swapped
**    count the instance's requests' blocks held elsewhere;
**  - sum of lent == sum of borrowed over instances.
*/
#include "infsim/kv.h"

#include <assert.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

/* Blocks of a request in one pool other than its owner's GPU memory. */
typedef struct {
  int32_t pool;
  int32_t blocks;
} kv_holding;

typedef struct {
  int64_t *ids;
  int32_t count;
  int32_t capacity;
  int32_t owner;   /* instance, -1 unset */
  int32_t foreign; /* blocks not in the owner's GPU pool (borrowed or swapped) */
  kv_holding *holdings; /* where the foreign blocks are, one entry a pool */
  int32_t n_holdings;
  int32_t split_slot; /* index in the owner's split list, -1 when no other GPU holds any */
} kv_table;

typedef struct {
  int64_t capacity;
  int64_t high_water; /* slots ever handed out */
  int64_t *free_slots;
  int64_t free_count;
  int64_t free_capacity;
  int64_t in_use;
  /* GPU pools only: blocks held here by requests owned here / elsewhere */
  int64_t local;
  int64_t lent;
  int64_t guests; /* distinct requests owned elsewhere with blocks here */
  /* GPU pools only: requests owned here with blocks in another GPU pool */
  int64_t *split;
  int64_t n_split;
  int64_t cap_split;
} kv_pool;

struct infsim_kv {
  int32_t instances;
  int32_t hosts;
  int64_t stride;
  kv_pool *pools; /* instances GPU pools, then hosts host pools */
  kv_table *tables;
  int64_t requests;
  int64_t *borrowed; /* per instance */
  int64_t *swapped;  /* per instance */
  int64_t lent_total;
  int64_t lent_peak;
  infsim_kv_rehome_fn rehome_hook;
  void *rehome_self;
};

infsim_status infsim_kv_new(int32_t instances, int64_t gpu_blocks, int32_t hosts, int64_t host_blocks,
                            int64_t requests, infsim_kv **out, infsim_error *err) {
  infsim_kv *kv = calloc(1, sizeof *kv);
  if (kv == NULL) return infsim_fail(err, INFSIM_ENOMEM, "out of memory");
  kv->instances = instances;
  kv->hosts = hosts;
  kv->requests = requests;
  kv->stride = (gpu_blocks > host_blocks ? gpu_blocks : host_blocks) + 1;
  kv->pools = calloc((size_t)(instances + hosts), sizeof *kv->pools);
  kv->tables = calloc((size_t)(requests > 0 ? requests : 1), sizeof *kv->tables);
  kv->borrowed = calloc((size_t)instances, sizeof *kv->borrowed);
  kv->swapped = calloc((size_t)instances, sizeof *kv->swapped);
  if (kv->pools == NULL || kv->tables == NULL || kv->borrowed == NULL || kv->swapped == NULL) {
    infsim_kv_free(kv);
    return infsim_fail(err, INFSIM_ENOMEM, "out of memory");
  }
  for (int32_t p = 0; p < instances + hosts; p++) kv->pools[p].capacity = p < instances ? gpu_blocks : host_blocks;
  for (int64_t r = 0; r < requests; r++) {
    kv->tables[r].owner = -1;
    kv->tables[r].split_slot = -1;
  }
  *out = kv;
  return INFSIM_OK;
}

void infsim_kv_free(infsim_kv *kv) {
  if (kv == NULL) return;
  if (kv->pools != NULL)
    for (int32_t p = 0; p < kv->instances + kv->hosts; p++) {
      free(kv->pools[p].free_slots);
      free(kv->pools[p].split);
    }
  if (kv->tables != NULL)
    for (int64_t r = 0; r < kv->requests; r++) {
      free(kv->tables[r].ids);
      free(kv->tables[r].holdings);
    }
  free(kv->pools);
  free(kv->tables);
  free(kv->borrowed);
  free(kv->swapped);
  free(kv);
}

void infsim_kv_set_owner(infsim_kv *kv, int64_t req, int32_t instance) {
  assert(kv->tables[req].count == 0); /* ownership moves only with an empty table */
  kv->tables[req].owner = instance;
}

int32_t infsim_kv_owner(const infsim_kv *kv, int64_t req) { return kv->tables[req].owner; }

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

void infsim_kv_set_rehome_hook(infsim_kv *kv, infsim_kv_rehome_fn fn, void *self) {
  kv->rehome_hook = fn;
  kv->rehome_self = self;
}

int64_t infsim_kv_first_block(const infsim_kv *kv, int32_t pool) { return (int64_t)pool * kv->stride; }

int64_t infsim_kv_borrowed_peak(const infsim_kv *kv) { return kv->lent_peak; }

/* Slots are recycled before fresh ones are taken, so the slots ever handed
 * out are the most blocks ever in use at once. */
void infsim_kv_pool_usage(const infsim_kv *kv, int32_t pool, int64_t *in_use, int64_t *peak, int64_t *capacity) {
  const kv_pool *p = &kv->pools[pool];
  *in_use = p->in_use;
  *peak = p->high_water;
  *capacity = p->capacity;
}

/* ---- pools --------------------------------------------------------------- */

static bool grow(void **items, int64_t *capacity, int64_t need, size_t item_bytes) {
  if (need <= *capacity) return true;
  int64_t cap = *capacity ? 2 * *capacity : 64;
  while (cap < need) cap *= 2;
  void *p = realloc(*items, (size_t)cap * item_bytes);
  if (p == NULL) return false;
  *items = p;
  *capacity = cap;
  return true;
}

/* Adds req to / removes it from its owner's list of split requests. */
static bool split_add(infsim_kv *kv, int64_t req) {
  kv_table *t = &kv->tables[req];
  kv_pool *o = &kv->pools[t->owner];
  if (!grow((void **)&o->split, &o->cap_split, o->n_split + 1, sizeof *o->split)) return false;
  t->split_slot = (int32_t)o->n_split;
  o->split[o->n_split++] = req;
  return true;
}

static void split_remove(infsim_kv *kv, int64_t req) {
  kv_table *t = &kv->tables[req];
  kv_pool *o = &kv->pools[t->owner];
  int64_t last = o->split[--o->n_split];
  o->split[t->split_slot] = last;
  kv->tables[last].split_slot = t->split_slot;
  t->split_slot = -1;
}

/* True when req has blocks outside its owner's GPU pool (another GPU, or
 * host memory: the CPU tier and swap). */
static bool is_split(const infsim_kv *kv, const kv_table *t) {
  (void)kv;
  return t->n_holdings > 0;
}

/* Keeps req's holding in pool (not its owner's GPU pool) right after n
 * blocks came (n > 0) or went (n < 0): the holding list, the pool's
 * guests, the owner's split list. False when memory is short. */
static bool hold(infsim_kv *kv, int32_t pool, int64_t req, int64_t n) {
  kv_table *t = &kv->tables[req];
  int32_t i = 0;
  while (i < t->n_holdings && t->holdings[i].pool != pool) i++;
  if (i == t->n_holdings) {
    assert(n > 0);
    int64_t cap = t->n_holdings;
    kv_holding *h = realloc(t->holdings, (size_t)(cap + 1) * sizeof *h);
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
    if (t->split_slot >= 0 && !is_split(kv, t)) split_remove(kv, req);
  }
  return true;
}

/* Counts n blocks of req held in pool `pool` (n < 0: given back). */
static bool account(infsim_kv *kv, int32_t pool, int64_t req, int64_t n) {
  int32_t owner = kv->tables[req].owner;
  kv_pool *p = &kv->pools[pool];
  p->in_use += n;
  if (pool != owner) {
    kv->tables[req].foreign += (int32_t)n;
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

/* Writes n new ids of pool `pool` to out (the pool has n free): recycled
 * slots first, then fresh ones above the high-water mark. False when
 * memory for the free stack is short. */
static bool take_slots(infsim_kv *kv, int32_t pool, int64_t req, int64_t n, int64_t *out) {
  kv_pool *p = &kv->pools[pool];
  assert(p->capacity - p->in_use >= n);
  int64_t base = (int64_t)pool * kv->stride;
  int64_t recycled = n < p->free_count ? n : p->free_count;
  int64_t fresh = n - recycled;
  /* The free stack can hold every slot ever handed out: giving back never allocates. */
  if (fresh > 0 && !grow((void **)&p->free_slots, &p->free_capacity, p->high_water + fresh, sizeof *p->free_slots))
    return false;
  /* Locals, not the pool's fields, in the loops: out may alias nothing the
   * compiler can see, and the loops vectorize. */
  const int64_t *restrict stack = p->free_slots + p->free_count - recycled;
  int64_t *restrict dst = out;
  for (int64_t i = 0; i < recycled; i++) dst[i] = base + stack[recycled - 1 - i];
  int64_t next = p->high_water;
  for (int64_t i = recycled; i < n; i++) dst[i] = base + next++;
  p->free_count -= recycled;
  p->high_water = next;
  return account(kv, pool, req, n);
}

/* Gives back ids[0..n) of req, wherever they are. */
static void give_back(infsim_kv *kv, int64_t req, const int64_t *ids, int64_t n) {
  int64_t i = 0;
  const kv_table *t = &kv->tables[req];
  if (t->foreign == 0 && n > 0) {
    /* Every block in the owner's pool (no borrowing, no swap): one run, no scan. */
    kv_pool *p = &kv->pools[t->owner];
    int64_t base = (int64_t)t->owner * kv->stride;
    int64_t *restrict stack = p->free_slots + p->free_count;
    for (int64_t k = 0; k < n; k++) stack[k] = ids[k] - base;
    p->free_count += n;
    assert(p->free_count <= p->free_capacity);
    (void)account(kv, t->owner, req, -n); /* local: never allocates */
    return;
  }
  while (i < n) {
    /* a run of ids in one pool: most tables are one or two runs */
    int32_t pool = infsim_kv_holder_of(kv, ids[i]);
    kv_pool *p = &kv->pools[pool];
    int64_t base = (int64_t)pool * kv->stride, end = base + kv->stride, j = i;
    while (j < n && ids[j] >= base && ids[j] < end) j++;
    /* then a plain copy, which vectorizes */
    int64_t *restrict stack = p->free_slots + p->free_count;
    const int64_t *restrict src = ids + i;
    for (int64_t k = 0; k < j - i; k++) stack[k] = src[k] - base;
    p->free_count += j - i;
    assert(p->free_count <= p->free_capacity);
    /* a shrinking holding never allocates */
    (void)account(kv, pool, req, -(j - i));
    i = j;
  }
}

static bool table_reserve(kv_table *t, int64_t extra) {
  int64_t cap = t->capacity;
  if (!grow((void **)&t->ids, &cap, (int64_t)t->count + extra, sizeof *t->ids)) return false;
  t->capacity = (int32_t)cap;
  return true;
}

/* ---- tables -------------------------------------------------------------- */

infsim_status infsim_kv_alloc(infsim_kv *kv, int64_t req, int32_t holder, int64_t n, infsim_error *err) {
  kv_table *t = &kv->tables[req];
  assert(t->owner >= 0);
  if (n <= 0) return INFSIM_OK;
  if (infsim_kv_free_blocks(kv, holder) < n)
    return infsim_fail(err, INFSIM_ERUN, "KV manager: instance %d has %lld free blocks, %lld asked for request %lld",
                       (int)holder, (long long)infsim_kv_free_blocks(kv, holder), (long long)n, (long long)req);
  kv_pool *p = &kv->pools[holder];
  if (n == 1 && t->count < t->capacity && p->free_count > 0 && holder == t->owner) {
    /* The common case, a decode step's block boundary: one recycled block, local. */
    t->ids[t->count++] = (int64_t)holder * kv->stride + p->free_slots[--p->free_count];
    p->in_use++;
    p->local++;
    return INFSIM_OK;
  }
  if (!table_reserve(t, n) || !take_slots(kv, holder, req, n, t->ids + t->count))
    return infsim_fail(err, INFSIM_ENOMEM, "out of memory");
  t->count += (int32_t)n;
  return INFSIM_OK;
}

infsim_status infsim_kv_alloc_each(infsim_kv *kv, const int32_t *reqs, int32_t n, int32_t holder,
                                   infsim_error *err) {
  kv_pool *p = &kv->pools[holder];
  if (p->capacity - p->in_use < n)
    return infsim_fail(err, INFSIM_ERUN, "KV manager: instance %d has %lld free blocks, %d asked for", (int)holder,
                       (long long)(p->capacity - p->in_use), (int)n);
  int64_t base = (int64_t)holder * kv->stride;
  for (int32_t i = 0; i < n; i++) {
    kv_table *t = &kv->tables[reqs[i]];
    if (t->count < t->capacity && p->free_count > 0 && holder == t->owner) {
      /* as infsim_kv_alloc's fast path: one recycled block, local */
      t->ids[t->count++] = base + p->free_slots[--p->free_count];
      p->in_use++;
      p->local++;
      continue;
    }
    infsim_status st = infsim_kv_alloc(kv, reqs[i], holder, 1, err);
    if (st != INFSIM_OK) return st;
  }
  return INFSIM_OK;
}

void infsim_kv_release_tail(infsim_kv *kv, int64_t req, int64_t n) {
  kv_table *t = &kv->tables[req];
  assert(n <= t->count);
  t->count -= (int32_t)n;
  give_back(kv, req, t->ids + t->count, n);
}

void infsim_kv_release(infsim_kv *kv, int64_t req) {
  kv_table *t = &kv->tables[req];
  infsim_kv_release_tail(kv, req, t->count);
  /* A finished request's table is gone: memory stays bounded by live requests. */
  free(t->ids);
  t->ids = NULL;
  t->capacity = 0;
  free(t->holdings);
  t->holdings = NULL;
  assert(t->n_holdings == 0 && t->split_slot < 0);
}

/* Re-homes table entries [first, first + n) into pool `to` (all or nothing). */
static infsim_status rehome(infsim_kv *kv, int64_t req, int64_t first, int64_t n, int32_t to, infsim_error *err) {
  kv_table *t = &kv->tables[req];
  assert(first >= 0 && first + n <= t->count);
  int64_t arriving = 0;
  for (int64_t i = first; i < first + n; i++) arriving += infsim_kv_holder_of(kv, t->ids[i]) != to;
  const kv_pool *p = &kv->pools[to];
  if (p->capacity - p->in_use < arriving)
    return infsim_fail(err, INFSIM_ERUN, "KV manager: pool %d has %lld free blocks, %lld needed for request %lld",
                       (int)to, (long long)(p->capacity - p->in_use), (long long)arriving, (long long)req);
  for (int64_t i = first; i < first + n; i++) {
    if (infsim_kv_holder_of(kv, t->ids[i]) == to) continue;
    int64_t id;
    if (!take_slots(kv, to, req, 1, &id)) return infsim_fail(err, INFSIM_ENOMEM, "out of memory");
    if (kv->rehome_hook) kv->rehome_hook(kv->rehome_self, req, i, t->ids[i], id);
    give_back(kv, req, &t->ids[i], 1);
    t->ids[i] = id;
  }
  return INFSIM_OK;
}

infsim_status infsim_kv_swap_out(infsim_kv *kv, int64_t req, int32_t host, infsim_error *err) {
  return rehome(kv, req, 0, kv->tables[req].count, kv->instances + host, err);
}

infsim_status infsim_kv_swap_in(infsim_kv *kv, int64_t req, int32_t holder, infsim_error *err) {
  return rehome(kv, req, 0, kv->tables[req].count, holder, err);
}

infsim_status infsim_kv_move(infsim_kv *kv, int64_t req, int64_t first, int64_t n, int32_t holder,
                             infsim_error *err) {
  assert(holder < kv->instances + kv->hosts);
  return rehome(kv, req, first, n, holder, err);
}

int64_t infsim_kv_move_tail(infsim_kv *kv, int64_t req, int32_t from, int32_t to, int64_t n) {
  int64_t len = 0, moved = 0;
  const int64_t *ids = infsim_kv_table(kv, req, &len);
  int64_t i = len - 1;
  while (moved < n && i >= 0) {
    if (infsim_kv_holder_of(kv, ids[i]) != from) {
      i--;
      continue;
    }
    int64_t cnt = 0;
    while (i >= 0 && infsim_kv_holder_of(kv, ids[i]) == from && cnt < n - moved) {
      cnt++;
      i--;
    }
    infsim_status st = infsim_kv_move(kv, req, i + 1, cnt, to, NULL);
    assert(st == INFSIM_OK); /* the caller checked the room */
    (void)st;
    moved += cnt;
    ids = infsim_kv_table(kv, req, &len); /* the move may have reallocated it */
  }
  return moved;
}

const int64_t *infsim_kv_table(const infsim_kv *kv, int64_t req, int64_t *n) {
  *n = kv->tables[req].count;
  return kv->tables[req].ids;
}

int64_t infsim_kv_blocks(const infsim_kv *kv, int64_t req) { return kv->tables[req].count; }

int64_t infsim_kv_foreign_blocks(const infsim_kv *kv, int64_t req) { return kv->tables[req].foreign; }

int64_t infsim_kv_blocks_at(const infsim_kv *kv, int64_t req, int32_t holder) {
  const kv_table *t = &kv->tables[req];
  if (holder == t->owner) return t->count - t->foreign;
  for (int32_t i = 0; i < t->n_holdings; i++)
    if (t->holdings[i].pool == holder) return t->holdings[i].blocks;
  return 0;
}

int32_t infsim_kv_holdings(const infsim_kv *kv, int64_t req, int32_t *pools, int64_t *blocks, int32_t max) {
  const kv_table *t = &kv->tables[req];
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

void infsim_kv_check_request(const infsim_kv *kv, int64_t req) {
#ifndef NDEBUG
  const kv_table *t = &kv->tables[req];
  int64_t foreign = 0;
  for (int32_t i = 0; i < t->count; i++) {
    int32_t pool = infsim_kv_holder_of(kv, t->ids[i]);
    assert(pool >= 0 && pool < kv->instances + kv->hosts);
    foreign += pool != t->owner;
  }
  assert(foreign == t->foreign);
  int64_t held = 0;
  for (int32_t i = 0; i < t->n_holdings; i++) {
    assert(t->holdings[i].pool != t->owner && t->holdings[i].blocks > 0);
    held += t->holdings[i].blocks;
  }
  assert(held == foreign);
  assert((t->split_slot >= 0) == is_split(kv, t));
  assert(t->split_slot < 0 || kv->pools[t->owner].split[t->split_slot] == req);
  (void)foreign;
  (void)held;
#else
  (void)kv;
  (void)req;
#endif
}

void infsim_kv_check(const infsim_kv *kv) {
#ifndef NDEBUG
  int64_t lent = 0, borrowed = 0;
  for (int32_t i = 0; i < kv->instances; i++) {
    const kv_pool *p = &kv->pools[i];
    assert(p->local + p->lent == p->in_use);
    assert(p->in_use <= p->capacity);
    lent += p->lent;
    borrowed += kv->borrowed[i];
  }
  assert(lent == borrowed && lent == kv->lent_total);
  /* Host pools as holders: what they hold is what the instances' requests
   * have in host memory (swapped or the CPU tier). */
  int64_t host_held = 0, host_owed = 0;
  for (int32_t q = 0; q < kv->instances + kv->hosts; q++) {
    const kv_pool *p = &kv->pools[q];
    assert(p->in_use + p->free_count == p->high_water);
    assert(p->in_use <= p->capacity);
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
