#!/usr/bin/env python3
"""Tiny random StarCoder2 classification checkpoints and what transformers computes on them.

Writes tests/fixtures/classifiers/<case>/: config.json, model.safetensors, reference.safetensors with
  ids_right, mask_right (B, T) I32   a batch padded on the right, with its attention mask
  ids_left,  mask_left  (B, T) I32   the same sequences padded on the left
  logits_right, logits_left          transformers' logits with the attention masks:
                                     token case (B, T, L), sequence case (B, L)
  logits_nomask                      the right-padded batch without a mask (padding attended as tokens)
  single_ids (T) I32, single_logits  one unpadded sequence
Needs torch, transformers, safetensors (PyPI). Usage: python3 tools/reference/make_classifier_fixtures.py
"""
import shutil
from pathlib import Path

import torch
from safetensors.torch import save_file
from transformers import Starcoder2Config, Starcoder2ForSequenceClassification, Starcoder2ForTokenClassification

OUT = Path(__file__).resolve().parents[2] / "tests/fixtures/classifiers"
PAD = 1
LENGTHS = [13, 5, 9]  # longer than the window (8) for the first row


def randomize(model, generator):
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "layernorm" in name or name.startswith("model.norm"):
                p.copy_((1.0 if name.endswith("weight") else 0.0) + 0.2 * torch.randn(p.shape, generator=generator))
            elif "embed_tokens" in name:
                p.copy_(torch.randn(p.shape, generator=generator))
            else:
                p.copy_(0.2 * torch.randn(p.shape, generator=generator))


def batches(generator, vocab):
    seqs = [torch.randint(2, vocab, (n,), generator=generator) for n in LENGTHS]
    T = max(LENGTHS)
    right = torch.full((len(seqs), T), PAD)
    left = torch.full((len(seqs), T), PAD)
    mask_right = torch.zeros_like(right)
    mask_left = torch.zeros_like(left)
    for i, s in enumerate(seqs):
        right[i, :len(s)] = s
        mask_right[i, :len(s)] = 1
        left[i, T - len(s):] = s
        mask_left[i, T - len(s):] = 1
    return seqs, right, mask_right, left, mask_left


def make(name, cls, num_labels):
    generator = torch.Generator().manual_seed(sum(map(ord, name)))
    config = Starcoder2Config(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4,
                              num_key_value_heads=2, vocab_size=128, sliding_window=8, max_position_embeddings=256,
                              bos_token_id=0, eos_token_id=0, pad_token_id=PAD, num_labels=num_labels,
                              id2label={i: f"L{i}" for i in range(num_labels)},
                              label2id={f"L{i}": i for i in range(num_labels)})
    model = cls(config).eval()
    randomize(model, generator)
    out = OUT / name
    shutil.rmtree(out, ignore_errors=True)
    model.save_pretrained(out, safe_serialization=True)
    (out / "generation_config.json").unlink(missing_ok=True)
    seqs, right, mask_right, left, mask_left = batches(generator, config.vocab_size)
    with torch.no_grad():
        ref = {
            "ids_right": right, "mask_right": mask_right, "ids_left": left, "mask_left": mask_left,
            "logits_right": model(input_ids=right, attention_mask=mask_right).logits,
            "logits_left": model(input_ids=left, attention_mask=mask_left).logits,
            "logits_nomask": model(input_ids=right).logits,
            "single_ids": seqs[0], "single_logits": model(input_ids=seqs[0][None]).logits[0],
        }
    save_file({k: (v.to(torch.int32) if not v.is_floating_point() else v.float()).contiguous() for k, v in ref.items()},
              out / "reference.safetensors")
    print(name, {k: tuple(v.shape) for k, v in ref.items()})


if __name__ == "__main__":
    torch.set_num_threads(1)
    make("token_classifier", Starcoder2ForTokenClassification, 5)
    make("sequence_classifier", Starcoder2ForSequenceClassification, 3)
