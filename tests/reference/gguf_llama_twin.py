#!/usr/bin/env python3
"""Plain numpy twin of a LLaMA forward pass straight from a GGUF file, independent of kick: the
`gguf` package (PyPI) reads and dequantizes the tensors, and the pass runs in GGUF's own layout
(llama.cpp's interleaved-pair RoPE on un-permuted q/k rows), so kick's loader, its q/k permutation and
its decoder are all checked against code they share nothing with.

usage: python3 tests/reference/gguf_llama_twin.py [GGUF] [OUT_JSON]
Writes per prompt position: the twin's top-8 ids and logits and the logits of 48 probe ids.
"""
import json
import os
import sys

import numpy as np
from gguf import GGUFReader
from gguf.quants import dequantize

path = sys.argv[1] if len(sys.argv) > 1 else os.path.expanduser("~/.cache/kick/models/SmolLM2-135M-Instruct.Q4_1.gguf")
out = sys.argv[2] if len(sys.argv) > 2 else os.path.join(os.path.dirname(__file__), "..", "fixtures", "model", "smollm2_twin_logits.json")

reader = GGUFReader(path)


def field(name):
    f = reader.fields[name]
    return f.parts[f.data[0]][0]


n_layers = int(field("llama.block_count"))
n_heads = int(field("llama.attention.head_count"))
n_kv = int(field("llama.attention.head_count_kv"))
theta = float(field("llama.rope.freq_base"))
eps = float(field("llama.attention.layer_norm_rms_epsilon"))
tensors = {}
for t in reader.tensors:
    # GGUF lists dims innermost first; numpy wants them outermost first.
    shape = tuple(int(d) for d in reversed(t.shape.tolist()))
    tensors[t.name] = dequantize(t.data, t.tensor_type).reshape(shape).astype(np.float64)
emb = tensors["token_embd.weight"]
head = tensors.get("output.weight", emb)
dim = emb.shape[1]
hs = dim // n_heads


def rmsnorm(x, g):
    return x / np.sqrt((x * x).mean(-1, keepdims=True) + eps) * g


def rope_interleaved(x, n):
    # x: [T, n*hs]; rotate pairs (2i, 2i+1) of each head by pos * theta^(-2i/hs)
    T = x.shape[0]
    x = x.reshape(T, n, hs // 2, 2)
    pos = np.arange(T)[:, None]
    ang = pos * theta ** (-np.arange(0, hs, 2) / hs)[None, :]
    c, s = np.cos(ang)[:, None, :], np.sin(ang)[:, None, :]
    a, b = x[..., 0], x[..., 1]
    return np.stack([a * c - b * s, a * s + b * c], -1).reshape(T, n * hs)


def forward(ids):
    x = emb[ids]
    T = len(ids)
    causal = np.triu(np.full((T, T), -np.inf), 1)
    for l in range(n_layers):
        p = f"blk.{l}."
        h = rmsnorm(x, tensors[p + "attn_norm.weight"])
        q = rope_interleaved(h @ tensors[p + "attn_q.weight"].T, n_heads).reshape(T, n_heads, hs)
        k = rope_interleaved(h @ tensors[p + "attn_k.weight"].T, n_kv).reshape(T, n_kv, hs)
        v = (h @ tensors[p + "attn_v.weight"].T).reshape(T, n_kv, hs)
        att = np.zeros((T, n_heads, hs))
        for hd in range(n_heads):
            kv = hd // (n_heads // n_kv)
            sc = q[:, hd] @ k[:, kv].T / np.sqrt(hs) + causal
            sc = np.exp(sc - sc.max(-1, keepdims=True))
            sc /= sc.sum(-1, keepdims=True)
            att[:, hd] = sc @ v[:, kv]
        x = x + att.reshape(T, dim) @ tensors[p + "attn_output.weight"].T
        h = rmsnorm(x, tensors[p + "ffn_norm.weight"])
        g = h @ tensors[p + "ffn_gate.weight"].T
        x = x + ((g / (1 + np.exp(-g))) * (h @ tensors[p + "ffn_up.weight"].T)) @ tensors[p + "ffn_down.weight"].T
    return rmsnorm(x, tensors["output_norm.weight"]) @ head.T


# Token ids of fixed prompts (SmolLM2 vocabulary), given directly so the tokenizer is tested apart.
prompts = [
    [1, 9690, 198, 2683, 359, 253, 5356, 5646, 11173, 3365, 3511, 308, 34519, 28, 7018, 411, 407, 19712, 8182, 2, 198, 1, 4093, 198, 1780, 314, 260, 3575, 282, 4649, 47, 2, 198, 1, 520, 9531, 198],
    [504, 2365, 6354, 16438, 27003, 690, 260, 23790, 2767, 30, 216, 33, 34, 35, 36, 37],
]
probe = list(range(0, 48000, 1000))
fixture = {"model": os.path.basename(path), "source": "tests/reference/gguf_llama_twin.py", "probe_ids": probe, "prompts": []}
for ids in prompts:
    logits = forward(np.array(ids))
    entry = {"tokens": ids, "top_ids": [], "top_logits": [], "probe_logits": []}
    for row in logits:
        top = np.argsort(-row)[:8]
        entry["top_ids"].append(top.tolist())
        entry["top_logits"].append(row[top].round(5).tolist())
        entry["probe_logits"].append(row[probe].round(5).tolist())
    fixture["prompts"].append(entry)
with open(out, "w") as f:
    json.dump(fixture, f)
print("wrote", out)
