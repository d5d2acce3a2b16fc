#!/usr/bin/env python3
"""Outside reference for the kernel benchmarks: PyTorch SDPA (cuDNN and flash
backends) and a torch device copy, measured in the same run as bench_kernels,
then joined with its CSV into the ratios bench/README.md reports.

Timing matches bench_kernels: the same warm-up (--warm-ms), CUDA events
around each call, median of the repeats, L2 flushed (a 2x-L2 buffer
overwritten) before each decode repeat.
Decode uses the GQA-as-queries layout: q [B, g, h/g, d] against K/V
[B, g, S, d], which is exactly one decode step of h query heads on g KV heads
over contiguous KV (torch's native layout; our "contiguous" variant).

Usage: torch_ref.py --ours ours.csv --out combined.csv --summary summary.md [--warm-ms MS]
"""
import argparse
import csv
import math
import statistics
import subprocess
import sys

import torch
import torch.nn.functional as F
from torch.nn.attention import SDPBackend, sdpa_kernel

HBM_SPEC_GBPS = {"H100": 3350.0, "H200": 4800.0, "A100": 2039.0}
D = 128


def gpu_info():
    p = torch.cuda.get_device_properties(0)
    drv, sm, mem = "", 0, 0
    try:
        out = subprocess.run(
            ["nvidia-smi", "--query-gpu=driver_version,clocks.max.sm,clocks.max.mem", "--format=csv,noheader,nounits"],
            capture_output=True, text=True, timeout=20).stdout.strip().splitlines()[0]
        drv, sm, mem = [x.strip() for x in out.split(",")]
    except Exception:  # provenance is best effort; the C bench records it too
        pass
    return p.name, drv, sm, mem, p.L2_cache_size


# Warm-up before timing, the rule bench_kernels' btime follows: WARM_MS of
# calls (one probe call sets the count), at least 2 and, at the default 30 ms,
# at most 200. The same rule on both sides: with 2 calls only, torch timed a
# GPU fresh from seconds of allocation and filling, at boost clock, and ours
# after 30 ms of load (H100 at 4K tokens, 32/32 heads: the first kernel timed
# after a pause read 460-550 TFLOP/s, the same kernel later 380-430).
WARM = {"ms": 30.0, "cap": 200}


def call_ms(fn):
    """One call of fn between CUDA events, in ms."""
    a, b = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    a.record()
    fn()
    b.record()
    b.synchronize()
    return a.elapsed_time(b)


def warm_up(fn):
    probe = call_ms(fn)
    n = int(WARM["ms"] / probe) if probe > 0 else WARM["cap"]
    for _ in range(max(2, min(WARM["cap"], n))):
        fn()


def timed(fn, repeats, flush=None):
    warm_up(fn)
    torch.cuda.synchronize()
    ms = []
    for _ in range(repeats):
        if flush is not None:
            # Overwrite, then read (as bench_kernels' flush): the read leaves
            # clean lines, so the timed call pays no write-back of the flush.
            flush.zero_()
            flush.sum()
        ms.append(call_ms(fn))
    ms.sort()
    q = lambda f: ms[min(len(ms) - 1, int(round(f * (len(ms) - 1))))]
    return statistics.median(ms), q(0.1), q(0.9)


