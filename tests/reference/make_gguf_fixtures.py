#!/usr/bin/env python3
"""Makes the GGUF test fixtures with the PyPI `gguf` package (llama.cpp's own Python writer, reader
and numpy dequantizers), so kick's GGUF reader is checked against code it shares nothing with.

usage: python3 tests/reference/make_gguf_fixtures.py [SMOLLM2_GGUF]

Writes into tests/fixtures/gguf/:
  quant_types.gguf          one 3x256 tensor per type kick reads (t.F32 ... t.Q6_K) plus a 3-D F32
                            tensor, metadata of every GGUF value type, alignment 64, architecture "test"
  quant_types.expected.f32  gguf.quants.dequantize of every tensor, float32 little-endian, concatenated
  quant_types.index.json    name -> {type, shape (torch order), offset, count} into the .f32 file
  smollm2_reference.json    (only when SmolLM2-135M-Instruct.Q4_1.gguf exists) config values, tensor
                            types, sampled dequantized values and float64 sums of token_embd.weight and
                            blk.0.attn_q.weight in GGUF layout (q rows still interleaved)
Types the package cannot quantize (the k-quants) get random blocks with sane fp16 scale fields.
"""
import json
import os
import sys

import numpy as np
import gguf
from gguf import GGMLQuantizationType as T
from gguf.quants import dequantize, quantize

HERE = os.path.dirname(os.path.abspath(__file__))
OUT = os.path.join(HERE, "..", "fixtures", "gguf")
ROWS, COLS = 3, 256

# Byte offsets of the fp16 scale fields inside one block, for the types built from random bytes.
K_QUANT_SCALE_FIELDS = {
    T.Q2_K: [80, 82],   # d, dmin after 16 scale bytes and 64 quant bytes
    T.Q3_K: [108],      # d after 32 mask, 64 quant and 12 scale bytes
    T.Q4_K: [0, 2],     # d, dmin first
    T.Q5_K: [0, 2],
    T.Q6_K: [208],      # d last
}
QUANTIZABLE = [T.F32, T.F16, T.BF16, T.Q4_0, T.Q4_1, T.Q5_0, T.Q5_1, T.Q8_0]


def random_k_quant_rows(rng, qtype):
    block_size, type_size = gguf.GGML_QUANT_SIZES[qtype]
    n_blocks = ROWS * COLS // block_size
    blocks = rng.integers(0, 256, size=(n_blocks, type_size), dtype=np.uint8)
    for offset in K_QUANT_SCALE_FIELDS[qtype]:
        scale = rng.uniform(0.001, 0.05, size=n_blocks).astype(np.float16)
        blocks[:, offset:offset + 2] = scale.view(np.uint8).reshape(n_blocks, 2)
    return blocks.reshape(ROWS, COLS // block_size * type_size)


def make_quant_types():
    rng = np.random.default_rng(1234)
    path = os.path.join(OUT, "quant_types.gguf")
    writer = gguf.GGUFWriter(path, arch="test")
    writer.add_custom_alignment(64)
    # One pair of every metadata value type, and nesting.
    writer.add_uint8("test.u8", 200)
    writer.add_int8("test.i8", -100)
    writer.add_uint16("test.u16", 60000)
    writer.add_int16("test.i16", -30000)
    writer.add_uint32("test.u32", 4000000000)
    writer.add_int32("test.i32", -2000000000)
    writer.add_float32("test.f32", 0.1)
    writer.add_uint64("test.u64", 2**60)
    writer.add_int64("test.i64", -(2**60))
    writer.add_float64("test.f64", 3.141592653589793)
    writer.add_bool("test.bool", True)
    writer.add_string("test.string", "h\u00e9llo \u2581 world")
    writer.add_array("test.strings", ["a", "bc", ""])
    writer.add_array("test.nested", [[1, 2], [3]])

    tensors = {}
    for qtype in QUANTIZABLE:
        data = rng.standard_normal((ROWS, COLS)).astype(np.float32)
        tensors[f"t.{qtype.name}"] = (qtype, quantize(data, qtype))
    for qtype in K_QUANT_SCALE_FIELDS:
        tensors[f"t.{qtype.name}"] = (qtype, random_k_quant_rows(rng, qtype))
    tensors["t.F32_3d"] = (T.F32, rng.standard_normal((2, 3, 32)).astype(np.float32))

    index, expected, offset = {}, [], 0
    for name in sorted(tensors):
        qtype, raw = tensors[name]
        writer.add_tensor(name, raw, raw_dtype=qtype)
        values = dequantize(raw, qtype).astype(np.float32)
        index[name] = {"type": qtype.name, "shape": list(values.shape), "offset": offset, "count": int(values.size)}
        expected.append(values.reshape(-1))
        offset += values.size
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    np.concatenate(expected).astype("<f4").tofile(os.path.join(OUT, "quant_types.expected.f32"))
    with open(os.path.join(OUT, "quant_types.index.json"), "w") as f:
        json.dump(index, f, indent=1, sort_keys=True)
        f.write("\n")


def make_smollm2_reference(model_path):
    reader = gguf.GGUFReader(model_path)

    def field(name):
        f = reader.fields[name]
        return f.parts[f.data[0]][0].item()

    tensors = {t.name: t for t in reader.tensors}
    out = {
        "config": {
            "block_count": field("llama.block_count"),
            "embedding_length": field("llama.embedding_length"),
            "feed_forward_length": field("llama.feed_forward_length"),
            "head_count": field("llama.attention.head_count"),
            "head_count_kv": field("llama.attention.head_count_kv"),
            "rope_freq_base": field("llama.rope.freq_base"),
            "token_count": len(reader.fields["tokenizer.ggml.tokens"].data),
            "has_output_weight": "output.weight" in tensors,
        },
        "tensor_types": {},
        "tensors": {},
    }
    samples = {
        "token_embd.weight": ([0, 1, 100, 2047, 49151], [0, 1, 31, 32, 575]),
        "blk.0.attn_q.weight": ([0, 1, 2, 63, 64, 65, 575], [0, 5, 300, 575]),
        "blk.0.attn_k.weight": ([0, 1, 62, 63, 191], [0, 7, 575]),
        "blk.0.attn_norm.weight": ([0, 1, 575], None),
    }
    for name, (rows, cols) in samples.items():
        t = tensors[name]
        shape = tuple(int(d) for d in reversed(t.shape.tolist()))  # torch order
        values = dequantize(t.data, t.tensor_type).reshape(shape)
        if cols is None:
            picks = [[r, float(values[r])] for r in rows]
        else:
            picks = [[r, c, float(values[r, c])] for r in rows for c in cols]
        out["tensor_types"][name] = t.tensor_type.name
        out["tensors"][name] = {
            "shape": list(shape),
            "samples": picks,
            "sum": float(values.astype(np.float64).sum()),
            "abs_sum": float(np.abs(values.astype(np.float64)).sum()),
        }
    with open(os.path.join(OUT, "smollm2_reference.json"), "w") as f:
        json.dump(out, f, indent=1)
        f.write("\n")


def main():
    os.makedirs(OUT, exist_ok=True)
    make_quant_types()
    model = sys.argv[1] if len(sys.argv) > 1 else os.path.expanduser(
        "~/.cache/kick/models/SmolLM2-135M-Instruct.Q4_1.gguf")
    if os.path.exists(model):
        make_smollm2_reference(model)
    else:
        print(f"{model} not found: smollm2_reference.json left as it is", file=sys.stderr)


if __name__ == "__main__":
    main()
