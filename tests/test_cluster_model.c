/*
** test_cluster_model.c: the cluster model (cluster_model.h) on the CPU
** reference kernels, with the `tiny` shape, against independent truth:
**  - attention: every query row of a mixed batch (prefills, a chunked
**    prefill, decodes over scattered blocks) equals a naive causal
**    softmax(q k^T / sqrt d) v over the request's own K/V history, recomputed
**    here in plain loops from the q, k, v the layer produced;
**  - a request's hidden state is the same in a batch and alone, and a
**    chunked prefill gives the same decode as an unchunked one;
**  - DistAttention: a request whose middle blocks moved to a second holder
**    (partials merged by LSE) decodes like the unsplit request, and leaving
**    the remote partial out changes the result (the split is not vacuous).
*/
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "infsim/cluster_model.h"
#include "infsim/hardware.h"

typedef struct {
  infsim_kernels *k;
  infsim_cmodel_params p;
} fixture;

static int setup(void **state) {
  fixture *f = calloc(1, sizeof *f);
  infsim_error err;
  assert_int_equal(infsim_kernels_open(INFSIM_KBACKEND_CPU, &f->k, &err), INFSIM_OK);
  infsim_model_shape tiny;
  assert_true(infsim_model_builtin("tiny", &tiny));
  assert_int_equal(infsim_cmodel_params_from_shape(&tiny, 16, 24, 128, 8, 8, &f->p, &err), INFSIM_OK);
  f->p.seed = 7;
  *state = f;
  return 0;
}

static int teardown(void **state) {
  fixture *f = *state;
  infsim_kernels_close(f->k);
  free(f);
  return 0;
}

static float bf(uint16_t v) { return infsim_bf16_to_float(v); }

static double max_rel_diff(const uint16_t *a, const uint16_t *b, int64_t n) {
  double scale = 1.0, diff = 0.0;
  for (int64_t i = 0; i < n; i++) {
    if (fabs(bf(b[i])) > scale) scale = fabs(bf(b[i]));
    if (fabs(bf(a[i]) - bf(b[i])) > diff) diff = fabs(bf(a[i]) - bf(b[i]));
  }
  return diff / scale;
}

/* K/V history of one request, as the layer produced it: [pos][g][d]. */
typedef struct {
  float k[64][2][128], v[64][2][128];
  int n;
} history;

/* Naive attention of query row q ([h][d]) at position pos over hist[0..pos]. */
static void naive_attention(const uint16_t *q, const history *hist, int pos, int h, int g, float *out) {
  int d = 128;
  for (int head = 0; head < h; head++) {
    int kvh = head / (h / g);
    double s[64], mx = -INFINITY, sum = 0.0;
    for (int t = 0; t <= pos; t++) {
      double dot = 0.0;
      for (int i = 0; i < d; i++) dot += (double)bf(q[head * d + i]) * hist->k[t][kvh][i];
      s[t] = dot / sqrt((double)d);
      if (s[t] > mx) mx = s[t];
    }
    for (int t = 0; t <= pos; t++) sum += exp(s[t] - mx);
    for (int i = 0; i < d; i++) {
      double acc = 0.0;
      for (int t = 0; t <= pos; t++) acc += exp(s[t] - mx) / sum * hist->v[t][kvh][i];
      out[head * d + i] = (float)acc;
    }
  }
}

typedef struct {
  int64_t req;
  int32_t prompt, slots[8], nslots;
  history hist;
} request;

static infsim_cmodel_part part_of(request *r, int32_t query, int32_t context) {
  return (infsim_cmodel_part){.req = r->req, .prompt_tokens = r->prompt, .query_tokens = query,
                              .context_tokens = context, .slots = r->slots, .slot_count = r->nslots};
}

/* Runs one forward, appends its K/V rows to the histories and checks every
 * query row of the inspected layer against the naive attention. The parts
 * are given decodes first, so rows follow their order. */
