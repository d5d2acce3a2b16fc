/*
** params.c: run parameters from the config (sim.h), every key with its
** documented default (README.md's configuration table mirrors this file).
**
** Defaults follow vLLM where it has one (block 16 tokens, 90% of GPU
** memory for weights + KV, 4 GiB of swap, chunked prefill on as in vLLM
** v1) and the GPU spec table for links.
*/
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "infsim/distattn.h"
#include "infsim/gmanager.h"
#include "infsim/network.h"
#include "infsim/params.h"
#include "infsim/policy_infinite.h"

#ifndef INFSIM_DATA_DIR
#define INFSIM_DATA_DIR "data"
#endif

#define TRY(expr)                                \
  do {                                           \
    infsim_status try_status_ = (expr);          \
    if (try_status_ != INFSIM_OK) return try_status_; \
  } while (0)

static infsim_status read_gpu(infsim_config *cfg, infsim_run_params *p, infsim_error *err) {
  const char *gpu = NULL;
  TRY(infsim_config_string(cfg, "gpu", "a100-80gb", &gpu, err));
  if ((size_t)snprintf(p->gpu_profile, sizeof p->gpu_profile, "%s", gpu) >= sizeof p->gpu_profile ||
      !infsim_gpu_for_key(gpu, &p->gpu))
    return infsim_fail(err, INFSIM_EINPUT,
                       "%s: gpu: unknown GPU '%s' (a100-80gb, a100-40gb, h100-sxm, h200, or a calibrated profile "
                       "named GPU-SUFFIX)",
                       infsim_config_origin(cfg, "gpu"), gpu);
  return INFSIM_OK;
}

infsim_status infsim_config_path(const infsim_config *cfg, const char *key, const char *value, char *out,
                                 size_t out_bytes, infsim_error *err) {
  /* The origin of a key read from a file is "FILE:LINE" (config.h). */
  const char *origin = infsim_config_origin(cfg, key);
  const char *colon = strrchr(origin, ':'), *slash = NULL;
  for (const char *c = origin; colon != NULL && c < colon; c++)
    if (*c == '/') slash = c;
  int n;
  if (value[0] == '/' || slash == NULL || strcmp(origin, "--set") == 0)
    n = snprintf(out, out_bytes, "%s", value);
  else
    n = snprintf(out, out_bytes, "%.*s/%s", (int)(slash - origin), origin, value);
  if (n < 0 || (size_t)n >= out_bytes)
    return infsim_config_fail(cfg, key, err, "path longer than %zu bytes", out_bytes - 1);
  return INFSIM_OK;
}

