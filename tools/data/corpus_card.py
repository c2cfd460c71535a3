#!/usr/bin/env python3
"""Write docs/training-corpus.md: what the deduplicated Python corpus of tools/data/packages.py holds.

Per package: Debian version, the licenses of its copyright file, files and
tokens kept (the bundled tokenizer's tokens), and duplicates removed; then the
packages the license check rejected, and why. Token counts come from the corpus
itself, so the page describes exactly the data tools/data/model_data.py
--corpus trains on.

    python3 tools/data/corpus_card.py [--corpus .train/corpus.jsonl.xz] [--manifest .train/packages.json]
Needs tokenizers.
"""

from __future__ import annotations

import argparse
import collections
import json
import lzma
import pathlib

from tokenizers import Tokenizer

ROOT = pathlib.Path(__file__).resolve().parents[2]
TOKENIZER = ROOT / "models" / "sc2-tiny" / "tokenizer.json"


def source_of(key: str) -> str:
    return "python3.11 (standard library)" if key.startswith("python3.11/") else key.split("/")[1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--corpus", type=pathlib.Path, default=ROOT / ".train" / "corpus.jsonl.xz")
    parser.add_argument("--manifest", type=pathlib.Path, default=ROOT / ".train" / "packages.json")
    parser.add_argument("--output", type=pathlib.Path, default=ROOT / "docs" / "training-corpus.md")
    args = parser.parse_args()
    tokenizer = Tokenizer.from_file(str(TOKENIZER))
    manifest = json.loads(args.manifest.read_text(encoding="utf-8"))

    tokens: dict[tuple[str, str], int] = collections.Counter()
    files: dict[tuple[str, str], int] = collections.Counter()
    chars: dict[tuple[str, str], int] = collections.Counter()
    batch: list[tuple[str, str, str]] = []

    def flush() -> None:
        for (key, split, text), encoding in zip(batch, tokenizer.encode_batch([t for _, _, t in batch],
                                                                               add_special_tokens=False)):
            group = (source_of(key), split)
            tokens[group] += len(encoding.ids) + 1  # and its <|endoftext|>
            files[group] += 1
            chars[group] += len(text)
        batch.clear()

    with lzma.open(args.corpus, "rt", encoding="utf-8") as f:
        for line in f:
            item = json.loads(line)
            batch.append((item["key"], item["split"], item["text"]))
            if len(batch) == 2048:
                flush()
    flush()

    def total(split: str, what: dict) -> int:
        return sum(v for (_, s), v in what.items() if s == split)

    dropped = manifest["stdlib_files_dropped_as_duplicates"]
    kept = [p for p in manifest["packages"] if p["kept"]]
    rejected = [p for p in manifest["packages"] if not p["kept"]]
    lines = [
        "# The Python training corpus",
        "",
        "What `tools/data/packages.py` collects for training the bundled model, and what",
        "`tools/data/model_data.py --corpus .train/corpus.jsonl.xz` trains on: the CPython",
        "3.11 standard library (`tools/data/corpus.py`) and the Python code of Debian 12's",
        "`python3-*` packages whose machine-readable copyright files carry only permissive",
        "licenses. Written by `tools/data/corpus_card.py`; tokens are the bundled tokenizer's",
        "(`models/sc2-tiny/tokenizer.json`), each file ending with `<|endoftext|>`.",
        "",
        "## Rules",
        "",
        "- **License**: a package is kept only if every `Files:` paragraph of its DEP-5",
        "  copyright file outside `debian/*` names a permissive license (MIT/Expat, BSD,",
        "  Apache, PSF/Python, ISC, zlib, HPND, ZPL, public domain, CC0, Unlicense and the",
        "  like); one copyleft or unrecognized license anywhere, or a copyright file that is",
        "  not machine-readable, rejects the whole package (strict: some rejected packages",
        "  are permissive in fact, e.g. numpy, whose copyright file is not DEP-5).",
        "- **Files**: the `.py` files a package installs under `/usr/lib/python3/dist-packages`;",
        "  dropped when not UTF-8, larger than 256 kB, with a line over 1,000 characters, a mean",
        "  line over 100, or under 25% alphanumeric characters.",
        "- **Deduplication**, over the standard library and the packages together: exact copies,",
        "  then near copies (MinHash of 5-word shingles, 128 hashes in 32 bands, estimated",
        "  Jaccard similarity >= 0.7); the standard library's held-out files come first and are",
        "  always kept, so a copy of one anywhere else goes and the held-out split stays unseen.",
        f"  {len(dropped)} standard-library training files left as copies of others",
        f"  ({sum(k.startswith('python3.11/encodings/') for k in dropped)} of them `encodings` character maps).",
        "- **Split**: package file `debian/<package>/<path>` is held out iff",
        "  `sha256(key) mod 100 < 5`, like the standard library's rule; the model card's held-out",
        "  loss stays the standard library's held-out split, which every bundled model is",
        "  compared on.",
        "",
        "## Totals",
        "",
        "| split | files | characters | tokens |",
        "|---|---:|---:|---:|",
    ]
    for split in ("train", "held_out"):
        lines.append(f"| {split} | {total(split, files):,} | {total(split, chars):,} | {total(split, tokens):,} |")
    lines += [
        "",
        f"{len(kept)} packages kept of {len(manifest['packages'])} tried.",
        "",
        "## Sources kept",
        "",
        "| source | version | license(s) | files | tokens (train) | tokens (held out) | duplicates removed |",
        "|---|---|---|---:|---:|---:|---:|",
    ]
    std = "python3.11 (standard library)"
    lines.append(f"| {std} | Debian 12 python3.11 | PSF-2.0 | {files[(std, 'train')] + files[(std, 'held_out')]:,} | "
                 f"{tokens[(std, 'train')]:,} | {tokens[(std, 'held_out')]:,} | "
                 f"{len(manifest['stdlib_files_dropped_as_duplicates'])} |")
    for p in sorted(kept, key=lambda p: -tokens[(p["package"], "train")]):
        name = p["package"]
        n = files[(name, "train")] + files[(name, "held_out")]
        if n == 0:
            continue
        lines.append(f"| {name} | {p['version']} | {', '.join(p['licenses'])} | {n:,} | {tokens[(name, 'train')]:,} | "
                     f"{tokens[(name, 'held_out')]:,} | {p.get('duplicates', 0):,} |")
    lines += ["", "## Packages rejected", "", "| package | why |", "|---|---|"]
    for p in sorted(rejected, key=lambda p: p["package"]):
        lines.append(f"| {p['package']} | {p['why']} |")
    args.output.write_text("\n".join(lines) + "\n", encoding="utf-8")
    print(f"wrote {args.output}: train {total('train', tokens):,} tokens, held out {total('held_out', tokens):,}")


if __name__ == "__main__":
    main()
