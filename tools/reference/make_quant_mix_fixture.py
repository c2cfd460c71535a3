#!/usr/bin/env python3
"""Records what llama.cpp's llama-quantize makes of the bundled model, for tests/examples/sc2_quantize_test.cpp.

Writes tests/fixtures/quant/sc2-tiny-<type>.json for Q4_K_M (and Q8_0): for every tensor of the file, its
GGML type, shape and an FNV-1a 64-bit hash of its bytes. The file is made as a user of llama.cpp makes one:
the model directory converted to a BF16 GGUF by llama.cpp's own convert_hf_to_gguf.py (told the StarCoder
pre-tokenizer, as bench/compare_llamacpp.py does), then `llama-quantize in.gguf out.gguf Q4_K_M`, which
runs ggml's reference quantizers without an importance matrix. sc2-quantize must write the same types
(llama_tensor_get_type's mix) and the same bytes.

  python3 tools/reference/make_quant_mix_fixture.py --llama $L     # $L: llama.cpp source, built
                                                                   # (see bench/compare_llamacpp.py)
Needs gguf and the converter's Python packages (torch, numpy, safetensors); never CI.
"""
import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "bench"))
from compare_llamacpp import CONVERT  # noqa: E402  (the converter, told the StarCoder pre-tokenizer)


def fnv1a64(data: bytes) -> str:
    """FNV-1a, 64 bits, as hex (the test computes the same)."""
    h = 0xCBF29CE484222325
    arr = np.frombuffer(data, dtype=np.uint8)
    for b in arr.tolist():
        h ^= b
        h = (h * 0x100000001B3) & 0xFFFFFFFFFFFFFFFF
    return f"{h:016x}"


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--llama", required=True, help="llama.cpp source dir with build/bin/llama-quantize")
    p.add_argument("--model", default=str(ROOT / "models/sc2-tiny"))
    p.add_argument("--out", default=str(ROOT / "tests/fixtures/quant"))
    p.add_argument("--types", nargs="+", default=["Q4_K_M", "Q8_0"])
    args = p.parse_args()
    llama = Path(args.llama)
    sys.path.insert(0, str(llama / "gguf-py"))
    import gguf  # noqa: E402  (llama.cpp's own copy)

    with tempfile.TemporaryDirectory() as tmp:
        bf16 = Path(tmp) / "model-bf16.gguf"
        subprocess.run([sys.executable, "-c", CONVERT, str(llama), args.model, "--outtype", "bf16", "--outfile", str(bf16)],
                       check=True, capture_output=True)
        for qtype in args.types:
            out = Path(tmp) / f"model-{qtype}.gguf"
            subprocess.run([str(llama / "build/bin/llama-quantize"), str(bf16), str(out), qtype], check=True,
                           capture_output=True)
            reader = gguf.GGUFReader(str(out))
            tensors = {t.name: {"type": t.tensor_type.name, "shape": [int(n) for n in reversed(t.shape.tolist())],
                                "fnv1a64": fnv1a64(bytes(t.data.tobytes()))} for t in reader.tensors}
            target = Path(args.out) / f"sc2-tiny-{qtype.lower()}.json"
            target.write_text(json.dumps({"source": "llama-quantize " + qtype, "tensors": tensors}, indent=1) + "\n")
            types = {}
            for t in tensors.values():
                types[t["type"]] = types.get(t["type"], 0) + 1
            print(f"{target}: {len(tensors)} tensors, {types}")


if __name__ == "__main__":
    main()
