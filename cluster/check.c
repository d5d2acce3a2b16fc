/*
** check.c: infsim_cluster_check, a two-rank check of cluster mode's
** transports, run by tests/test_cluster_mpi.sh under `mpirun -np 2`.
**
**   infsim_cluster_check [--transport mpi|nccl] [--executor cpu|cuda] [--hang]
**
** 1. control plane: a message goes 0 -> 1 and back, bytes intact;
** 2. data plane: 20 MiB (several staging chunks) 0 -> 1 -> 0 through
**    kernels buffers, bytes intact;
** 3. DistAttention across ranks: rank 0 prefills a request, moves two of
**    its blocks to rank 1 (the KV bytes travel), then decodes with the
**    remote partial computed on rank 1 (queries and partials travel each
**    layer); the result must equal an unsplit decode on rank 0;
** --hang: rank 1 stops answering; rank 0 must fail with an error naming
**    rank 1 within its timeout (2 s) instead of hanging.
** Exit 0 when every check holds, 1 otherwise, 77 when the executor or
** transport is unavailable in this build or on this machine.
*/
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "infsim/cluster_model.h"
#include "infsim/cluster_transport.h"
#include "infsim/hardware.h"

enum { TAG_PING = 10, TAG_MOVE = 11, TAG_QUERY = 12, TAG_PARTIAL = 13, TAG_DONE = 14 };
enum { BIG_BYTES = 20 << 20 };

typedef struct {
  infsim_ctransport *t;
  int64_t queries;
} remote_ctx;

static int fail(const char *what, const infsim_error *err) {
  fprintf(stderr, "infsim_cluster_check: %s: %s\n", what, err ? err->msg : "");
  return 1;
}

/* Rank 0's side of DistAttention: ship q, get the partial back. */
static infsim_status remote_attend(void *self, int32_t layer, const int32_t *parts, int32_t n, const uint16_t *q,
                                   const uint16_t *k, const uint16_t *v, float *out, float *lse, infsim_error *err) {
  remote_ctx *rc = self;
  (void)parts, (void)k, (void)v; /* the new token is appended locally here */
  int32_t head[2] = {layer, n};
  int64_t h = 2, d = 128;
  infsim_status st = infsim_ctransport_send(rc->t, 1, TAG_QUERY, head, sizeof head, err);
  if (st == INFSIM_OK) st = infsim_ctransport_send(rc->t, 1, TAG_QUERY, q, n * h * d * 2, err);
  if (st == INFSIM_OK)
    st = infsim_ctransport_recv(rc->t, 1, TAG_PARTIAL, out, n * h * d * 4, 0, NULL, NULL, NULL, err);
  if (st == INFSIM_OK) st = infsim_ctransport_recv(rc->t, 1, TAG_PARTIAL, lse, n * h * 4, 0, NULL, NULL, NULL, err);
  rc->queries++;
  return st;
}

static double max_rel_diff(const uint16_t *a, const uint16_t *b, int64_t n) {
  double scale = 1.0, diff = 0.0;
  for (int64_t i = 0; i < n; i++) {
    double x = infsim_bf16_to_float(a[i]), y = infsim_bf16_to_float(b[i]);
    if (fabs(y) > scale) scale = fabs(y);
    if (fabs(x - y) > diff) diff = fabs(x - y);
  }
  return diff / scale;
}