infsim_status infsim_run_params_from_config(infsim_config *cfg, infsim_run_params *p, infsim_error *err) {
  memset(p, 0, sizeof *p);
  TRY(infsim_model_from_config(cfg, &p->model, err));
  TRY(read_gpu(cfg, p, err));
  p->calibration_db_given = infsim_config_has(cfg, "calibration.db");
  const char *db = NULL;
  TRY(infsim_config_string(cfg, "calibration.db", INFSIM_DATA_DIR "/calibration.db", &db, err));
  TRY(infsim_config_path(cfg, "calibration.db", db, p->calibration_db, sizeof p->calibration_db, err));

  /* Roofline efficiencies: fractions of peak that tuned kernels reach
   * (cuBLAS GEMMs ~70% of bf16 peak, flash attention ~50%, streaming
   * kernels ~80% of HBM bandwidth), plus launch overheads. */
  double layer_overhead_us = 0, iteration_overhead_us = 0;
  TRY(infsim_config_double(cfg, "cost.gemm_efficiency", 0.7, 0.01, 1.0, &p->roofline.gemm_flops_eff, err));
  TRY(infsim_config_double(cfg, "cost.attention_efficiency", 0.5, 0.01, 1.0, &p->roofline.attn_flops_eff, err));
  TRY(infsim_config_double(cfg, "cost.memory_efficiency", 0.8, 0.01, 1.0, &p->roofline.hbm_eff, err));
  TRY(infsim_config_double(cfg, "cost.layer_overhead_us", 10.0, 0.0, 1e6, &layer_overhead_us, err));
  TRY(infsim_config_double(cfg, "cost.iteration_overhead_us", 500.0, 0.0, 1e9, &iteration_overhead_us, err));
  p->roofline.layer_overhead_ns = (int64_t)(layer_overhead_us * 1e3); /* once per layer and iteration */
  p->iteration_overhead_ns = llround(iteration_overhead_us * 1e3); /* 186.1 us: 186100 ns, not 186099 */
  /* The default (500 us, a guess) gives way to a calibrated profile's
   * measured iteration_fit row; a value set here wins over it. */
  p->iteration_overhead_given = infsim_config_has(cfg, "cost.iteration_overhead_us");

  double intra_GBps = 0, inter_GBps = 0, latency_us = 0, pcie_GBps = 0;
  TRY(infsim_config_int(cfg, "cluster.instances", 4, 1, INT32_MAX, &p->instances, err));
  if (p->instances > INFSIM_MAX_INSTANCES)
    return infsim_config_fail(cfg, "cluster.instances", err,
                              "at most %d instances (the simulator keeps about 14 KB per instance), got %lld",
                              INFSIM_MAX_INSTANCES, (long long)p->instances);
  TRY(infsim_config_int(cfg, "cluster.gpus_per_instance", 1, 1, 4096, &p->gpus_per_instance, err));
  TRY(infsim_config_int(cfg, "cluster.gpus_per_node", 8, 1, 1024, &p->gpus_per_node, err));
  TRY(infsim_config_double(cfg, "cluster.intra_node_GBps", p->gpu.nvlink_bytes_per_s / 1e9, 0.001, 1e6, &intra_GBps, err));
  TRY(infsim_config_double(cfg, "cluster.inter_node_GBps", p->gpu.nic_bytes_per_s / 8e9, 0.001, 1e6, &inter_GBps, err));
  TRY(infsim_config_double(cfg, "cluster.link_latency_us", 5.0, 0.0, 1e6, &latency_us, err));
  /* Pinned host <-> GPU copies: about 54 GB/s measured on H100 and H200
   * hosts (PCIe Gen5 x16), about 25 on A100 hosts (Gen4). */
  bool gen5 = strncmp(p->gpu.name, "h100", 4) == 0 || strncmp(p->gpu.name, "h200", 4) == 0;
  TRY(infsim_config_double(cfg, "cluster.pcie_GBps", gen5 ? 54.0 : 25.0, 0.001, 1e6, &pcie_GBps, err));
  p->intra_node_bytes_per_s = intra_GBps * 1e9;
  p->inter_node_bytes_per_s = inter_GBps * 1e9;
  p->link_latency_ns = (int64_t)(latency_us * 1e3);
  p->pcie_bytes_per_s = pcie_GBps * 1e9;

  static const char *const k_preempt[] = {"recompute", "swap", NULL};
  int preempt = 0;
  double swap_gib = 0;
  infsim_sched_params *sp = &p->sched;
  TRY(infsim_config_int(cfg, "scheduler.max_batch_size", 256, 1, 1 << 20, &sp->max_batch_size, err));
  TRY(infsim_config_int(cfg, "scheduler.max_batched_tokens", 8192, 1, INT64_C(1) << 32, &sp->max_batched_tokens, err));
  /* The kernels page KV in multiples of 16 tokens and calibration measures
   * 16: one rule for simulator and kernels. */
  TRY(infsim_config_int(cfg, "scheduler.block_tokens", 16, 16, 1 << 20, &sp->block_tokens, err));
  if (sp->block_tokens % 16 != 0)
    return infsim_config_fail(cfg, "scheduler.block_tokens", err,
                              "must be a multiple of 16 (the kernels page KV in 16-token tiles), got %lld",
                              (long long)sp->block_tokens);
  TRY(infsim_config_bool(cfg, "scheduler.chunked_prefill", true, &sp->chunked_prefill, err));
  /* 1 makes every decode iteration its own event: slow, for checking the macro-steps. */
  TRY(infsim_config_int(cfg, "scheduler.max_steps_per_event", 0, 0, INT64_MAX, &sp->max_steps_per_event, err));
  TRY(infsim_config_enum(cfg, "scheduler.preemption", "recompute", k_preempt, &preempt, err));
  TRY(infsim_config_double(cfg, "scheduler.gpu_memory_utilization", 0.9, 0.01, 1.0, &p->gpu_memory_utilization, err));
  TRY(infsim_config_double(cfg, "scheduler.swap_space_gib", 4.0, 0.0, 1e6, &swap_gib, err));
  sp->preemption = (infsim_preemption_mode)preempt;
  p->swap_space_bytes = (int64_t)(swap_gib * 1024.0 * 1024.0 * 1024.0);
  /* A node's host memory is one pool: swap space and the CPU tier. By
   * default it is its instances' swap space together, so a run without
   * the CPU tier is unchanged. */
  double host_gib = -1.0, cpu_attn_GBps = 0;
  if (infsim_config_has(cfg, "cluster.host_memory_gib"))
    TRY(infsim_config_double(cfg, "cluster.host_memory_gib", 0.0, 0.0, 1e7, &host_gib, err));
  p->host_memory_bytes = host_gib < 0 ? -1.0 : host_gib * 1024.0 * 1024.0 * 1024.0;
  /* CPU micro-attention streams the KV once per step: about half of one
   * socket's peak DRAM bandwidth (DGX A100: AMD EPYC 7742, 8 x DDR4-3200 =
   * 204.8 GB/s; DGX H100: Xeon 8480C, 8 x DDR5-4800 = 307 GB/s); see
   * docs/distkv.md, "CPU tier". */
  TRY(infsim_config_double(cfg, "cluster.cpu_attn_GBps", 100.0, 0.001, 1e6, &cpu_attn_GBps, err));
  p->cpu_attn_bytes_per_s = cpu_attn_GBps * 1e9;

  int policy = 0;
  const char *const *names = infsim_policy_names();
  TRY(infsim_config_enum(cfg, "policy.name", "vllm-multi", names, &policy, err));
  snprintf(sp->policy_name, sizeof sp->policy_name, "%s", names[policy]);
  TRY(infsim_policy_lookup(names[policy])->read_config(cfg, sp->policy_settings, err));
  /* How DistAttention's queries reach a remote node's holders: a copy
   * each (none, the paper's), or one copy per node fanned out there over
   * NVLink by the node's first holder (node; docs/distkv.md, "Node
   * relay"). Only Infinite-LLM splits KV over instances. */
  if (strcmp(sp->policy_name, infsim_policy_infinite.name) == 0) {
    if (p->instances > INFSIM_GM_INSTANCES_MAX)
      return infsim_config_fail(cfg, "cluster.instances", err, "at most %d instances with policy %s",
                                INFSIM_GM_INSTANCES_MAX, sp->policy_name);
    static const char *const k_relay[] = {"none", "node", NULL};
    int relay = 0;
    TRY(infsim_config_enum(cfg, "policy.distattn_relay", "none", k_relay, &relay, err));
    p->distattn_relay = relay == 1 ? INFSIM_DISTATTN_RELAY_NODE : INFSIM_DISTATTN_RELAY_NONE;
    /* How far a link's room may move before an owner's DistAttention
     * shares are found again (infsim_network_probe_keyed; docs/distkv.md,
     * "The network"): 0 repeats the filling whenever a room changed. */
    TRY(infsim_config_double(cfg, "policy.distattn_reprice_tolerance", INFSIM_DEFAULT_REPRICE_TOLERANCE, 0.0, 1.0,
                             &p->distattn_reprice_tolerance, err));
    /* A decode run's steady flows: one per path its routes take (path),
     * or one per holder and direction (holder; docs/distkv.md, "The
     * network"). */
    static const char *const k_flows[] = {"path", "holder", NULL};
    int flows = 0;
    TRY(infsim_config_enum(cfg, "policy.distattn_flows", "path", k_flows, &flows, err));
    p->distattn_flow_per_path = flows == 0;
  }
  infsim_policy_infinite_set_link_costs(sp->policy_name, sp->policy_settings, &p->model,
                                        p->gpu.peak_flops * p->roofline.attn_flops_eff, p->inter_node_bytes_per_s,
                                        p->intra_node_bytes_per_s, p->distattn_relay == INFSIM_DISTATTN_RELAY_NODE);

  double warmup_s = 0, sample_s = 0;
  TRY(infsim_config_double(cfg, "slo.ttft_s", 10.0, 0.0, 1e9, &p->slo_ttft_s, err));
  TRY(infsim_config_double(cfg, "slo.tpot_s", 0.2, 0.0, 1e9, &p->slo_tpot_s, err));
  TRY(infsim_config_double(cfg, "metrics.warmup_s", 0.0, 0.0, 1e9, &warmup_s, err));
  TRY(infsim_config_double(cfg, "metrics.sample_interval_s", 1.0, 1e-6, 1e9, &sample_s, err));
  p->warmup_ns = (int64_t)(warmup_s * 1e9);
  p->sample_interval_ns = (int64_t)(sample_s * 1e9);
  TRY(infsim_config_bool(cfg, "metrics.iterations", false, &p->record_iterations, err));

  int64_t seed = 0;
  TRY(infsim_config_int(cfg, "seed", 0, 0, INT64_MAX, &seed, err));
  p->seed = (uint64_t)seed;
  sp->seed = p->seed;
  return INFSIM_OK;
}
