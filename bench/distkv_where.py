"""Table of bench/distkv_where: per function, ms a run (perf samples x
period / runs), instructions a run (callgrind) and ns an instruction, for
vllm-multi and infinite-llm, sorted by infinite-llm's ms over vllm-multi's.
   distkv_where.py DIR RUNS PERIOD_NS TOP"""
import re
import sys


def samples(path):
    """{function: samples}; the kernel's as one entry."""
    out = {}
    for line in open(path):
        m = re.match(r"\s*(\d+)\s+\[([.k])\]\s+(\S+)", line)
        if m:
            name = "[kernel]" if m.group(2) == "k" else m.group(3)
            out[name] = out.get(name, 0) + int(m.group(1))
    return out


def instructions(path):
    """{function: instructions}, as callgrind_annotate names them."""
    out = {}
    for line in open(path):
        m = re.match(r"\s*([\d,]+) \([^)]*\)\s+\S*?:(\S+) \[", line)
        if m:
            out[m.group(2)] = out.get(m.group(2), 0) + int(m.group(1).replace(",", ""))
    return out


def main():
    if len(sys.argv) != 5:
        sys.exit(__doc__)
    d, runs, period_ns, top = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
    ms, ir = {}, {}
    for p in ("vllm-multi", "infinite-llm"):
        ms[p] = {k: v * period_ns / 1e6 / runs for k, v in samples(f"{d}/samples.{p}").items()}
        ir[p] = instructions(f"{d}/ir.{p}")
    names = set(ms["infinite-llm"]) | set(ms["vllm-multi"])
    rows = sorted(names, key=lambda n: ms["infinite-llm"].get(n, 0) - ms["vllm-multi"].get(n, 0), reverse=True)
    print(f"{'function':40} {'ms':>7} {'Minstr':>8} {'ns/i':>6}   {'ms':>7} {'Minstr':>8} {'ns/i':>6}   {'+ms':>6}")
    print(f"{'':40} {'vllm-multi':>23}   {'infinite-llm':>23}")
    for name in rows[:top]:
        cells = []
        for p in ("vllm-multi", "infinite-llm"):
            t, n = ms[p].get(name, 0.0), ir[p].get(name, 0)
            per = f"{t * 1e6 / n:6.3f}" if n > 0 and t > 0 else f"{'-':>6}"
            cells.append(f"{t:7.2f} {n / 1e6:8.1f} {per}")
        extra = ms["infinite-llm"].get(name, 0) - ms["vllm-multi"].get(name, 0)
        print(f"{name[:40]:40} {cells[0]}   {cells[1]}   {extra:6.2f}")
    for p in ("vllm-multi", "infinite-llm"):
        t, n = sum(ms[p].values()), sum(ir[p].values())
        print(f"{p}: {t:.1f} ms a run sampled, {n / 1e6:.1f}M instructions, {t * 1e6 / n:.3f} ns an instruction")


main()
