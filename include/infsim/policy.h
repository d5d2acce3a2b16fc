/*
** policy.h: cluster policies behind one function-pointer table.
**
** A policy decides how the cluster's GPUs form instances and which instance
** serves each request. `vllm-multi` runs cluster.instances independent
** replicas with a dispatcher (least-loaded or round-robin); `vllm-single`
** makes one replica of every GPU (tensor parallel inside a node, pipeline
** stages across nodes). A research policy adds a table here and a line in
** policy.c's registry; Infinite-LLM's borrowing policy plugs in the same way.
*/
#ifndef INFSIM_POLICY_H
#define INFSIM_POLICY_H

#include <stdint.h>

#include "infsim/config.h"
#include "infsim/status.h"

struct infsim_sim_params;

typedef struct {
  int64_t instances;
  int64_t gpus_per_instance;
} infsim_policy_layout;

typedef struct infsim_policy_ops {
  const char *name;
  /* Reads the policy's own keys under policy.* into p (besides policy.name). */
  infsim_status (*read_config)(infsim_config *cfg, struct infsim_sim_params *p, infsim_error *err);
  /* How the cluster.* GPUs form instances under this policy. */
  infsim_policy_layout (*layout)(const struct infsim_sim_params *p);
  infsim_status (*create)(const struct infsim_sim_params *p, int32_t instances, void **self, infsim_error *err);
  /* The instance a new request goes to. */
  int32_t (*dispatch)(void *self, int32_t request);
  /* An instance's outstanding requests (waiting + running + swapped) changed. */
  void (*load_changed)(void *self, int32_t instance, int64_t load);
  void (*destroy)(void *self);
} infsim_policy_ops;

/* The policy named `name`, or NULL. */
const infsim_policy_ops *infsim_policy_lookup(const char *name);

/* Every policy's name, NULL-terminated (for config.h's enum getter). */
const char *const *infsim_policy_names(void);

#endif