static int rank0(infsim_ctransport *t, infsim_kernels *k, const infsim_cmodel_params *p, bool hang) {
  infsim_error err;
  /* 1. control plane */
  char ping[64] = "ping from rank 0", back[64] = {0};
  if (infsim_ctransport_send(t, 1, TAG_PING, ping, sizeof ping, &err) != INFSIM_OK) return fail("send", &err);
  if (hang) {
    double t0 = infsim_cluster_now_s();
    infsim_status st = infsim_ctransport_recv(t, 1, TAG_PING, back, sizeof back, 0, NULL, NULL, NULL, &err);
    double waited = infsim_cluster_now_s() - t0;
    if (st == INFSIM_OK) return fail("--hang: rank 1 answered", NULL);
    printf("hang detected after %.2f s: %s\n", waited, err.msg);
    return waited < 10.0 && strstr(err.msg, "rank 1") ? 0 : 1;
  }
  if (infsim_ctransport_recv(t, 1, TAG_PING, back, sizeof back, 0, NULL, NULL, NULL, &err) != INFSIM_OK)
    return fail("recv", &err);
  if (strcmp(back, "ping from rank 0 / pong") != 0) return fail("control plane: wrong echo", NULL);
  printf("control plane: ok\n");
  /* 2. data plane */
  void *buf;
  if (infsim_kernels_alloc(k, BIG_BYTES, &buf, &err) != INFSIM_OK) return fail("alloc", &err);
  infsim_kernels_fill_random(k, buf, INFSIM_KDTYPE_F32, BIG_BYTES / 4, 42, -1, 1, &err);
  if (infsim_ctransport_send_buf(t, 1, buf, BIG_BYTES, &err) != INFSIM_OK) return fail("send_buf", &err);
  infsim_kernels_memset(k, buf, 0, BIG_BYTES, &err);
  if (infsim_ctransport_recv_buf(t, 1, buf, BIG_BYTES, &err) != INFSIM_OK) return fail("recv_buf", &err);
  float *host = malloc(BIG_BYTES), *want = malloc(BIG_BYTES);
  infsim_kernels_download(k, host, buf, BIG_BYTES, &err);
  infsim_kernels_fill_random_host(want, INFSIM_KDTYPE_F32, BIG_BYTES / 4, 42, -1, 1);
  bool same = memcmp(host, want, BIG_BYTES) == 0;
  free(host), free(want);
  infsim_kernels_free(k, buf);
  if (!same) return fail("data plane: bytes changed on the way", NULL);
  printf("data plane: %d MiB there and back: ok\n", BIG_BYTES >> 20);
  /* 3. DistAttention across ranks */
  infsim_cmodel *owner, *ref;
  if (infsim_cmodel_new(k, p, &owner, &err) != INFSIM_OK || infsim_cmodel_new(k, p, &ref, &err) != INFSIM_OK)
    return fail("model", &err);
  int32_t slots[] = {0, 1, 2, 3, 4};
  infsim_cmodel_part pre = {.req = 3, .prompt_tokens = 64, .query_tokens = 64, .slots = slots, .slot_count = 5};
  infsim_cmodel_part dec = {.req = 3, .prompt_tokens = 64, .query_tokens = 1, .context_tokens = 64,
                            .slots = slots, .slot_count = 5};
  if (infsim_cmodel_forward(ref, &pre, 1, NULL, &err) != INFSIM_OK ||
      infsim_cmodel_forward(ref, &dec, 1, NULL, &err) != INFSIM_OK ||
      infsim_cmodel_forward(owner, &pre, 1, NULL, &err) != INFSIM_OK)
    return fail("forward", &err);
  uint16_t want_hidden[256], got_hidden[256];
  infsim_cmodel_hidden(ref, want_hidden, &err);
  int64_t bytes = infsim_cmodel_block_bytes(owner);
  char *block = malloc((size_t)bytes);
  for (int i = 1; i <= 2; i++) { /* tokens 16..47 go to rank 1 */
    infsim_cmodel_block_read(owner, slots[i], block, &err);
    if (infsim_ctransport_send(t, 1, TAG_MOVE, block, bytes, &err) != INFSIM_OK) return fail("move", &err);
    memset(block, 0x7f, (size_t)bytes); /* the owner's copy is gone */
    infsim_cmodel_block_write(owner, slots[i], block, &err);
  }
  free(block);
  int32_t local[] = {0, 3, 4};
  remote_ctx rc = {.t = t};
  infsim_cmodel_remote remote = {.self = &rc, .attend = remote_attend};
  dec.remote_tokens = 32;
  dec.slots = local;
  dec.slot_count = 3;
  if (infsim_cmodel_forward(owner, &dec, 1, &remote, &err) != INFSIM_OK) return fail("split decode", &err);
  infsim_cmodel_hidden(owner, got_hidden, &err);
  int32_t done[2] = {-1, 0};
  infsim_ctransport_send(t, 1, TAG_QUERY, done, sizeof done, &err);
  double diff = max_rel_diff(got_hidden, want_hidden, 256);
  printf("DistAttention across ranks: %lld query/partial exchanges, max relative difference %.3g\n",
         (long long)rc.queries, diff);
  infsim_cmodel_free(owner);
  infsim_cmodel_free(ref);
  if (rc.queries != p->layers || !(diff < 0.02)) return fail("DistAttention across ranks: output differs", NULL);
  printf("bytes sent by rank 0: %lld\n", (long long)infsim_ctransport_bytes_sent(t));
  return 0;
}

