#!/usr/bin/env python3
"""Evaluate sc2's bundled model (models/sc2-tiny) with PyTorch and write the
fixtures of tests/models/bundled_model_test.cpp.

Everything runs on the CPU in float32 (the bf16 weights widened), as sc2 does:
  * held-out loss: mean next-token cross-entropy over the held-out split of
    tools/data/corpus.py (the .py files, packed as tools/data/model_data.py packs them,
    cut into blocks of 512 tokens, each block scored on its own);
  * tests/fixtures/bundled/heldout.json: 16 of those blocks, evenly spaced, and
    their mean loss, which sc2 must reproduce within 1e-3 relative;
  * tests/fixtures/bundled/greedy.json: greedy continuations by
    transformers' `generate` of three Python prompts and of one
    fill-in-the-middle prompt (48 new tokens at most, stopping at the model's
    eos ids <|endoftext|> and <file_sep>), with prompt ids and the smallest gap
    between the two best logits seen (a near tie could flip under rounding).
Prints a summary for docs/model-card.md and writes the details to
--report (.train/eval.json). How well the model completes held-out functions
is tools/evaluation/eval_completions.py's, run by sc2 itself.

    python3 tools/evaluation/eval_model.py [--model models/sc2-tiny]
Needs torch, transformers, tokenizers, numpy.
"""

from __future__ import annotations

import argparse
import json
import pathlib
import sys
import time

import numpy as np
import torch

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1] / "data"))
from model_data import Specials, held_out_stream, load_tokenizer  # noqa: E402

ROOT = pathlib.Path(__file__).resolve().parents[2]
FIXTURES = ROOT / "tests" / "fixtures" / "bundled"
CONTEXT = 512
FIXTURE_BLOCKS = 16
GREEDY_NEW_TOKENS = 48

# Prompts end where a line's text ends, not after its newline: byte-level BPE
# joins a newline with the next line's indentation ("\n    "), so a lone "\n"
# token is, in the training data, followed by an unindented line.
PROMPTS = [
    "def fibonacci(n):",
    "import os\n\n\ndef list_python_files(directory):\n    \"\"\"Return the paths of the .py files under directory.\"\"\"",
    "class Stack:\n    \"\"\"A last-in, first-out stack.\"\"\"\n\n    def __init__(self):",
]
FIM_PREFIX = "def average(values):\n    \"\"\"Return the arithmetic mean of values.\"\"\"\n    total = "
FIM_SUFFIX = "\n    return total / len(values)\n"


@torch.no_grad()
def block_losses(model, blocks: torch.Tensor, batch: int = 8) -> np.ndarray:
    """Per block, the summed cross-entropy of positions 1..T-1 (float64)."""
    out = []
    for i in range(0, blocks.shape[0], batch):
        x = blocks[i:i + batch]
        logits = model(input_ids=x).logits
        lp = torch.log_softmax(logits[:, :-1], dim=-1).gather(-1, x[:, 1:, None])[..., 0]
        out.append((-lp.double()).sum(dim=1).numpy())
    return np.concatenate(out)


@torch.no_grad()
def greedy(model, ids: list[int], new_tokens: int, eos: list[int]) -> tuple[list[int], float]:
    x = torch.tensor([ids])
    out = model.generate(x, attention_mask=torch.ones_like(x), max_new_tokens=new_tokens, do_sample=False,
                         eos_token_id=eos, pad_token_id=eos[0], output_scores=True, return_dict_in_generate=True)
    margins = [(lambda t: (t[0] - t[1]).item())(torch.topk(s[0], 2).values) for s in out.scores]
    return out.sequences[0, len(ids):].tolist(), min(margins)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", type=pathlib.Path, default=ROOT / "models" / "sc2-tiny")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--report", type=pathlib.Path, default=ROOT / ".train" / "eval.json")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    from transformers import Starcoder2ForCausalLM
    model = Starcoder2ForCausalLM.from_pretrained(args.model, dtype=torch.float32).eval()
    tokenizer = load_tokenizer()
    specials = Specials(tokenizer)
    eos = [specials.eos, specials.file_sep]
    report: dict = {}

    # Held-out loss.
    stream, _ = held_out_stream(tokenizer, specials)
    n = stream.size // CONTEXT
    blocks = torch.from_numpy(stream[:n * CONTEXT].astype(np.int64).reshape(n, CONTEXT))
    start = time.time()
    sums = block_losses(model, blocks)
    scored = CONTEXT - 1
    report["held_out_loss"] = float(sums.sum() / (n * scored))
    report["held_out_tokens_scored"] = n * scored
    chosen = [i * (n // FIXTURE_BLOCKS) for i in range(FIXTURE_BLOCKS)]
    fixture_loss = float(sums[chosen].sum() / (len(chosen) * scored))
    report["fixture_loss"] = fixture_loss
    print(f"held-out loss {report['held_out_loss']:.5f} over {n} blocks ({n * scored} positions, "
          f"{time.time() - start:.0f} s); fixture blocks {fixture_loss:.6f}", flush=True)
    FIXTURES.mkdir(parents=True, exist_ok=True)
    (FIXTURES / "heldout.json").write_text(json.dumps({
        "description": "blocks of the held-out split of tools/data/corpus.py (.py files packed with <|endoftext|>), "
                       "each scored on its own: mean cross-entropy of positions 1..T-1, PyTorch float32",
        "context": CONTEXT, "block_indices": chosen, "blocks_in_split": n, "pytorch_loss": fixture_loss,
        "blocks": [blocks[i].tolist() for i in chosen],
    }, separators=(",", ":")) + "\n")

    # Greedy generations.
    cases = []
    for prompt in PROMPTS:
        ids = tokenizer.encode(prompt).ids
        generated, margin = greedy(model, ids, GREEDY_NEW_TOKENS, eos)
        cases.append({"prompt": prompt, "prompt_ids": ids, "generated": generated, "min_margin": margin,
                      "text": tokenizer.decode(generated, skip_special_tokens=False)})
    fim_ids = ([specials.fim_prefix] + tokenizer.encode(FIM_PREFIX).ids + [specials.fim_suffix]
               + tokenizer.encode(FIM_SUFFIX).ids + [specials.fim_middle])
    generated, margin = greedy(model, fim_ids, GREEDY_NEW_TOKENS, eos)
    fim = {"prefix": FIM_PREFIX, "suffix": FIM_SUFFIX, "prompt_ids": fim_ids, "generated": generated,
           "min_margin": margin, "text": tokenizer.decode(generated, skip_special_tokens=False)}
    (FIXTURES / "greedy.json").write_text(json.dumps({
        "description": "transformers generate, greedy, float32, eos_token_id [<|endoftext|>, <file_sep>]; "
                       "generated ids include the eos id that ended a generation",
        "max_new_tokens": GREEDY_NEW_TOKENS, "eos_token_ids": eos, "prompts": cases, "fim": fim,
    }, indent=1) + "\n")
    report["greedy"] = cases
    report["fim"] = fim
    for case in cases + [fim]:
        print(f"--- margin {case['min_margin']:.4f}\n{case.get('prompt', '<FIM>')}{case['text']}", flush=True)

    args.report.parent.mkdir(parents=True, exist_ok=True)
    args.report.write_text(json.dumps(report, indent=1) + "\n")


if __name__ == "__main__":
    main()
