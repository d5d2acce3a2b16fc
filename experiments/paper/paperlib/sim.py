"""One simulator run of the paper study, its SLO check, and a result cache.

A run is `infsim run CONFIG --trace T --set ... --seed S`; the trace is the
study trace with arrival times divided by a speed-up (trace time scaled). The
SLO is the study's (study.json "slo"): a request meets it when it completed,
its TTFT <= ttft_base_s + ttft_per_prompt_token_s x prompt tokens (prefill
grows with the prompt, so one fixed bound would fail every 1M-token prompt on
any system) and its TPOT <= tpot_s; a load is sustained when at least
`attainment` of all arrived requests, rejected ones included, met it.

Results are cached (OUT/cache, or --cache DIR shared by several studies) by
a hash of everything that decides them: the simulator's behaviour, the
config text, settings, trace bytes, speed-up, seed and SLO; a rerun after an
interruption redoes nothing. The simulator's behaviour is either the binary
itself (`--cache-key binary`: any rebuild reruns everything) or, by default,
a fingerprint of it for the run's policy and settings (`--cache-key
behavior`): the bytes of requests.csv and the deterministic summary numbers
of four small canary runs (a loaded short trace and a long one on 4
instances, one request larger than an instance, and the long one again
with two instances a node: across a NIC). A new binary whose
canaries give the same bytes for a policy and settings reuses that policy's
cached runs; every cached run records the binary and the commit that
measured it, and the report says which commits its cells come from.

Invariants: a cached result is only ever read for the exact same inputs; a
failed run (exit status other than 0) raises, it is never taken as a miss.
"""
import csv
import hashlib
import json
import os
import re
import resource
import shutil
import subprocess
import tempfile
import threading
import time

from . import traces


class PolicyMissing(Exception):
    pass


class NotCached(RuntimeError):
    """--cached-only: the run is not in the cache (the cell is reported as not run)."""


