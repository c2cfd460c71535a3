#!/usr/bin/env python3
"""Token data for sc2's bundled model, models/sc2-tiny.

The text is the Python part of tools/data/corpus.py: the CPython 3.11 standard
library (Python Software Foundation License), split by corpus.py's held-out rule,
so the held-out files were seen by neither the tokenizer nor the model. With
--corpus, the text comes from tools/data/packages.py's deduplicated corpus
instead: the standard library (less its training files that copy others) and
the training split of permissively licensed Debian packages; the held-out
stream stays the standard library's held-out files, the split every bundled
model is compared on.

Training data, StarCoder2 style:
  * every file ends with <|endoftext|>; the files of an epoch, shuffled, are
    packed and cut into blocks of the training context (512 tokens);
  * fill-in-the-middle at the context level, as StarCoder2's Megatron-LM
    pipeline does it: a block is split at its <|endoftext|> tokens and each
    fragment, with probability FIM_RATE, is detokenized, cut at two uniformly
    random character positions into prefix / middle / suffix and written as
    <fim_prefix>{prefix}<fim_suffix>{suffix}<fim_middle>{middle}
    (prefix-suffix-middle order) and ended by <|endoftext|>, the three parts
    tokenized separately as an inference prompt is; the suffix loses as many
    tokens from its end as the transformation added (or, rarely, gets
    <fim_pad> tokens), so that the block keeps its length, and a fragment
    whose suffix is too short for that stays plain (Megatron-LM's rules).
    Transforming context-sized
    fragments rather than whole files keeps prefix, suffix and middle inside
    one training context, so the model can learn to join them. Each epoch draws
    a new file order and new cuts.
The held-out stream is the held-out files, plain (no FIM), each ending with
<|endoftext|>, in corpus order.

    python3 tools/data/model_data.py [--epochs 8] [--seed 1234] [--output .train/data.npz]
    python3 tools/data/model_data.py --corpus .train/corpus/*.jsonl.xz --epochs 3 --workers 16

writes one .npz of uint16 arrays: train_0 ... train_{epochs-1}, held_out, and
held_out_files (the start offset of each held-out file in held_out).
"""

from __future__ import annotations

import argparse
import json
import lzma
import multiprocessing
import pathlib
import random
import sys
from typing import Optional

import numpy as np

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1] / "data"))
from corpus import corpus_files, file_key, read_text  # noqa: E402

ROOT = pathlib.Path(__file__).resolve().parents[2]
TOKENIZER = ROOT / "models" / "sc2-tiny" / "tokenizer.json"
FIM_RATE = 0.5


def python_files(split: str) -> list[pathlib.Path]:
    """The split's standard-library .py files that are valid UTF-8, in corpus order."""
    return [p for p in corpus_files(split) if p.suffix == ".py" and read_text(p) is not None]


def load_tokenizer():
    from tokenizers import Tokenizer
    return Tokenizer.from_file(str(TOKENIZER))


class Specials:
    def __init__(self, tokenizer) -> None:
        def get(name: str) -> int:
            found = tokenizer.token_to_id(name)
            if found is None:
                raise SystemExit(f"{TOKENIZER} has no {name}")
            return found
        self.eos = get("<|endoftext|>")
        self.fim_prefix = get("<fim_prefix>")
        self.fim_middle = get("<fim_middle>")
        self.fim_suffix = get("<fim_suffix>")
        self.fim_pad = get("<fim_pad>")
        self.file_sep = get("<file_sep>")


def fim_cut(text: str, rng: random.Random) -> tuple[str, str, str]:
    """Prefix, middle, suffix at two uniform character positions (either may be empty)."""
    a, b = sorted(rng.randint(0, len(text)) for _ in range(2))
    return text[:a], text[a:b], text[b:]


def epoch_stream(tokenizer, specials: Specials, encoded_files: list[np.ndarray], context: int,
                 rng: random.Random) -> np.ndarray:
    """One epoch: shuffled files packed into blocks of `context` tokens, FIM at the context level."""
    order = list(range(len(encoded_files)))
    rng.shuffle(order)
    eos = np.asarray([specials.eos], dtype=np.int64)
    plain = np.concatenate([part for i in order for part in (encoded_files[i], eos)])
    n_blocks = plain.size // context
    blocks = plain[:n_blocks * context].reshape(n_blocks, context)

    # Split every block at its <|endoftext|> tokens and pick the fragments to transform.
    layouts, chosen = [], []
    for block in blocks:
        layout, start = [], 0
        for end in [*np.flatnonzero(block == specials.eos).tolist(), None]:
            stop = context if end is None else end
            if stop > start:
                fragment = block[start:stop].tolist()
                if rng.random() < FIM_RATE:
                    layout.append(("fim", len(chosen)))
                    chosen.append(fragment)
                else:
                    layout.append(("plain", fragment))
            if end is not None:
                layout.append(("plain", [specials.eos]))
                start = end + 1
        layouts.append(layout)
    texts = tokenizer.decode_batch(chosen, skip_special_tokens=False)
    pieces, cuts = [], []
    for text in texts:
        if "\ufffd" in text:  # a character split by the block boundary: keep the fragment plain
            cuts.append(None)
            continue
        cuts.append(len(pieces))
        pieces.extend(fim_cut(text, rng))
    encoded = [e.ids for e in tokenizer.encode_batch(pieces, add_special_tokens=False)]

    out = np.empty(len(blocks) * context, dtype=np.uint16)
    for b, layout in enumerate(layouts):
        ids: list[int] = []
        for n, (kind, item) in enumerate(layout):
            if kind == "plain":
                ids += item
            elif cuts[item] is None:
                ids += chosen[item]
            else:
                prefix, middle, suffix = encoded[cuts[item]:cuts[item] + 3]
                # A middle is complete: it ends with <|endoftext|> also where the file goes on in the
                # next block. The special tokens lengthen the fragment: shorten its suffix to keep the
                # block's length, as Megatron-LM's FIM does.
                end = [specials.eos] if n + 1 == len(layout) else []
                excess = 3 + len(prefix) + len(middle) + len(suffix) + len(end) - len(chosen[item])
                if excess >= len(suffix) and excess > 0:  # no room: keep the fragment plain
                    ids += chosen[item]
                    continue
                suffix = suffix[:len(suffix) - excess] if excess > 0 else suffix + [specials.fim_pad] * -excess
                ids += [specials.fim_prefix, *prefix, specials.fim_suffix, *suffix, specials.fim_middle, *middle, *end]
        assert len(ids) == context
        out[b * context:(b + 1) * context] = ids
    return out


