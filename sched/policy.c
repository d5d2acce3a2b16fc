/*
** policy.c: the built-in policies and their registry (policy.h).
**
** vllm-multi: cluster.instances independent replicas, a dispatcher
** (policy.dispatch: least-loaded or round-robin). vllm-single: one replica
** over every GPU. Both leave admission, victims and memory to the
** scheduler's vLLM defaults.
*/
#include "infsim/policy.h"

#include <string.h>

#include "infsim/dispatch.h"
#include "infsim/policy_infinite.h"

/* vllm-multi's and vllm-single's settings (in the params' policy byte area). */
typedef struct {
  infsim_dispatch_kind dispatch;
} dispatch_settings;

_Static_assert(sizeof(dispatch_settings) <= INFSIM_POLICY_SETTINGS_BYTES, "policy settings too large");

static infsim_status multi_read_config(infsim_config *cfg, void *settings, infsim_error *err) {
  static const char *const k_dispatch[] = {"least-loaded", "round-robin", NULL};
  int dispatch = 0;
  infsim_status st = infsim_config_enum(cfg, "policy.dispatch", "least-loaded", k_dispatch, &dispatch, err);
  ((dispatch_settings *)settings)->dispatch = (infsim_dispatch_kind)dispatch;
  return st;
}

static infsim_policy_layout multi_layout(const void *settings, int64_t instances, int64_t gpus_per_instance) {
  (void)settings;
  return (infsim_policy_layout){instances, gpus_per_instance};
}

static infsim_status dispatcher_create(const void *settings, struct infsim_sched *sched, int32_t instances,
                                       void **self, infsim_error *err) {
  (void)sched;
  infsim_dispatcher *d = NULL;
  infsim_status st = infsim_dispatcher_new(((const dispatch_settings *)settings)->dispatch, instances, &d, err);
  *self = d;
  return st;
}

static int32_t dispatcher_dispatch(void *self, int64_t request) {
  (void)request;
  return infsim_dispatcher_pick(self);
}

static void dispatcher_load_changed(void *self, int32_t instance, int64_t load) {
  infsim_dispatcher_set_load(self, instance, load);
}

static void dispatcher_destroy(void *self) { infsim_dispatcher_free(self); }

static infsim_status single_read_config(infsim_config *cfg, void *settings, infsim_error *err) {
  (void)cfg;
  (void)err;
  ((dispatch_settings *)settings)->dispatch = INFSIM_DISPATCH_ROUND_ROBIN; /* one instance: nothing to choose */
  return INFSIM_OK;
}

static infsim_policy_layout single_layout(const void *settings, int64_t instances, int64_t gpus_per_instance) {
  (void)settings;
  return (infsim_policy_layout){1, instances * gpus_per_instance};
}

static const infsim_policy_ops k_policies[] = {
    {.name = "vllm-multi",
     .read_config = multi_read_config,
     .layout = multi_layout,
     .create = dispatcher_create,
     .dispatch = dispatcher_dispatch,
     .load_changed = dispatcher_load_changed,
     .destroy = dispatcher_destroy},
    {.name = "vllm-single",
     .read_config = single_read_config,
     .layout = single_layout,
     .create = dispatcher_create,
     .dispatch = dispatcher_dispatch,
     .load_changed = dispatcher_load_changed,
     .destroy = dispatcher_destroy},
};

static const char *const k_policy_names[] = {"vllm-multi", "vllm-single", "infinite-llm", NULL};

const infsim_policy_ops *infsim_policy_lookup(const char *name) {
  for (size_t i = 0; i < sizeof k_policies / sizeof k_policies[0]; i++)
    if (strcmp(k_policies[i].name, name) == 0) return &k_policies[i];
  if (strcmp(infsim_policy_infinite.name, name) == 0) return &infsim_policy_infinite; /* sched/policy_infinite.c */
  return NULL;
}

const char *const *infsim_policy_names(void) { return k_policy_names; }
