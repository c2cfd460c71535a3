#!/usr/bin/env python3
"""sc2 and PyTorch + transformers side by side on the CPU: the same random-weight StarCoder2
checkpoint, the same threads, one run.

  python3 bench/compare_pytorch_cpu.py [--build build] [--preset 3B] [--threads 2]
                                       [--prompts 512 2048] [--decode 32]
                                       [--isas avx512 amx amxbf16] [--json out.json]

Writes a bf16 checkpoint of the preset's shape with sc2-make-checkpoint (unless --checkpoint
names one), then for each prompt length times:

  - transformers (Starcoder2ForCausalLM, bf16 weights and activations, sdpa attention; PyTorch
    runs its bf16 matrix products through oneDNN, on AMX tiles where the processor has them):
    the prompt as one forward pass, then greedy decode through its KV cache;
  - sc2-bench on each of --isas the processor supports (a path it lacks is reported skipped):
    prefill of the prompt, time to first token, and decode.

Prints one table (tokens/s, and sc2 over PyTorch) with the processor's name and features, and
writes every figure to --json. Needs torch, transformers and safetensors (never CI).
"""
import argparse
import json
import platform
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def processor():
    name, flags = platform.processor(), []
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                name = line.split(":", 1)[1].strip()
            if line.startswith("flags"):
                have = set(line.split(":", 1)[1].split())
                flags = [f for f in ("avx2", "fma", "avx512f", "avx512_bf16", "avx512_fp16", "amx_tile", "amx_bf16",
                                     "amx_int8") if f in have]
                break
    except OSError:
        pass
    return name, flags


def run_sc2(bench, checkpoint, isa, threads, prompt, decode):
    cmd = [str(bench / "sc2-bench"), "--model", str(checkpoint), "--threads", str(threads), "--prompt-tokens",
           str(prompt), "--decode-tokens", str(decode), "--isa", isa, "--json"]
    run = subprocess.run(cmd, capture_output=True, text=True)
    if run.returncode != 0:
        if "does not support" in run.stderr:
            return None
        sys.exit(f"{' '.join(cmd)} failed:\n{run.stderr}")
    return json.loads(run.stdout)


def run_transformers(checkpoint, threads, prompts, decode, vocab):
    import warnings

    import torch
    import transformers
    from transformers import Starcoder2ForCausalLM

    # The explicit KV-cache loop below uses the argument names every recent release accepts.
    warnings.filterwarnings("ignore", category=FutureWarning)
    transformers.logging.set_verbosity_error()
    torch.set_num_threads(threads)
    try:
        model = Starcoder2ForCausalLM.from_pretrained(checkpoint, dtype=torch.bfloat16, attn_implementation="sdpa")
    except TypeError:  # transformers before 4.56 names it torch_dtype
        model = Starcoder2ForCausalLM.from_pretrained(checkpoint, torch_dtype=torch.bfloat16,
                                                      attn_implementation="sdpa")
    model.eval()
    g = torch.Generator().manual_seed(42)
    out = {"torch": torch.__version__, "onednn": torch.backends.mkldnn.is_available()}
    with torch.inference_mode():
        model(torch.randint(0, vocab, (1, 16), generator=g))  # first call: oneDNN builds its kernels
        for prompt in prompts:
            ids = torch.randint(0, vocab, (1, prompt), generator=g)
            start = time.perf_counter()
            result = model(ids, use_cache=True)
            token = result.logits[:, -1:].argmax(-1)
            prefill = time.perf_counter() - start
            entry = {"prefill_s": prefill, "prefill_tokens_per_s": prompt / prefill, "time_to_first_token_s": prefill}
            if prompt == prompts[0] and decode > 0:
                past = result.past_key_values
                start = time.perf_counter()
                for _ in range(decode):
                    result = model(token, past_key_values=past, use_cache=True)
                    past, token = result.past_key_values, result.logits[:, -1:].argmax(-1)
                entry["decode_tokens_per_s"] = decode / (time.perf_counter() - start)
            out[str(prompt)] = entry
    return out


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--build", default=str(ROOT / "build"), help="build folder holding bench/sc2-bench")
    p.add_argument("--checkpoint", default="", help="bf16 checkpoint (default: made under /tmp for --preset)")
    p.add_argument("--preset", default="3B")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--prompts", type=int, nargs="+", default=[512, 2048])
    p.add_argument("--decode", type=int, default=32, help="tokens decoded after the first prompt")
    p.add_argument("--isas", nargs="+", default=["avx512", "amx", "amxbf16"])
    p.add_argument("--json", default="", help="write every figure here")
    args = p.parse_args()

    bench = Path(args.build) / "bench"
    checkpoint = Path(args.checkpoint or f"/tmp/sc2-{args.preset.lower()}-bf16")
    if not (checkpoint / "config.json").exists():
        subprocess.run([str(bench / "sc2-make-checkpoint"), "--preset", args.preset, "--dtype", "bf16", "--out",
                        str(checkpoint)], check=True)
    vocab = json.load(open(checkpoint / "config.json"))["vocab_size"]

    name, flags = processor()
    result = {"date": time.strftime("%Y-%m-%d"), "processor": name, "features": flags, "threads": args.threads,
              "checkpoint": str(checkpoint), "preset": args.preset, "prompts": args.prompts, "decode": args.decode,
              "sc2": {}}
    for isa in args.isas:
        runs = {}
        for prompt in args.prompts:
            got = run_sc2(bench, checkpoint, isa, args.threads, prompt, args.decode if prompt == args.prompts[0] else 0)
            if got is None:
                runs = None
                break
            runs[str(prompt)] = got
        result["sc2"][isa] = runs
    result["transformers"] = run_transformers(str(checkpoint), args.threads, args.prompts, args.decode, vocab)

    tf = result["transformers"]
    print(f"{result['date']}, {name} ({' '.join(flags)}), {args.threads} threads, {args.preset} shape, bf16 weights")
    head = " | ".join(f"prefill {n} tok/s" for n in args.prompts)
    print(f"| engine | {head} | first token after {args.prompts[-1]} tokens, s | decode tok/s |")
    print("|---|" + "---|" * (len(args.prompts) + 2))

    def row(label, runs):
        cells = []
        for n in args.prompts:
            r = runs[str(n)]
            ratio = "" if runs is tf else f" ({r['prefill_tokens_per_s'] / tf[str(n)]['prefill_tokens_per_s']:.2f}×)"
            cells.append(f"{r['prefill_tokens_per_s']:.1f}{ratio}")
        last = runs[str(args.prompts[-1])]["time_to_first_token_s"]
        first = runs[str(args.prompts[0])]
        decode = first.get("decode_tokens_per_s", 0.0)
        ratio = "" if runs is tf or not decode else f" ({decode / tf[str(args.prompts[0])]['decode_tokens_per_s']:.2f}×)"
        print(f"| {label} | " + " | ".join(cells) + f" | {last:.1f} | {decode:.2f}{ratio} |")

    row(f"PyTorch {tf['torch']} + transformers, bf16", tf)
    for isa, runs in result["sc2"].items():
        if runs is None:
            print(f"| sc2 {isa} | skipped: this processor lacks it |" + " |" * (len(args.prompts) + 1))
        else:
            row(f"sc2 {isa}", runs)
    if args.json:
        json.dump(result, open(args.json, "w"), indent=2)


if __name__ == "__main__":
    sys.exit(main())
