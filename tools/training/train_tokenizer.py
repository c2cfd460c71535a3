#!/usr/bin/env python3
"""Train sc2's demo tokenizer, models/sc2-tiny/tokenizer.json, with the real
Hugging Face `tokenizers` library and the StarCoder2 pipeline:

  * model: byte-level BPE, 8192 ids in all (special tokens included);
  * no normalizer;
  * pre-tokenizer Sequence[Digits(individual_digits=True),
    ByteLevel(add_prefix_space=False, use_regex=True)];
  * post-processor ByteLevel(trim_offsets=False), decoder ByteLevel;
  * StarCoder2's 38 special tokens, in StarCoder2's order, ids 0..37;
  * merges written in the legacy "a b" string form, as StarCoder2's own
    tokenizer.json has them (tokenizers itself now writes ["a", "b"] pairs).

The text is the train split of tools/data/corpus.py (the CPython standard library
and the libc / Linux API headers); its held-out split is never trained on. The
training is deterministic for a given corpus.

    pip install tokenizers==0.23.3
    python3 tools/training/train_tokenizer.py [--vocab-size 8192] [--output models/sc2-tiny/tokenizer.json]
"""

from __future__ import annotations

import argparse
import json
import pathlib
import sys

from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1] / "data"))
from corpus import corpus_texts  # noqa: E402

ROOT = pathlib.Path(__file__).resolve().parents[2]

# StarCoder2's special tokens in id order (bigcode/starcoder2-* tokenizer.json,
# special_tokens_map.json): "<|endoftext|>" is 0, bos = eos.
STARCODER2_SPECIAL_TOKENS = [
    "<|endoftext|>", "<fim_prefix>", "<fim_middle>", "<fim_suffix>", "<fim_pad>", "<repo_name>", "<file_sep>",
    "<issue_start>", "<issue_comment>", "<issue_closed>", "<jupyter_start>", "<jupyter_text>", "<jupyter_code>",
    "<jupyter_output>", "<jupyter_script>", "<empty_output>", "<code_to_intermediate>", "<intermediate_to_code>",
    "<pr>", "<pr_status>", "<pr_is_merged>", "<pr_base>", "<pr_file>", "<pr_base_code>", "<pr_diff>",
    "<pr_diff_hunk>", "<pr_comment>", "<pr_event_id>", "<pr_review>", "<pr_review_state>", "<pr_review_comment>",
    "<pr_in_reply_to_review_id>", "<pr_in_reply_to_comment_id>", "<pr_diff_hunk_comment_line>", "<NAME>",
    "<EMAIL>", "<KEY>", "<PASSWORD>",
]


def starcoder2_pipeline() -> Tokenizer:
    tokenizer = Tokenizer(models.BPE())
    tokenizer.normalizer = None
    tokenizer.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Digits(individual_digits=True),
        pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True),
    ])
    tokenizer.post_processor = processors.ByteLevel(trim_offsets=False)
    tokenizer.decoder = decoders.ByteLevel()
    return tokenizer


def with_string_merges(tokenizer_json: str) -> str:
    """Rewrite the merges from [["a", "b"], ...] to ["a b", ...] (the older form)."""
    data = json.loads(tokenizer_json)
    merges = data["model"]["merges"]
    for a, b in merges:
        if " " in a or " " in b:
            raise ValueError(f"merge ({a!r}, {b!r}) has a space: it cannot be written as a string")
    data["model"]["merges"] = [f"{a} {b}" for a, b in merges]
    return json.dumps(data, ensure_ascii=False, indent=2) + "\n"


def train(vocab_size: int) -> Tokenizer:
    tokenizer = starcoder2_pipeline()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        min_frequency=2,
        special_tokens=STARCODER2_SPECIAL_TOKENS,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tokenizer.train_from_iterator(corpus_texts("train"), trainer=trainer)
    return tokenizer


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--vocab-size", type=int, default=8192)
    parser.add_argument("--output", type=pathlib.Path, default=ROOT / "models" / "sc2-tiny" / "tokenizer.json")
    args = parser.parse_args()

    trained = train(args.vocab_size)
    text = with_string_merges(trained.to_str())
    reloaded = Tokenizer.from_str(text)

    # The rewritten file must be the same tokenizer.
    for i, sample in enumerate(corpus_texts("held_out")):
        if i == 20:
            break
        if reloaded.encode(sample).ids != trained.encode(sample).ids:
            sys.exit("the string-merges file encodes differently from the trained tokenizer")
    if reloaded.get_vocab_size() != args.vocab_size:
        sys.exit(f"expected {args.vocab_size} ids, trained {reloaded.get_vocab_size()}")
    for expected_id, token in enumerate(STARCODER2_SPECIAL_TOKENS):
        if reloaded.token_to_id(token) != expected_id:
            sys.exit(f"{token} has id {reloaded.token_to_id(token)}, expected {expected_id}")

    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(text, encoding="utf-8")
    print(f"wrote {args.output}: {reloaded.get_vocab_size()} ids, {len(text.encode()) / 1e3:.0f} kB")


if __name__ == "__main__":
    main()
