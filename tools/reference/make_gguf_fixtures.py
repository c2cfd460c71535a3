#!/usr/bin/env python3
"""Writes GGUF files with llama.cpp's own Python writer (gguf.GGUFWriter), for tests/io/gguf_test.cpp:

  tests/fixtures/gguf/assorted.gguf          metadata of every value type (scalars, strings, arrays of
                                             numbers and strings, a nested array), alignment 64, and
                                             tensors in F32, F16, BF16, Q8_0 and Q4_K
  tests/fixtures/gguf/split-0000{1,2}-of-00002.gguf   one model split in two files, as gguf-split names them
  tests/fixtures/gguf/expected.json          what each holds: every key's value, every tensor's type,
                                             shape and the float32 values gguf.quants.dequantize gives
  tests/fixtures/gguf/starcoder2-<case>-<type>.gguf   two tiny StarCoder2 checkpoints of tests/fixtures/models
                                             as GGUF, named by gguf-py's own StarCoder2 tensor map and
                                             metadata keys: F32, and Q8_0 / Q4_0 (matrices; norms and
                                             biases F32)
  tests/fixtures/gguf/starcoder2-<case>-<type>.dequantized/   config.json and model.safetensors of the
                                             same weights dequantized by gguf.quants.dequantize
  tests/fixtures/gguf/tokenizer-sc2-tiny.gguf   the bundled tokenizer's tokenizer.ggml.* keys, as llama.cpp's
                                             converter writes them (TextModel.get_vocab_base and
                                             _set_vocab_gpt2: tokens by id, CONTROL for special added
                                             tokens, USER_DEFINED for the others, gguf.SpecialVocab's
                                             merges and ids, pre-tokenizer "starcoder")

Needs numpy and gguf (PyPI); never CI.
"""
import json
import shutil
from pathlib import Path

import gguf
import numpy as np
from gguf import GGMLQuantizationType as T
from gguf import GGUFWriter, quants
from safetensors.numpy import load_file, save_file

OUT = Path(__file__).resolve().parents[2] / "tests/fixtures/gguf"
MODELS = Path(__file__).resolve().parents[2] / "tests/fixtures/models"

# StarCoder2 cases: (name, source fixture, matrix types, write the sliding window key).
STARCODER2 = [("tied-window8", "gqa1_tied_window8_f32", [T.F32, T.Q8_0], True),
              ("untied-nobias", "gqa2_untied_nobias_nowindow_f32", [T.F32, T.Q4_0], False)]


def write_starcoder2(name, source, qtype, window):
    """One StarCoder2 fixture as GGUF (and, quantized, its dequantized safetensors twin)."""
    config = json.loads((MODELS / source / "config.json").read_text())
    weights = load_file(str(MODELS / source / "model.safetensors"))
    layers = config["num_hidden_layers"]
    names = gguf.get_tensor_name_map(gguf.MODEL_ARCH.STARCODER2, layers)
    path = OUT / f"starcoder2-{name}-{qtype.name}.gguf"
    w = GGUFWriter(str(path), "starcoder2")
    w.add_context_length(config["max_position_embeddings"])
    w.add_embedding_length(config["hidden_size"])
    w.add_feed_forward_length(config["intermediate_size"])
    w.add_block_count(layers)
    w.add_head_count(config["num_attention_heads"])
    w.add_head_count_kv(config["num_key_value_heads"])
    w.add_rope_freq_base(config["rope_parameters"]["rope_theta"])
    w.add_layer_norm_eps(config["norm_epsilon"])
    if window and config.get("sliding_window"):
        w.add_sliding_window(config["sliding_window"])
    w.add_bos_token_id(config["bos_token_id"])
    w.add_eos_token_id(config["eos_token_id"])
    dequantized = {}
    for hf, data in sorted(weights.items()):
        target = names.get_name(hf, try_suffixes=(".weight", ".bias"))
        assert target, hf
        data = data.astype(np.float32)
        if data.ndim == 2 and qtype != T.F32:
            q = quants.quantize(data, qtype)
            w.add_tensor(target, q, raw_shape=q.shape, raw_dtype=qtype)
            dequantized[hf] = quants.dequantize(q, qtype).astype(np.float32)
        else:
            w.add_tensor(target, data)
            dequantized[hf] = data
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    path.chmod(0o644)
    if qtype != T.F32:
        twin = OUT / f"starcoder2-{name}-{qtype.name}.dequantized"
        shutil.rmtree(twin, ignore_errors=True)
        twin.mkdir()
        shutil.copy(MODELS / source / "config.json", twin / "config.json")
        if not window:
            c = json.loads((twin / "config.json").read_text())
            c["sliding_window"] = 4096  # what sc2 takes for a StarCoder2 GGUF without the key
            (twin / "config.json").write_text(json.dumps(c, indent=2) + "\n")
        save_file(dequantized, str(twin / "model.safetensors"))
        for f in twin.iterdir():
            f.chmod(0o644)


