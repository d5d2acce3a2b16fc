/*
** run.c: the run library (run.h): config -> params -> trace -> cost source
** -> simulation -> result.
**
** Everything that can be wrong with the inputs is found in
** infsim_run_setup_load (exit 2 material); infsim_run_execute only builds
** the cluster the policy lays out and runs it. KV blocks per instance:
** gpu_memory_utilization of the instance's GPU memory, less the weights,
** in blocks of block_tokens tokens of all layers (vLLM's profile-based
** sizing, without activation memory).
*/
#include "infsim/run.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "infsim/cpu_tier.h"
#include "infsim/policy_infinite.h"
#include "infsim/sim.h"
#include "run_internal.h"

struct infsim_run_setup {
  infsim_run_params params;
  json_t *config; /* resolved */
  infsim_trace trace;
  /* The cost model that loading built from `params` to check them (on
   * calibrated curves that reads the DB, a query per kernel), kept so that
   * the setup's first run takes it instead of building it again (the sim
   * owns its model: moved, never shared). has_cost false: taken, or
   * dropped because a caller may have changed the params
   * (infsim_run_setup_params_mut); a run then builds its own from the
   * params as they are, so a kept model is never stale. */
  infsim_cost_model cost;
  bool has_cost;
};

static double wall_now_s(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static infsim_status check_params(const infsim_run_params *p, const infsim_config *cfg, infsim_cost_model *cost,
                                  infsim_error *err);

infsim_status infsim_run_setup_load(const infsim_run_args *args, infsim_run_setup **out, infsim_error *err) {
  *out = NULL;
  infsim_run_setup *setup = calloc(1, sizeof *setup);
  infsim_config *cfg = infsim_config_new();
  infsim_status st = INFSIM_OK;
  if (setup == NULL || cfg == NULL) {
    st = infsim_fail(err, INFSIM_ENOMEM, "out of memory");
    goto done;
  }
  if ((st = infsim_config_load_yaml(cfg, args->config_path, err)) != INFSIM_OK) goto done;
  for (int i = 0; i < args->set_count; i++)
    if ((st = infsim_config_set(cfg, args->sets[i], err)) != INFSIM_OK) goto done;
  if (args->seed_text != NULL && (st = infsim_config_put(cfg, "seed", args->seed_text, "--seed", err)) != INFSIM_OK)
    goto done;
  if ((st = infsim_run_params_from_config(cfg, &setup->params, err)) != INFSIM_OK) goto done;
  /* Generator keys may stay beside a trace file (--trace overrides
   * workload.*), but a typo or a bad value among them is still an error. */
  bool from_file = args->trace_path != NULL || infsim_config_has(cfg, "workload.trace");
  if (from_file && (st = infsim_workload_check(cfg, "workload", err)) != INFSIM_OK) goto done;
  const char *cfg_trace = NULL;
  if (infsim_config_has(cfg, "workload.trace") &&
      (st = infsim_config_string(cfg, "workload.trace", "", &cfg_trace, err)) != INFSIM_OK)
    goto done;
  if (args->trace_path != NULL) {
    st = infsim_trace_read_csv(args->trace_path, &setup->trace, err);
  } else if (cfg_trace != NULL) {
    char path[4096];
    if ((st = infsim_config_path(cfg, "workload.trace", cfg_trace, path, sizeof path, err)) == INFSIM_OK)
      st = infsim_trace_read_csv(path, &setup->trace, err);
  } else {
    st = infsim_workload_generate(cfg, "workload", setup->params.seed, &setup->trace, err);
  }
  if (st != INFSIM_OK) goto done;
  if ((st = infsim_config_check_unused(cfg, err)) != INFSIM_OK) goto done;
  if ((st = check_params(&setup->params, cfg, &setup->cost, err)) != INFSIM_OK) goto done;
  setup->has_cost = true;
  setup->config = infsim_config_resolved_json(cfg);
done:
  infsim_config_free(cfg);
  if (st != INFSIM_OK) {
    infsim_run_setup_free(setup);
    return st;
  }
  *out = setup;
  return INFSIM_OK;
}

/* Forgets the model loading built (the next run builds its own). */
static void drop_cost(infsim_run_setup *setup) {
  if (setup->has_cost) infsim_cost_model_destroy(&setup->cost);
  setup->has_cost = false;
}

void infsim_run_setup_free(infsim_run_setup *setup) {
  if (setup == NULL) return;
  drop_cost(setup);
  json_decref(setup->config);
  infsim_trace_free(&setup->trace);
  free(setup);
}

const infsim_run_params *infsim_run_setup_params(const infsim_run_setup *setup) { return &setup->params; }

/* The only way to change a setup's params: the caller may change any of
 * them through the pointer, now or before any later run, so the model
 * built for the params at load goes here, whichever field changes. */
infsim_run_params *infsim_run_setup_params_mut(infsim_run_setup *setup) {
  drop_cost(setup);
  return &setup->params;
}

const infsim_trace *infsim_run_setup_trace(const infsim_run_setup *setup) { return &setup->trace; }

json_t *infsim_run_setup_config(const infsim_run_setup *setup) { return setup->config; }

const char *infsim_run_setup_cost_model(const infsim_run_setup *setup) {
  return setup->has_cost ? setup->cost.curves.name : NULL;
}

/* An instance of `gpus` GPUs: tensor parallel within a node, pipeline
 * stages across nodes when it is larger than a node. */
static infsim_instance_layout instance_layout(const infsim_run_params *p, int64_t gpus) {
  infsim_instance_layout l = {0};
  l.tp = gpus < p->gpus_per_node ? gpus : p->gpus_per_node;
  l.pp = (gpus + l.tp - 1) / l.tp;
  l.tp_link_bytes_per_s = p->intra_node_bytes_per_s;
  l.pp_link_bytes_per_s = p->inter_node_bytes_per_s;
  l.link_latency_ns = p->link_latency_ns;
  l.iteration_overhead_ns = p->iteration_overhead_ns;
  l.iteration_overhead_given = p->iteration_overhead_given;
  return l;
}

/* The first of keys (NULL-terminated) that cfg sets, else the first: the
 * key a check across several keys names, so that its message points at a
 * line the user wrote. */
static const char *first_given(const infsim_config *cfg, const char *const *keys) {
  for (size_t i = 0; cfg != NULL && keys[i] != NULL; i++)
    if (infsim_config_has(cfg, keys[i])) return keys[i];
  return keys[0];
}

/* The scheduler's parameters for the policy's layout: instances and KV
 * blocks. cfg (NULL once the config is gone) locates the keys in messages. */
static infsim_status size_cluster(const infsim_run_params *p, const infsim_config *cfg, int64_t gpus_per_instance,
                                  int64_t instances, infsim_sched_params *sp, infsim_error *err) {
  *sp = p->sched;
  const infsim_model_shape *m = &p->model;
  if (instances > INT32_MAX) return infsim_fail(err, INFSIM_EINPUT, "cluster.instances: too many instances");
  sp->instances = (int32_t)instances;
  sp->max_context_tokens = m->max_context_tokens;
  sp->block_bytes = sp->block_tokens * infsim_model_kv_bytes_per_token(m);
  double usable = (double)p->gpu.memory_bytes * (double)gpus_per_instance * p->gpu_memory_utilization;
  double kv_bytes = usable - (double)infsim_model_weight_bytes(m);
  static const char *const k_memory_keys[] = {"model", "gpu", "cluster.gpus_per_instance",
                                               "scheduler.gpu_memory_utilization", NULL};
  if (kv_bytes < (double)sp->block_bytes)
    return infsim_config_fail(cfg, first_given(cfg, k_memory_keys), err,
                              "%s on %lld x %s: weights (%.1f GiB) leave no room for the KV cache; add "
                              "cluster.gpus_per_instance",
                              m->name, (long long)gpus_per_instance, p->gpu.name,
                              (double)infsim_model_weight_bytes(m) / (1 << 30));
  sp->gpu_blocks_per_instance = (int64_t)(kv_bytes / (double)sp->block_bytes);
  sp->host_blocks_per_instance = p->swap_space_bytes / sp->block_bytes;
  int64_t per_node = p->gpus_per_node / gpus_per_instance;
  sp->instances_per_host = (int32_t)(per_node > 0 ? per_node : 1);
  sp->host_blocks = p->host_memory_bytes < 0 ? sp->host_blocks_per_instance * sp->instances_per_host
                                             : (int64_t)(p->host_memory_bytes / (double)sp->block_bytes);
  return INFSIM_OK;
}

infsim_status infsim_run_sched_params(const infsim_run_params *p, infsim_sched_params *out, infsim_error *err) {
  const infsim_policy_ops *policy = infsim_policy_lookup(p->sched.policy_name);
  if (policy == NULL) return infsim_fail(err, INFSIM_EINPUT, "policy.name: unknown policy '%s'", p->sched.policy_name);
  infsim_policy_layout layout = policy->layout(p->sched.policy_settings, p->instances, p->gpus_per_instance);
  return size_cluster(p, NULL, layout.gpus_per_instance, layout.instances, out, err);
}

/* infsim_run_cost_model, with cfg (or NULL) to locate the keys in messages. */
static infsim_status cost_model(const infsim_run_params *p, const infsim_config *cfg, infsim_cost_model *out,
                                infsim_error *err) {
  const infsim_policy_ops *policy = infsim_policy_lookup(p->sched.policy_name);
  if (policy == NULL) return infsim_fail(err, INFSIM_EINPUT, "policy.name: unknown policy '%s'", p->sched.policy_name);
  infsim_policy_layout layout = policy->layout(p->sched.policy_settings, p->instances, p->gpus_per_instance);
  infsim_instance_layout il = instance_layout(p, layout.gpus_per_instance);
  return infsim_cost_model_build(p->gpu_profile, p->calibration_db, p->calibration_db_given, &p->model, &il,
                                 &p->roofline, cfg, out, err);
}

infsim_status infsim_run_cost_model(const infsim_run_params *p, infsim_cost_model *out, infsim_error *err) {
  return cost_model(p, NULL, out, err);
}

/* Lays a run out: the policy's instances, an instance's tensor and
 * pipeline degrees, its KV blocks beside the weights, the network and
 * DistAttention's shape. Refuses what the keys together make impossible:
 * tensor parallelism above the model's heads, weights that fill the
 * memory, a gManager on a node that does not exist. Loading runs it with
 * the config, so that the messages name the line of the key (FILE:LINE:
 * KEY:) and every command refuses before it writes anything; execution
 * runs it again without (cfg NULL) on params a caller may have changed. */
static infsim_status lay_out(const infsim_run_params *p, const infsim_config *cfg, infsim_sim_config *sc,
                             infsim_instance_layout *il, infsim_error *err) {
  const infsim_policy_ops *policy = infsim_policy_lookup(p->sched.policy_name);
  if (policy == NULL) return infsim_fail(err, INFSIM_EINPUT, "policy.name: unknown policy '%s'", p->sched.policy_name);
  infsim_policy_layout layout = policy->layout(p->sched.policy_settings, p->instances, p->gpus_per_instance);
  *il = instance_layout(p, layout.gpus_per_instance);
  if (il->tp > p->model.heads)
    return infsim_config_fail(cfg, "cluster.gpus_per_instance", err,
                              "tensor parallelism %lld exceeds the %lld attention heads of %s", (long long)il->tp,
                              (long long)p->model.heads, p->model.name);
  infsim_status st = size_cluster(p, cfg, layout.gpus_per_instance, layout.instances, &sc->sched, err);
  if (st != INFSIM_OK) return st;
  sc->sample_interval_ns = p->sample_interval_ns;
  sc->pcie_bytes_per_s = p->pcie_bytes_per_s;
  /* The network: an instance's GPUs reach their node's switch together
   * (NVLink per GPU x GPUs), nodes reach each other through one NIC. */
  int64_t per_node = p->gpus_per_node / layout.gpus_per_instance;
  sc->topology = (infsim_topology){.instances = sc->sched.instances,
                                   .instances_per_node = (int32_t)(per_node > 0 ? per_node : 1),
                                   .nvlink_bytes_per_s = p->intra_node_bytes_per_s * (double)il->tp,
                                   .nic_bytes_per_s = p->inter_node_bytes_per_s,
                                   .pcie_bytes_per_s = p->pcie_bytes_per_s * (double)il->tp,
                                   .nvlink_latency_ns = p->link_latency_ns,
                                   .nic_latency_ns = p->link_latency_ns,
                                   .pcie_latency_ns = p->link_latency_ns,
                                   .reprice_tolerance = p->distattn_reprice_tolerance};
  bool overlap = true;
  sc->distattn = (infsim_distattn_shape){.heads = p->model.heads / il->tp, .head_dim = p->model.head_dim,
                                         .layers = p->model.layers};
  infsim_policy_infinite_wire(p->sched.policy_name, p->sched.policy_settings, &sc->distattn.wire_bytes_per_value,
                              &overlap, &sc->gmanager_node);
  sc->distattn.overlap = overlap;
  sc->distattn.relay = p->distattn_relay;
  sc->distattn_flow_per_path = p->distattn_flow_per_path;
  /* The CPU tier: host holders' path (distattn.h), per TP shard. */
  int32_t tier = infsim_policy_infinite_cpu_tier(p->sched.policy_name, p->sched.policy_settings);
  sc->distattn.host_kind = tier == INFSIM_CPU_TIER_MA      ? INFSIM_HOLDER_HOST_MA
                           : tier == INFSIM_CPU_TIER_FETCH ? INFSIM_HOLDER_HOST_FETCH
                                                           : INFSIM_HOLDER_GPU;
  sc->distattn.kv_bytes_per_token_layer =
      (double)infsim_model_kv_bytes_per_token(&p->model) / (double)p->model.layers / (double)il->tp;
  sc->distattn.cpu_attn_bytes_per_s = p->cpu_attn_bytes_per_s / (double)il->tp;
  int32_t per_node_instances = sc->topology.instances_per_node;
  if (sc->gmanager_node >= (sc->sched.instances + per_node_instances - 1) / per_node_instances)
    return infsim_config_fail(cfg, "policy.gmanager_node", err, "node %d does not exist (%d instances, %d a node)",
                              (int)sc->gmanager_node, (int)sc->sched.instances, (int)per_node_instances);
  sc->record_iterations = p->record_iterations;
  return INFSIM_OK;
}

/* Runs at load every check that execution would make on these params (the
 * layout, then the cost source: the GPU profile and the calibration DB),
 * while cfg still knows where each key came from. The cost model is built
 * to check it: *cost (the caller's to destroy) can price a run of p. */
static infsim_status check_params(const infsim_run_params *p, const infsim_config *cfg, infsim_cost_model *cost,
                                  infsim_error *err) {
  infsim_sim_config sc = {0};
  infsim_instance_layout il;
  infsim_status st = lay_out(p, cfg, &sc, &il, err);
  if (st != INFSIM_OK) return st;
  return cost_model(p, cfg, cost, err);
}

static void *copy_of(const void *src, size_t n, size_t size) {
  void *dst = malloc(n ? n * size : 1);
  if (dst != NULL && n) memcpy(dst, src, n * size);
  return dst;
}

infsim_status infsim_run_result_from_records(const infsim_run_params *p, const infsim_trace *trace, json_t *config,
                                             const infsim_run_records *r, infsim_run_result **out,
                                             infsim_error *err) {
  *out = NULL;
  infsim_run_result *res = calloc(1, sizeof *res);
  if (res == NULL) return infsim_fail(err, INFSIM_ENOMEM, "out of memory");
  res->params = *p;
  res->config = config != NULL ? json_incref(config) : json_object();
  res->trace = trace;
  snprintf(res->cost_model, sizeof res->cost_model, "%s", r->cost_model);
  res->wall_s = r->wall_s;
  res->counters = r->counters;
  res->sample_interval_ns = r->sample_interval_ns;
  res->request_count = r->request_count;
  res->sample_count = r->sample_count;
  res->iteration_count = r->iteration_count;
  res->requests = copy_of(r->requests, r->request_count, sizeof *r->requests);
  res->samples = copy_of(r->samples, r->sample_count, sizeof *r->samples);
  res->iterations = copy_of(r->iterations, r->iteration_count, sizeof *r->iterations);
  infsim_status st = INFSIM_OK;
  if (res->requests == NULL || res->samples == NULL || res->iterations == NULL)
    st = infsim_fail(err, INFSIM_ENOMEM, "out of memory");
  if (st == INFSIM_OK)
    st = infsim_summary_compute(p, res->requests, res->request_count, &res->counters, &res->summary, err);
  if (st != INFSIM_OK) {
    infsim_run_result_free(res);
    return st;
  }
  *out = res;
  return INFSIM_OK;
}

static infsim_status simulate(const infsim_run_params *p, infsim_cost_model *cost_given, const infsim_trace *trace,
                              infsim_trace *drop, json_t *config, const infsim_sim_watch *watch,
                              infsim_run_result **out, infsim_error *err);

/* A run of the setup on trace: the model loading built, while the setup
 * still has it, moves into the run (so the setup has none after: the run
 * owns it); else the run builds its own from the params. */
static infsim_status run_setup(infsim_run_setup *setup, const infsim_trace *trace, infsim_trace *drop,
                               infsim_run_result **out, infsim_error *err) {
  infsim_cost_model cost;
  bool given = setup->has_cost;
  if (given) cost = setup->cost;
  setup->has_cost = false;
  return simulate(&setup->params, given ? &cost : NULL, trace, drop, setup->config, NULL, out, err);
}

infsim_status infsim_run_execute(infsim_run_setup *setup, infsim_run_result **out, infsim_error *err) {
  return run_setup(setup, &setup->trace, NULL, out, err);
}

infsim_status infsim_run_execute_trace(infsim_run_setup *setup, const infsim_trace *trace, infsim_run_result **out,
                                       infsim_error *err) {
  return run_setup(setup, trace, NULL, out, err);
}

infsim_status infsim_run_simulate(const infsim_run_params *p, const infsim_trace *trace, json_t *config,
                                  infsim_run_result **out, infsim_error *err) {
  return infsim_run_simulate_watched(p, trace, config, NULL, out, err);
}

infsim_status infsim_run_simulate_watched(const infsim_run_params *p, const infsim_trace *trace, json_t *config,
                                          const infsim_sim_watch *watch, infsim_run_result **out, infsim_error *err) {
  return simulate(p, NULL, trace, NULL, config, watch, out, err);
}

infsim_status infsim_run_execute_consume(infsim_run_setup *setup, infsim_run_result **out, infsim_error *err) {
  return run_setup(setup, &setup->trace, &setup->trace, out, err);
}

/* infsim_run_simulate_watched, priced by *cost_given when not NULL (a
 * model built for p, which the run owns from here on, also when it
 * fails), else by a model built now; `drop` (the trace, or NULL) is freed
 * once the scheduler holds its rows in its records. */
static infsim_status simulate(const infsim_run_params *p, infsim_cost_model *cost_given, const infsim_trace *trace,
                              infsim_trace *drop, json_t *config, const infsim_sim_watch *watch,
                              infsim_run_result **out, infsim_error *err) {
  *out = NULL;
  infsim_cost_model cost = {0};
  if (cost_given != NULL) cost = *cost_given;
  infsim_sim_config sc = {0};
  infsim_instance_layout il;
  infsim_run_result *res = NULL;
  infsim_status st = lay_out(p, NULL, &sc, &il, err);
  if (st == INFSIM_OK && (res = calloc(1, sizeof *res)) == NULL) st = infsim_fail(err, INFSIM_ENOMEM, "out of memory");
  if (st == INFSIM_OK) {
    if (watch != NULL) sc.watch = *watch;
    res->params = *p;
    res->config = config != NULL ? json_incref(config) : json_object();
    res->trace = trace;
    if (p->timeline_path[0] != '\0' &&
        (st = infsim_timeline_open(p->timeline_path, p->timeline_from_ns, p->timeline_to_ns, &res->timeline, err)) ==
            INFSIM_OK)
      sc.timeline = res->timeline;
  }
  if (st == INFSIM_OK && cost_given == NULL)
    st = infsim_cost_model_build(p->gpu_profile, p->calibration_db, p->calibration_db_given, &p->model, &il,
                                 &p->roofline, NULL, &cost, err);
  if (st == INFSIM_OK && cost.layout.iteration_overhead_ns != p->iteration_overhead_ns) {
    /* summary.json's config says what priced the run: a calibration DB's
     * measured iteration time in place of the default (set as the key, it
     * prices a rerun from this config the same). A copy: the setup's own
     * config may serve other runs. */
    json_t *c = json_deep_copy(res->config), *cs = c ? json_object_get(c, "cost") : NULL;
    if (cs == NULL && c != NULL && json_object_set_new(c, "cost", json_object()) == 0) cs = json_object_get(c, "cost");
    if (cs == NULL || !json_is_object(cs) ||
        json_object_set_new(cs, "iteration_overhead_us", json_real((double)cost.layout.iteration_overhead_ns / 1e3))) {
      json_decref(c);
      st = infsim_fail(err, INFSIM_ENOMEM, "out of memory");
    } else {
      json_decref(res->config);
      res->config = c;
    }
  }
  if (st == INFSIM_OK) {
    snprintf(res->cost_model, sizeof res->cost_model, "%s", cost.curves.name);
    sc.sched.longest_context = p->record_iterations || cost.curves.decode_longest_layer_ns != NULL;
    st = infsim_sim_new(&sc, &cost, trace, &res->sim, err); /* takes the model, also when it fails */
  }
  infsim_cost_model_destroy(&cost); /* one the sim did not take (none once infsim_sim_new ran) */
  if (drop != NULL) { /* its rows are the records' now (24 bytes a request less) */
    infsim_trace_free(drop);
    if (res != NULL) res->trace = NULL;
  }
  if (st == INFSIM_OK) {
    double t0 = wall_now_s();
    st = infsim_sim_run(res->sim, err);
    res->wall_s = wall_now_s() - t0;
  }
  if (st == INFSIM_OK) {
    size_t n = 0;
    const infsim_request_record *rec = infsim_sim_requests(res->sim, &n);
    st = infsim_summary_compute(p, rec, n, infsim_sim_counters(res->sim), &res->summary, err);
  }
  if (st != INFSIM_OK) {
    infsim_run_result_free(res);
    return st;
  }
  *out = res;
  return INFSIM_OK;
}

void infsim_run_result_high_water(const infsim_run_result *res, infsim_high_water_set *out) {
  out->count = 0;
  if (res->sim != NULL) infsim_sim_high_water(res->sim, out);
}

void infsim_run_result_free(infsim_run_result *res) {
  if (res == NULL) return;
  infsim_sim_free(res->sim);
  infsim_timeline_abort(res->timeline); /* not committed: no file */
  free(res->requests);
  free(res->samples);
  free(res->iterations);
  json_decref(res->config);
  free(res);
}

const infsim_run_params *infsim_run_result_params(const infsim_run_result *res) { return &res->params; }

const infsim_summary *infsim_run_result_summary(const infsim_run_result *res) { return &res->summary; }

const infsim_request_record *infsim_run_result_requests(const infsim_run_result *res, size_t *count) {
  if (res->sim == NULL) {
    *count = res->request_count;
    return res->requests;
  }
  return infsim_sim_requests(res->sim, count);
}

const infsim_sample_row *infsim_run_result_samples(const infsim_run_result *res, size_t *count) {
  if (res->sim == NULL) {
    *count = res->sample_count;
    return res->samples;
  }
  return infsim_sim_samples(res->sim, count);
}

const infsim_iteration_row *infsim_run_result_iterations(const infsim_run_result *res, size_t *count) {
  if (res->sim == NULL) {
    *count = res->iteration_count;
    return res->iterations;
  }
  return infsim_sim_iterations(res->sim, count);
}

const infsim_network *infsim_run_result_network(const infsim_run_result *res) {
  return res->sim != NULL ? infsim_sim_network(res->sim) : NULL;
}

const infsim_run_counters *infsim_run_result_counters(const infsim_run_result *res) {
  return res->sim == NULL ? &res->counters : infsim_sim_counters(res->sim);
}

bool infsim_run_result_distkv(const infsim_run_result *res, infsim_distkv_stats *out) {
  return res->sim != NULL && infsim_policy_infinite_stats(infsim_sim_sched(res->sim), out);
}

bool infsim_run_result_request_slots(const infsim_run_result *res, int64_t *state_slots, int64_t *table_slots,
                                     int64_t *span_peak) {
  if (res->sim == NULL) return false;
  infsim_sched_request_slots(infsim_sim_sched(res->sim), state_slots, table_slots, span_peak);
  return true;
}

const char *infsim_run_result_cost_model(const infsim_run_result *res) { return res->cost_model; }

double infsim_run_result_wall_s(const infsim_run_result *res) { return res->wall_s; }

int64_t infsim_run_result_sample_interval_ns(const infsim_run_result *res) {
  return res->sim == NULL ? res->sample_interval_ns : infsim_sim_sample_interval_used_ns(res->sim);
}
