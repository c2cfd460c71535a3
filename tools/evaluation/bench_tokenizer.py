#!/usr/bin/env python3
"""Encode throughput, one thread: Hugging Face `tokenizers` against sc2-tokenizer-bench,
on the same >= 1 MB file in the same run, with a check that both give the same ids.

The corpus is the held-out split of tools/data/corpus.py (CPython stdlib and C
headers that the tokenizer was not trained on), files concatenated in key order
and repeated until it reaches --megabytes.

`tokenizers` runs single-threaded (RAYON_NUM_THREADS=1, TOKENIZERS_PARALLELISM=false)
with one `encode` call on the whole text per repetition, as sc2 does. Its BPE
cache persists between calls (a thread-local cache) while sc2's lives for one
call, so later repetitions favour `tokenizers`; the first-call time of both is
printed as well.

    cmake --build build --target sc2-tokenizer-bench
    python3 tools/evaluation/bench_tokenizer.py --bench build/bench/sc2-tokenizer-bench
"""

from __future__ import annotations

import argparse
import json
import os
import pathlib
import statistics
import subprocess
import sys
import tempfile
import time

os.environ["RAYON_NUM_THREADS"] = "1"
os.environ["TOKENIZERS_PARALLELISM"] = "false"

from tokenizers import Tokenizer  # noqa: E402  (after the environment is set)

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1] / "data"))
from corpus import corpus_texts  # noqa: E402

ROOT = pathlib.Path(__file__).resolve().parents[2]


def build_corpus(megabytes: float) -> str:
    texts = list(corpus_texts("held_out"))
    out, size = [], 0
    while size < megabytes * 1e6:
        for text in texts:
            out.append(text)
            size += len(text.encode("utf-8"))
            if size >= megabytes * 1e6:
                break
    return "".join(out)


def fnv1a(ids: list[int]) -> str:
    h = 0xCBF29CE484222325
    for i in ids:
        for k in range(4):
            h ^= (i >> (8 * k)) & 0xFF
            h = (h * 0x100000001B3) & 0xFFFFFFFFFFFFFFFF
    return f"{h:016x}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--bench", type=pathlib.Path, default=ROOT / "build" / "bench" / "sc2-tokenizer-bench")
    parser.add_argument("--tokenizer", type=pathlib.Path, default=ROOT / "models" / "sc2-tiny" / "tokenizer.json")
    parser.add_argument("--megabytes", type=float, default=2.0)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--text", type=pathlib.Path, help="use this file instead of building the corpus")
    args = parser.parse_args()

    if args.text:
        path = args.text
        text = path.read_text(encoding="utf-8")
    else:
        text = build_corpus(args.megabytes)
        handle = tempfile.NamedTemporaryFile("w", encoding="utf-8", suffix=".txt", delete=False)
        handle.write(text)
        handle.close()
        path = pathlib.Path(handle.name)
    size = len(text.encode("utf-8"))
    print(f"corpus: {path} ({size / 1e6:.2f} MB)")

    tokenizer = Tokenizer.from_file(str(args.tokenizer))
    times, ids = [], []
    for _ in range(args.repeat):
        start = time.perf_counter()
        ids = tokenizer.encode(text).ids
        times.append(time.perf_counter() - start)
    hf_checksum = fnv1a(ids)
    hf = {"ids": len(ids), "checksum": hf_checksum, "first_s": times[0], "median_s": statistics.median(times)}

    run = subprocess.run([str(args.bench), "--tokenizer", str(args.tokenizer), "--text", str(path),
                          "--repeat", str(args.repeat), "--json"], check=True, capture_output=True, text=True)
    sc2 = json.loads(run.stdout)
    first = subprocess.run([str(args.bench), "--tokenizer", str(args.tokenizer), "--text", str(path),
                            "--repeat", "1", "--json"], check=True, capture_output=True, text=True)
    sc2["first_s"] = json.loads(first.stdout)["median_s"]

    mb = size / 1e6
    print(f"tokenizers {__import__('tokenizers').__version__} (1 thread): {hf['ids']} ids, "
          f"median {mb / hf['median_s']:.1f} MB/s, first call {mb / hf['first_s']:.1f} MB/s")
    print(f"sc2::Tokenizer (1 thread):        {sc2['ids']} ids, "
          f"median {mb / sc2['median_s']:.1f} MB/s, first call {mb / sc2['first_s']:.1f} MB/s")
    same = hf["checksum"] == sc2["checksum"] and hf["ids"] == sc2["ids"]
    print("same ids: " + ("yes" if same else f"NO (checksums {hf['checksum']} vs {sc2['checksum']})"))
    print(f"speed-up (median): {hf['median_s'] / sc2['median_s']:.2f}x")
    if not args.text:
        path.unlink()
    if not same:
        sys.exit(1)


if __name__ == "__main__":
    main()
