#!/usr/bin/env python3
"""Train sc2's bundled model, models/sc2-tiny: a small Starcoder2ForCausalLM.

The model is Hugging Face's own Starcoder2ForCausalLM (transformers), so the
checkpoint is the reference architecture: grouped-query attention, a sliding
window shorter than the training context, RoPE, LayerNorm with bias, the
GELU-tanh MLP, tied embeddings. The data is what tools/data/model_data.py writes
(the CPython standard library, files packed with <|endoftext|>, fill-in-the-
middle at the context level).

The recipe is a fixed number of optimizer steps (AdamW, linear warm-up then
cosine decay, gradient clipping), sized to take about two hours on the two CPU
cores of the project's development machine; a GPU runs the same steps in
minutes (bf16 autocast there). --measure N times N steps and stops, to
estimate the CPU time of a recipe; --budget-minutes M sizes the steps to M
minutes of training from the measured speed (a shape sweep at equal budget).

    python3 tools/data/model_data.py                      # once: .train/data.npz
    python3 tools/training/train_model.py --device cpu        # or --device cuda
    python3 tools/evaluation/eval_model.py                      # held-out loss, samples, test fixtures

Writes to --output: config.json, generation_config.json, model.safetensors
(bf16), training.json (settings, loss curve, held-out loss, times), and a copy
of the tokenizer when the folder has none.
Needs torch, transformers and numpy.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import pathlib
import shutil
import time

import numpy as np
import torch

ROOT = pathlib.Path(__file__).resolve().parents[2]

TOKENIZER = ROOT / "models" / "sc2-tiny" / "tokenizer.json"


def tokenizer_ids() -> tuple[int, int, int]:
    """Vocabulary size, <|endoftext|> and <file_sep> ids, read from the tokenizer file."""
    data = json.loads(TOKENIZER.read_text(encoding="utf-8"))
    added = {t["content"]: t["id"] for t in data["added_tokens"]}
    size = 1 + max([*data["model"]["vocab"].values(), *added.values()])
    return size, added["<|endoftext|>"], added["<file_sep>"]


VOCAB_SIZE, EOS_ID, FILE_SEP_ID = tokenizer_ids()


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", type=pathlib.Path, default=ROOT / ".train" / "data.npz")
    p.add_argument("--output", type=pathlib.Path, default=ROOT / "models" / "sc2-tiny")
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--threads", type=int, default=0, help="CPU threads (0: all cores)")
    # Shape.
    p.add_argument("--hidden", type=int, default=256)
    p.add_argument("--layers", type=int, default=6)
    p.add_argument("--heads", type=int, default=4)
    p.add_argument("--kv-heads", type=int, default=2)
    p.add_argument("--intermediate", type=int, default=0, help="0: 4 x hidden")
    p.add_argument("--window", type=int, default=256)
    p.add_argument("--context", type=int, default=512)
    p.add_argument("--rope-theta", type=float, default=10000.0)
    p.add_argument("--max-positions", type=int, default=4096)
    # Optimization.
    p.add_argument("--steps", type=int, default=3200)
    p.add_argument("--batch", type=int, default=8, help="sequences of --context tokens per step")
    p.add_argument("--lr", type=float, default=2.5e-3)
    p.add_argument("--min-lr-ratio", type=float, default=0.1)
    p.add_argument("--warmup", type=int, default=100)
    p.add_argument("--weight-decay", type=float, default=0.1)
    p.add_argument("--dropout", type=float, default=0.0, help="residual and attention dropout")
    p.add_argument("--clip", type=float, default=1.0)
    p.add_argument("--seed", type=int, default=1234)
    p.add_argument("--eval-every", type=int, default=200)
    p.add_argument("--eval-blocks", type=int, default=64, help="held-out blocks for the curve (the final: all)")
    p.add_argument("--final-eval-blocks", type=int, default=0, help="held-out blocks for the final loss (0: all)")
    p.add_argument("--max-minutes", type=float, default=0.0, help="stop early after this long (0: never)")
    p.add_argument("--budget-minutes", type=float, default=0.0,
                   help="size --steps to this much training time, from the speed of steps 10-30 (0: use --steps); "
                        "runs sharing a device at once get equal budgets, and the schedule completes")
    p.add_argument("--max-shard-size", default="",
                   help="save the weights in files of at most this size (e.g. 15MB; default: one file)")
    p.add_argument("--measure", type=int, default=0, help="time this many steps, print seconds/step, exit")
    return p.parse_args()


def make_model(args: argparse.Namespace):
    from transformers import Starcoder2Config, Starcoder2ForCausalLM
    config = Starcoder2Config(
        vocab_size=VOCAB_SIZE,
        hidden_size=args.hidden,
        intermediate_size=args.intermediate or 4 * args.hidden,
        num_hidden_layers=args.layers,
        num_attention_heads=args.heads,
        num_key_value_heads=args.kv_heads,
        hidden_act="gelu_pytorch_tanh",
        max_position_embeddings=args.max_positions,
        initializer_range=0.02,
        norm_epsilon=1e-5,
        bos_token_id=EOS_ID,
        eos_token_id=[EOS_ID, FILE_SEP_ID],
        rope_parameters={"rope_type": "default", "rope_theta": args.rope_theta},
        sliding_window=args.window,
        attention_dropout=args.dropout,
        residual_dropout=args.dropout,
        embedding_dropout=0.0,
        use_bias=True,
        tie_word_embeddings=True,
    )
    return Starcoder2ForCausalLM(config)


class Blocks:
    """Context-sized blocks of the packed epoch streams, shuffled per epoch."""

    def __init__(self, data, context: int, seed: int) -> None:
        self.context = context
        self.epochs = sorted((k for k in data.files if k.startswith("train_")), key=lambda k: int(k.split("_")[1]))
        self.streams = [data[k] for k in self.epochs]
        self.seed = seed

    def order(self, epoch: int) -> tuple[np.ndarray, np.ndarray]:
        stream = self.streams[epoch % len(self.streams)]
        n = stream.size // self.context
        perm = np.random.default_rng(self.seed + epoch).permutation(n)
        return stream, perm

    def batches(self, batch: int):
        epoch = 0
        while True:
            stream, perm = self.order(epoch)
            for i in range(0, perm.size - batch + 1, batch):
                rows = [stream[j * self.context:(j + 1) * self.context] for j in perm[i:i + batch]]
                yield epoch, torch.from_numpy(np.stack(rows).astype(np.int64))
            epoch += 1


def held_out_blocks(data, context: int) -> torch.Tensor:
    stream = data["held_out"]
    n = stream.size // context
    return torch.from_numpy(stream[:n * context].astype(np.int64).reshape(n, context))


@torch.no_grad()
def mean_loss(model, blocks: torch.Tensor, device: str, autocast, batch: int = 16) -> float:
    """Mean next-token cross-entropy over every predicted position of the blocks."""
    model.eval()
    total, count = 0.0, 0
    for i in range(0, blocks.shape[0], batch):
        x = blocks[i:i + batch].to(device)
        with autocast():
            logits = model(input_ids=x).logits
        lp = torch.log_softmax(logits[:, :-1].double(), dim=-1)
        total += -lp.gather(-1, x[:, 1:, None]).sum().item()
        count += x[:, 1:].numel()
    model.train()
    return total / count


def display(path: pathlib.Path) -> str:
    path = path.resolve()
    return path.relative_to(ROOT).as_posix() if path.is_relative_to(ROOT) else str(path)


def lr_at(step: int, args: argparse.Namespace) -> float:
    if step < args.warmup:
        return args.lr * (step + 1) / args.warmup
    progress = (step - args.warmup) / max(1, args.steps - args.warmup)
    floor = args.lr * args.min_lr_ratio
    return floor + (args.lr - floor) * 0.5 * (1.0 + math.cos(math.pi * min(1.0, progress)))


def main() -> None:
    args = parse_args()
    torch.manual_seed(args.seed)
    device = args.device
    if device == "cpu":
        torch.set_num_threads(args.threads or os.cpu_count() or 1)
    use_bf16 = device.startswith("cuda")
    if use_bf16:
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True

    def autocast():
        return torch.autocast("cuda", dtype=torch.bfloat16) if use_bf16 else torch.autocast("cpu", enabled=False)

    data = np.load(args.data)
    meta = json.loads(bytes(data["meta"]))
    if meta.get("context", args.context) != args.context:
        raise SystemExit(f"{args.data} was packed for a context of {meta['context']}, not {args.context}")
    blocks = Blocks(data, args.context, args.seed)
    held_out = held_out_blocks(data, args.context)
    if args.final_eval_blocks:
        held_out = held_out[:args.final_eval_blocks]
    curve_blocks = held_out[:args.eval_blocks]

    model = make_model(args).to(device)
    model.train()
    params = sum(p.numel() for p in model.parameters())
    decay = [p for n, p in model.named_parameters() if p.dim() >= 2]
    no_decay = [p for n, p in model.named_parameters() if p.dim() < 2]
    optimizer = torch.optim.AdamW([{"params": decay, "weight_decay": args.weight_decay},
                                   {"params": no_decay, "weight_decay": 0.0}],
                                  lr=args.lr, betas=(0.9, 0.95), eps=1e-8, fused=use_bf16)
    tokens_per_step = args.batch * args.context
    epoch_tokens = blocks.streams[0].size
    print(f"{params / 1e6:.2f}M parameters, {args.steps} steps x {tokens_per_step} tokens = "
          f"{args.steps * tokens_per_step / epoch_tokens:.2f} epochs of {epoch_tokens} tokens, device {device}",
          flush=True)

    curve = []
    start = time.time()
    window_loss, window_n = 0.0, 0
    stopped_early = False
    batches = blocks.batches(args.batch)
    step = 0
    while step < args.steps:
        if args.budget_minutes and step == 10:
            t_budget = time.time()
        if args.budget_minutes and step == 30:
            per_step = (time.time() - t_budget) / 20
            args.steps = max(31, int((args.budget_minutes * 60 - (time.time() - start)) / per_step) + 30)
            print(f"{per_step * 1000:.1f} ms per step: {args.steps} steps in {args.budget_minutes} minutes", flush=True)
        if args.measure and step == 1:
            t_measure, cpu_measure = time.time(), time.process_time()  # the first step warms up
        epoch, x = next(batches)
        if epoch >= len(blocks.streams):
            print(f"warning: step {step} reuses epoch {epoch % len(blocks.streams)}'s FIM draws", flush=True)
        x = x.to(device, non_blocking=True)
        for group in optimizer.param_groups:
            group["lr"] = lr_at(step, args)
        with autocast():
            loss = model(input_ids=x, labels=x).loss
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), args.clip)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        window_loss += loss.item()
        window_n += 1
        if args.measure and step == args.measure:
            per_step = (time.time() - t_measure) / args.measure
            cpu_per_step = (time.process_time() - cpu_measure) / args.measure
            print(json.dumps({"seconds_per_step": per_step, "cpu_seconds_per_step": cpu_per_step,
                              "threads": torch.get_num_threads(), "steps_in_two_hours": int(7200 / per_step),
                              "parameters": params}))
            return
        last = step + 1 == args.steps
        if (step + 1) % args.eval_every == 0 or last:
            point = {"step": step + 1, "tokens": (step + 1) * tokens_per_step, "lr": lr_at(step, args),
                     "train_loss": window_loss / window_n,
                     "held_out_loss": mean_loss(model, curve_blocks, device, autocast),
                     "seconds": time.time() - start}
            curve.append(point)
            window_loss, window_n = 0.0, 0
            print(json.dumps(point), flush=True)
        if args.max_minutes and time.time() - start > args.max_minutes * 60 and not last:
            stopped_early = True
            print(f"time cap reached after {step + 1} steps", flush=True)
            break
        step += 1
    step = min(step, args.steps - 1)
    train_seconds = time.time() - start
    final = mean_loss(model, held_out, device, autocast)
    print(f"held-out loss over {held_out.numel()} tokens: {final:.4f}", flush=True)

    args.output.mkdir(parents=True, exist_ok=True)
    model.config.use_cache = True
    model = model.to(torch.bfloat16)
    model.save_pretrained(args.output, safe_serialization=True,
                          **({"max_shard_size": args.max_shard_size} if args.max_shard_size else {}))
    from transformers import GenerationConfig
    GenerationConfig(bos_token_id=EOS_ID, eos_token_id=[EOS_ID, FILE_SEP_ID], pad_token_id=EOS_ID,
                     do_sample=False, max_new_tokens=128).save_pretrained(args.output)
    if not (args.output / "tokenizer.json").exists():
        shutil.copyfile(TOKENIZER, args.output / "tokenizer.json")
    summary = {
        "settings": {k: (display(v) if isinstance(v, pathlib.Path) else v) for k, v in vars(args).items()},
        "parameters": params, "device": torch.cuda.get_device_name() if use_bf16 else "cpu",
        "torch": torch.__version__, "steps_done": step + 1, "stopped_early": stopped_early,
        "tokens_per_step": tokens_per_step, "epoch_tokens": int(epoch_tokens),
        "train_seconds": train_seconds, "curve": curve,
        "held_out_loss_training_precision": final, "held_out_tokens_scored": held_out[:, 1:].numel(),
    }
    (args.output / "training.json").write_text(json.dumps(summary, indent=1) + "\n")
    print(f"done in {train_seconds:.0f} s; wrote {args.output}", flush=True)


if __name__ == "__main__":
    main()
