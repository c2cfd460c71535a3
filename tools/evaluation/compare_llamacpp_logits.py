#!/usr/bin/env python3
"""sc2's logits beside llama.cpp's on the same GGUF file, position by position.

  python3 tools/evaluation/compare_llamacpp_logits.py --llama-python /tmp/llama_cpp_python-0.3.36 \\
      --gguf sc2-tiny-q8_0.gguf --text-file some.py --tokens 512 [--isa "" avx512vnni] [--json out.json]

llama.cpp runs through llama-cpp-python (the sdist's `llama_cpp` package on the prebuilt libllama of its
vendor/llama.cpp/build/bin: no wheel to build); sc2 through build/bench/sc2-logits. Both read the same
token ids: llama.cpp's tokenization of the text, without a BOS. For each band of positions the script
prints the largest |logit difference|, that distance relative to the largest |logit|, and how often the
two engines' top tokens agree.

llama.cpp runs StarCoder2 with full attention whatever the file says; sc2 keeps the model's sliding window
(starcoder2.attention.sliding_window, or 4096). On prompts shorter than the window the two compute the
same function and differ only by their arithmetic (llama.cpp quantizes activations to 8 bits for its
integer dot products); past the window they compute different functions, and the table shows where.
"""
import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[2]


def llama_logits(args, ids: list[int] | None, text: str) -> tuple[list[int], np.ndarray]:
    sdist = Path(args.llama_python)
    os.environ.setdefault("LLAMA_CPP_LIB_PATH", str(sdist / "vendor/llama.cpp/build/bin"))
    sys.path.insert(0, str(sdist))
    import llama_cpp  # noqa: E402  (the sdist's package, on the prebuilt library)

    if not args.llama_repack:
        # Without llama.cpp's repacked weight buffers (AMX and the like): in 0.3.36 its AMX
        # repacking crashes on some processors. The arithmetic of the plain CPU path is the same
        # integer dot products on int8 activations.
        defaults = llama_cpp.llama_model_default_params

        def no_repack():
            params = defaults()
            params.use_extra_bufts = False
            return params

        llama_cpp.llama_model_default_params = no_repack
        llama_cpp.llama.llama_cpp.llama_model_default_params = no_repack
    llm = llama_cpp.Llama(model_path=str(args.gguf), n_ctx=args.tokens + 16, n_batch=args.tokens, logits_all=True,
                          n_threads=args.threads, verbose=False)
    if ids is None:
        ids = llm.tokenize(text.encode(), add_bos=False, special=False)[: args.tokens]
    llm.eval(ids)
    return ids, np.array(llm.scores[: len(ids)], dtype=np.float32)


def sc2_logits(args, ids: list[int], isa: str) -> np.ndarray:
    with tempfile.TemporaryDirectory() as tmp:
        ids_path, out = Path(tmp) / "ids.json", Path(tmp) / "logits.f32"
        ids_path.write_text(json.dumps(ids))
        env = dict(os.environ)
        if isa:
            env["SC2_CPU_ISA"] = isa
        subprocess.run([str(Path(args.build) / "bench/sc2-logits"), "--model", str(args.gguf), "--ids", str(ids_path),
                        "--new-tokens", "0", "--out", str(out)],
                       check=True, env=env, capture_output=True)
        return np.fromfile(out, dtype=np.float32).reshape(len(ids), -1)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--llama-python", required=True, help="llama-cpp-python sdist dir, its vendor/llama.cpp built")
    p.add_argument("--gguf", type=Path, required=True)
    p.add_argument("--build", default=str(ROOT / "build"), help="sc2 build dir (bench/sc2-logits)")
    p.add_argument("--text-file", type=Path, default=ROOT / "include/sc2/models/starcoder2.hpp",
                   help="the prompt's text (default: a C++ header of this repository)")
    p.add_argument("--ids", type=Path, help="a JSON list of token ids instead of --text-file")
    p.add_argument("--tokens", type=int, default=512)
    p.add_argument("--band", type=int, default=64, help="positions per row of the table")
    p.add_argument("--window", type=int, default=0, help="the model's window, marked in the table")
    p.add_argument("--isa", nargs="*", default=[""], help="sc2 paths to run (empty string: the default)")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--llama-repack", action="store_true", help="let llama.cpp repack its weights (AMX, ...)")
    p.add_argument("--json", type=Path, help="write the table as JSON here")
    args = p.parse_args()

    given = json.loads(args.ids.read_text())[: args.tokens] if args.ids else None
    ids, reference = llama_logits(args, given, args.text_file.read_text() if not args.ids else "")
    print(f"{args.gguf.name}: {len(ids)} tokens, vocabulary {reference.shape[1]}")
    rows = []
    for isa in args.isa:
        ours = sc2_logits(args, ids, isa)
        name = isa or "default"
        print(f"\nsc2 path {name} against llama.cpp"
              + (f" (window {args.window}: positions from {args.window} on see more context in llama.cpp)" if args.window else ""))
        print("| positions | max abs diff | relative to max abs logit | top-1 agreement |")
        print("|---|---|---|---|")
        for start in range(0, len(ids), args.band):
            end = min(len(ids), start + args.band)
            a, b = ours[start:end], reference[start:end]
            diff = float(np.abs(a - b).max())
            rel = diff / float(np.abs(b).max())
            agree = float((a.argmax(1) == b.argmax(1)).mean())
            mark = " (past the window)" if args.window and start >= args.window else ""
            print(f"| {start}–{end - 1}{mark} | {diff:.4f} | {rel:.2e} | {100 * agree:.0f}% |")
            rows.append({"isa": name, "start": start, "end": end, "max_abs_diff": diff, "relative": rel,
                         "top1_agreement": agree})
    if args.json:
        args.json.write_text(json.dumps({"gguf": str(args.gguf), "tokens": len(ids), "rows": rows}, indent=1))


if __name__ == "__main__":
    main()
