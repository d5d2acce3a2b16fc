/*
** policy.h: cluster policies behind one function-pointer table.
**
** A policy decides how the cluster's GPUs form instances, which instance
** serves each request, and (through hooks the scheduler calls at its
** decision points) admission, preemption victims, what to do when an
** instance runs short of KV blocks, and its own timers and messages.
** `vllm-multi` runs cluster.instances independent replicas with a
** dispatcher (least-loaded or round-robin); `vllm-single` makes one replica
** of every GPU (tensor parallel inside a node, pipeline stages across
** nodes); `infinite-llm` borrows KV blocks across instances (DistKV-LLM).
** A research policy adds a table and a line in policy.c's registry. Every
** hook but layout, create, dispatch and destroy may be NULL: the
** scheduler's vLLM default applies.
**
** A policy's settings (its keys under policy.*) live in a fixed byte area
** of the run parameters that only the policy reads, so parameters stay
** plain bytes.
*/
#ifndef INFSIM_POLICY_H
#define INFSIM_POLICY_H

#include <stdbool.h>
#include <stdint.h>

#include "infsim/config.h"
#include "infsim/status.h"

enum { INFSIM_POLICY_SETTINGS_BYTES = 512 };

struct infsim_sched;
struct infsim_msg_s;

typedef struct {
  int64_t instances;
  int64_t gpus_per_instance;
} infsim_policy_layout;

/* What to do when an instance needs blocks it does not have free. */
typedef enum {
  INFSIM_SHORT_PREEMPT = 0, /* preempt a victim (vLLM) */
  INFSIM_SHORT_WAIT = 1,    /* the policy is getting blocks (e.g. a borrow in flight): wait; at a
                             * decode block boundary the request leaves the batch meanwhile
                             * (boundary_wait.c), and the policy must kick the instance when the
                             * borrow ends */
} infsim_short_action;

typedef struct infsim_policy_ops {
  const char *name;
  /* Reads the policy's keys under policy.* (besides policy.name) into
   * settings (INFSIM_POLICY_SETTINGS_BYTES, zeroed). */
  infsim_status (*read_config)(infsim_config *cfg, void *settings, infsim_error *err);
  /* How cluster.instances x cluster.gpus_per_instance GPUs form instances. */
  infsim_policy_layout (*layout)(const void *settings, int64_t instances, int64_t gpus_per_instance);
  infsim_status (*create)(const void *settings, struct infsim_sched *sched, int32_t instances, void **self,
                          infsim_error *err);
  /* The instance a new request goes to. */
  int32_t (*dispatch)(void *self, int64_t req);
  /* An instance's outstanding requests (waiting + running + swapped) changed. */
  void (*load_changed)(void *self, int32_t instance, int64_t load);
  /* A request larger than one instance's free + total memory: true when
   * the policy can serve it anyway (borrowing), false to reject it. */
  bool (*accept_oversized)(void *self, int32_t instance, int64_t req, int64_t blocks_needed);
  /* `instance` needs `need` more blocks than it has free, for `req`
   * (admission or a block boundary). */
  infsim_short_action (*short_of_blocks)(void *self, int32_t instance, int64_t req, int64_t need, int64_t now_ns);
  /* The running request to preempt on `instance`, or -1 for the default
   * (the latest arrival). */
  int64_t (*pick_victim)(void *self, int32_t instance);
  /* A message or timer for the policy (protocol, heartbeats, DGFM). */
  infsim_status (*on_message)(void *self, const struct infsim_msg_s *msg, int64_t now_ns, infsim_error *err);
  void (*destroy)(void *self);
  /* Request `req` of `instance` ended now (finished or rejected); its
   * blocks, wherever held, are free already. Called inside the
   * scheduler's own step: the policy may send messages and arm timers,
   * not run an instance. */
  void (*request_ended)(void *self, int32_t instance, int64_t req, int64_t now_ns);
  /* Optional: request `req` of `instance` was preempted by recompute now:
   * its KV is dropped (freed wherever held) and its prefill starts again.
   * Called as request_ended is. */
  void (*kv_dropped)(void *self, int32_t instance, int64_t req, int64_t now_ns);
  /* Optional: request `req`'s finish ends the batch that starts now, so
   * request_ended comes at its end: a policy may ask the CPU for the
   * lines it will read then (its record of req: by then out of the
   * caches, last read when req last reported). Changes nothing. */
  void (*request_ending)(const void *self, int64_t req);
} infsim_policy_ops;

/* The policy named `name`, or NULL. */
const infsim_policy_ops *infsim_policy_lookup(const char *name);

/* Every policy's name, NULL-terminated (for config.h's enum getter). */
const char *const *infsim_policy_names(void);

#endif
