#!/usr/bin/env python3
"""Held-out metrics of the secrets tagger and the language identifier, by PyTorch, and sc2's test fixtures.

Runs models/sc2-tagger and models/sc2-langid with transformers on the CPU in
float32 (the bf16 weights widened, as sc2 computes) over the held-out examples
of .tagdata/ (tools/data/make_tagger_data.py), one sequence at a time, and writes:

  tests/fixtures/tagger/heldout.safetensors
      ids I16 (all chunks, flat), lengths I32 (positions per chunk), gold U8
      (labels of the scored tokens: length - label_delay per chunk), torch_pred
      U8 (PyTorch's argmax for those tokens), logits F32 (PyTorch's logits of
      the first LOGIT_CHUNKS chunks, every position, flat (positions, L))
  tests/fixtures/langid/heldout.safetensors
      ids I16 (flat), offsets I32 (B + 1), gold U8 (B), torch_pred U8 (B),
      logits F32 (B, L)
  tests/fixtures/{tagger,langid}/metrics.json   PyTorch's counts and metrics

Metrics (sc2's test recomputes them with the same definitions):
  tagger, span level: the label of token j of a chunk is the argmax of the
      logits at position j + label_delay. A span is a maximal run of tokens
      with the same label other than O, within a chunk. A predicted span is
      a true positive iff a gold span has the same first token, last token and
      label (exact match). Per label: precision = TP / predicted spans, recall
      = TP / gold spans, F1 their harmonic mean; "micro" pools the labels.
  tagger, token level: per label, TP = tokens predicted and gold with that
      label, FP = predicted only, FN = gold only.
  language ID: accuracy = argmax equals the gold label; per class too.

    python3 tools/evaluation/eval_classifiers.py [--tagger models/sc2-tagger] [--langid models/sc2-langid]
Needs torch, transformers, numpy, safetensors.
"""

from __future__ import annotations

import argparse
import json
import pathlib

import numpy as np

ROOT = pathlib.Path(__file__).resolve().parents[2]
LOGIT_CHUNKS = 6


def runs(labels) -> list[tuple[int, int, int]]:
    """Maximal runs [begin, end) of equal labels other than O (0)."""
    out, t, labels = [], 0, [int(x) for x in labels]
    while t < len(labels):
        if labels[t] == 0:
            t += 1
            continue
        u = t
        while u < len(labels) and labels[u] == labels[t]:
            u += 1
        out.append((t, u, labels[t]))
        t = u
    return out


def prf(tp: int, fp: int, fn: int) -> dict:
    p = tp / (tp + fp) if tp + fp else 0.0
    r = tp / (tp + fn) if tp + fn else 0.0
    f = 2 * p * r / (p + r) if p + r else 0.0
    return {"tp": tp, "fp": fp, "fn": fn, "precision": p, "recall": r, "f1": f}


def tagger_metrics(golds: list[np.ndarray], preds: list[np.ndarray], labels: list[str]) -> dict:
    """Span- and token-level counts and metrics per label (labels[0] is O), over chunks."""
    L = len(labels)
    span = np.zeros((L, 3), dtype=np.int64)   # tp, fp, fn
    token = np.zeros((L, 3), dtype=np.int64)
    for gold, pred in zip(golds, preds):
        g, p = set(runs(gold)), set(runs(pred))
        for b, e, lab in p:
            span[lab, 0 if (b, e, lab) in g else 1] += 1
        for b, e, lab in g - p:
            span[lab, 2] += 1
        gold, pred = np.asarray(gold), np.asarray(pred)
        for lab in range(1, L):
            token[lab, 0] += int(((gold == lab) & (pred == lab)).sum())
            token[lab, 1] += int(((gold != lab) & (pred == lab)).sum())
            token[lab, 2] += int(((gold == lab) & (pred != lab)).sum())
    out = {"span": {}, "token": {}}
    for name, table in (("span", span), ("token", token)):
        for lab in range(1, L):
            out[name][labels[lab]] = prf(*map(int, table[lab]))
        out[name]["micro"] = prf(*map(int, table[1:].sum(0)))
    out["tokens"] = int(sum(len(g) for g in golds))
    out["chunks"] = len(golds)
    return out


def langid_metrics(gold, pred, labels: list[str]) -> dict:
    gold, pred = np.asarray(gold), np.asarray(pred)
    per = {labels[c]: {"examples": int((gold == c).sum()), "correct": int(((gold == c) & (pred == c)).sum())}
           for c in range(len(labels))}
    for v in per.values():
        v["accuracy"] = v["correct"] / v["examples"] if v["examples"] else 0.0
    confusion = [[int(((gold == a) & (pred == b)).sum()) for b in range(len(labels))] for a in range(len(labels))]
    return {"examples": int(len(gold)), "correct": int((gold == pred).sum()),
            "accuracy": float((gold == pred).mean()), "per_class": per, "confusion": confusion}


