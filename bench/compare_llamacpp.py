#!/usr/bin/env python3
"""sc2 and llama.cpp side by side on the same random-weight StarCoder2 checkpoint.

  python3 bench/compare_llamacpp.py --llama /path/to/llama.cpp [--preset 3B] [--dtype bf16 f16]
                                    [--quant q8_0 q4_k_m] [--threads 2] [--prompt 512] [--decode 128] [--runs 2]

For each dtype: writes a random checkpoint of the preset's shape with sc2-make-checkpoint (plus a
49152-token tokenizer from tools/training/train_tokenizer.py, which llama.cpp's converter needs), converts the
same weights to GGUF with llama.cpp's own convert_hf_to_gguf.py, then runs llama-bench and sc2-bench
alternately (same threads, prompt and decode lengths) and prints both, their ratio, the machine's read
bandwidth and sc2's decode as a share of the bandwidth roofline (weight bytes x tokens/s / bandwidth), and
sc2's prefill in GFLOP/s as a share of the arithmetic peak of the multiply-add its linear layers use
(sc2-bench --peak).
With --quant, llama.cpp's own llama-quantize turns the bf16 GGUF into Q8_0 / Q4_K_M files (reference
quantizers, no importance matrix), and both engines run the same file: sc2 on its default path (weights
decoded to float in registers, the bits of the dequantized float weights) and on the opt-in integer path
(--quant-isa, default avx512vnni: activations quantized to int8 per 32, as llama.cpp does).
With --depths it also times decode after 1k..16k tokens of context (sc2 advances its cache without
computing the context, which costs the same per decoded token; llama-bench's -d fills it for real, so
--llama-max-depth bounds how far llama.cpp is run).

Build llama.cpp outside this repository first, from its public source; the PyPI sdist of
llama-cpp-python bundles it (vendor/llama.cpp, with its converter and gguf-py):
  pip download --no-deps --no-binary :all: llama-cpp-python==0.3.36 -d /tmp/llamapy
  tar -xzf /tmp/llamapy/llama_cpp_python-0.3.36.tar.gz -C /tmp && L=/tmp/llama_cpp_python-0.3.36/vendor/llama.cpp
  cmake -S $L -B $L/build -DCMAKE_BUILD_TYPE=Release -DGGML_NATIVE=ON -DLLAMA_CURL=OFF
  cmake --build $L/build -j --target llama-bench llama-quantize
  python3 bench/compare_llamacpp.py --llama $L --depths 1024 4096 8192 16384 --llama-max-depth 1024
The converter runs on the Python of tools/ (torch, numpy, safetensors).

sc2 runs its default path (float32 arithmetic, the best SIMD the processor has). llama.cpp multiplies
bf16 weights by activations rounded to bf16 where the processor has AVX-512 BF16; --sc2-isa avx512bf16
makes sc2 do the same in prefill, for a like-for-like figure there (it is never sc2's default).
"""
import argparse
import json
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


# llama.cpp's converter names the pre-tokenizer by hashing how the tokenizer splits a probe text, and
# refuses a vocabulary it has not seen. The random checkpoint's tokenizer is trained here, so it is told
# the StarCoder pre-tokenizer (the one StarCoder2 checkpoints use); the weights are converted untouched.
CONVERT = """
import runpy, sys
from pathlib import Path
llama = Path(sys.argv[1])
sys.path[0:0] = [str(llama), str(llama / "gguf-py")]
import conversion.base
conversion.base.TextModel.get_vocab_base_pre = lambda self, tokenizer: "starcoder"
sys.argv = [str(llama / "convert_hf_to_gguf.py")] + sys.argv[2:]
runpy.run_path(sys.argv[0], run_name="__main__")
"""


def run(cmd, **kw):
    print("+", " ".join(map(str, cmd)), file=sys.stderr, flush=True)
    return subprocess.run(list(map(str, cmd)), check=True, text=True, capture_output=True, **kw).stdout


def prepare(args, dtype: str) -> tuple[Path, Path]:
    work = Path(args.work)
    ckpt = work / f"{args.preset.lower()}-{dtype}"
    if not (ckpt / "model.safetensors").exists():
        run([args.build / "bench/sc2-make-checkpoint", "--preset", args.preset, "--dtype", dtype, "--out", ckpt])
    if not (ckpt / "tokenizer.json").exists():
        shared = work / "tokenizer-49152.json"
        if not shared.exists():
            run([sys.executable, ROOT / "tools/training/train_tokenizer.py", "--vocab-size", "49152", "--output", shared])
        shutil.copy(shared, ckpt / "tokenizer.json")
    gguf = work / f"{args.preset.lower()}-{dtype}.gguf"
    if not gguf.exists():
        run([sys.executable, "-c", CONVERT, args.llama, ckpt, "--outtype", dtype, "--outfile", gguf])
    return ckpt, gguf


