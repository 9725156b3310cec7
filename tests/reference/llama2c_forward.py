#!/usr/bin/env python3
"""Plain numpy twin of llama2.c's forward pass (run.c), independent of kick: reads the legacy model.bin
directly, uses run.c's interleaved-pair RoPE and its own loops. Writes the fixture that
tests/unit/test_model.cpp compares kick's logits and greedy decode against.

usage: python3 tests/reference/llama2c_forward.py [MODEL_BIN] [OUT_JSON]
"""
import json
import os
import struct
import sys

import numpy as np

data_root = os.environ.get("KICK_DATA", os.path.join(os.path.dirname(__file__), "..", "..", "..", "shared", "data"))
model_path = sys.argv[1] if len(sys.argv) > 1 else os.path.join(data_root, "models", "stories260K", "model.bin")
out_path = sys.argv[2] if len(sys.argv) > 2 else os.path.join(os.path.dirname(__file__), "..", "fixtures", "model", "stories260k_reference.json")

raw = open(model_path, "rb").read()
dim, hidden, n_layers, n_heads, n_kv, vocab, seq_len = struct.unpack("<7i", raw[:28])
shared = vocab > 0
vocab = abs(vocab)
hs = dim // n_heads
w = np.frombuffer(raw, dtype="<f4", offset=28).astype(np.float64)
pos = 0


def take(*shape):
    global pos
    n = int(np.prod(shape))
    out = w[pos:pos + n].reshape(shape)
    pos += n
    return out


emb = take(vocab, dim)
rms_att = take(n_layers, dim)
wq = take(n_layers, dim, dim)
wk = take(n_layers, n_kv * hs, dim)
wv = take(n_layers, n_kv * hs, dim)
wo = take(n_layers, dim, dim)
rms_ffn = take(n_layers, dim)
w1 = take(n_layers, hidden, dim)
w2 = take(n_layers, dim, hidden)
w3 = take(n_layers, hidden, dim)
rms_final = take(dim)
take(seq_len, hs // 2)
take(seq_len, hs // 2)
wcls = emb if shared else take(vocab, dim)


def rmsnorm(x, g):
    return g * (x / np.sqrt(np.mean(x * x) + 1e-5))


def rope(vec, p, heads):
    # run.c: rotate each (even, odd) pair of every head by p * 10000^(-i/hs)
    v = vec.copy()
    for h in range(heads):
        for i in range(0, hs, 2):
            freq = 1.0 / (10000.0 ** (i / hs))
            c, s = np.cos(p * freq), np.sin(p * freq)
            a, b = v[h * hs + i], v[h * hs + i + 1]
            v[h * hs + i] = a * c - b * s
            v[h * hs + i + 1] = a * s + b * c
    return v


def run(tokens):
    kc = np.zeros((n_layers, len(tokens), n_kv * hs))
    vc = np.zeros((n_layers, len(tokens), n_kv * hs))
    all_logits = []
    for p, tok in enumerate(tokens):
        x = emb[tok].copy()
        for l in range(n_layers):
            xb = rmsnorm(x, rms_att[l])
            q = rope(wq[l] @ xb, p, n_heads)
            kc[l, p] = rope(wk[l] @ xb, p, n_kv)
            vc[l, p] = wv[l] @ xb
            att_out = np.zeros(dim)
            for h in range(n_heads):
                kvh = h // (n_heads // n_kv)
                qh = q[h * hs:(h + 1) * hs]
                scores = np.array([qh @ kc[l, t, kvh * hs:(kvh + 1) * hs] for t in range(p + 1)]) / np.sqrt(hs)
                scores = np.exp(scores - scores.max())
                scores /= scores.sum()
                att_out[h * hs:(h + 1) * hs] = sum(scores[t] * vc[l, t, kvh * hs:(kvh + 1) * hs] for t in range(p + 1))
            x = x + wo[l] @ att_out
            xb = rmsnorm(x, rms_ffn[l])
            h1 = w1[l] @ xb
            x = x + w2[l] @ ((h1 / (1 + np.exp(-h1))) * (w3[l] @ xb))
        all_logits.append(wcls @ rmsnorm(x, rms_final))
    return np.array(all_logits)


sequences = [[1, 403, 407, 261, 378, 354, 265, 430], [1, 280, 294, 300, 320, 340, 360, 380, 400, 420, 440, 460]]
fixture = {"model": "stories260K", "source": "tests/reference/llama2c_forward.py", "sequences": []}
for seq in sequences:
    fixture["sequences"].append({"tokens": seq, "logits": run(seq).astype(np.float32).round(6).tolist()})

greedy = [1]
for _ in range(40):
    greedy.append(int(np.argmax(run(greedy)[-1])))
fixture["greedy_from_bos"] = greedy
with open(out_path, "w") as f:
    json.dump(fixture, f)
print("wrote", out_path, "greedy:", greedy)