def held_out_stream(tokenizer, specials: Specials, texts: Optional[list[str]] = None) -> tuple[np.ndarray, np.ndarray]:
    """The held-out files (default: the standard library's, read from disk), each ending with <|endoftext|>,
    and where each starts."""
    if texts is None:
        texts = [read_text(p) for p in python_files("held_out")]
    encoded = [e.ids for e in tokenizer.encode_batch(texts, add_special_tokens=False)]
    starts, out = [], []
    for ids in encoded:
        starts.append(len(out))
        out += ids + [specials.eos]
    return np.asarray(out, dtype=np.uint16), np.asarray(starts, dtype=np.int64)


def corpus_texts(paths: list[pathlib.Path]) -> tuple[list[str], list[str], list[str], list[str]]:
    """From shards of tools/data/packages.py's corpus: keys and texts of the training files, then keys and
    texts of the standard library's held-out files (in corpus order, which is corpus.py's)."""
    train_keys, train_texts, held_keys, held_texts = [], [], [], []
    for path in sorted(paths):
        with lzma.open(path, "rt", encoding="utf-8") as f:
            for line in f:
                item = json.loads(line)
                if item["split"] == "train":
                    train_keys.append(item["key"])
                    train_texts.append(item["text"])
                elif item["key"].startswith("python3.11/"):
                    held_keys.append(item["key"])
                    held_texts.append(item["text"])
    if len(held_keys) != len(set(held_keys)) or not held_keys:
        raise SystemExit("the corpus shards must hold the standard library's held-out files once")
    return train_keys, train_texts, held_keys, held_texts


# Shared with the worker processes of --workers (forked, so nothing is pickled).
_WORK: dict = {}


def _epoch(epoch: int) -> np.ndarray:
    w = _WORK
    return epoch_stream(w["tokenizer"], w["specials"], w["encoded"], w["context"],
                        random.Random(w["seed"] * 1000 + epoch))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--epochs", type=int, default=8)
    parser.add_argument("--seed", type=int, default=1234)
    parser.add_argument("--context", type=int, default=512, help="the trainer's block size")
    parser.add_argument("--corpus", type=pathlib.Path, nargs="+", help="shards of tools/data/packages.py's corpus")
    parser.add_argument("--workers", type=int, default=1, help="processes making epochs in parallel")
    parser.add_argument("--output", type=pathlib.Path, default=ROOT / ".train" / "data.npz")
    args = parser.parse_args()

    tokenizer = load_tokenizer()
    if tokenizer.get_vocab_size() > 65536:
        raise SystemExit("ids do not fit uint16")
    specials = Specials(tokenizer)
    if args.corpus:
        keys, texts, held_keys, held_texts = corpus_texts(args.corpus)
    else:
        train_files = python_files("train")
        keys = [file_key(p) for p in train_files]
        texts = [read_text(p) for p in train_files]
        held_keys = [file_key(p) for p in python_files("held_out")]
        held_texts = [read_text(p) for p in python_files("held_out")]
    encoded = [np.asarray(e.ids, dtype=np.int64) for e in tokenizer.encode_batch(texts, add_special_tokens=False)]
    _WORK.update(tokenizer=tokenizer, specials=specials, encoded=encoded, context=args.context, seed=args.seed)
    if args.workers > 1:
        with multiprocessing.get_context("fork").Pool(min(args.workers, args.epochs)) as pool:
            streams = pool.map(_epoch, range(args.epochs))
    else:
        streams = [_epoch(e) for e in range(args.epochs)]
    arrays = {f"train_{e}": stream for e, stream in enumerate(streams)}
    arrays["held_out"], arrays["held_out_files"] = held_out_stream(tokenizer, specials, held_texts)
    meta = {
        "tokenizer": str(TOKENIZER.relative_to(ROOT)), "fim_rate": FIM_RATE, "context": args.context, "seed": args.seed,
        "epochs": args.epochs, "train_files": len(keys),
        "corpus": [p.name for p in args.corpus] if args.corpus else None,
        "held_out_keys": held_keys,
        "train_tokens_per_epoch": [int(arrays[f"train_{e}"].size) for e in range(args.epochs)],
        "held_out_tokens": int(arrays["held_out"].size),
    }
    arrays["meta"] = np.frombuffer(json.dumps(meta).encode(), dtype=np.uint8)
    args.output.parent.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(args.output, **arrays)
    print(f"wrote {args.output}: {len(keys)} train files, "
          f"{meta['train_tokens_per_epoch'][0]} tokens per epoch, {meta['held_out_tokens']} held-out tokens "
          f"({len(meta['held_out_keys'])} files), {args.output.stat().st_size / 1e6:.1f} MB")


if __name__ == "__main__":
    main()
