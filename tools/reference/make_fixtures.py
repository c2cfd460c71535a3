#!/usr/bin/env python3
"""Builds tiny random StarCoder2 checkpoints and dumps what Hugging Face computes on them.

For every case this writes tests/fixtures/models/<case>/:
  config.json, model.safetensors (or shards + index)   the checkpoint, as save_pretrained writes it
  reference.safetensors                                 what transformers computes:
    input_ids        (T) I32     the prompt
    hidden.<tap>     (T, D) F32  embed_tokens, layers.<i> (output of layer i), norm (after the final norm)
    logits           (T, V) F32  one forward over the whole prompt, in float32
    logits_chunked   (T, V) F32  the same prompt fed through the KV cache in chunks of `chunk`
    logits_stepwise  (T, V) F32  the same prompt fed one token at a time
    logits_native    (T, V) F32  bf16/f16 checkpoints only: the model run in its stored dtype

For bf16/f16 checkpoints, `logits`, `logits_chunked`, `logits_stepwise` and `hidden.*` come from the
stored weights widened exactly to float32, which is what sc2 computes (float activations over bf16/f16
weights); `logits_native` is transformers computing in the low precision dtype itself.

Needs torch, transformers, safetensors (PyPI). Deterministic: seeded per case.
Usage: python3 tools/reference/make_fixtures.py [--out tests/fixtures/models]
"""
import argparse
import json
import shutil
from pathlib import Path

import torch
from safetensors.torch import save_file
from transformers import DynamicCache, Starcoder2Config, Starcoder2ForCausalLM

CASES = {
    # GQA group 1, tied lm_head, biases, window 8 < prompt 48, float32.
    "gqa1_tied_window8_f32": dict(
        config=dict(hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4,
                    num_key_value_heads=4, vocab_size=256, sliding_window=8, rope_theta=10000.0),
        dtype="float32", tokens=48, chunk=5),
    # GQA group 2, untied lm_head, no biases, no window, non-integer theta (the 3B's), float32.
    "gqa2_untied_nobias_nowindow_f32": dict(
        config=dict(hidden_size=64, intermediate_size=160, num_hidden_layers=2, num_attention_heads=4,
                    num_key_value_heads=2, vocab_size=300, sliding_window=None, use_bias=False,
                    tie_word_embeddings=False, rope_theta=999999.4420358813),
        dtype="float32", tokens=41, chunk=7),
    # GQA group 4, head_dim 128 (explicit, hidden 64), window 16 < prompt 48, bfloat16.
    "gqa4_headdim128_window16_bf16": dict(
        config=dict(hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4,
                    num_key_value_heads=1, head_dim=128, vocab_size=256, sliding_window=16,
                    rope_theta=100000.0),
        dtype="bfloat16", tokens=48, chunk=6),
    # GQA group 8, partial_rotary_factor 0.5 (transformers' StarCoder2 rotates the full head regardless),
    # window 8, float16.
    "gqa8_partial_rotary_window8_f16": dict(
        config=dict(hidden_size=128, intermediate_size=256, num_hidden_layers=2, num_attention_heads=8,
                    num_key_value_heads=1, vocab_size=256, sliding_window=8, partial_rotary_factor=0.5,
                    rope_theta=12345.678),
        dtype="float16", tokens=44, chunk=9),
    # Sharded float32 checkpoint with an index, three layers, window 12.
    "sharded_window12_f32": dict(
        config=dict(hidden_size=64, intermediate_size=128, num_hidden_layers=3, num_attention_heads=4,
                    num_key_value_heads=2, vocab_size=256, sliding_window=12, rope_theta=10000.0),
        dtype="float32", tokens=40, chunk=16, shard="60KB"),
}


def randomize(model: torch.nn.Module, generator: torch.Generator) -> None:
    """Weights large enough that attention, norms and biases all matter in the logits."""
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "layernorm" in name or name.startswith("model.norm"):
                base = 1.0 if name.endswith("weight") else 0.0
                p.copy_(base + 0.2 * torch.randn(p.shape, generator=generator))
            elif "embed_tokens" in name:
                p.copy_(torch.randn(p.shape, generator=generator))
            else:
                p.copy_(0.15 * torch.randn(p.shape, generator=generator))


def run_cached(model, ids, chunk):
    cache = DynamicCache(config=model.config)
    pieces = []
    for start in range(0, ids.shape[1], chunk):
        out = model(input_ids=ids[:, start:start + chunk], past_key_values=cache, use_cache=True)
        cache = out.past_key_values
        pieces.append(out.logits[0].float())
    return torch.cat(pieces, dim=0)


def make_case(name: str, spec: dict, root: Path) -> dict:
    seed = sum(map(ord, name))
    generator = torch.Generator().manual_seed(seed)
    config = Starcoder2Config(max_position_embeddings=1024, bos_token_id=0, eos_token_id=0, **spec["config"])
    model = Starcoder2ForCausalLM(config).eval()
    randomize(model, generator)
    dtype = getattr(torch, spec["dtype"])
    stored = model.to(dtype)

    out = root / name
    shutil.rmtree(out, ignore_errors=True)
    out.mkdir(parents=True)
    kwargs = {"max_shard_size": spec["shard"]} if "shard" in spec else {}
    stored.save_pretrained(out, safe_serialization=True, **kwargs)
    for extra in ("generation_config.json",):
        (out / extra).unlink(missing_ok=True)

    ids = torch.randint(0, config.vocab_size, (1, spec["tokens"]), generator=generator)
    reference = {"input_ids": ids[0].to(torch.int32)}
    with torch.no_grad():
        if dtype != torch.float32:
            reference["logits_native"] = stored(input_ids=ids).logits[0].float()
        model32 = Starcoder2ForCausalLM.from_pretrained(out, dtype=torch.float32).eval()
        taps = {}
        hooks = [model32.model.embed_tokens.register_forward_hook(
            lambda m, i, o: taps.__setitem__("hidden.embed_tokens", o[0].clone()))]
        for index, layer in enumerate(model32.model.layers):
            hooks.append(layer.register_forward_hook(
                lambda m, i, o, index=index: taps.__setitem__(
                    f"hidden.layers.{index}", (o[0] if isinstance(o, tuple) else o)[0].clone())))
        hooks.append(model32.model.norm.register_forward_hook(
            lambda m, i, o: taps.__setitem__("hidden.norm", o[0].clone())))
        reference["logits"] = model32(input_ids=ids).logits[0]
        for h in hooks:
            h.remove()
        reference.update(taps)
        reference["logits_chunked"] = run_cached(model32, ids, spec["chunk"])
        reference["logits_stepwise"] = run_cached(model32, ids, 1)
    save_file({k: v.contiguous() for k, v in reference.items()}, out / "reference.safetensors",
              metadata={"chunk": str(spec["chunk"]), "dtype": spec["dtype"]})
    summary = {
        "chunked_vs_whole": (reference["logits_chunked"] - reference["logits"]).abs().max().item(),
        "stepwise_vs_whole": (reference["logits_stepwise"] - reference["logits"]).abs().max().item(),
        "logit_absmax": reference["logits"].abs().max().item(),
    }
    if "logits_native" in reference:
        summary["native_vs_f32"] = (reference["logits_native"] - reference["logits"]).abs().max().item()
    return summary


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", default=str(Path(__file__).resolve().parents[2] / "tests/fixtures/models"))
    args = parser.parse_args()
    root = Path(args.out)
    torch.set_num_threads(1)
    for name, spec in CASES.items():
        print(name, json.dumps(make_case(name, spec, root)))


if __name__ == "__main__":
    main()