static double check_forward(infsim_cmodel *m, infsim_cmodel_part *parts, request **reqs, int n) {
  infsim_error err;
  assert_int_equal(infsim_cmodel_forward(m, parts, n, NULL, &err), INFSIM_OK);
  int64_t tokens;
  const uint16_t *k, *v, *attn;
  const uint16_t *q = infsim_cmodel_inspected(m, &tokens, &k, &v, &attn);
  int h = 2, g = 2, d = 128;
  int64_t row = 0;
  double worst = 0.0;
  float out[2 * 128];
  for (int i = 0; i < n; i++) {
    request *r = reqs[i];
    assert_int_equal(r->hist.n, parts[i].context_tokens);
    for (int t = 0; t < parts[i].query_tokens; t++, row++) {
      for (int j = 0; j < g; j++)
        for (int e = 0; e < d; e++) {
          r->hist.k[r->hist.n][j][e] = bf(k[(row * g + j) * d + e]);
          r->hist.v[r->hist.n][j][e] = bf(v[(row * g + j) * d + e]);
        }
      r->hist.n++;
      naive_attention(q + row * h * d, &r->hist, parts[i].context_tokens + t, h, g, out);
      for (int e = 0; e < h * d; e++) {
        double diff = fabs(bf(attn[row * h * d + e]) - out[e]) / (1.0 + fabs(out[e]));
        if (diff > worst) worst = diff;
      }
    }
  }
  assert_int_equal(row, tokens);
  return worst;
}

static void test_batch_attention_matches_naive(void **state) {
  fixture *f = *state;
  infsim_error err;
  infsim_cmodel *m;
  assert_int_equal(infsim_cmodel_new(f->k, &f->p, &m, &err), INFSIM_OK);
  infsim_cmodel_inspect(m, 1);
  /* Scattered, interleaved slots: a wrong table read shows. */
  static request a = {.req = 0, .prompt = 37, .slots = {5, 0, 17, 9}, .nslots = 4};
  static request b = {.req = 1, .prompt = 20, .slots = {2, 11}, .nslots = 2};
  static request c = {.req = 2, .prompt = 50, .slots = {23, 1, 14, 6}, .nslots = 4};
  a.hist.n = b.hist.n = c.hist.n = 0;
  double worst = 0.0, w;
  {
    infsim_cmodel_part p[] = {part_of(&a, 37, 0), part_of(&b, 20, 0)};
    request *r[] = {&a, &b};
    w = check_forward(m, p, r, 2);
    worst = w > worst ? w : worst;
  }
  {
    infsim_cmodel_part p[] = {part_of(&a, 1, 37), part_of(&b, 1, 20), part_of(&c, 32, 0)};
    request *r[] = {&a, &b, &c};
    w = check_forward(m, p, r, 3);
    worst = w > worst ? w : worst;
  }
  {
    infsim_cmodel_part p[] = {part_of(&a, 1, 38), part_of(&b, 1, 21), part_of(&c, 18, 32)};
    request *r[] = {&a, &b, &c};
    w = check_forward(m, p, r, 3);
    worst = w > worst ? w : worst;
  }
  uint16_t batched[3 * 256];
  {
    infsim_cmodel_part p[] = {part_of(&a, 1, 39), part_of(&b, 1, 22), part_of(&c, 1, 50)};
    request *r[] = {&a, &b, &c};
    w = check_forward(m, p, r, 3);
    worst = w > worst ? w : worst;
    assert_int_equal(infsim_cmodel_hidden(m, batched, &err), INFSIM_OK);
  }
  print_message("attention worst %g\n", worst);
  /* bf16 inputs and output: a few units in the last place of bf16. */
  assert_true(worst < 0.02);
  infsim_cmodel_free(m);

  /* B without A, and C with its prompt in one chunk, in a fresh model:
   * B decodes at 20, 21, 22, C once at 50 beside B's last step. */
  assert_int_equal(infsim_cmodel_new(f->k, &f->p, &m, &err), INFSIM_OK);
  infsim_cmodel_part pre[] = {part_of(&b, 20, 0), part_of(&c, 50, 0)};
  assert_int_equal(infsim_cmodel_forward(m, pre, 2, NULL, &err), INFSIM_OK);
  for (int step = 0; step < 3; step++) {
    infsim_cmodel_part p[] = {part_of(&b, 1, 20 + step), part_of(&c, 1, 50)};
    assert_int_equal(infsim_cmodel_forward(m, p, step < 2 ? 1 : 2, NULL, &err), INFSIM_OK);
  }
  uint16_t alone[2 * 256];
  assert_int_equal(infsim_cmodel_hidden(m, alone, &err), INFSIM_OK);
  /* batched rows: A, B, C; alone rows: B, C. */
  double db = max_rel_diff(batched + 256, alone, 256), dc = max_rel_diff(batched + 512, alone + 256, 256);
  print_message("batched vs alone: B %g C %g\n", db, dc);
  assert_true(db < 0.02);
  assert_true(dc < 0.02);
  /* ... and the rows are not trivially equal: A differs from B. */
  assert_true(max_rel_diff(batched, alone, 256) > 0.1);
  infsim_cmodel_free(m);
}

