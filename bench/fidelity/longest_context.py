#!/usr/bin/env python3
"""Adds decode_max_context_tokens to a cluster run's iterations.csv written
before that column existed, from the run's own requests.csv.

A request decodes in every iteration with decode rows that starts after its
first token and ends by its finish; its k-th decode step (from 0) attends
prompt + 1 + k tokens (the scheduler's count: the new token's KV is
appended first; a row of `steps` identical steps counts from its first).
The longest of those per row is the column. The reconstruction checks
itself: each row's count and sum must equal its decode_requests and
decode_context_tokens, else it stops (exit 1).

  longest_context.py RUN_DIR [OUT.csv]   (default: rewrites RUN_DIR/iterations.csv; a file that
                                          has the column is left as it is)
  longest_context.py --check RUN_DIR     (the column the run wrote against the reconstruction)
"""
import bisect
import csv
import os
import sys


def main():
    args = sys.argv[1:]
    check = bool(args) and args[0] == "--check"
    if check:
        args = args[1:]
    d = args[0]
    out = args[1] if len(args) > 1 else f"{d}/iterations.csv"
    with open(f"{d}/iterations.csv") as f:
        its = list(csv.DictReader(f))
    has = bool(its) and "decode_max_context_tokens" in its[0]
    if has and not check:
        return 0
    with open(f"{d}/requests.csv") as f:
        reqs = list(csv.DictReader(f))
    starts = [float(r["start_s"]) for r in its]
    members = [[] for _ in its]
    for q in reqs:
        if q["status"] != "completed" or not q["first_token_s"]:
            continue
        first, fin, prompt = float(q["first_token_s"]), float(q["finish_s"]), int(q["prompt_tokens"])
        i, k = bisect.bisect_left(starts, first - 1e-7), 0
        while i < len(its) and float(its[i]["end_s"]) <= fin + 1e-7:
            if int(its[i]["decode_requests"]) > 0:
                members[i].append(prompt + 1 + k)
                k += int(its[i]["steps"])
            i += 1
    for line, (r, m) in enumerate(zip(its, members), start=2):
        if int(r["decode_requests"]) != len(m) or int(r["decode_context_tokens"]) != sum(m):
            print(f"{d}/iterations.csv:{line}: decode rows not reconstructed from requests.csv "
                  f"({len(m)} requests, {sum(m)} tokens)", file=sys.stderr)
            return 1
    if check:
        for line, (r, m) in enumerate(zip(its, members), start=2):
            if not has or int(r["decode_max_context_tokens"]) != (max(m) if m else 0):
                got = r.get("decode_max_context_tokens")
                print(f"{d}/iterations.csv:{line}: decode_max_context_tokens {got}, reconstructed "
                      f"{max(m) if m else 0}", file=sys.stderr)
                return 1
        print(f"{d}/iterations.csv: decode_max_context_tokens equals the reconstruction on {len(its)} rows")
        return 0
    tmp = out + ".tmp"
    with open(tmp, "w", newline="") as f:
        w = csv.writer(f, lineterminator="\n")
        w.writerow(list(its[0].keys()) + ["decode_max_context_tokens"])
        for r, m in zip(its, members):
            w.writerow(list(r.values()) + [max(m) if m else 0])
    os.replace(tmp, out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