def sdpa(backend, q, k, v, causal=False, gqa=False):
    def run():
        with sdpa_kernel([backend]):
            return F.scaled_dot_product_attention(q, k, v, is_causal=causal, enable_gqa=gqa)
    return run


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--ours", required=True)
    ap.add_argument("--out", required=True)
    ap.add_argument("--summary", required=True)
    ap.add_argument("--warm-ms", type=float, default=None,
                    help="warm up each measurement with this many ms of calls (bench_kernels --warm-ms; "
                         "default 30 ms, at most 200 calls)")
    args = ap.parse_args()
    if args.warm_ms is not None:
        if args.warm_ms <= 0:
            ap.error("--warm-ms: must be > 0")
        WARM.update(ms=args.warm_ms, cap=100000)

    ours = list(csv.DictReader(open(args.ours)))
    fields = list(ours[0].keys()) if ours else []
    name, drv, sm, mem, l2 = gpu_info()
    flush = torch.empty(2 * l2 // 4, dtype=torch.float32, device="cuda")
    rows = []

    def add(kernel, variant, batch, context, h, g, med, p10, p90, nbytes=0.0, flops=0.0, extra=None):
        s = med * 1e-3
        r = {k: "" for k in fields}
        r.update(source="torch", kernel=kernel, variant=variant, dtype="bf16", batch=batch, context=context,
                 q_heads=h, kv_heads=g, block_tokens=0, splits=0, parts=0, m=0, n=0, k=0,
                 median_ms=f"{med:.6f}", p10_ms=f"{p10:.6f}", p90_ms=f"{p90:.6f}", bytes=f"{nbytes:.0f}",
                 gbps=f"{nbytes / s * 1e-9:.2f}" if nbytes and med == med else "0",
                 tflops=f"{flops / s * 1e-12:.3f}" if flops and med == med else "0",
                 gpu=name, driver=drv, sm_clock_mhz=sm, mem_clock_mhz=mem)
        if extra:
            r.update(extra)
        rows.append(r)
        print(f"torch {kernel:8s} {variant:14s} b={batch:<4} ctx={context:<8} {med:9.4f} ms", file=sys.stderr)

    # Device copy ceiling, torch's view (bytes read + written).
    n = 4 << 30
    src = torch.empty(n, dtype=torch.uint8, device="cuda").random_()
    dst = torch.empty_like(src)
    med, p10, p90 = timed(lambda: dst.copy_(src), 10)
    add("copy", "d2d", 0, 0, 0, 0, med, p10, p90, nbytes=2.0 * n)
    del src, dst

    # Decode at the shapes bench_kernels measured.
    shapes = sorted({(int(r["batch"]), int(r["context"]), int(r["q_heads"]), int(r["kv_heads"]))
                     for r in ours if r["kernel"] == "decode" and r["variant"] == "contiguous"})
    for (B, C, h, g) in shapes:
        k = torch.empty(B, g, C, D, dtype=torch.bfloat16, device="cuda").uniform_(-1, 1)
        v = torch.empty_like(k).uniform_(-1, 1)
        q = torch.empty(B, g, h // g, D, dtype=torch.bfloat16, device="cuda").uniform_(-1, 1)
        kv = 2.0 * k.numel() * 2
        reps = 10 if kv > (1 << 30) else 30
        for label, be in (("cudnn", SDPBackend.CUDNN_ATTENTION), ("flash", SDPBackend.FLASH_ATTENTION)):
            try:
                med, p10, p90 = timed(sdpa(be, q, k, v), reps, flush)
            except Exception as e:  # a backend that rejects the shape is recorded as NaN
                print(f"torch decode {label} B={B} C={C}: {str(e).splitlines()[0][:120]}", file=sys.stderr)
                med = p10 = p90 = float("nan")
            add("decode", label, B, C, h, g, med, p10, p90, nbytes=kv)
        del k, v, q
        torch.cuda.empty_cache()

    # Prefill at the shapes bench_kernels measured.
    shapes = sorted({(int(r["context"]), int(r["q_heads"]), int(r["kv_heads"]))
                     for r in ours if r["kernel"] == "prefill"})
    for (N, h, g) in shapes:
        q = torch.empty(1, h, N, D, dtype=torch.bfloat16, device="cuda").uniform_(-1, 1)
        k = torch.empty(1, g, N, D, dtype=torch.bfloat16, device="cuda").uniform_(-1, 1)
        v = torch.empty_like(k).uniform_(-1, 1)
        flops = 2.0 * h * D * N * (N + 1)
        for label, be in (("cudnn", SDPBackend.CUDNN_ATTENTION), ("flash", SDPBackend.FLASH_ATTENTION)):
            try:
                med, p10, p90 = timed(sdpa(be, q, k, v, causal=True, gqa=True), 10)
            except Exception:
                # Backend without native GQA: give it K/V expanded to h heads
                # (the FLOPs are the same; the extra bytes do not matter here).
                ke, ve = k.repeat_interleave(h // g, dim=1), v.repeat_interleave(h // g, dim=1)
                try:
                    med, p10, p90 = timed(sdpa(be, q, ke, ve, causal=True), 10)
                except Exception as e:
                    print(f"torch prefill {label} N={N}: {str(e).splitlines()[0][:120]}", file=sys.stderr)
                    med = p10 = p90 = float("nan")
                del ke, ve
            add("prefill", label, 1, N, h, g, med, p10, p90, flops=flops)
        del q, k, v
        torch.cuda.empty_cache()

    # Per-head RMSNorm + RoPE, torch eager as the Hugging Face code writes it
    # (fp32 math, rotate-half), in place on q and k of a [T, h + 2g, d] QKV
    # tensor; the cos/sin tables are built once outside the timing (a model
    # shares them across layers).
    shapes = sorted({(int(r["batch"]), int(r["q_heads"]), int(r["kv_heads"]))
                     for r in ours if r["kernel"] == "norm_rope"})
    for (T, h, g) in shapes:
        qkv = torch.empty(T, h + 2 * g, D, dtype=torch.bfloat16, device="cuda").uniform_(-1, 1)
        qw = torch.empty(D, dtype=torch.bfloat16, device="cuda").uniform_(0.5, 1.5)
        kw = torch.empty_like(qw).uniform_(0.5, 1.5)
        inv = 1.0 / (10000.0 ** (torch.arange(0, D, 2, device="cuda", dtype=torch.float32) / D))
        ang = torch.arange(T, device="cuda", dtype=torch.float32)[:, None] * inv[None, :]
        cos, sin = ang.cos()[:, None, :], ang.sin()[:, None, :]

        def norm_rope():
            for lo, hi, w in ((0, h, qw), (h, h + g, kw)):
                x = qkv[:, lo:hi].float()
                x = x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + 1e-6) * w.float()
                x1, x2 = x[..., : D // 2], x[..., D // 2:]
                qkv[:, lo:hi] = torch.cat((x1 * cos - x2 * sin, x2 * cos + x1 * sin), dim=-1).to(qkv.dtype)
        med, p10, p90 = timed(norm_rope, 20, flush)
        add("norm_rope", "eager", T, 0, h, g, med, p10, p90, nbytes=T * (h + g) * D * 2 * 2.0)
        del qkv
        torch.cuda.empty_cache()

    with open(args.out, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=fields)
        w.writeheader()
        for r in ours + rows:
            w.writerow(r)
    write_summary(args.summary, ours, rows, name, drv, sm, mem)


def fnum(x):
    try:
        return float(x)
    except (TypeError, ValueError):
        return float("nan")


def write_summary(path, ours, torch_rows, name, drv, sm, mem):
    spec = next((v for k, v in HBM_SPEC_GBPS.items() if k in name), float("nan"))
    get = lambda rows, **kw: [r for r in rows if all(str(r[k]) == str(v) for k, v in kw.items())]
    ms = lambda rs: fnum(rs[0]["median_ms"]) if rs else float("nan")
    at_start = ours[0]["sm_clock_mhz"] if ours else "?"
    out = [f"Measured on {name}, driver {drv}, max SM clock {sm} MHz (NVML read {at_start} MHz when the "
           f"benchmark started), max memory clock {mem} MHz (HBM spec used for ratios: {spec:.0f} GB/s).", ""]
    copy_o = get(ours, kernel="copy", variant="d2d")
    copy_t = get(torch_rows, kernel="copy", variant="d2d")
    out.append(f"Device copy ceiling (read + write): ours {fnum(copy_o[0]['gbps']) if copy_o else float('nan'):.0f} GB/s, "
               f"torch {fnum(copy_t[0]['gbps']) if copy_t else float('nan'):.0f} GB/s.")
    for r in get(ours, kernel="kv_copy") + get(ours, kernel="staged_copy"):
        out.append(f"{r['kernel']} {r['variant']}: {fnum(r['gbps']):.0f} GB/s (read + write for kv_copy, payload for staged).")
    out += ["", "MA decode, bf16, 64 q heads on 8 KV heads (one LLaMA2-70B layer), head_dim 128. "
            "GB/s counts K+V once; 'vs cuDNN' and 'vs flash' are torch time / our time (>= 1: we are faster); "
            "paged overhead = paged(16-token blocks) / contiguous - 1.", "",
            "| batch | context | KV GiB | contiguous GB/s | paged GB/s | % of spec (paged) | vs cuDNN (paged) | vs flash (paged) | paged overhead |",
            "|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for r in get(ours, kernel="decode", variant="contiguous"):
        B, C = r["batch"], r["context"]
        c = fnum(r["median_ms"])
        p = get(ours, kernel="decode", variant="paged", batch=B, context=C, block_tokens=16)
        pm = ms(p)
        kv = fnum(r["bytes"])
        cud = ms(get(torch_rows, kernel="decode", variant="cudnn", batch=B, context=C))
        fla = ms(get(torch_rows, kernel="decode", variant="flash", batch=B, context=C))
        out.append(f"| {B} | {C} | {kv / 2**30:.2f} | {kv / c * 1e-6:.0f} | {kv / pm * 1e-6:.0f} | "
                   f"{100 * kv / pm * 1e-6 / spec:.1f} | {cud / pm:.2f} | {fla / pm:.2f} | {100 * (pm / c - 1):+.1f}% |")
    extra = [r for r in get(ours, kernel="decode", variant="paged") if r["block_tokens"] not in ("16",)]
    if extra:
        out += ["", "Block size: paged time / contiguous time - 1 at other block sizes.", "",
                "| batch | context | block_tokens | overhead |", "|---:|---:|---:|---:|"]
        for r in extra:
            c = ms(get(ours, kernel="decode", variant="contiguous", batch=r["batch"], context=r["context"]))
            out.append(f"| {r['batch']} | {r['context']} | {r['block_tokens']} | {100 * (fnum(r['median_ms']) / c - 1):+.1f}% |")
    parts = sorted({int(r["parts"]) for r in get(ours, kernel="merge")})
    out += ["", "Aggregation: merge time of P partials (fp32) as % of the paged decode step at the same batch "
            "(the owner merges after holders ran MA over the whole context).", "",
            "| batch | context | " + " | ".join(f"P={p}" for p in parts) + " |",
            "|---:|---:|" + "---:|" * len(parts)]
    for r in get(ours, kernel="decode", variant="paged", block_tokens=16):
        dm = fnum(r["median_ms"])
        cells = [f"{100 * ms(get(ours, kernel='merge', batch=r['batch'], parts=p)) / dm:.2f}%" for p in parts]
        out.append(f"| {r['batch']} | {r['context']} | " + " | ".join(cells) + " |")
    fused = get(ours, kernel="decode_fused")
    copy_gbps = fnum(copy_o[0]["gbps"]) if copy_o else float("nan")
    if fused:
        out += ["", "Remote partials merged inside the owner's paged MA decode (64/8 heads, 16-token blocks): "
                "added time = fused - decode alone (same run); 'x ceiling' = added / (partials' bytes at the "
                f"device copy rate of this run, {copy_gbps:.0f} GB/s); '% of decode' = added / decode alone; "
                "'separate' = decode + a merge launch over [local, remote..] (fp32) - decode alone.", "",
                "| batch | context | R | decode us | partials % of KV | f32 added us | x ceiling | % of decode | "
                "f16 added us | x ceiling | % of decode | separate added us |",
                "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
        for a in get(fused, variant="alone"):
            B, C = a["batch"], a["context"]
            base = fnum(a["median_ms"]) * 1e3
            kv = fnum(a["bytes"])
            for R in sorted({int(r["parts"]) for r in fused if r["parts"] != "0"}):
                cells = []
                for var in ("f32-remote", "f16-remote"):
                    r = get(fused, variant=var, batch=B, context=C, parts=R)
                    if not r:
                        cells += ["", "", ""]
                        continue
                    add_us = fnum(r[0]["median_ms"]) * 1e3 - base
                    ceil_us = fnum(r[0]["bytes"]) / (copy_gbps * 1e3)
                    cells += [f"{add_us:.2f}", f"{add_us / ceil_us:.2f}", f"{100 * add_us / base:.2f}%"]
                f32b = get(fused, variant="f32-remote", batch=B, context=C, parts=R)
                sep = get(fused, variant="separate-merge-f32", batch=B, context=C, parts=R)
                share = 100 * fnum(f32b[0]["bytes"]) / kv if f32b else float("nan")
                sep_us = fnum(sep[0]["median_ms"]) * 1e3 - base if sep else float("nan")
                out.append(f"| {B} | {C} | {R} | {base:.1f} | {share:.3f}% | " + " | ".join(cells) + f" | {sep_us:.2f} |")
    fl = get(ours, kernel="decode_flush")
    if fl:
        out += ["", "Flush method against the decode time it reports (paged, 64/8 heads): clean = overwrite then read "
                "a 2x-L2 buffer (the library's flush), dirty = overwrite only (earlier runs), none = no flush. GB/s "
                "(K+V once), % of the HBM spec.", "",
                "| batch | context | clean us | GB/s | % | dirty us | GB/s | % | none us | GB/s | % |",
                "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
        for r in get(fl, variant="clean"):
            cells = []
            for v in ("clean", "dirty", "none"):
                x = get(fl, variant=v, batch=r["batch"], context=r["context"])
                g_ = fnum(x[0]["gbps"]) if x else float("nan")
                cells += [f"{ms(x) * 1e3:.1f}", f"{g_:.0f}", f"{100 * g_ / spec:.1f}"]
            out.append(f"| {r['batch']} | {r['context']} | " + " | ".join(cells) + " |")
    big = get(ours, kernel="decode_splits_big")
    if big:
        out += ["", "MA decode against fixed split counts at 1-4 GiB shapes (paged, 16-token blocks, 64/8 heads): "
                "GB/s (K+V once) and % of the HBM spec; split 0 = the auto rule.", "",
                "| batch | context | splits | ms | GB/s | % of spec | % of copy ceiling |", "|---:|---:|---:|---:|---:|---:|---:|"]
        for r in big:
            g_ = fnum(r["gbps"])
            out.append(f"| {r['batch']} | {r['context']} | {r['splits']} | {fnum(r['median_ms']):.4f} | {g_:.0f} | "
                       f"{100 * g_ / spec:.1f} | {100 * g_ / copy_gbps:.1f} |")
    mixed = get(ours, kernel="mixed")
    if mixed:
        out += ["", "Mixed iteration (64/8 heads): paged decode of B requests x context plus one prefill chunk of c "
                "tokens after a prefix of L; sequential = two launches on one stream, concurrent = the chunk on a "
                "second stream (the best a single launch covering both could overlap). Times in us.", "",
                "| B | context | c | L | decode | chunk | sequential | concurrent | concurrent / sequential |",
                "|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
        for r in get(mixed, variant="sequential"):
            k = dict(batch=r["batch"], context=r["context"], m=r["m"], n=r["n"])
            d_, c_, q_ = (ms(get(mixed, variant=v, **k)) * 1e3 for v in ("decode-only", "chunk-only", "concurrent"))
            s_ = fnum(r["median_ms"]) * 1e3
            out.append(f"| {r['batch']} | {r['context']} | {r['m']} | {r['n']} | {d_:.1f} | {c_:.1f} | {s_:.1f} | "
                       f"{q_:.1f} | {q_ / s_:.3f} |")
    chunks = get(ours, kernel="prefill_chunk")
    if chunks:
        out += ["", "Chunked prefill (64/8 heads): a chunk of c tokens after a cached prefix of L; TFLOP/s counts "
                "4 h d (c L + c(c+1)/2).", "", "| chunk c | prefix L | ms | TFLOP/s |", "|---:|---:|---:|---:|"]
        for r in chunks:
            out.append(f"| {r['m']} | {r['context']} | {fnum(r['median_ms']):.3f} | {fnum(r['tflops']):.0f} |")
    out += ["", "Prefill, causal, bf16, batch 1: TFLOP/s (2 h d N(N+1) FLOPs); ratio = our TFLOP/s / torch's.", "",
            "| tokens | heads (q/kv) | our tile | ours TFLOP/s | torch flash | torch cuDNN | vs flash | vs cuDNN |",
            "|---:|---:|---|---:|---:|---:|---:|---:|"]
    for r in get(ours, kernel="prefill"):
        f_ = get(torch_rows, kernel="prefill", variant="flash", context=r["context"], q_heads=r["q_heads"])
        c_ = get(torch_rows, kernel="prefill", variant="cudnn", context=r["context"], q_heads=r["q_heads"])
        o, ft, ct = fnum(r["tflops"]), fnum(f_[0]["tflops"]) if f_ else float("nan"), fnum(c_[0]["tflops"]) if c_ else float("nan")
        out.append(f"| {r['context']} | {r['q_heads']}/{r['kv_heads']} | {r['variant']} | {o:.0f} | {ft:.0f} | {ct:.0f} | {o / ft:.2f} | {o / ct:.2f} |")
    nr = get(ours, kernel="norm_rope", variant="fused")
    if nr:
        out += ["", "Per-head RMSNorm + RoPE, bf16, 64 q + 8 k (+ 8 v) heads per token: time in us; GB/s counts "
                "q and k heads read and written once.", "",
                "| tokens | fused us | fused GB/s | unfused us | fused speed-up | RoPE alone us | torch eager us | vs torch |",
                "|---:|---:|---:|---:|---:|---:|---:|---:|"]
        for r in nr:
            T = r["batch"]
            f_ = fnum(r["median_ms"])
            u = ms(get(ours, kernel="norm_rope", variant="unfused", batch=T))
            ro = ms(get(ours, kernel="norm_rope", variant="rope", batch=T))
            te = ms(get(torch_rows, kernel="norm_rope", variant="eager", batch=T))
            out.append(f"| {T} | {1e3 * f_:.1f} | {fnum(r['gbps']):.0f} | {1e3 * u:.1f} | {u / f_:.2f} | {1e3 * ro:.1f} | "
                       f"{1e3 * te:.1f} | {te / f_:.1f} |")
    out += ["", "Layer GEMMs (bf16): our cuBLASLt wrapper vs cublasGemmEx called directly; overhead = ours / direct - 1.", "",
            "| model shard | GEMM | m | n | k | ours ms | direct ms | ours TFLOP/s | overhead |",
            "|---|---|---:|---:|---:|---:|---:|---:|---:|"]
    for r in ours:
        if r["kernel"] != "gemm" or not r["variant"].endswith(":ours"):
            continue
        base = r["variant"][: -len(":ours")]
        d = get(ours, kernel="gemm", variant=base + ":cublas", m=r["m"], n=r["n"], k=r["k"])
        model, kind = base.split(":")
        o, dd = fnum(r["median_ms"]), ms(d)
        out.append(f"| {model} | {kind} | {r['m']} | {r['n']} | {r['k']} | {o:.4f} | {dd:.4f} | {fnum(r['tflops']):.0f} | {100 * (o / dd - 1):+.1f}% |")
    with open(path, "w") as f:
        f.write("\n".join(out) + "\n")
    print("\n".join(out))


if __name__ == "__main__":
    main()
