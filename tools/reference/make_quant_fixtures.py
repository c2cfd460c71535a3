#!/usr/bin/env python3
"""Records GGML's block formats as llama.cpp computes them, for tests/quant/blocks_test.cpp.

Writes tests/fixtures/quant/blocks.safetensors:
  rows                    (R, K) F32   weights of varied shapes: normal, tiny, huge, outliers, zeros, constant
  <f>.quantized           (R, bytes) U8  the rows quantized by llama.cpp's ggml_quantize_chunk (its reference
                                         quantizer: no importance matrix)
  <f>.dequantized         (R, K) F32   gguf.quants.dequantize of those blocks
  <f>.random_blocks       (N, bytes) U8  blocks of random bytes (finite f16 scales)
  <f>.random_dequantized  (N, B) F32   gguf.quants.dequantize of them
for f in q8_0, q4_0, q4_k, q5_k, q6_k. For q8_0 and q4_0 it also checks that gguf.quants.quantize (the
Python reference) gives llama.cpp's bytes.

llama.cpp's library (libggml-base.so) is loaded from a build of its public source; see
bench/compare_llamacpp.py for how to build one (the committed fixture came from llama-cpp-python 0.3.36's
vendored llama.cpp, built by its own CMake: g++ 12, -march=native):
  python3 tools/reference/make_quant_fixtures.py --ggml $L/build/bin/libggml-base.so

Needs numpy, gguf, safetensors (PyPI); never CI.
"""
import argparse
import ctypes
from pathlib import Path

import numpy as np
from gguf import GGMLQuantizationType as T
from gguf import quants
from safetensors.numpy import save_file

FORMATS = {"q8_0": T.Q8_0, "q4_0": T.Q4_0, "q4_k": T.Q4_K, "q5_k": T.Q5_K, "q6_k": T.Q6_K}
K = 1024


def make_rows(rng: np.random.Generator) -> np.ndarray:
    rows = [
        rng.standard_normal(K),
        0.02 * rng.standard_normal(K),                     # weight-like
        1e-3 * rng.standard_normal(K),
        300.0 * rng.standard_normal(K),
        np.where(rng.random(K) < 0.01, 40.0, 1.0) * rng.standard_normal(K),  # outliers
        np.abs(rng.standard_normal(K)),                    # one sign
        -np.abs(rng.standard_normal(K)) - 0.5,
        rng.uniform(-1, 1, K),
    ]
    rows = np.stack(rows).astype(np.float32)
    rows[2, 256:512] = 0.0                                 # a zero super-block
    rows[3, 64:96] = 0.0                                   # a zero block
    rows[7, 512:768] = 0.25                                # a constant super-block
    rows[1, 768:800] = 1e-20                               # below GGML's group epsilon
    return rows


def ggml_quantize(lib, qtype: int, rows: np.ndarray, row_bytes: int) -> np.ndarray:
    out = np.zeros((rows.shape[0], row_bytes), dtype=np.uint8)
    src = np.ascontiguousarray(rows, dtype=np.float32)
    lib.ggml_quantize_chunk(qtype, src.ctypes.data_as(ctypes.c_void_p), out.ctypes.data_as(ctypes.c_void_p),
                            0, rows.shape[0], rows.shape[1], None)
    return out


def random_blocks(rng: np.random.Generator, name: str, n: int) -> np.ndarray:
    block, size = quants.GGML_QUANT_SIZES[FORMATS[name]]
    b = rng.integers(0, 256, (n, size), dtype=np.uint8)
    halves = (rng.standard_normal(2 * n) * 0.05).astype(np.float16).view(np.uint8).reshape(n, 4)
    if name == "q6_k":
        b[:, size - 2:] = halves[:, :2]                    # d is last
    else:
        b[:, 0:2] = halves[:, :2]
        if name in ("q4_k", "q5_k"):
            b[:, 2:4] = halves[:, 2:4]                     # dmin
    return b


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--ggml", required=True, help="path of llama.cpp's libggml-base.so")
    parser.add_argument("--out", default=str(Path(__file__).resolve().parents[2] / "tests/fixtures/quant"))
    args = parser.parse_args()
    lib = ctypes.CDLL(args.ggml)
    lib.ggml_quantize_chunk.restype = ctypes.c_size_t
    lib.ggml_quantize_chunk.argtypes = [ctypes.c_int, ctypes.c_void_p, ctypes.c_void_p, ctypes.c_int64,
                                        ctypes.c_int64, ctypes.c_int64, ctypes.c_void_p]
    rng = np.random.default_rng(20261203)
    rows = make_rows(rng)
    tensors = {"rows": rows}
    for name, qtype in FORMATS.items():
        block, size = quants.GGML_QUANT_SIZES[qtype]
        q = ggml_quantize(lib, int(qtype), rows, K // block * size)
        if name in ("q8_0", "q4_0"):
            py = quants.quantize(rows, qtype)
            assert np.array_equal(py, q), f"{name}: gguf.quants.quantize differs from llama.cpp"
        tensors[f"{name}.quantized"] = q
        tensors[f"{name}.dequantized"] = quants.dequantize(q, qtype).astype(np.float32)
        r = random_blocks(rng, name, 64)
        tensors[f"{name}.random_blocks"] = r
        tensors[f"{name}.random_dequantized"] = quants.dequantize(r, qtype).astype(np.float32)
        err = np.abs(tensors[f"{name}.dequantized"] - rows).max(axis=1) / np.abs(rows).max(axis=1)
        print(f"{name}: {q.nbytes} bytes for {rows.size} weights, worst relative error per row {err.max():.4f}")
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    save_file({k: np.ascontiguousarray(v) for k, v in tensors.items()}, str(out / "blocks.safetensors"))
    (out / "blocks.safetensors").chmod(0o644)


if __name__ == "__main__":
    main()
