#!/usr/bin/env python3
"""Builds tiny random Mistral checkpoints (transformers' MistralForCausalLM) and what transformers
computes on them, for the variant example (examples/custom_variant.cpp, docs/variants.md).

For every case this writes tests/fixtures/variants/<case>/:
  config.json, model.safetensors   the checkpoint, as save_pretrained writes it (some cases then drop
                                   fields from config.json, so that the variant's defaults are used)
  reference.safetensors            input_ids (T) I32, logits (T, V) F32: one float32 forward

Each case with a window checks that the window changes the logits, so the fixture exercises it.

Needs torch, transformers, safetensors (PyPI); never CI. Deterministic: seeded per case.
Usage: python3 tools/reference/make_variant_fixtures.py [--out tests/fixtures/variants]
"""
import argparse
import json
import shutil
from pathlib import Path

import torch
from safetensors.torch import save_file
from transformers import MistralConfig, MistralForCausalLM

CASES = {
    # GQA group 2, window 6 < prompt 20.
    "mistral_gqa2_window6": dict(
        config=dict(hidden_size=64, intermediate_size=160, num_hidden_layers=2, num_attention_heads=4,
                    num_key_value_heads=2, vocab_size=300, sliding_window=6, rope_theta=10000.0),
        tokens=20),
    # One kv head for four query heads, head_dim 32 given apart from hidden / heads, no window, 3 layers.
    "mistral_mqa_headdim32_nowindow": dict(
        config=dict(hidden_size=64, intermediate_size=128, num_hidden_layers=3, num_attention_heads=4,
                    num_key_value_heads=1, head_dim=32, vocab_size=256, sliding_window=None,
                    rope_theta=1000000.0, rms_norm_eps=1e-5),
        tokens=16),
    # One kv head per query head, window 5; config.json then leaves out every field whose value is
    # MistralConfig's default, so the variant must know them (eps 1e-6, untied head, silu, ids).
    "mistral_mha_window5_defaults": dict(
        config=dict(hidden_size=48, intermediate_size=96, num_hidden_layers=2, num_attention_heads=4,
                    num_key_value_heads=4, vocab_size=200, sliding_window=5, rope_theta=10000.0),
        tokens=18,
        drop=["rms_norm_eps", "tie_word_embeddings", "hidden_act", "bos_token_id", "eos_token_id"]),
}


def randomize(model: torch.nn.Module, generator: torch.Generator) -> None:
    """Weights large enough that attention, norms and the gate all matter in the logits."""
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "norm" in name:
                p.copy_(1.0 + 0.2 * torch.randn(p.shape, generator=generator))
            elif "embed_tokens" in name:
                p.copy_(torch.randn(p.shape, generator=generator))
            else:
                p.copy_(0.15 * torch.randn(p.shape, generator=generator))


def make_case(name: str, spec: dict, root: Path) -> dict:
    generator = torch.Generator().manual_seed(sum(map(ord, name)))
    config = MistralConfig(max_position_embeddings=1024, **spec["config"])
    model = MistralForCausalLM(config).eval()
    randomize(model, generator)

    out = root / name
    shutil.rmtree(out, ignore_errors=True)
    out.mkdir(parents=True)
    model.save_pretrained(out, safe_serialization=True)
    (out / "generation_config.json").unlink(missing_ok=True)
    if spec.get("drop"):
        path = out / "config.json"
        values = json.loads(path.read_text())
        defaults = MistralConfig().to_dict()
        for field in spec["drop"]:
            assert values[field] == defaults[field], (field, values[field], defaults[field])
            del values[field]
        path.write_text(json.dumps(values, indent=2, sort_keys=True) + "\n")

    ids = torch.randint(0, config.vocab_size, (1, spec["tokens"]), generator=generator)
    with torch.no_grad():
        loaded = MistralForCausalLM.from_pretrained(out, dtype=torch.float32, attn_implementation="eager").eval()
        logits = loaded(input_ids=ids).logits[0].float()
        summary = {"logit_absmax": logits.abs().max().item()}
        if config.sliding_window is not None:
            loaded.config.sliding_window = None
            full = loaded(input_ids=ids).logits[0].float()
            summary["window_changes_logits_by"] = (full - logits).abs().max().item()
            assert summary["window_changes_logits_by"] > 1e-2, summary
    save_file({"input_ids": ids[0].to(torch.int32).contiguous(), "logits": logits.contiguous()},
              out / "reference.safetensors")
    for path in out.iterdir():
        path.chmod(0o644)
    return summary


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", default=str(Path(__file__).resolve().parents[2] / "tests/fixtures/variants"))
    args = parser.parse_args()
    torch.set_num_threads(1)
    for name, spec in CASES.items():
        print(name, json.dumps(make_case(name, spec, Path(args.out))))


if __name__ == "__main__":
    main()