def main() -> None:
    import torch

    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", type=pathlib.Path, default=ROOT / ".tagdata")
    p.add_argument("--tagger", type=pathlib.Path, default=ROOT / "models" / "sc2-tagger")
    p.add_argument("--langid", type=pathlib.Path, default=ROOT / "models" / "sc2-langid")
    p.add_argument("--fixtures", type=pathlib.Path, default=ROOT / "tests" / "fixtures")
    p.add_argument("--only", choices=["tagger", "langid"], default=None)
    args = p.parse_args()
    torch.set_num_threads(2)
    if args.only != "langid":
        eval_tagger(args)
    if args.only != "tagger":
        eval_langid(args)


def eval_tagger(args) -> None:
    import torch
    from safetensors.torch import save_file
    from transformers import Starcoder2ForTokenClassification

    data = np.load(args.data / "tagger.npz")
    model = Starcoder2ForTokenClassification.from_pretrained(args.tagger, dtype=torch.float32).eval()
    labels = [model.config.id2label[i] for i in range(model.config.num_labels)]
    delay = int(model.config.label_delay)
    ids_flat, lengths, gold_flat = data["eval_ids"].astype(np.int64), data["eval_lengths"], data["eval_gold"]
    golds, preds, logit_rows = [], [], []
    at = g_at = 0
    with torch.no_grad():
        for k, n in enumerate(lengths):
            ids = torch.from_numpy(ids_flat[at:at + n])[None]
            logits = model(input_ids=ids).logits[0]
            pred = logits[delay:].argmax(-1).numpy().astype(np.uint8)
            golds.append(gold_flat[g_at:g_at + n - delay])
            preds.append(pred)
            if k < LOGIT_CHUNKS:
                logit_rows.append(logits.float())
            at += n
            g_at += n - delay
    metrics = tagger_metrics(golds, preds, labels)
    metrics.update({"labels": labels, "label_delay": delay, "computed_by": f"PyTorch {torch.__version__}, float32, CPU",
                    "logit_chunks": LOGIT_CHUNKS})
    out = args.fixtures / "tagger"
    out.mkdir(parents=True, exist_ok=True)
    save_file({"ids": torch.from_numpy(data["eval_ids"].astype(np.int16)),
               "lengths": torch.from_numpy(lengths.astype(np.int32)),
               "gold": torch.from_numpy(gold_flat.astype(np.uint8)),
               "torch_pred": torch.from_numpy(np.concatenate(preds)),
               "logits": torch.cat(logit_rows).contiguous()}, out / "heldout.safetensors")
    (out / "metrics.json").write_text(json.dumps(metrics, indent=1) + "\n")
    print("tagger span F1:", {k: round(v["f1"], 4) for k, v in metrics["span"].items()})
    print("tagger token F1:", {k: round(v["f1"], 4) for k, v in metrics["token"].items()})



def eval_langid(args) -> None:
    import torch
    from safetensors.torch import save_file
    from transformers import Starcoder2ForSequenceClassification

    data = np.load(args.data / "langid.npz")
    model = Starcoder2ForSequenceClassification.from_pretrained(args.langid, dtype=torch.float32).eval()
    labels = [model.config.id2label[i] for i in range(model.config.num_labels)]
    ids_flat, offsets, gold = data["eval_ids"].astype(np.int64), data["eval_offsets"], data["eval_labels"]
    all_logits = []
    with torch.no_grad():
        for b in range(len(gold)):
            ids = torch.from_numpy(ids_flat[offsets[b]:offsets[b + 1]])[None]
            all_logits.append(model(input_ids=ids).logits[0].float())
    logits = torch.stack(all_logits)
    pred = logits.argmax(-1).numpy().astype(np.uint8)
    metrics = langid_metrics(gold, pred, labels)
    metrics.update({"labels": labels, "computed_by": f"PyTorch {torch.__version__}, float32, CPU"})
    out = args.fixtures / "langid"
    out.mkdir(parents=True, exist_ok=True)
    save_file({"ids": torch.from_numpy(data["eval_ids"].astype(np.int16)),
               "offsets": torch.from_numpy(offsets.astype(np.int32)),
               "gold": torch.from_numpy(gold.astype(np.uint8)), "torch_pred": torch.from_numpy(pred),
               "logits": logits.contiguous()}, out / "heldout.safetensors")
    (out / "metrics.json").write_text(json.dumps(metrics, indent=1) + "\n")
    print("language ID accuracy:", metrics["accuracy"], {k: v["accuracy"] for k, v in metrics["per_class"].items()})


if __name__ == "__main__":
    main()
