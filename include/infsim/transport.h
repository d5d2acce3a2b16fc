/*
** transport.h: the seam between the scheduler (with the gManager and the
** contract protocol) and what carries messages and KV between instances.
**
** Every message is typed: a kind and a small payload. A KV move is a
** message whose payload is the bytes of the blocks it carries. The
** simulated transport (sim/) delivers a message as an engine event after
** the link's latency plus its bytes over the link's bandwidth (DistKV-LLM
** turns this into a max-min fair network); cluster mode's MPI and NCCL
** transports (cluster/) move real bytes. A delivered message reaches the
** scheduler as infsim_sched_deliver(). A transport may lose or delay a
** message (faults.*): senders that need an answer keep a timeout.
*/
#ifndef INFSIM_TRANSPORT_H
#define INFSIM_TRANSPORT_H

#include <stdbool.h>
#include <stdint.h>

#include "infsim/status.h"

/* Endpoints are instance ids; the gManager is its own endpoint. */
enum { INFSIM_ENDPOINT_GMANAGER = -2 };

#define INFSIM_MSG_KINDS(X)                                                        \
  X(BORROW_REQUEST) /* debtor -> gManager: a request needs blocks */              \
  X(BORROW_PROPOSE) /* gManager -> debtor: try this creditor */                  \
  X(RESERVE)        /* debtor -> creditor: hold n blocks for req */              \
  X(RESERVE_ACK)    /* creditor -> debtor: reserved (a = 1) or refused (a = 0) */ \
  X(MOVE)           /* KV blocks, bytes = their size */                           \
  X(CONFIRM)        /* debtor -> creditor and gManager: the move landed */        \
  X(RELEASE)        /* owner -> holder: free req's blocks there */                \
  X(RECALL)         /* owner or DGFM -> holder: send req's blocks back */         \
  X(HEARTBEAT)      /* instance -> gManager: changed ledger entries */            \
  X(QUERY)          /* owner -> holder: DistAttention query */                    \
  X(PARTIAL)        /* holder -> owner: partial output + LSE */                   \
  X(TIMER)          /* an endpoint to itself: a timeout or a period */         \
  X(PROBE)          /* debtor -> creditor: has my MOVE arrived? (CONFIRM answers) */

typedef enum {
#define INFSIM_MSG_ENUM_(name) INFSIM_MSG_##name,
  INFSIM_MSG_KINDS(INFSIM_MSG_ENUM_)
#undef INFSIM_MSG_ENUM_
      INFSIM_MSG_KIND_COUNT
} infsim_msg_kind;

/* "BORROW_REQUEST", ... as in the enum. */
const char *infsim_msg_kind_name(infsim_msg_kind k);

typedef struct infsim_msg_s {
  int32_t kind; /* infsim_msg_kind */
  int32_t src;  /* endpoint */
  int32_t dst;  /* endpoint */
  uint32_t seq; /* the sender's sequence number (retries reuse it) */
  int64_t req;  /* the request it concerns, or -1 */
  int64_t blocks; /* blocks it concerns */
  int64_t bytes;  /* payload size on the wire (0: a control message) */
  int64_t a, b;   /* kind-specific */
} infsim_msg;

typedef struct {
  void *self;
  /* Sends msg at now_ns; it is delivered later (or lost). */
  infsim_status (*send)(void *self, const infsim_msg *msg, int64_t now_ns, infsim_error *err);
  /* Delivers msg back to its own src at at_ns (a timer; never lost). */
  infsim_status (*timer)(void *self, const infsim_msg *msg, int64_t at_ns, infsim_error *err);
  /* Bytes carried so far (summary.json's network_bytes). */
  int64_t (*bytes_sent)(const void *self);
  /* Optional (NULL: never known): true when a message of msg's kind, src,
   * dst, seq and a has started arriving at dst by now_ns and has not been
   * delivered yet (its first bytes are on dst's link: the receiver sees a
   * transfer in progress). A lost message, or one delayed before it left,
   * is not in flight. */
  bool (*in_flight)(const void *self, const infsim_msg *msg, int64_t now_ns);
  /* Optional (NULL: nothing sent can be stopped): stops every message of
   * msg's kind, src, dst, seq and a still on its way as a transfer of its
   * own (a KV payload; control messages are not stopped): it is never
   * delivered, and the bytes it had not carried by now_ns are not sent
   * (network_bytes and links.csv leave them out). *unsent_bytes: those
   * bytes, 0 when nothing was stopped. */
  infsim_status (*abort)(void *self, const infsim_msg *msg, int64_t now_ns, int64_t *unsent_bytes, infsim_error *err);
} infsim_transport;

#endif