/* The holder side for the split test. */
typedef struct {
  infsim_cmodel *holder;
  const int32_t *slots;
  int32_t count, tokens;
  bool drop;   /* answer empty partials (the negative control) */
  bool append; /* the holder appends the new token (its last block is the request's last) */
  int calls;
} remote_ctx;

static infsim_status remote_attend(void *self, int32_t layer, const int32_t *parts, int32_t n, const uint16_t *q,
                                   const uint16_t *k, const uint16_t *v, float *out, float *lse, infsim_error *err) {
  remote_ctx *rc = self;
  assert_int_equal(n, 1);
  assert_int_equal(parts[0], 0);
  rc->calls++;
  if (rc->drop) {
    memset(out, 0, sizeof(float) * 2 * 128);
    lse[0] = lse[1] = -INFINITY;
    return INFSIM_OK;
  }
  infsim_cmodel_query x = {.req = 3, .slots = rc->slots, .slot_count = rc->count, .tokens = rc->tokens,
                           .append = rc->append};
  return infsim_cmodel_attend_partial(rc->holder, layer, &x, 1, q, k, v, out, lse, err);
}

static void split_decode(fixture *f, bool drop, uint16_t *hidden, uint16_t *attn_out, int *calls) {
  infsim_error err;
  infsim_cmodel *owner, *holder;
  assert_int_equal(infsim_cmodel_new(f->k, &f->p, &owner, &err), INFSIM_OK);
  assert_int_equal(infsim_cmodel_new(f->k, &f->p, &holder, &err), INFSIM_OK);
  int32_t slots[] = {0, 1, 2, 3, 4};
  infsim_cmodel_part pre = {.req = 3, .prompt_tokens = 64, .query_tokens = 64, .slots = slots, .slot_count = 5};
  assert_int_equal(infsim_cmodel_forward(owner, &pre, 1, NULL, &err), INFSIM_OK);
  /* Move blocks 1 and 2 (tokens 16..47) to the holder's slots 5 and 9, as a KV move carries them. */
  int64_t bytes = infsim_cmodel_block_bytes(owner);
  void *buf = malloc((size_t)bytes);
  int32_t moved_to[] = {5, 9};
  for (int i = 0; i < 2; i++) {
    assert_int_equal(infsim_cmodel_block_read(owner, slots[1 + i], buf, &err), INFSIM_OK);
    assert_int_equal(infsim_cmodel_block_write(holder, moved_to[i], buf, &err), INFSIM_OK);
    infsim_cmodel_claim(holder, moved_to[i], 3, 1 + i); /* the receiver names the moved block */
  }
  /* Scrub the owner's copies so that only the holder has those tokens. */
  memset(buf, 0x7f, (size_t)bytes);
  for (int i = 0; i < 2; i++) assert_int_equal(infsim_cmodel_block_write(owner, slots[1 + i], buf, &err), INFSIM_OK);
  free(buf);
  int32_t local[] = {0, 3, 4};
  remote_ctx rc = {.holder = holder, .slots = moved_to, .count = 2, .tokens = 32, .drop = drop};
  infsim_cmodel_remote remote = {.self = &rc, .attend = remote_attend};
  infsim_cmodel_inspect(owner, 1);
  infsim_cmodel_part dec = {.req = 3, .prompt_tokens = 64, .query_tokens = 1, .context_tokens = 64,
                            .remote_tokens = 32, .slots = local, .slot_count = 3};
  assert_int_equal(infsim_cmodel_forward(owner, &dec, 1, &remote, &err), INFSIM_OK);
  assert_int_equal(infsim_cmodel_hidden(owner, hidden, &err), INFSIM_OK);
  int64_t tokens;
  const uint16_t *k, *v, *attn;
  infsim_cmodel_inspected(owner, &tokens, &k, &v, &attn);
  memcpy(attn_out, attn, 256 * 2);
  *calls = rc.calls;
  infsim_cmodel_free(owner);
  infsim_cmodel_free(holder);
}

