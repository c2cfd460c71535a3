#!/usr/bin/env python3
"""Dumps what Hugging Face `generate` does, for the generation tests.

Writes tests/fixtures/generation/:
  processors.json  for recorded logits and histories, the scores transformers' logits processors
                   leave (built by the model's own _get_logits_processor from a GenerationConfig,
                   so the order is transformers' order), -inf written as null
  greedy.json      greedy continuations by model.generate on the fixture checkpoints of
                   tests/fixtures/models, with the smallest top-1/top-2 logit margin seen

Needs torch and transformers (PyPI); run tools/reference/make_fixtures.py first.
Usage: python3 tools/reference/make_generation_fixtures.py
"""
import json
import math
from pathlib import Path

import torch
from transformers import GenerationConfig, LogitsProcessorList, Starcoder2ForCausalLM

ROOT = Path(__file__).resolve().parents[2]
MODELS = ROOT / "tests/fixtures/models"
OUT = ROOT / "tests/fixtures/generation"

SETTINGS = [
    dict(do_sample=False, repetition_penalty=1.3),
    dict(do_sample=True, top_k=0, temperature=0.7),
    dict(do_sample=True, top_k=5),
    dict(do_sample=True, top_k=0, top_p=0.9),
    dict(do_sample=True, top_k=0, top_p=0.5),
    dict(do_sample=True, top_k=0, min_p=0.05),
    dict(do_sample=True, top_k=0, min_p=0.3),
    dict(do_sample=True),  # GenerationConfig defaults: top_k 50
    dict(do_sample=True, temperature=1.5, top_k=20, top_p=0.8, min_p=0.02, repetition_penalty=1.2),
    dict(do_sample=True, temperature=0.5, top_k=3, repetition_penalty=0.8),
]


def scores_json(t: torch.Tensor):
    return [None if math.isinf(x) and x < 0 else x for x in t.tolist()]


def processors(model) -> list:
    g = torch.Generator().manual_seed(11)
    cases = []
    for index, setting in enumerate(SETTINGS):
        for trial in range(3):
            vocab = model.config.vocab_size
            logits = torch.randn(1, vocab, generator=g) * (3.0 if trial else 1.0)
            if trial == 2:  # ties at the top-k boundary and repeated values
                logits[0, :40] = torch.round(logits[0, :40])
            history = torch.randint(0, vocab, (1, 12), generator=g)
            config = GenerationConfig(**setting)
            # What generate() does: unset values take transformers' global defaults (top_k 50, ...).
            config.update(**config._get_default_generation_params(), defaults_only=True)
            plist = model._get_logits_processor(generation_config=config, input_ids_seq_length=history.shape[1],
                                                logits_processor=LogitsProcessorList(), device="cpu",
                                                model_kwargs={})
            processed = plist(history, logits.clone())
            cases.append({"setting": setting, "logits": logits[0].tolist(), "history": history[0].tolist(),
                          "processors": [type(p).__name__ for p in plist],
                          "expected": scores_json(processed[0])})
    return cases


def greedy() -> list:
    runs = []
    for name, prompt_len, new in [("gqa1_tied_window8_f32", 48, 40), ("gqa1_tied_window8_f32", 3, 40),
                                  ("gqa2_untied_nobias_nowindow_f32", 10, 36),
                                  ("gqa4_headdim128_window16_bf16", 20, 40), ("sharded_window12_f32", 30, 33)]:
        model = Starcoder2ForCausalLM.from_pretrained(MODELS / name, dtype=torch.float32).eval()
        g = torch.Generator().manual_seed(prompt_len)
        prompt = torch.randint(1, model.config.vocab_size, (1, prompt_len), generator=g)
        with torch.no_grad():
            out = model.generate(prompt, max_new_tokens=new, do_sample=False, eos_token_id=None, pad_token_id=0,
                                 output_scores=True, return_dict_in_generate=True)
        margins = []
        for s in out.scores:
            top2 = torch.topk(s[0], 2).values
            margins.append((top2[0] - top2[1]).item())
        runs.append({"model": name, "prompt": prompt[0].tolist(),
                     "generated": out.sequences[0, prompt_len:].tolist(), "min_margin": min(margins)})
        print(name, prompt_len, "min top-2 margin", min(margins))
    return runs


def main() -> None:
    OUT.mkdir(parents=True, exist_ok=True)
    model = Starcoder2ForCausalLM.from_pretrained(MODELS / "gqa1_tied_window8_f32", dtype=torch.float32)
    (OUT / "processors.json").write_text(json.dumps(processors(model)))
    (OUT / "greedy.json").write_text(json.dumps(greedy(), indent=1))


if __name__ == "__main__":
    main()
