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
    between the two best logits seen (a near tie could flip under rounding);
  * the parse rate: 20 function headers of held-out files (at most one per
    file, a seeded draw), each completed greedily (256 new tokens at most) from
    the file's text before it and the header up to its colon, cut
    at the end of the function (the first non-blank line indented no deeper
    than the `def` once the body has begun) and given to `ast.parse`.
Prints a summary for docs/model-card.md and writes the details to
--report (.train/eval.json).

    python3 tools/evaluation/eval_model.py [--model models/sc2-tiny]
Needs torch, transformers, tokenizers, numpy.
"""

from __future__ import annotations

import argparse
import ast
import json
import pathlib
import random
import sys
import textwrap
import time

import numpy as np
import torch

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1] / "data"))
from corpus import file_key, read_text  # noqa: E402
from model_data import Specials, held_out_stream, load_tokenizer, python_files  # noqa: E402

ROOT = pathlib.Path(__file__).resolve().parents[2]
FIXTURES = ROOT / "tests" / "fixtures" / "bundled"
CONTEXT = 512
FIXTURE_BLOCKS = 16
GREEDY_NEW_TOKENS = 48
PARSE_NEW_TOKENS = 256
PARSE_SAMPLES = 20
PARSE_PROMPT_CHARS = 2000

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


def function_headers(seed: int) -> list[dict]:
    """Functions of held-out files whose body starts on a later line than the header."""
    by_file = []
    for path in python_files("held_out"):
        text = read_text(path)
        try:
            tree = ast.parse(text)
        except SyntaxError:
            continue
        lines = text.splitlines(keepends=True)
        found = []
        for node in ast.walk(tree):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                # The header is lines [node.lineno - 1, header_end); a docstring belongs to the body,
                # which the model writes.
                header_end = node.body[0].lineno - 1
                if header_end <= node.lineno - 1:
                    continue
                found.append({"file": file_key(path), "name": node.name, "def_line": node.lineno,
                              "prefix": "".join(lines[:header_end]),
                              "indent": len(lines[node.lineno - 1]) - len(lines[node.lineno - 1].lstrip())})
        if found:
            by_file.append(found)
    rng = random.Random(seed)
    rng.shuffle(by_file)
    return [rng.choice(found) for found in by_file[:PARSE_SAMPLES]]


def cut_function(generated: str, indent: int) -> tuple[str, bool]:
    """The generated body up to the end of the function; whether an end was seen."""
    kept, started = [], False
    for line in generated.splitlines(keepends=True):
        stripped = line.strip()
        if stripped:
            depth = len(line) - len(line.lstrip())
            if started and depth <= indent:
                return "".join(kept), True
            started = True
        kept.append(line)
    return "".join(kept), False


def header_of(prefix: str, indent: int) -> str:
    """The header lines (decorators included) at the end of a prompt."""
    lines = prefix.splitlines(keepends=True)
    i = len(lines)
    while i > 0:
        i -= 1
        line = lines[i]
        if line.strip() and len(line) - len(line.lstrip()) == indent and line.lstrip().startswith(
                ("def ", "async def ")):
            while i > 0 and lines[i - 1].lstrip().startswith("@"):
                i -= 1
            return "".join(lines[i:])
    raise ValueError("no header")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", type=pathlib.Path, default=ROOT / "models" / "sc2-tiny")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--seed", type=int, default=2024)
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

    # Parse rate of completed function headers.
    samples = []
    for h in function_headers(args.seed):
        prompt = h["prefix"][-PARSE_PROMPT_CHARS:]
        prompt = prompt[prompt.index("\n") + 1:] if len(h["prefix"]) > PARSE_PROMPT_CHARS else prompt
        prompt = prompt[:-1]  # up to the header's colon (see PROMPTS)
        ids = tokenizer.encode(prompt).ids
        generated, _ = greedy(model, ids, PARSE_NEW_TOKENS, eos)
        text = tokenizer.decode(generated, skip_special_tokens=True)
        body, ended = cut_function(text, h["indent"])
        function = header_of(prompt, h["indent"]) + body
        try:
            ast.parse(textwrap.dedent(function))
            parses, error = True, None
        except SyntaxError as e:
            parses, error = False, f"{e.msg} (line {e.lineno})"
        hit_eos = bool(generated) and generated[-1] in eos
        samples.append({**{k: h[k] for k in ("file", "name", "def_line")}, "prompt_tokens": len(ids),
                        "function": function, "ended": ended or hit_eos, "parses": parses, "error": error})
        print(f"{h['file']}:{h['def_line']} {h['name']}: {'parses' if parses else 'FAILS: ' + error}", flush=True)
    rate = sum(s["parses"] for s in samples) / len(samples)
    report["parse_rate"] = rate
    report["parse_samples"] = samples
    print(f"parse rate {rate:.2f} ({sum(s['parses'] for s in samples)}/{len(samples)}); "
          f"{sum(not s['ended'] for s in samples)} hit the {PARSE_NEW_TOKENS}-token limit unfinished")
    args.report.parent.mkdir(parents=True, exist_ok=True)
    args.report.write_text(json.dumps(report, indent=1) + "\n")


if __name__ == "__main__":
    main()