static void test_split_request_merges_to_unsplit(void **state) {
  fixture *f = *state;
  infsim_error err;
  infsim_cmodel *ref;
  assert_int_equal(infsim_cmodel_new(f->k, &f->p, &ref, &err), INFSIM_OK);
  int32_t slots[] = {0, 1, 2, 3, 4};
  infsim_cmodel_part pre = {.req = 3, .prompt_tokens = 64, .query_tokens = 64, .slots = slots, .slot_count = 5};
  assert_int_equal(infsim_cmodel_forward(ref, &pre, 1, NULL, &err), INFSIM_OK);
  infsim_cmodel_inspect(ref, 1);
  infsim_cmodel_part dec = {.req = 3, .prompt_tokens = 64, .query_tokens = 1, .context_tokens = 64,
                            .slots = slots, .slot_count = 5};
  assert_int_equal(infsim_cmodel_forward(ref, &dec, 1, NULL, &err), INFSIM_OK);
  uint16_t want_hidden[256], want_attn[256];
  assert_int_equal(infsim_cmodel_hidden(ref, want_hidden, &err), INFSIM_OK);
  int64_t tokens;
  const uint16_t *k, *v, *attn;
  infsim_cmodel_inspected(ref, &tokens, &k, &v, &attn);
  memcpy(want_attn, attn, sizeof want_attn);
  infsim_cmodel_free(ref);

  uint16_t got_hidden[256], got_attn[256];
  int calls = 0;
  split_decode(f, false, got_hidden, got_attn, &calls);
  assert_int_equal(calls, 2); /* one remote partial per layer */
  assert_true(max_rel_diff(got_attn, want_attn, 256) < 0.02);
  assert_true(max_rel_diff(got_hidden, want_hidden, 256) < 0.02);
  /* Negative control: without the holder's partial the output is wrong. */
  split_decode(f, true, got_hidden, got_attn, &calls);
  assert_true(max_rel_diff(got_attn, want_attn, 256) > 0.05);
}

/* A request whose last, part-filled block moved to a holder: the holder
 * appends each new token there and attends it; two decode steps equal the
 * unsplit request's (the first token appended at the holder is read back
 * by the second step), and a block of another request is refused. */
static void test_append_at_holder(void **state) {
  fixture *f = *state;
  infsim_error err;
  infsim_cmodel *ref, *owner, *holder;
  assert_int_equal(infsim_cmodel_new(f->k, &f->p, &ref, &err), INFSIM_OK);
  assert_int_equal(infsim_cmodel_new(f->k, &f->p, &owner, &err), INFSIM_OK);
  assert_int_equal(infsim_cmodel_new(f->k, &f->p, &holder, &err), INFSIM_OK);
  int32_t slots[] = {0, 1, 2, 3};
  infsim_cmodel_part pre = {.req = 3, .prompt_tokens = 56, .query_tokens = 56, .slots = slots, .slot_count = 4};
  assert_int_equal(infsim_cmodel_forward(ref, &pre, 1, NULL, &err), INFSIM_OK);
  assert_int_equal(infsim_cmodel_forward(owner, &pre, 1, NULL, &err), INFSIM_OK);
  /* Blocks 1 (full) and 3 (8 of 16 tokens) go to the holder's slots 6 and 2. */
  int64_t bytes = infsim_cmodel_block_bytes(owner);
  void *buf = malloc((size_t)bytes);
  int32_t from[] = {1, 3}, to[] = {6, 2};
  for (int i = 0; i < 2; i++) {
    assert_int_equal(infsim_cmodel_block_read(owner, from[i], buf, &err), INFSIM_OK);
    assert_int_equal(infsim_cmodel_block_write(holder, to[i], buf, &err), INFSIM_OK);
    infsim_cmodel_claim(holder, to[i], 3, from[i]);
    memset(buf, 0x7f, (size_t)bytes);
    assert_int_equal(infsim_cmodel_block_write(owner, from[i], buf, &err), INFSIM_OK);
  }
  free(buf);
  int32_t local[] = {0, 2};
  for (int step = 0; step < 2; step++) {
    int32_t ctx = 56 + step;
    infsim_cmodel_part want = {.req = 3, .prompt_tokens = 56, .query_tokens = 1, .context_tokens = ctx,
                               .slots = slots, .slot_count = 4};
    assert_int_equal(infsim_cmodel_forward(ref, &want, 1, NULL, &err), INFSIM_OK);
    uint16_t want_hidden[256], got_hidden[256];
    assert_int_equal(infsim_cmodel_hidden(ref, want_hidden, &err), INFSIM_OK);
    remote_ctx rc = {.holder = holder, .slots = to, .count = 2, .tokens = ctx - 32 + 1, .append = true};
    infsim_cmodel_remote remote = {.self = &rc, .attend = remote_attend};
    infsim_cmodel_part dec = {.req = 3, .prompt_tokens = 56, .query_tokens = 1, .context_tokens = ctx,
                              .remote_tokens = ctx - 32, .append_remote = true, .slots = local, .slot_count = 2};
    assert_int_equal(infsim_cmodel_forward(owner, &dec, 1, &remote, &err), INFSIM_OK);
    assert_int_equal(infsim_cmodel_hidden(owner, got_hidden, &err), INFSIM_OK);
    assert_int_equal(rc.calls, 2);
    assert_true(max_rel_diff(got_hidden, want_hidden, 256) < 0.02);
  }
  /* A holder block that holds another request's KV is refused. */
  infsim_cmodel_claim(holder, 6, 4, 1);
  remote_ctx rc = {.holder = holder, .slots = to, .count = 2, .tokens = 27, .append = true};
  infsim_cmodel_remote remote = {.self = &rc, .attend = remote_attend};
  infsim_cmodel_part dec = {.req = 3, .prompt_tokens = 56, .query_tokens = 1, .context_tokens = 58,
                            .remote_tokens = 26, .append_remote = true, .slots = local, .slot_count = 2};
  assert_int_equal(infsim_cmodel_forward(owner, &dec, 1, &remote, &err), INFSIM_ERUN);
  infsim_cmodel_free(ref);
  infsim_cmodel_free(owner);
  infsim_cmodel_free(holder);
}