def file_sha256(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def percentile(values, q):
    """Nearest-rank percentile (the simulator's definition)."""
    if not values:
        return None
    v = sorted(values)
    k = max(1, int(-(-q * len(v) // 100)))
    return v[min(k, len(v)) - 1]


def slo_stats(requests_csv, slo):
    met = total = 0
    ttft = []
    with open(requests_csv, newline="") as f:
        for r in csv.DictReader(f):
            total += 1
            if r["status"] != "completed":
                continue
            t = float(r["ttft_s"])
            ttft.append(t)
            ok = t <= slo["ttft_base_s"] + slo["ttft_per_prompt_token_s"] * int(r["prompt_tokens"])
            if int(r["output_tokens"]) >= 2 and float(r["tpot_s"]) > slo["tpot_s"]:
                ok = False
            met += ok
    att = met / total if total else 0.0
    return {"attainment": att, "requests": total, "met": met, "ttft_p99_s": percentile(ttft, 99),
            "sustained": total > 0 and att >= slo["attainment"]}


# Canary runs of the behaviour fingerprint: (requests, Poisson rate req/s,
# prompt law, output law). Short and loaded (batching, preemption), long and
# beyond one instance (borrowing, DGFM, DistAttention); then one request of
# CANARY_BIG_PROMPT tokens alone (admission of an oversized prompt); then the
# long one again with two instances a node (KV and DistAttention across a NIC,
# node relay: on one node none of it shows). CANARY_SET names the set in the
# fingerprints kept on disk.
CANARIES = [
    (150, 3.0, {"dist": "lognormal", "median": 4096, "sigma": 1.2, "min": 16, "max": 56000},
     {"dist": "lognormal", "median": 256, "sigma": 0.8, "min": 1, "max": 2000}),
    (24, 0.05, {"dist": "zipf", "alpha": 1.0, "min": 1000, "max": 300000},
     {"dist": "lognormal", "median": 256, "sigma": 0.8, "min": 1, "max": 2000}),
]
CANARY_INSTANCES = 4
CANARY_BIG_PROMPT = 300000
CANARY_SET = 2
# summary.json numbers that depend on the host or the implementation, not on
# the simulated behaviour (events: a faster simulator may need fewer events
# for the same behaviour; high_water: the capacities its arrays grew to,
# which a different data structure changes without changing any result)
HOST_DEPENDENT = ("wall_s", "version", "config", "events", "high_water")


def gpus_per_instance(config, settings):
    """cluster.gpus_per_instance of these settings, else of the config file
    (the study's configs are flat YAML), else 1."""
    if "cluster.gpus_per_instance" in settings:
        return int(settings["cluster.gpus_per_instance"])
    with open(config) as f:
        m = re.search(r"^\s*gpus_per_instance:\s*(\d+)", f.read(), re.M)
    return int(m.group(1)) if m else 1


class Runner:
    def __init__(self, infsim, out_dir, slo, log, timeout_s=None, timeout_is_miss=False, cache_dir=None,
                 cache_key="behavior", commit="unknown", cached_only=False, cpu_limit_s=None):
        self.timeout_s = timeout_s
        self.timeout_is_miss = timeout_is_miss
        self.timeouts = 0
        self.infsim = infsim
        self.cache_dir = cache_dir or os.path.join(out_dir, "cache")
        os.makedirs(self.cache_dir, exist_ok=True)
        self.cache_key = cache_key
        self.commit = commit
        self.cached_only = cached_only
        self.cpu_limit_s = cpu_limit_s
        self.alternates = []  # Runners of older binaries, read when cached_only finds nothing for this one
        self._fingerprints = {}
        self._fp_locks = {}
        self.slo = slo
        self.log = log
        self.binary_hash = file_sha256(infsim)
        self.lock = threading.Lock()
        self.runs = 0
        self.cached = 0
        self.sim_wall_s = 0.0
        self._trace_cache = {}

    def _trace_rows(self, path):
        with self.lock:
            if path not in self._trace_cache:
                self._trace_cache[path] = (traces.read_trace_ns(path), file_sha256(path))
            return self._trace_cache[path]

    def policy_available(self, config, name):
        """Whether the built binary knows policy `name` (an unknown policy is exit 2
        with a message naming policy.name)."""
        with tempfile.TemporaryDirectory() as d:
            t = os.path.join(d, "one.csv")
            traces.write_trace(t, [(0, 16, 2)])
            r = subprocess.run([self.infsim, "run", config, "--trace", t, "--summary-only", "--out",
                                os.path.join(d, "o"), "--set", "policy.name=" + name],
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
            return r.returncode == 0

    def fingerprint(self, config, settings):
        """The simulator's behaviour for this config and these settings (cluster
        size aside): SHA-256 over the canary runs' requests.csv bytes and
        deterministic summary numbers. A run that fails hashes its exit status
        and message (a refused setting is a behaviour too)."""
        s = {k: v for k, v in settings.items() if k != "cluster.instances"}
        s["cluster.instances"] = str(CANARY_INSTANCES)
        fkey = (config, json.dumps(sorted(s.items())))
        with self.lock:
            lk = self._fp_locks.setdefault(fkey, threading.Lock())
        with lk:
            if fkey in self._fingerprints:
                return self._fingerprints[fkey]
            # the same binary behaves the same: its fingerprints are kept on disk
            with open(config, "rb") as f:
                disk = os.path.join(self.cache_dir, "fp-" + hashlib.sha256(json.dumps(
                    [self.binary_hash, hashlib.sha256(f.read()).hexdigest(), fkey[1], CANARY_SET]).encode()
                ).hexdigest()[:32])
            if os.path.exists(disk):
                with open(disk) as f:
                    self._fingerprints[fkey] = f.read().strip()
                return self._fingerprints[fkey]
            h = hashlib.sha256()
            with tempfile.TemporaryDirectory(dir=self.cache_dir, prefix="canary-") as d:
                paths = []
                for i, (n, rate, prompt, output) in enumerate(CANARIES):
                    t = os.path.join(d, "c%d.csv" % i)
                    traces.poisson(self.infsim, n, rate, prompt, output, 7 + i, t)
                    paths.append(t)
                paths.append(os.path.join(d, "big.csv"))
                traces.write_trace(paths[-1], [(0, CANARY_BIG_PROMPT, 64)])
                # the long canary again on two nodes of two instances: the others
                # fit on one node, where nothing crosses a NIC
                paths.append(paths[1])
                apart = dict(s)
                apart["cluster.gpus_per_node"] = str(2 * gpus_per_instance(config, s))
                for i, t in enumerate(paths):
                    o = os.path.join(d, "o%d" % i)
                    cmd = [self.infsim, "run", config, "--trace", t, "--out", o, "--seed", "1"]
                    for k, v in sorted((apart if i == len(paths) - 1 else s).items()):
                        cmd += ["--set", "%s=%s" % (k, v)]
                    r = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                       timeout=self.timeout_s)
                    if r.returncode != 0:
                        h.update(("exit %d %s" % (r.returncode, r.stderr.replace(d, ""))).encode())
                        continue
                    with open(os.path.join(o, "requests.csv"), "rb") as f:
                        h.update(f.read())
                    with open(os.path.join(o, "summary.json")) as f:
                        summ = json.load(f)
                    h.update(json.dumps({k: v for k, v in summ.items() if k not in HOST_DEPENDENT},
                                        sort_keys=True).encode())
            fp = "behavior:" + h.hexdigest()
            self._fingerprints[fkey] = fp
            with open(disk + ".tmp", "w") as f:
                f.write(fp + "\n")
            os.replace(disk + ".tmp", disk)
            return fp

    def run(self, config, settings, trace_path, speedup=1.0, seed=1, rows=None, keep=None):
        """Runs once; returns a dict: the summary's numbers plus the SLO check.

        rows: the trace's rows (arrival_ns, prompt, output) instead of a file."""
        if rows is None:
            base_rows, trace_hash = self._trace_rows(trace_path)
            rows = traces.scaled(base_rows, speedup) if speedup != 1.0 else base_rows
        else:
            trace_hash = hashlib.sha256(repr(rows).encode()).hexdigest()
        with open(config, "rb") as f:
            config_text = f.read()
        sim_id = self.binary_hash if self.cache_key == "binary" else self.fingerprint(config, settings)
        key_src = json.dumps([sim_id, hashlib.sha256(config_text).hexdigest(), sorted(settings.items()),
                              trace_hash, repr(speedup), seed, self.slo], sort_keys=True)
        key = hashlib.sha256(key_src.encode()).hexdigest()[:32]
        cpath = os.path.join(self.cache_dir, key + ".json")
        if os.path.exists(cpath) and keep is None:
            with open(cpath) as f:
                res = json.load(f)
            # a run stopped at a CPU limit stands only for runs with that limit or a lower one
            if not res.get("cpu_limited") or (self.cpu_limit_s and self.timeout_is_miss
                                               and self.cpu_limit_s <= res["cpu_limited"]):
                with self.lock:
                    self.cached += 1
                    if res.get("cpu_limited"):
                        self.timeouts += 1
                return res
        if self.cached_only:
            for alt in self.alternates:  # older binaries, newest first: their cells say which commit measured them
                try:
                    return alt.run(config, settings, trace_path, speedup=speedup, seed=seed, rows=rows)
                except NotCached:
                    pass
            raise NotCached("not run: no cached run")
        work = tempfile.mkdtemp(prefix="run-", dir=self.cache_dir)
        try:
            t = os.path.join(work, "trace.csv")
            traces.write_trace(t, rows)
            cmd = [self.infsim, "run", config, "--trace", t, "--out", os.path.join(work, "out"),
                   "--seed", str(seed)]
            for k, v in sorted(settings.items()):
                cmd += ["--set", "%s=%s" % (k, v)]
            t0 = time.monotonic()
            lim = self.cpu_limit_s

            def limit_cpu():
                if lim:
                    resource.setrlimit(resource.RLIMIT_CPU, (int(lim), int(lim) + 5))
            try:
                r = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                   timeout=self.timeout_s, preexec_fn=limit_cpu)
            except subprocess.TimeoutExpired:
                if self.timeout_is_miss:  # preview of a policy that stalls under overload: recorded as such
                    res = {"timed_out": True, "arrived": len(rows), "completed": 0, "rejected": 0,
                           "throughput_tok_s": 0.0, "offered_rps": None, "process_wall_s": self.timeout_s,
                           "slo": {"attainment": 0.0, "requests": len(rows), "met": 0, "ttft_p99_s": None,
                                   "sustained": False}}
                    with self.lock:
                        self.timeouts += 1
                    return res
                keep_dir = work + "-timed-out"
                shutil.copytree(work, keep_dir, dirs_exist_ok=True)
                raise RuntimeError("%s: no result after %g s (trace kept in %s)" % (" ".join(cmd), self.timeout_s,
                                                                                  keep_dir))
            wall = time.monotonic() - t0
            if lim and r.returncode in (-24, -9) and self.timeout_is_miss:  # SIGXCPU / SIGKILL at the CPU limit
                res = {"timed_out": True, "cpu_limited": lim, "arrived": len(rows), "completed": 0, "rejected": 0,
                       "throughput_tok_s": 0.0, "offered_rps": None, "process_wall_s": wall,
                       "binary_sha256": self.binary_hash, "commit": self.commit,
                       "slo": {"attainment": 0.0, "requests": len(rows), "met": 0, "ttft_p99_s": None,
                               "sustained": False}}
                with open(cpath + ".tmp", "w") as f:
                    json.dump(res, f)
                os.replace(cpath + ".tmp", cpath)
                with self.lock:
                    self.timeouts += 1
                return res
            if r.returncode != 0:
                if "policy.name" in r.stderr:
                    raise PolicyMissing(r.stderr.strip())
                raise RuntimeError("%s: exit %d: %s" % (" ".join(cmd), r.returncode, r.stderr.strip()))
            with open(os.path.join(work, "out", "summary.json")) as f:
                s = json.load(f)
            res = {k: s.get(k) for k in ("arrived", "completed", "rejected", "throughput_tok_s", "requests_per_s",
                                         "kv_blocks_per_instance",
                                         "preemptions", "sim_time_s", "wall_s", "events", "network_bytes",
                                         "borrowed_blocks_peak", "max_context_tokens", "cost_model", "version")}
            for k in ("ttft_s", "tpot_s"):
                res[k + "_p50"] = (s.get(k) or {}).get("p50")
                res[k + "_p99"] = (s.get(k) or {}).get("p99")
            res["distkv"] = s.get("distkv")
            res["process_wall_s"] = wall
            res["binary_sha256"] = self.binary_hash
            res["commit"] = self.commit
            res["offered_rps"] = len(rows) / (rows[-1][0] / 1e9) if rows[-1][0] > 0 else None
            res["slo"] = slo_stats(os.path.join(work, "out", "requests.csv"), self.slo)
            links = os.path.join(work, "out", "links.csv")
            if os.path.exists(links):
                res["links"] = _links_summary(links)
            if keep is not None:
                shutil.copytree(os.path.join(work, "out"), keep, dirs_exist_ok=True)
            with open(cpath + ".tmp", "w") as f:
                json.dump(res, f)
            os.replace(cpath + ".tmp", cpath)
            with self.lock:
                self.runs += 1
                self.sim_wall_s += wall
            return res
        finally:
            shutil.rmtree(work, ignore_errors=True)


def _links_summary(path):
    by_kind = {}
    with open(path, newline="") as f:
        for r in csv.DictReader(f):
            by_kind[r["kind"]] = by_kind.get(r["kind"], 0) + int(float(r["bytes"]))
    return by_kind