def quantize(args, bf16_gguf: Path, quant: str) -> Path:
    """The bf16 GGUF quantized by llama.cpp's llama-quantize (Q8_0, Q4_K_M, ...)."""
    out = (Path(args.work) / f"{args.preset.lower()}-{quant}.gguf").resolve()  # absolute: llama-quantize reads a leading number as a type
    if not out.exists():
        run([Path(args.llama) / "build/bin/llama-quantize", bf16_gguf.resolve(), out, quant.upper()])
    return out


def llama_bench(args, gguf: Path, depth: int = 0) -> dict:
    cmd = [Path(args.llama) / "build/bin/llama-bench", "-m", gguf, "-t", args.threads, "-p", args.prompt,
           "-n", args.decode, "-r", 1, "-o", "json"]
    if depth:
        cmd += ["-d", depth]
    if args.llama_repack0:
        cmd += ["--repack", "0"]
    try:
        rows = json.loads(run(cmd))
    except subprocess.CalledProcessError as e:
        if args.llama_repack0 or e.returncode >= 0:
            raise
        # llama.cpp 0.3.36's AMX repacking (ggml_backend_amx_mul_mat) crashes on some machines: run it
        # without the repacked weights from then on, and say so.
        print(f"llama-bench died of signal {-e.returncode}; running it with --repack 0 from now on", file=sys.stderr)
        args.llama_repack0 = True
        return llama_bench(args, gguf, depth)
    out = {}
    for r in rows:
        key = "prefill" if r["n_prompt"] > 0 else "decode"
        out[key] = r["avg_ts"]
    return out


def sc2_bench(args, ckpt: Path, depth: int = 0, roofline: bool = False, isa: str | None = None) -> dict:
    cmd = [args.build / "bench/sc2-bench", "--model", ckpt, "--threads", args.threads, "--prompt-tokens",
           args.prompt, "--decode-tokens", args.decode, "--json"]
    if depth:
        cmd += ["--depth", depth]
    if roofline:
        cmd += ["--bandwidth", "--peak"]
    isa = args.sc2_isa if isa is None else isa
    if isa:
        cmd += ["--isa", isa]
    r = json.loads(run(cmd))
    return {"isa": r["isa"], "prefill": r["prefill_tokens_per_s"], "decode": r["decode_tokens_per_s"],
            "prefill_gflops": r["prefill_gflops_per_s"], "peak": r.get("peak_gflops_per_s", 0.0),
            "weights": r["weight_bytes"], "bandwidth": r.get("read_bandwidth_gbs", 0.0), "rss": r["peak_rss_bytes"], "cache": r["cache_bytes"]}


def best(runs: list, key: str) -> float:
    return max(r[key] for r in runs)


