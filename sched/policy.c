/*
** policy.c: the built-in policies and their registry (see policy.h).
*/
#include "infsim/policy.h"

#include <string.h>

#include "infsim/dispatch.h"
#include "infsim/sim.h"

static infsim_status multi_read_config(infsim_config *cfg, infsim_sim_params *p, infsim_error *err) {
  static const char *const k_dispatch[] = {"least-loaded", "round-robin", NULL};
  int dispatch = 0;
  infsim_status st = infsim_config_enum(cfg, "policy.dispatch", "least-loaded", k_dispatch, &dispatch, err);
  p->dispatch = (infsim_dispatch_kind)dispatch;
  return st;
}

static infsim_policy_layout multi_layout(const infsim_sim_params *p) {
  return (infsim_policy_layout){p->instances, p->gpus_per_instance};
}

static infsim_status dispatcher_create(const infsim_sim_params *p, int32_t instances, void **self,
                                       infsim_error *err) {
  infsim_dispatcher *d = NULL;
  infsim_status st = infsim_dispatcher_new((int)p->dispatch, instances, &d, err);
  *self = d;
  return st;
}

static int32_t dispatcher_dispatch(void *self, int32_t request) {
  (void)request;
  return infsim_dispatcher_pick(self);
}

static void dispatcher_load_changed(void *self, int32_t instance, int64_t load) {
  infsim_dispatcher_set_load(self, instance, load);
}

static void dispatcher_destroy(void *self) { infsim_dispatcher_free(self); }

static infsim_status single_read_config(infsim_config *cfg, infsim_sim_params *p, infsim_error *err) {
  (void)cfg;
  (void)err;
  p->dispatch = INFSIM_DISPATCH_ROUND_ROBIN; /* one instance: nothing to choose */
  return INFSIM_OK;
}

static infsim_policy_layout single_layout(const infsim_sim_params *p) {
  return (infsim_policy_layout){1, p->instances * p->gpus_per_instance};
}

static const infsim_policy_ops k_policies[] = {
    {"vllm-multi", multi_read_config, multi_layout, dispatcher_create, dispatcher_dispatch, dispatcher_load_changed,
     dispatcher_destroy},
    {"vllm-single", single_read_config, single_layout, dispatcher_create, dispatcher_dispatch,
     dispatcher_load_changed, dispatcher_destroy},
};

static const char *const k_policy_names[] = {"vllm-multi", "vllm-single", NULL};

const infsim_policy_ops *infsim_policy_lookup(const char *name) {
  for (size_t i = 0; i < sizeof k_policies / sizeof k_policies[0]; i++)
    if (strcmp(k_policies[i].name, name) == 0) return &k_policies[i];
  return NULL;
}

const char *const *infsim_policy_names(void) { return k_policy_names; }
