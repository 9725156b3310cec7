#!/usr/bin/env python3
"""An independent safetensors reader/writer (numpy + json only) for kick's [io] tests.

  check_safetensors.py make OUT.safetensors   writes tests/fixtures/io/dtypes.safetensors
  check_safetensors.py dump FILE.safetensors  prints {name: {dtype, shape, values}} as JSON
  check_safetensors.py dump-aligned FILE      the same, also requiring the 8-byte aligned data
                                              section that kick (and the HF writer) produce

`make` writes tensors in a non-sorted header order with the data in yet another order and an
unaligned header, so kick's reader cannot lean on its own writer's habits. `dump` is what the C++
test runs on a kick-written file: it validates the layout the way the spec states it.
"""
import json
import struct
import sys

import numpy as np

NUMPY_DTYPES = {
    "F64": np.float64, "F32": np.float32, "F16": np.float16, "BF16": np.uint16,
    "I64": np.int64, "I32": np.int32, "I16": np.int16, "I8": np.int8, "U8": np.uint8,
    "BOOL": np.bool_,
}


def bf16_bits(values):
    """bfloat16 as the top half of float32 (values chosen to be exact)."""
    return (np.asarray(values, dtype=np.float32).view(np.uint32) >> 16).astype(np.uint16)


def fixture_tensors():
    return [
        ("j_f64", "F64", np.array([3.141592653589793, -2.5e-300], dtype=np.float64)),
        ("a_f32", "F32", np.array([[0.5, -1.25, 3.0], [1024.0, -7.75, 0.125]], dtype=np.float32)),
        ("b_f16", "F16", np.array([1.0, -2.5, 0.25, 65504.0], dtype=np.float16)),
        ("c_bf16", "BF16", bf16_bits([[1.0, -3.0], [0.5, 256.0]])),
        ("d_i64", "I64", np.array([1, -2, 1 << 40], dtype=np.int64)),
        ("e_i32", "I32", np.array([-7, 2147483647], dtype=np.int32)),
        ("f_i16", "I16", np.array([-32768, 0, 12345], dtype=np.int16)),
        ("g_i8", "I8", np.array([-128, -1, 0, 127], dtype=np.int8)),
        ("h_u8", "U8", np.array([0, 128, 255], dtype=np.uint8)),
        ("i_bool", "BOOL", np.array([True, False, True], dtype=np.bool_)),
        ("k_scalar", "F32", np.array(42.0, dtype=np.float32)),
        ("l_empty", "F32", np.zeros((0, 4), dtype=np.float32)),
    ]


def make(out_path):
    tensors = fixture_tensors()
    header = {"__metadata__": {"source": "check_safetensors.py"}}
    blobs = []
    offset = 0
    for name, dtype, array in reversed(tensors):  # data section in reverse order
        raw = array.astype(array.dtype.newbyteorder("<")).tobytes()
        blobs.append(raw)
        header[name] = {"dtype": dtype, "shape": list(array.shape),
                        "data_offsets": [offset, offset + len(raw)]}
        offset += len(raw)
    text = json.dumps(header).encode()
    with open(out_path, "wb") as f:
        f.write(struct.pack("<Q", len(text)))
        f.write(text)
        for raw in blobs:
            f.write(raw)


def dump(path, require_aligned):
    data = open(path, "rb").read()
    (n,) = struct.unpack("<Q", data[:8])
    assert 8 + n <= len(data), "header length past the end"
    header = json.loads(data[8:8 + n])
    body = data[8 + n:]
    result = {}
    spans = []
    for name, info in header.items():
        if name == "__metadata__":
            result[name] = info
            continue
        begin, end = info["data_offsets"]
        dtype = NUMPY_DTYPES[info["dtype"]]
        array = np.frombuffer(body[begin:end], dtype=np.dtype(dtype).newbyteorder("<"))
        assert array.size == int(np.prod(info["shape"], dtype=np.int64)), name
        if info["dtype"] == "BF16":
            array = (array.astype(np.uint32) << 16).view(np.float32)
        spans.append((begin, end))
        result[name] = {"dtype": info["dtype"], "shape": info["shape"],
                        "values": [v.item() for v in array.reshape(-1)]}
    spans.sort()
    assert spans == [] or (spans[0][0] == 0 and spans[-1][1] == len(body)), "data section not covered"
    for (b0, e0), (b1, _) in zip(spans, spans[1:]):
        assert e0 == b1, "holes or overlaps in the data section"
    assert not require_aligned or (8 + n) % 8 == 0, "data section not 8-byte aligned"
    json.dump(result, sys.stdout)


if __name__ == "__main__":
    if len(sys.argv) != 3 or sys.argv[1] not in ("make", "dump", "dump-aligned"):
        sys.exit(__doc__)
    if sys.argv[1] == "make":
        make(sys.argv[2])
    else:
        dump(sys.argv[2], sys.argv[1] == "dump-aligned")
