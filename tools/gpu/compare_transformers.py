#!/usr/bin/env python3
"""sc2's CUDA backend against transformers on the same GPU and the same weights.

Makes a random 3B-shaped bf16 checkpoint (sc2-make-checkpoint), runs a prompt of
random ids through transformers in bf16 with sdpa attention and in float32 (the
common reference of both bf16 runs), and through `sc2-logits --device cuda`
(bf16 weights and KV pool, float activations), then reports:

  - the largest logit difference of sc2 and of transformers-bf16 to transformers-f32,
    and between the two bf16 runs;
  - how many prompt positions agree on the top token;
  - the greedy continuation: how many leading tokens are identical.

Writes parity.json to --out. Needs torch, transformers and safetensors; runs on
the GPU machine from tools/gpu-check.sh, never in CI.

    python3 tools/gpu/compare_transformers.py --build build-gpu --out /tmp/out
"""
import argparse
import json
import os
import subprocess
import sys
import time

import numpy as np
import torch
from transformers import Starcoder2ForCausalLM


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--build", required=True, help="build folder holding bench/sc2-logits and bench/sc2-make-checkpoint")
    p.add_argument("--out", required=True, help="folder for parity.json")
    p.add_argument("--checkpoint", default="/tmp/sc2-3b-bf16", help="made here if it does not exist")
    p.add_argument("--preset", default="3B")
    p.add_argument("--tokens", type=int, default=512, help="prompt length")
    p.add_argument("--new-tokens", type=int, default=32)
    args = p.parse_args()
    os.makedirs(args.out, exist_ok=True)
    bench = os.path.join(args.build, "bench")
    if not os.path.exists(os.path.join(args.checkpoint, "config.json")):
        subprocess.run([os.path.join(bench, "sc2-make-checkpoint"), "--preset", args.preset, "--dtype", "bf16",
                        "--out", args.checkpoint], check=True)
    config = json.load(open(os.path.join(args.checkpoint, "config.json")))
    rng = np.random.default_rng(7)
    ids = rng.integers(0, config["vocab_size"], size=args.tokens).tolist()
    ids_path = os.path.join(args.out, "ids.json")
    json.dump(ids, open(ids_path, "w"))

    # sc2 first: the GPU is free of torch's caches while it runs.
    logits_path = os.path.join(args.out, "sc2_logits.f32")
    t0 = time.time()
    run = subprocess.run([os.path.join(bench, "sc2-logits"), "--model", args.checkpoint, "--ids", ids_path,
                          "--out", logits_path, "--new-tokens", str(args.new_tokens), "--device", "cuda"],
                         check=True, capture_output=True, text=True)
    sc2_seconds = time.time() - t0
    sc2_greedy = json.loads(run.stdout.strip().splitlines()[-1])
    sc2_logits = np.fromfile(logits_path, dtype=np.float32).reshape(args.tokens, -1)
    os.remove(logits_path)

    device = torch.device("cuda")
    x = torch.tensor([ids], device=device)
    model = Starcoder2ForCausalLM.from_pretrained(args.checkpoint, torch_dtype=torch.bfloat16,
                                                  attn_implementation="sdpa").to(device).eval()
    with torch.no_grad():
        tf_bf16 = model(x).logits[0].float().cpu().numpy()
        out = model.generate(x, max_new_tokens=args.new_tokens, min_new_tokens=args.new_tokens, do_sample=False,
                             eos_token_id=None, pad_token_id=0)
        tf_greedy = out[0, args.tokens:].tolist()
        model = model.float()
        tf_f32 = model(x).logits[0].cpu().numpy()

    def leading_equal(a, b):
        n = 0
        for u, v in zip(a, b):
            if u != v:
                break
            n += 1
        return n

    result = {
        "gpu": torch.cuda.get_device_name(0),
        "checkpoint": args.checkpoint,
        "prompt_tokens": args.tokens,
        "sc2_vs_transformers_f32_max_abs": float(np.abs(sc2_logits - tf_f32).max()),
        "transformers_bf16_vs_f32_max_abs": float(np.abs(tf_bf16 - tf_f32).max()),
        "sc2_vs_transformers_bf16_max_abs": float(np.abs(sc2_logits - tf_bf16).max()),
        "largest_f32_logit": float(np.abs(tf_f32).max()),
        "top1_agreement_sc2_vs_f32": float((sc2_logits.argmax(1) == tf_f32.argmax(1)).mean()),
        "top1_agreement_transformers_bf16_vs_f32": float((tf_bf16.argmax(1) == tf_f32.argmax(1)).mean()),
        "greedy_tokens": args.new_tokens,
        "greedy_leading_equal_sc2_vs_transformers_bf16": leading_equal(sc2_greedy, tf_greedy),
        "sc2_seconds_load_and_run": sc2_seconds,
    }
    json.dump(result, open(os.path.join(args.out, "parity.json"), "w"), indent=2)
    for k, v in result.items():
        print(f"{k:48} {v}")


if __name__ == "__main__":
    sys.exit(main())
