"""Traces of the paper study, built from public arrival processes.

The paper's nine traces are not public. Each trace here takes its arrival
times from a real production trace (Mooncake conversation or Azure 2023 code,
imported with `infsim trace import`) and its lengths either from that trace
(capped) or from `infsim trace gen` with a recorded distribution and seed, so
that contexts span the paper's ranges (short group 1-60K tokens, long group
up to 1-2M). Lengths and arrivals come from independent sources: the joined
file keeps row i's arrival and generated row i's lengths.

Invariants: every trace file is a valid trace CSV (header
`arrival_time_s,prompt_tokens,output_tokens`, arrivals non-decreasing from
0); the same study.json gives the same bytes.
"""
import csv
import os
import subprocess


def _run(cmd):
    r = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    if r.returncode != 0:
        raise RuntimeError("%s failed (%d): %s" % (" ".join(cmd), r.returncode, r.stderr.strip()))
    return r.stdout


def _read_rows(path):
    with open(path, newline="") as f:
        rd = csv.reader(f)
        head = next(rd)
        ia, ip, io = head.index("arrival_time_s"), head.index("prompt_tokens"), head.index("output_tokens")
        return [(r[ia], int(r[ip]), int(r[io])) for r in rd if r]


def seconds_from_text(s):
    """Decimal seconds text -> integer ns (exact, like the simulator's reader)."""
    whole, _, frac = s.partition(".")
    frac = (frac + "000000000")[:9]
    return int(whole) * 1000000000 + int(frac)


def text_from_ns(ns):
    return "%d.%09d" % (ns // 1000000000, ns % 1000000000)


def write_trace(path, rows_ns):
    """rows_ns: (arrival_ns, prompt, output); written atomically."""
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        f.write("arrival_time_s,prompt_tokens,output_tokens\n")
        for a, p, o in rows_ns:
            f.write("%s,%d,%d\n" % (text_from_ns(a), p, o))
    os.replace(tmp, path)


def read_trace_ns(path):
    return [(seconds_from_text(a), p, o) for a, p, o in _read_rows(path)]


def scaled(rows_ns, speedup):
    """Arrival times divided by speedup (trace time scaled), rounded to the ns."""
    return [(int(round(a / speedup)), p, o) for a, p, o in rows_ns]


def _gen_args(prefix, spec):
    args = []
    for k, v in spec.items():
        args += ["--%s.%s" % (prefix, k), str(v)]
    return args


def build(infsim, data_dir, sources, name, spec, requests, seed_offset, out_dir):
    """Builds trace `name` with `requests` rows into out_dir; returns its path.

    seed_offset shifts the length generator's seed (the planner study's seeds)."""
    os.makedirs(out_dir, exist_ok=True)
    src = sources[spec["source"]]
    imported = os.path.join(out_dir, "%s-arrivals.csv" % spec["source"])
    if not os.path.exists(imported):
        cmd = [infsim, "trace", "import", src["format"], os.path.join(data_dir, src["file"]), "-o", imported + ".part"]
        _run(cmd)
        os.replace(imported + ".part", imported)
    rows = _read_rows(imported)
    skip = spec.get("skip", 0)
    window = rows[skip:skip + requests]
    if len(window) < requests:
        raise RuntimeError("trace %s: source has %d rows after skipping %d, need %d" % (name, len(window), skip, requests))
    base = seconds_from_text(window[0][0])
    arrivals = [seconds_from_text(a) - base for a, _, _ in window]
    if spec.get("lengths") == "source":
        mp, mo = spec["max_prompt_tokens"], spec["max_output_tokens"]
        lengths = [(min(p, mp), min(o, mo)) for _, p, o in window]
        seed = None
    else:
        seed = spec["seed"] + seed_offset
        gen = os.path.join(out_dir, "%s-s%d-lengths.csv" % (name, seed))
        cmd = [infsim, "trace", "gen", "--requests", str(requests), "--seed", str(seed)]
        cmd += _gen_args("prompt", spec["prompt"]) + _gen_args("output", spec["output"]) + ["-o", gen]
        _run(cmd)
        lengths = [(p, o) for _, p, o in _read_rows(gen)]
        os.remove(gen)
    path = os.path.join(out_dir, "%s-s%s-n%d.csv" % (name, "src" if seed is None else seed, requests))
    write_trace(path, [(a, p, o) for a, (p, o) in zip(arrivals, lengths)])
    return path


def poisson_with_lengths(infsim, spec, requests, rate_rps, seed, path):
    """A Poisson trace with spec's generated lengths (the scaling study past the
    public traces' sizes: 1,024 instances need more requests than they hold)."""
    cmd = [infsim, "trace", "gen", "--requests", str(requests), "--rate_rps", repr(rate_rps), "--seed", str(seed)]
    cmd += _gen_args("prompt", spec["prompt"]) + _gen_args("output", spec["output"]) + ["-o", path]
    _run(cmd)
    return path


def poisson(infsim, requests, rate_rps, prompt, output, seed, path):
    """A Poisson trace with the given length laws (the cache's canaries)."""
    cmd = [infsim, "trace", "gen", "--requests", str(requests), "--rate_rps", repr(rate_rps), "--seed", str(seed)]
    cmd += _gen_args("prompt", prompt) + _gen_args("output", output) + ["-o", path]
    _run(cmd)
    return path


def stats(infsim, path):
    import json
    return json.loads(_run([infsim, "trace", "stats", "--json", path]))
