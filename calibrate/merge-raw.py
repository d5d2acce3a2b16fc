#!/usr/bin/env python3
"""Merges raw calibration CSVs of the same GPU and model, run one after the
other, into one: each point (kernel, TP and aggregates) keeps the median of
its runs' medians, and the spread column becomes the runs' max - min.

Why: under a power cap the clock moves by up to a third within seconds,
and a whole layer is timed as the difference of two models' forwards
(docs/calibration.md), so one run's layer points can land at another
clock than the next run's; the median of a few runs is what a fit should see.

When a kernel's code changed between the runs, the older runs' points of
that kernel time other code: --only-from names the raw file (one of those
merged) whose points stand alone for a selection, so a refit is replayed from the files and this
command line rather than composed by hand.

usage: merge-raw.py [--only-from RAW.csv:SELECT]... OUT.csv RAW.csv...

  Points missing from a run keep the others'. Rows come in the first
  file's order, then each later file's new points.

  SELECT  KERNEL[,KERNEL...][;TERM]...   a point matches when its kernel is
          named and every TERM holds:
            FIELD=V or FIELD=LO-HI   a raw column (tokens, tp, heads, ...)
                                     or q_heads (heads / tp), inclusive
            fresh                    a whole prompt: pairs = tokens(tokens+1)/2
          e.g. --only-from new.csv:decode_attn,layer_decode
               --only-from new.csv:prefill_attn,layer_prefill;fresh;tokens=2049-4096;q_heads=32-999
  A point two selections match, or that its --only-from file lacks, is an
  error. Exit 2 on bad input, naming file, line and field; OUT is written
  to a temporary name and renamed.
"""
import csv
import os
import statistics
import sys

KEY = ("tp", "kernel", "tokens", "pairs", "requests", "context_tokens", "partials", "bytes", "local_fraction")


class BadInput(Exception):
    pass


def parse_select(arg):
    """'FILE:SELECT' -> (file, kernels, terms); terms are (field, lo, hi) or ('fresh',)."""
    path, sep, sel = arg.rpartition(":")
    if not sep or not path or not sel:
        raise BadInput(f"--only-from {arg}: want RAW.csv:KERNEL[,KERNEL...][;TERM]...")
    parts = sel.split(";")
    kernels = [k for k in parts[0].split(",") if k]
    if not kernels:
        raise BadInput(f"--only-from {arg}: no kernel named")
    terms = []
    for t in parts[1:]:
        if t == "fresh":
            terms.append(("fresh",))
            continue
        field, eq, rng = t.partition("=")
        lo, dash, hi = rng.partition("-")
        try:
            lo_v = float(lo)
            hi_v = float(hi) if dash else lo_v
        except ValueError:
            raise BadInput(f"--only-from {arg}: term '{t}': want FIELD=V, FIELD=LO-HI or fresh") from None
        if not eq or not field or lo_v > hi_v:
            raise BadInput(f"--only-from {arg}: term '{t}': want FIELD=V, FIELD=LO-HI or fresh")
        terms.append((field, lo_v, hi_v))
    return path, set(kernels), terms


def field_value(row, field, where):
    try:
        if field == "q_heads":
            return int(row["heads"]) // int(row["tp"])
        return float(row[field])
    except KeyError:
        raise BadInput(f"{where}: field '{field}': no such column") from None
    except ValueError:
        raise BadInput(f"{where}: field '{field}': not a number") from None


def matches(row, kernels, terms, where):
    if row["kernel"] not in kernels:
        return False
    for t in terms:
        if t[0] == "fresh":
            tok, pairs = field_value(row, "tokens", where), field_value(row, "pairs", where)
            if pairs != tok * (tok + 1) / 2:
                return False
        elif not t[1] <= field_value(row, t[0], where) <= t[2]:
            return False
    return True


def read_runs(paths):
    """Each file's rows in order, checked to share columns, GPU and model."""
    head, first, files = None, None, {}
    for path in paths:
        if path in files:
            continue
        try:
            f = open(path, newline="")
        except OSError as e:
            raise BadInput(f"{path}: {e.strerror}") from None
        with f:
            rd = csv.DictReader(f)
            if head is None:
                head = rd.fieldnames
            elif rd.fieldnames != head:
                raise BadInput(f"{path}:1: columns differ from {paths[0]}")
            rows = []
            for line, row in enumerate(rd, start=2):
                if first is None:
                    first = (row["gpu"], row["model"])
                if (row["gpu"], row["model"]) != first:
                    raise BadInput(f"{path}:{line}: gpu/model: another run's {first[0]} / {first[1]}")
                try:
                    float(row["median_ns"])
                except ValueError:
                    raise BadInput(f"{path}:{line}: median_ns: not a number") from None
                rows.append(row)
            files[path] = rows
    return head, files


def merge(out, srcs, selects):
    if len(set(srcs)) < 2:
        raise BadInput("merge-raw.py: name OUT.csv and at least two raw files")
    for path, _, _ in selects:
        if path not in srcs:
            raise BadInput(f"--only-from {path}: not one of the raw files named after OUT.csv")
    head, files = read_runs(srcs)
    order, runs, alone = [], {}, {}
    for path in srcs:
        for row in files[path]:
            k = tuple(row[c] for c in KEY)
            if k not in runs:
                order.append(k)
                runs[k] = (row, [])
            runs[k][1].append(float(row["median_ns"]))
    for path, kernels, terms in selects:
        have = {tuple(row[c] for c in KEY): row for row in files[path]}
        for k in order:
            row = runs[k][0]
            if not matches(row, kernels, terms, f"{path}: --only-from"):
                continue
            if k in alone and alone[k][0] != path:
                raise BadInput(f"{path}: --only-from: point {row['kernel']} tp {row['tp']} tokens {row['tokens']}"
                               f" pairs {row['pairs']} is also selected from {alone[k][0]}")
            if k not in have:
                raise BadInput(f"{path}: --only-from: lacks point {row['kernel']} tp {row['tp']}"
                               f" tokens {row['tokens']} pairs {row['pairs']}")
            alone[k] = (path, have[k])
    tmp = out + ".tmp"
    with open(tmp, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=head, lineterminator="\n")
        w.writeheader()
        for k in order:
            if k in alone:
                w.writerow(alone[k][1])
                continue
            row, ts = runs[k]
            row = dict(row)
            row["median_ns"] = f"{statistics.median(ts):.6g}"
            row["spread_ns"] = f"{max(ts) - min(ts):.6g}"
            w.writerow(row)
    os.replace(tmp, out)
    return len(alone)


def main(argv):
    if any(a in ("-h", "--help") for a in argv):
        print(__doc__.strip())
        return 0
    selects, pos, i = [], [], 0
    try:
        while i < len(argv):
            if argv[i] == "--only-from":
                if i + 1 == len(argv):
                    raise BadInput("--only-from: want RAW.csv:SELECT after it")
                selects.append(parse_select(argv[i + 1]))
                i += 2
            elif argv[i].startswith("--only-from="):
                selects.append(parse_select(argv[i].split("=", 1)[1]))
                i += 1
            elif argv[i].startswith("-"):
                raise BadInput(f"merge-raw.py: unknown option {argv[i]} (see --help)")
            else:
                pos.append(argv[i])
                i += 1
        if not pos:
            raise BadInput("merge-raw.py: name OUT.csv and at least two raw files")
        n = merge(pos[0], pos[1:], selects)
    except BadInput as e:
        print(e, file=sys.stderr)
        return 2
    if selects:
        print(f"merge-raw.py: {n} points taken from --only-from files alone", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