static void test_bad_parts_are_refused(void **state) {
  fixture *f = *state;
  infsim_error err;
  infsim_cmodel *m;
  assert_int_equal(infsim_cmodel_new(f->k, &f->p, &m, &err), INFSIM_OK);
  int32_t slots[] = {0, 99};
  infsim_cmodel_part p = {.req = 0, .prompt_tokens = 20, .query_tokens = 20, .slots = slots, .slot_count = 2};
  assert_int_equal(infsim_cmodel_forward(m, &p, 1, NULL, &err), INFSIM_EINPUT); /* slot outside the pool */
  p.slot_count = 1;
  assert_int_equal(infsim_cmodel_forward(m, &p, 1, NULL, &err), INFSIM_EINPUT); /* 20 tokens in one block */
  /* Block tables out of step with the KV: another request's block, a shifted table. */
  int32_t mine[] = {0, 1}, theirs[] = {0, 2}, shifted[] = {1, 0};
  p = (infsim_cmodel_part){.req = 0, .prompt_tokens = 20, .query_tokens = 20, .slots = mine, .slot_count = 2};
  assert_int_equal(infsim_cmodel_forward(m, &p, 1, NULL, &err), INFSIM_OK);
  p = (infsim_cmodel_part){.req = 1, .prompt_tokens = 20, .query_tokens = 1, .context_tokens = 20, .slots = theirs,
                           .slot_count = 2};
  assert_int_equal(infsim_cmodel_forward(m, &p, 1, NULL, &err), INFSIM_ERUN);
  p = (infsim_cmodel_part){.req = 0, .prompt_tokens = 20, .query_tokens = 1, .context_tokens = 20, .slots = shifted,
                           .slot_count = 2};
  assert_int_equal(infsim_cmodel_forward(m, &p, 1, NULL, &err), INFSIM_ERUN);
  p.slots = mine;
  assert_int_equal(infsim_cmodel_forward(m, &p, 1, NULL, &err), INFSIM_OK);
  infsim_cmodel_free(m);
}

/* Padding a decode-only forward (dummy rows over the scratch block) leaves
 * the real rows bit for bit as they are without it. */
static void test_padding_leaves_real_rows_alone(void **state) {
  fixture *f = *state;
  infsim_error err;
  uint16_t hidden[2][5 * 256];
  for (int pad = 0; pad < 2; pad++) {
    infsim_cmodel_params p = f->p;
    p.pad_decodes = pad == 1;
    infsim_cmodel *m;
    assert_int_equal(infsim_cmodel_new(f->k, &p, &m, &err), INFSIM_OK);
    static int32_t slots[5][2] = {{0, 1}, {2, 3}, {4, 5}, {6, 7}, {8, 9}};
    infsim_cmodel_part parts[5];
    for (int r = 0; r < 5; r++)
      parts[r] = (infsim_cmodel_part){.req = r, .prompt_tokens = 10 + r, .query_tokens = 10 + r, .slots = slots[r],
                                      .slot_count = 2};
    assert_int_equal(infsim_cmodel_forward(m, parts, 5, NULL, &err), INFSIM_OK);
    for (int step = 0; step < 3; step++) { /* 5 requests (8 rows padded), then 3 (4 rows) */
      int n = step == 0 ? 5 : 3;
      for (int r = 0; r < n; r++) {
        parts[r].context_tokens = 10 + r + step;
        parts[r].query_tokens = 1;
      }
      assert_int_equal(infsim_cmodel_forward(m, parts, n, NULL, &err), INFSIM_OK);
      if (step == 0) assert_int_equal(infsim_cmodel_hidden(m, hidden[pad], &err), INFSIM_OK);
    }
    assert_int_equal(infsim_cmodel_hidden(m, hidden[pad] + 5 * 256 - 3 * 256, &err), INFSIM_OK);
    infsim_cmodel_free(m);
  }
  assert_memory_equal(hidden[0], hidden[1], sizeof hidden[0]);
}