def percent(part: float, whole: float) -> str:
    return f"{100 * part / whole:.0f}%" if whole > 0 else "n/a"


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--llama", required=True, help="llama.cpp source dir with build/bin/llama-bench")
    p.add_argument("--build", default=str(ROOT / "build"), help="sc2 build dir")
    p.add_argument("--work", default="/tmp/sc2-compare")
    p.add_argument("--preset", default="3B", choices=["3B", "7B", "15B"])
    p.add_argument("--dtype", nargs="*", default=["bf16", "f16"], choices=["bf16", "f16", "f32"])
    p.add_argument("--quant", nargs="*", default=[], choices=["q8_0", "q4_0", "q4_k_m", "q4_k_s", "q5_k_m", "q6_k"],
                   help="also run GGUF files that llama-quantize makes from the bf16 one")
    p.add_argument("--quant-isa", default="avx512vnni",
                   help="sc2's second path for --quant files (empty: only the default path)")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--prompt", type=int, default=512)
    p.add_argument("--decode", type=int, default=128)
    p.add_argument("--runs", type=int, default=2)
    p.add_argument("--llama-repack0", action="store_true",
                   help="run llama-bench with --repack 0 (no AMX repacking; taken by itself if llama-bench crashes)")
    p.add_argument("--sc2-isa", default="", help="force sc2's SIMD path (scalar, avx2, avx512, avx512bf16, amx, amxbf16)")
    p.add_argument("--depths", type=int, nargs="*", default=[], help="also decode after these context lengths")
    p.add_argument("--llama-max-depth", type=int, default=1 << 30,
                   help="run llama.cpp only at depths up to this (it prefills the whole context for real, "
                        "about 16 minutes for 16k tokens on 2 cores)")
    args = p.parse_args()
    args.build = Path(args.build)
    Path(args.work).mkdir(parents=True, exist_ok=True)

    table = []
    isa = ""
    for dtype in args.dtype:
        ckpt, gguf = prepare(args, dtype)
        sc2_runs, llama_runs = [], []
        for i in range(args.runs):  # alternate, so that drift in the machine hits both alike
            sc2_runs.append(sc2_bench(args, ckpt, roofline=True))
            llama_runs.append(llama_bench(args, gguf))
        s, l = sc2_runs[0], llama_runs
        isa = s["isa"]
        bandwidth = best(sc2_runs, "bandwidth")  # the machine's best: the roofline is not flattered by a slow moment
        roofline = bandwidth * 1e9 / s["weights"]
        peak = best(sc2_runs, "peak")  # likewise the best multiply-add rate
        table.append({
            "dtype": dtype, "weights_gb": s["weights"] / 1e9, "bandwidth_gbs": bandwidth,
            "prefill_sc2": best(sc2_runs, "prefill"), "prefill_llama": best(l, "prefill"),
            "prefill_gflops": best(sc2_runs, "prefill_gflops"), "peak_gflops": peak,
            "decode_sc2": best(sc2_runs, "decode"), "decode_llama": best(l, "decode"),
            "decode_roofline": roofline, "rss_gb": max(r["rss"] for r in sc2_runs) / 1e9,
            "rss_budget_gb": (s["weights"] + s["cache"]) / 1e9,
        })
        for depth in args.depths:
            d_sc2 = sc2_bench(args, ckpt, depth=depth)["decode"]
            d_llama = float("nan")
            if depth <= args.llama_max_depth:
                d_llama = llama_bench(args, gguf, depth=depth).get("decode", float("nan"))
            table.append({"dtype": dtype, "depth": depth, "decode_sc2": d_sc2, "decode_llama": d_llama})

    for quant in args.quant:
        _, bf16_gguf = prepare(args, "bf16")
        gguf = quantize(args, bf16_gguf, quant)
        paths = [""] + ([args.quant_isa] if args.quant_isa else [])
        runs = {path: [] for path in paths}
        llama_runs = []
        for i in range(args.runs):
            for path in paths:
                runs[path].append(sc2_bench(args, gguf, roofline=True, isa=path))
            llama_runs.append(llama_bench(args, gguf))
        for path in paths:
            s = runs[path][0]
            bandwidth = best(runs[path], "bandwidth")
            table.append({
                "dtype": f"{quant} ({s['isa']})", "weights_gb": s["weights"] / 1e9, "bandwidth_gbs": bandwidth,
                "prefill_sc2": best(runs[path], "prefill"), "prefill_llama": best(llama_runs, "prefill"),
                # sc2-bench --peak times the float multiply-add; the integer path's int8 products have no peak here.
                "prefill_gflops": best(runs[path], "prefill_gflops"), "peak_gflops": 0.0 if path else best(runs[path], "peak"),
                "decode_sc2": best(runs[path], "decode"), "decode_llama": best(llama_runs, "decode"),
                "decode_roofline": bandwidth * 1e9 / s["weights"], "rss_gb": max(r["rss"] for r in runs[path]) / 1e9,
                "rss_budget_gb": (s["weights"] + s["cache"]) / 1e9,
            })

    print(f"\n{args.preset} random weights, {args.threads} threads, prompt {args.prompt}, decode {args.decode}, "
          f"best of {args.runs} alternating runs, sc2 path {isa}"
          + (", llama.cpp with --repack 0" if args.llama_repack0 else "") + "\n")
    print("| weights | GB | prefill sc2 | prefill llama.cpp | ratio | sc2 prefill GFLOP/s | multiply-add peak "
          "| sc2 % of peak | decode sc2 | decode llama.cpp | ratio | read GB/s | decode roofline | sc2 % of roofline "
          "| peak RSS / (weights + cache) |")
    print("|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|")
    for r in table:
        if "depth" in r:
            continue
        print(f"| {r['dtype']} | {r['weights_gb']:.2f} | {r['prefill_sc2']:.2f} | {r['prefill_llama']:.2f} | "
              f"{r['prefill_sc2'] / r['prefill_llama']:.2f} | {r['prefill_gflops']:.0f} | {r['peak_gflops']:.0f} | "
              f"{percent(r['prefill_gflops'], r['peak_gflops'])} | {r['decode_sc2']:.2f} | {r['decode_llama']:.2f} | "
              f"{r['decode_sc2'] / r['decode_llama']:.2f} | {r['bandwidth_gbs']:.1f} | {r['decode_roofline']:.2f} | "
              f"{100 * r['decode_sc2'] / r['decode_roofline']:.0f}% | {r['rss_gb']:.2f} / {r['rss_budget_gb']:.2f} |")
    depth_rows = [r for r in table if "depth" in r]
    if depth_rows:
        print("\n| weights | context | decode sc2 | decode llama.cpp |")
        print("|---|---|---|---|")
        for r in depth_rows:
            llama = "not run" if r["decode_llama"] != r["decode_llama"] else f"{r['decode_llama']:.2f}"
            print(f"| {r['dtype']} | {r['depth'] + args.prompt} | {r['decode_sc2']:.2f} | {llama} |")


if __name__ == "__main__":
    main()
