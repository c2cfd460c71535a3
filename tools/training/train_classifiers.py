#!/usr/bin/env python3
"""Fine-tune the bundled model's backbone (models/sc2-tiny) into sc2's two classifiers.

  tagger  Starcoder2ForTokenClassification, labels O EMAIL IP_ADDRESS KEY PASSWORD,
          on .tagdata/tagger.npz: chunks of 512 positions whose targets are the
          labels of the tokens label_delay positions earlier (see
          tools/data/make_tagger_data.py); cross-entropy over the positions with a target.
  langid  Starcoder2ForSequenceClassification, labels python c shell other, on
          .tagdata/langid.npz: sequences of at most 256 tokens, right-padded with
          <fim_pad> (pad_token_id) in class-balanced batches.

Both start from the causal LM's weights (the score layers are new), train every
weight with AdamW (linear warm-up, cosine decay), bf16 autocast on a GPU, and
are saved with save_pretrained in bf16 with training.json (settings, loss
curve, a held-out check at training precision; the reference metrics are
tools/evaluation/eval_classifiers.py's, in float32).

    python3 tools/data/make_tagger_data.py                       # .tagdata/
    python3 tools/training/train_classifiers.py --device cuda        # models/sc2-tagger, models/sc2-langid
    python3 tools/evaluation/eval_classifiers.py                       # PyTorch metrics, sc2's fixtures
Needs torch, transformers, numpy.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import pathlib
import sys
import time

import numpy as np
import torch

ROOT = pathlib.Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "tools" / "evaluation"))
from eval_classifiers import langid_metrics, tagger_metrics  # noqa: E402

PAD_ID = 4  # <fim_pad>


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--base", type=pathlib.Path, default=ROOT / "models" / "sc2-tiny")
    p.add_argument("--data", type=pathlib.Path, default=ROOT / ".tagdata")
    p.add_argument("--out", type=pathlib.Path, default=ROOT / "models")
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--threads", type=int, default=0)
    p.add_argument("--only", choices=["tagger", "langid"], default=None)
    p.add_argument("--seed", type=int, default=1234)
    p.add_argument("--tagger-steps", type=int, default=1500)
    p.add_argument("--tagger-batch", type=int, default=32)
    p.add_argument("--tagger-lr", type=float, default=6e-4)
    p.add_argument("--langid-steps", type=int, default=500)
    p.add_argument("--langid-batch", type=int, default=64)
    p.add_argument("--langid-lr", type=float, default=4e-4)
    p.add_argument("--warmup", type=int, default=60)
    p.add_argument("--weight-decay", type=float, default=0.01)
    p.add_argument("--clip", type=float, default=1.0)
    p.add_argument("--max-minutes", type=float, default=0.0, help="per model: stop early after this long (0: never)")
    return p.parse_args()


def lr_at(step: int, steps: int, peak: float, warmup: int) -> float:
    if step < warmup:
        return peak * (step + 1) / warmup
    progress = min(1.0, (step - warmup) / max(1, steps - warmup))
    return peak * (0.1 + 0.9 * 0.5 * (1.0 + math.cos(math.pi * progress)))


def optimizer_for(model, lr, weight_decay, fused):
    decay = [p for _, p in model.named_parameters() if p.dim() >= 2]
    no_decay = [p for _, p in model.named_parameters() if p.dim() < 2]
    return torch.optim.AdamW([{"params": decay, "weight_decay": weight_decay},
                              {"params": no_decay, "weight_decay": 0.0}], lr=lr, betas=(0.9, 0.98), eps=1e-8,
                             fused=fused)


def train_loop(name, model, batches, steps, peak_lr, args, device, autocast, loss_of, check):
    model.train()
    optimizer = optimizer_for(model, peak_lr, args.weight_decay, device.startswith("cuda"))
    curve, start, window, n = [], time.time(), 0.0, 0
    stopped_early = False
    step = 0
    for step in range(steps):
        for group in optimizer.param_groups:
            group["lr"] = lr_at(step, steps, peak_lr, args.warmup)
        with autocast():
            loss = loss_of(model, next(batches))
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), args.clip)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        window += loss.item()
        n += 1
        if (step + 1) % 100 == 0 or step + 1 == steps:
            point = {"step": step + 1, "lr": lr_at(step, steps, peak_lr, args.warmup), "train_loss": window / n,
                     "seconds": time.time() - start}
            curve.append(point)
            print(name, json.dumps(point), flush=True)
            window, n = 0.0, 0
        if args.max_minutes and time.time() - start > args.max_minutes * 60 and step + 1 < steps:
            stopped_early = True
            print(f"{name}: time cap reached after {step + 1} steps", flush=True)
            break
    seconds = time.time() - start
    model.eval()
    with torch.no_grad(), autocast():
        held_out = check(model)
    return {"steps_done": step + 1, "stopped_early": stopped_early, "train_seconds": seconds, "curve": curve,
            "held_out_training_precision": held_out}


def save(model, out: pathlib.Path, summary: dict) -> None:
    out.mkdir(parents=True, exist_ok=True)
    model.to(torch.bfloat16).save_pretrained(out, safe_serialization=True)
    (out / "generation_config.json").unlink(missing_ok=True)
    (out / "training.json").write_text(json.dumps(summary, indent=1) + "\n")


def train_tagger(args, device, autocast, meta):
    from transformers import Starcoder2ForTokenClassification
    data = np.load(args.data / "tagger.npz")
    labels = meta["labels"]
    model = Starcoder2ForTokenClassification.from_pretrained(
        args.base, num_labels=len(labels), id2label=dict(enumerate(labels)),
        label2id={l: i for i, l in enumerate(labels)}, dtype=torch.float32).to(device)
    model.config.label_delay = meta["label_delay"]
    model.config.redaction_placeholders = meta["placeholders"]
    ids = torch.from_numpy(data["train_ids"].astype(np.int64))
    targets = torch.from_numpy(data["train_targets"].astype(np.int64))
    targets[targets < 0] = -100
    g = torch.Generator().manual_seed(args.seed)

    def batches():
        while True:
            perm = torch.randperm(len(ids), generator=g)
            for i in range(0, len(perm) - args.tagger_batch + 1, args.tagger_batch):
                j = perm[i:i + args.tagger_batch]
                yield ids[j].to(device, non_blocking=True), targets[j].to(device, non_blocking=True)

    def loss_of(model, batch):
        x, y = batch
        logits = model(input_ids=x).logits
        return torch.nn.functional.cross_entropy(logits.float().flatten(0, 1), y.flatten(), ignore_index=-100)

    delay = meta["label_delay"]

    def check(model):
        flat, lengths, gold = data["eval_ids"].astype(np.int64), data["eval_lengths"], data["eval_gold"]
        golds, preds, at, g_at = [], [], 0, 0
        for n in lengths:
            x = torch.from_numpy(flat[at:at + n])[None].to(device)
            preds.append(model(input_ids=x).logits[0, delay:].argmax(-1).cpu().numpy())
            golds.append(gold[g_at:g_at + n - delay])
            at, g_at = at + n, g_at + n - delay
        m = tagger_metrics(golds, preds, labels)
        return {"span_f1": {k: v["f1"] for k, v in m["span"].items()},
                "token_f1": {k: v["f1"] for k, v in m["token"].items()}}

    print(f"tagger: {len(ids)} chunks of {ids.shape[1]}, {args.tagger_steps} steps of {args.tagger_batch}", flush=True)
    result = train_loop("tagger", model, batches(), args.tagger_steps, args.tagger_lr, args, device, autocast,
                        loss_of, check)
    print("tagger held-out (training precision):", json.dumps(result["held_out_training_precision"]), flush=True)
    return model, result


def train_langid(args, device, autocast, meta):
    from transformers import Starcoder2ForSequenceClassification
    data = np.load(args.data / "langid.npz")
    langs = meta["langs"]
    model = Starcoder2ForSequenceClassification.from_pretrained(
        args.base, num_labels=len(langs), id2label=dict(enumerate(langs)),
        label2id={l: i for i, l in enumerate(langs)}, pad_token_id=PAD_ID, dtype=torch.float32).to(device)
    model.config.max_tokens = meta["langid_tokens"]
    flat, offsets, labels = data["train_ids"].astype(np.int64), data["train_offsets"], data["train_labels"]
    by_class = [np.flatnonzero(labels == c) for c in range(len(langs))]
    rng = np.random.default_rng(args.seed)

    def pad(seqs):
        T = max(len(s) for s in seqs)
        x = torch.full((len(seqs), T), PAD_ID, dtype=torch.long)
        mask = torch.zeros((len(seqs), T), dtype=torch.long)
        for i, s in enumerate(seqs):
            x[i, :len(s)] = torch.from_numpy(s)
            mask[i, :len(s)] = 1
        return x, mask

    def batches():
        while True:
            classes = rng.integers(0, len(langs), args.langid_batch)
            rows = [rng.choice(by_class[c]) for c in classes]
            x, mask = pad([flat[offsets[r]:offsets[r + 1]] for r in rows])
            yield x.to(device), mask.to(device), torch.from_numpy(classes).to(device)

    def loss_of(model, batch):
        x, mask, y = batch
        return torch.nn.functional.cross_entropy(model(input_ids=x, attention_mask=mask).logits.float(), y)

    def check(model):
        e_flat, e_off, gold = data["eval_ids"].astype(np.int64), data["eval_offsets"], data["eval_labels"]
        pred = [model(input_ids=torch.from_numpy(e_flat[e_off[b]:e_off[b + 1]])[None].to(device)).logits[0]
                .argmax().item() for b in range(len(gold))]
        m = langid_metrics(gold, pred, langs)
        return {"accuracy": m["accuracy"], "per_class": {k: v["accuracy"] for k, v in m["per_class"].items()}}

    print(f"langid: {len(labels)} sequences, {args.langid_steps} steps of {args.langid_batch}", flush=True)
    result = train_loop("langid", model, batches(), args.langid_steps, args.langid_lr, args, device, autocast,
                        loss_of, check)
    print("langid held-out (training precision):", json.dumps(result["held_out_training_precision"]), flush=True)
    return model, result


def main() -> None:
    args = parse_args()
    torch.manual_seed(args.seed)
    device = args.device
    if device == "cpu":
        torch.set_num_threads(args.threads or os.cpu_count() or 1)
    use_bf16 = device.startswith("cuda")
    if use_bf16:
        torch.backends.cuda.matmul.allow_tf32 = True

    def autocast():
        return torch.autocast("cuda", dtype=torch.bfloat16) if use_bf16 else torch.autocast("cpu", enabled=False)

    meta = json.loads((args.data / "summary.json").read_text())
    def display(path: pathlib.Path) -> str:
        path = path.resolve()
        return path.relative_to(ROOT).as_posix() if path.is_relative_to(ROOT) else str(path)

    common = {"settings": {k: (display(v) if isinstance(v, pathlib.Path) else v) for k, v in vars(args).items()},
              "base": "models/sc2-tiny", "device": torch.cuda.get_device_name() if use_bf16 else "cpu",
              "torch": torch.__version__, "data": meta}
    import transformers
    common["transformers"] = transformers.__version__
    for name, fn in (("tagger", train_tagger), ("langid", train_langid)):
        if args.only and args.only != name:
            continue
        torch.manual_seed(args.seed)
        model, result = fn(args, device, autocast, meta)
        save(model, args.out / f"sc2-{name}", {**common, **result})
        print(f"{name}: saved to {args.out / f'sc2-{name}'}", flush=True)


if __name__ == "__main__":
    main()
