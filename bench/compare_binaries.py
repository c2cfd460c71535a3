#!/usr/bin/env python3
"""Two builds of sc2-bench on the same checkpoint, alternated, in one table.

    python3 bench/compare_binaries.py OLD/sc2-bench NEW/sc2-bench --model /tmp/sc2-3b-bf16 \\
        [--runs 2] [--threads 2] [--prompt-tokens 512] [--decode-tokens 64] [--isa avx2] [--batch 1 8]

Runs OLD, NEW, OLD, NEW, ... (--runs pairs) with the same arguments, so that a
machine whose bandwidth drifts over minutes treats both alike, and prints each
run's prefill and decode tokens/s, the best of each binary, and NEW / OLD.
Extra `--batch` sizes are passed to NEW only (OLD may predate the option); its
batch table is printed after. Needs nothing but Python's standard library.
"""

import argparse
import json
import subprocess
import sys


def run(binary, args, batches=None):
    cmd = [binary, "--model", args.model, "--threads", str(args.threads), "--prompt-tokens", str(args.prompt_tokens),
           "--decode-tokens", str(args.decode_tokens), "--json"]
    if args.isa:
        cmd += ["--isa", args.isa]
    if batches:
        cmd += ["--batch", *map(str, batches)]
    out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
    return json.loads(out)


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("old")
    p.add_argument("new")
    p.add_argument("--model", required=True)
    p.add_argument("--runs", type=int, default=2)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--prompt-tokens", type=int, default=512)
    p.add_argument("--decode-tokens", type=int, default=64)
    p.add_argument("--isa", default="")
    p.add_argument("--batch", type=int, nargs="*", default=[])
    args = p.parse_args()

    rows = []
    best = {"old": [0.0, 0.0], "new": [0.0, 0.0]}
    for i in range(args.runs):
        for name, binary in (("old", args.old), ("new", args.new)):
            r = run(binary, args)
            pre, dec = r["prefill_tokens_per_s"], r["decode_tokens_per_s"]
            rows.append((i + 1, name, r["isa"], pre, dec, r.get("load_s", 0.0), r["peak_rss_bytes"] / 1e9))
            best[name] = [max(best[name][0], pre), max(best[name][1], dec)]
    print("| run | binary | path | prefill tokens/s | decode tokens/s | load s | peak RSS GB |")
    print("|---|---|---|---|---|---|---|")
    for n, name, isa, pre, dec, load, rss in rows:
        print(f"| {n} | {name} | {isa} | {pre:.2f} | {dec:.2f} | {load:.2f} | {rss:.2f} |")
    print()
    print("| | prefill tokens/s | decode tokens/s |")
    print("|---|---|---|")
    print(f"| best old | {best['old'][0]:.2f} | {best['old'][1]:.2f} |")
    print(f"| best new | {best['new'][0]:.2f} | {best['new'][1]:.2f} |")
    print(f"| new / old | {best['new'][0] / best['old'][0]:.3f} | {best['new'][1] / best['old'][1]:.3f} |")
    if args.batch:
        r = run(args.new, args, args.batch)
        print()
        print("| sequences | prefill tokens/s (all) | decode tokens/s (all) | decode / first |")
        print("|---|---|---|---|")
        for b in r["batches"]:
            print(f"| {b['sequences']} | {b['prefill_tokens_per_s']:.2f} | {b['decode_tokens_per_s']:.2f} | "
                  f"{b['decode_vs_first']:.2f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