def tensors(rng):
    f32 = rng.standard_normal((3, 5)).astype(np.float32)
    f16 = rng.standard_normal((4, 8)).astype(np.float16)
    bf16 = quants.quantize(rng.standard_normal((2, 16)).astype(np.float32), T.BF16)
    q8 = quants.quantize(rng.standard_normal((2, 64)).astype(np.float32), T.Q8_0)
    q4k = rng.integers(0, 256, (3, 144), dtype=np.uint8)
    q4k[:, 0:4] = np.array([0.01, 0.002], dtype=np.float16).view(np.uint8)
    return [("weights.f32", f32, None, (3, 5)), ("weights.f16", f16, None, (4, 8)),
            ("weights.bf16", bf16, T.BF16, (2, 16)), ("blk.0.q8", q8, T.Q8_0, (2, 64)),
            ("blk.0.q4k", q4k, T.Q4_K, (3, 256))]


def expected_tensor(data, raw_dtype, shape):
    if raw_dtype is None:
        values = data.astype(np.float32)
        name = "F32" if data.dtype == np.float32 else "F16"
    else:
        values = quants.dequantize(data, raw_dtype).astype(np.float32)
        name = raw_dtype.name
    return {"type": name, "shape": list(shape), "values": [float(v) for v in values.reshape(-1)]}


def write(path, arch, metadata, items, alignment=None):
    w = GGUFWriter(str(path), arch)
    if alignment:
        w.add_custom_alignment(alignment)
    for key, (kind, value) in metadata.items():
        getattr(w, f"add_{kind}")(key, value)
    for name, data, raw_dtype, shape in items:
        if raw_dtype is None:
            w.add_tensor(name, data)
        else:
            w.add_tensor(name, data, raw_shape=data.shape, raw_dtype=raw_dtype)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    path.chmod(0o644)


def write_tokenizer(path, source):
    """The tokenizer keys llama.cpp's converter writes for a byte-level BPE (gpt2) tokenizer."""
    from transformers import AutoTokenizer
    tokenizer = AutoTokenizer.from_pretrained(source)
    vocab_size = len(tokenizer.vocab)
    reverse = {i: t for t, i in tokenizer.vocab.items()}
    added = tokenizer.get_added_vocab()
    decoder = tokenizer.added_tokens_decoder
    tokens, types = [], []
    for i in range(vocab_size):
        if i not in reverse:
            tokens.append(f"[PAD{i}]")
            types.append(gguf.TokenType.UNUSED)
            continue
        token = reverse[i]
        if token in added:
            if not decoder[i].normalized:
                token = tokenizer.decode(tokenizer.encode(token, add_special_tokens=False))
            types.append(gguf.TokenType.CONTROL if decoder[i].special else gguf.TokenType.USER_DEFINED)
        else:
            types.append(gguf.TokenType.NORMAL)
        tokens.append(token)
    w = GGUFWriter(str(path), "starcoder2")
    w.add_tokenizer_model("gpt2")
    w.add_tokenizer_pre("starcoder")
    w.add_token_list(tokens)
    w.add_token_types(types)
    gguf.SpecialVocab(source, load_merges=True).add_to_gguf(w)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    path.chmod(0o644)


def main():
    rng = np.random.default_rng(7)
    OUT.mkdir(parents=True, exist_ok=True)
    metadata = {
        "test.u8": ("uint8", 200), "test.i8": ("int8", -100), "test.u16": ("uint16", 60000),
        "test.i16": ("int16", -30000), "test.u32": ("uint32", 4000000000), "test.i32": ("int32", -2000000000),
        "test.u64": ("uint64", 2**40 + 3), "test.i64": ("int64", -(2**40)), "test.f32": ("float32", 0.25),
        "test.f64": ("float64", 1e-300), "test.bool": ("bool", True), "test.string": ("string", "héllo"),
        "test.ints": ("array", [1, 2, 3]), "test.strings": ("array", ["a", "", "ĠHello"]),
        "test.nested": ("array", [[1, 2], [3]]),
    }
    items = tensors(rng)
    write(OUT / "assorted.gguf", "test", metadata, items, alignment=64)
    expected = {"assorted.gguf": {"alignment": 64, "tensors": {n: expected_tensor(d, r, s) for n, d, r, s in items}}}
    # A split set: metadata in both, tensors divided.
    halves = [items[:2], items[2:]]
    for i, part in enumerate(halves, 1):
        split = {"split.no": ("uint16", i - 1), "split.count": ("uint16", 2),
                 "split.tensors.count": ("int32", len(items))}
        write(OUT / f"split-{i:05}-of-00002.gguf", "test", split, part)
    expected["split"] = {"tensors": sorted(n for n, *_ in items)}
    write_tokenizer(OUT / "tokenizer-sc2-tiny.gguf", str(OUT.parents[2] / "models/sc2-tiny"))
    for name, source, types, window in STARCODER2:
        for qtype in types:
            write_starcoder2(name, source, qtype, window)
    (OUT / "expected.json").write_text(json.dumps(expected, indent=1) + "\n")
    print("wrote", OUT)


if __name__ == "__main__":
    main()