static int rank1(infsim_ctransport *t, infsim_kernels *k, const infsim_cmodel_params *p, bool hang) {
  infsim_error err;
  char ping[64];
  if (infsim_ctransport_recv(t, 0, TAG_PING, ping, sizeof ping, 0, NULL, NULL, NULL, &err) != INFSIM_OK)
    return fail("recv", &err);
  if (hang) { /* a hung rank: alive, silent, longer than rank 0's timeout */
    struct timespec ts = {4, 0};
    nanosleep(&ts, NULL);
    return 0;
  }
  strncat(ping, " / pong", sizeof ping - strlen(ping) - 1);
  if (infsim_ctransport_send(t, 0, TAG_PING, ping, sizeof ping, &err) != INFSIM_OK) return fail("send", &err);
  void *buf;
  if (infsim_kernels_alloc(k, BIG_BYTES, &buf, &err) != INFSIM_OK) return fail("alloc", &err);
  if (infsim_ctransport_recv_buf(t, 0, buf, BIG_BYTES, &err) != INFSIM_OK) return fail("recv_buf", &err);
  if (infsim_ctransport_send_buf(t, 0, buf, BIG_BYTES, &err) != INFSIM_OK) return fail("send_buf", &err);
  infsim_kernels_free(k, buf);
  infsim_cmodel *holder;
  if (infsim_cmodel_new(k, p, &holder, &err) != INFSIM_OK) return fail("model", &err);
  int64_t bytes = infsim_cmodel_block_bytes(holder);
  char *block = malloc((size_t)bytes);
  int32_t mine[] = {6, 2}; /* where the moved blocks land here */
  for (int i = 0; i < 2; i++) {
    if (infsim_ctransport_recv(t, 0, TAG_MOVE, block, bytes, 0, NULL, NULL, NULL, &err) != INFSIM_OK)
      return fail("move", &err);
    infsim_cmodel_block_write(holder, mine[i], block, &err);
    infsim_cmodel_claim(holder, mine[i], 3, 1 + i); /* request 3's blocks 1 and 2 */
  }
  free(block);
  uint16_t q[8 * 256];
  float out[8 * 256], lse[16];
  for (;;) {
    int32_t head[2];
    if (infsim_ctransport_recv(t, 0, TAG_QUERY, head, sizeof head, 0, NULL, NULL, NULL, &err) != INFSIM_OK)
      return fail("query", &err);
    if (head[0] < 0) break;
    int32_t n = head[1];
    if (infsim_ctransport_recv(t, 0, TAG_QUERY, q, sizeof q, 0, NULL, NULL, NULL, &err) != INFSIM_OK)
      return fail("query", &err);
    infsim_cmodel_query qs[8];
    for (int32_t i = 0; i < n; i++) qs[i] = (infsim_cmodel_query){.req = 3, .slots = mine, .slot_count = 2, .tokens = 32};
    if (infsim_cmodel_attend_partial(holder, head[0], qs, n, q, NULL, NULL, out, lse, &err) != INFSIM_OK)
      return fail("partial", &err);
    if (infsim_ctransport_send(t, 0, TAG_PARTIAL, out, (int64_t)n * 256 * 4, &err) != INFSIM_OK ||
        infsim_ctransport_send(t, 0, TAG_PARTIAL, lse, (int64_t)n * 2 * 4, &err) != INFSIM_OK)
      return fail("partial", &err);
  }
  infsim_cmodel_free(holder);
  return 0;
}

int main(int argc, char **argv) {
  infsim_error err;
  if (infsim_cluster_mpi_init(&argc, &argv, &err) != INFSIM_OK) return fail("mpi", &err);
  infsim_ctransport_kind kind = INFSIM_CTRANSPORT_MPI;
  infsim_kernel_backend backend = INFSIM_KBACKEND_CPU;
  bool hang = false;
  for (int i = 1; i < argc; i++) {
    if (strcmp(argv[i], "--transport") == 0 && i + 1 < argc && infsim_ctransport_kind_parse(argv[i + 1], &kind)) i++;
    else if (strcmp(argv[i], "--executor") == 0 && i + 1 < argc && infsim_kernel_backend_parse(argv[i + 1], &backend)) i++;
    else if (strcmp(argv[i], "--hang") == 0) hang = true;
    else {
      fprintf(stderr, "usage: infsim_cluster_check [--transport mpi|nccl] [--executor cpu|cuda] [--hang]\n");
      infsim_cluster_mpi_finalize();
      return 2;
    }
  }
  infsim_kernels *k = NULL;
  infsim_ctransport *t = NULL;
  infsim_status st = infsim_kernels_open(backend, &k, &err);
  if (st == INFSIM_OK) st = infsim_ctransport_open(kind, k, hang ? 2.0 : 60.0, &t, &err);
  int rc;
  if (st != INFSIM_OK) {
    fprintf(stderr, "infsim_cluster_check: %s\n", err.msg);
    rc = infsim_status_exit_code(st);
  } else if (infsim_ctransport_size(t) != 2) {
    fprintf(stderr, "infsim_cluster_check: run under mpirun -np 2\n");
    rc = 2;
  } else {
    infsim_model_shape tiny;
    infsim_model_builtin("tiny", &tiny);
    infsim_cmodel_params p;
    infsim_cmodel_params_from_shape(&tiny, 16, 16, 64, 4, 8, &p, &err);
    rc = infsim_ctransport_rank(t) == 0 ? rank0(t, k, &p, hang) : rank1(t, k, &p, hang);
  }
  infsim_ctransport_close(t);
  infsim_kernels_close(k);
  infsim_cluster_mpi_finalize();
  return rc;
}