/* The warm-up runs its forwards (prefills of 16, 32, 64 and 127 tokens,
 * then a 1 + 127-row mixed forward, with this fixture's 128-row forwards
 * and 8-block tables) and leaves the model as new: the pools zeroed, and
 * a batch after it bit-identical to the same batch on a fresh model. */
static void test_warm_up_leaves_model_as_new(void **state) {
  fixture *f = *state;
  infsim_error err;
  uint16_t hidden[2][3 * 256];
  for (int warm = 0; warm < 2; warm++) {
    infsim_cmodel *m;
    assert_int_equal(infsim_cmodel_new(f->k, &f->p, &m, &err), INFSIM_OK);
    if (warm) {
      infsim_cmodel_inspect(m, 1);
      int32_t forwards = -1;
      assert_int_equal(infsim_cmodel_warm_up(m, &forwards, &err), INFSIM_OK);
      assert_int_equal(forwards, 5);
      int64_t tokens = 0;
      const uint16_t *k, *v, *attn;
      assert_non_null(infsim_cmodel_inspected(m, &tokens, &k, &v, &attn));
      assert_int_equal(tokens, 128);
      /* It wrote KV (the last forward's rows are not all zero) ... */
      int64_t nonzero = 0;
      for (int64_t i = 0; i < 128 * 2 * 128; i++) nonzero += k[i] != 0;
      assert_true(nonzero > 0);
      infsim_cmodel_inspect(m, -1);
      /* ... and zeroed the pool (it wrote slots 0-15). */
      int64_t bytes = infsim_cmodel_block_bytes(m);
      uint8_t *block = malloc((size_t)bytes);
      assert_non_null(block);
      for (int32_t slot = 0; slot < 24; slot++) {
        assert_int_equal(infsim_cmodel_block_read(m, slot, block, &err), INFSIM_OK);
        for (int64_t b = 0; b < bytes; b++)
          if (block[b]) fail_msg("slot %d byte %lld is %d after the warm-up", slot, (long long)b, block[b]);
      }
      free(block);
    }
    int32_t slots[3][2] = {{0, 1}, {5, 6}, {23, 22}};
    infsim_cmodel_part parts[3];
    for (int r = 0; r < 3; r++)
      parts[r] = (infsim_cmodel_part){.req = r, .prompt_tokens = 20, .query_tokens = 20, .slots = slots[r],
                                      .slot_count = 2};
    assert_int_equal(infsim_cmodel_forward(m, parts, 3, NULL, &err), INFSIM_OK);
    for (int r = 0; r < 3; r++) parts[r].context_tokens = 20, parts[r].query_tokens = 1;
    assert_int_equal(infsim_cmodel_forward(m, parts, 3, NULL, &err), INFSIM_OK);
    assert_int_equal(infsim_cmodel_hidden(m, hidden[warm], &err), INFSIM_OK);
    infsim_cmodel_free(m);
  }
  assert_memory_equal(hidden[0], hidden[1], sizeof hidden[0]);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test_setup_teardown(test_batch_attention_matches_naive, setup, teardown),
      cmocka_unit_test_setup_teardown(test_append_at_holder, setup, teardown),
      cmocka_unit_test_setup_teardown(test_split_request_merges_to_unsplit, setup, teardown),
      cmocka_unit_test_setup_teardown(test_bad_parts_are_refused, setup, teardown),
      cmocka_unit_test_setup_teardown(test_padding_leaves_real_rows_alone, setup, teardown),
      cmocka_unit_test_setup_teardown(test_warm_up_leaves_model_as_new, setup, teardown),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
