#!/usr/bin/env python3
"""Where the time of one few-shot MMLU batch goes: a plain-PyTorch twin of kick's decoder forward (the same ops in
the same order as lib/model/decoder.cpp: RMSNorm in fp32, rotate-half rotary, grouped-query attention in query
blocks against a KV cache holding the shared few-shot prefix, SwiGLU) on random weights of SmolLM2-135M's shape,
under torch.profiler. Prints tokens/s and the top operators by self time.

Shapes default to a professional_law-like batch: 8 questions of 300 tokens after a 1,200-token cached prefix.

usage: /usr/bin/python3 tests/bench/mmlu_batch_profile.py [--batch 8] [--tokens 300] [--prefix 1200]
       [--query-block 128] [--dtype bf16|fp32] [--threads 2] [--fp32-softmax]
"""
import argparse
import math
import time

import torch

HIDDEN, HEADS, KV_HEADS, HEAD_DIM, INTERMEDIATE, LAYERS = 576, 9, 3, 64, 1536, 30


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--tokens", type=int, default=300)
    ap.add_argument("--prefix", type=int, default=1200)
    ap.add_argument("--query-block", type=int, default=128)
    ap.add_argument("--dtype", choices=["bf16", "fp32"], default="bf16")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--fp32-softmax", action="store_true", help="the scores round-trip through fp32 (kick before 2026-11-25)")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    dt = torch.bfloat16 if args.dtype == "bf16" else torch.float32
    B, T, P = args.batch, args.tokens, args.prefix

    def weight(o, i):
        return (torch.randn(o, i) * 0.02).to(dt)

    layers = [dict(q=weight(HEADS * HEAD_DIM, HIDDEN), k=weight(KV_HEADS * HEAD_DIM, HIDDEN), v=weight(KV_HEADS * HEAD_DIM, HIDDEN),
                   o=weight(HIDDEN, HEADS * HEAD_DIM), g=weight(INTERMEDIATE, HIDDEN), u=weight(INTERMEDIATE, HIDDEN),
                   d=weight(HIDDEN, INTERMEDIATE), n1=torch.ones(HIDDEN, dtype=dt), n2=torch.ones(HIDDEN, dtype=dt))
              for _ in range(LAYERS)]
    keys = [torch.randn(B, KV_HEADS, P + T, HEAD_DIM).to(dt) for _ in range(LAYERS)]
    values = [torch.randn(B, KV_HEADS, P + T, HEAD_DIM).to(dt) for _ in range(LAYERS)]
    inv_freq = (1.0 / (10000 ** (torch.arange(0, HEAD_DIM, 2).double() / HEAD_DIM))).float()
    freqs = torch.arange(P, P + T).float()[:, None] * inv_freq[None]
    emb = torch.cat([freqs, freqs], -1)
    cos, sin = emb.cos()[None, None].to(dt), emb.sin()[None, None].to(dt)

    def rms_norm(x, w, eps=1e-5):
        xf = x.float()
        return (xf * torch.rsqrt(xf.pow(2).mean(-1, keepdim=True) + eps) * w.float()).to(x.dtype)

    def rotate_half(x):
        h = x.shape[-1] // 2
        return torch.cat([-x[..., h:], x[..., :h]], -1)

    def attention(q, k, v):
        group = HEADS // KV_HEADS
        qg = (q * (1 / math.sqrt(HEAD_DIM))).view(B, KV_HEADS, group, T, HEAD_DIM)
        out = torch.empty(B, KV_HEADS, group, T, HEAD_DIM, dtype=dt)
        for start in range(0, T, args.query_block):
            rows = min(args.query_block, T - start)
            visible = P + start + rows
            scores = torch.matmul(qg[:, :, :, start:start + rows].reshape(B, KV_HEADS, group * rows, HEAD_DIM),
                                  k[:, :, :visible].transpose(-1, -2))
            if args.fp32_softmax:
                scores = scores.float()
            future = torch.ones(rows, rows, dtype=torch.bool).triu(1)
            scores.view(B, KV_HEADS, group, rows, visible)[..., visible - rows:].masked_fill_(future, -math.inf)
            probs = torch.softmax(scores, -1).to(dt)
            out[:, :, :, start:start + rows].copy_(torch.matmul(probs, v[:, :, :visible]).view(B, KV_HEADS, group, rows, HEAD_DIM))
        return out.view(B, HEADS, T, HEAD_DIM)

    linear = torch.nn.functional.linear

    def layer(x, w, i):
        n = rms_norm(x, w["n1"])
        q = linear(n, w["q"]).view(B, T, HEADS, HEAD_DIM).transpose(1, 2)
        k = linear(n, w["k"]).view(B, T, KV_HEADS, HEAD_DIM).transpose(1, 2)
        v = linear(n, w["v"]).view(B, T, KV_HEADS, HEAD_DIM).transpose(1, 2)
        q, k = q * cos + rotate_half(q) * sin, k * cos + rotate_half(k) * sin
        keys[i][:, :, P:].copy_(k)
        values[i][:, :, P:].copy_(v)
        h = x + linear(attention(q, keys[i], values[i]).transpose(1, 2).reshape(B, T, HIDDEN), w["o"])
        n = rms_norm(h, w["n2"])
        return h + linear(torch.nn.functional.silu(linear(n, w["g"])) * linear(n, w["u"]), w["d"])

    x = torch.randn(B, T, HIDDEN).to(dt)
    with torch.no_grad():
        for i in range(2):  # warm-up
            layer(x, layers[i], i)
        t0 = time.perf_counter()
        with torch.profiler.profile() as prof:
            y = x
            for i, w in enumerate(layers):
                y = layer(y, w, i)
        seconds = time.perf_counter() - t0
    linear_flops = 2 * B * T * LAYERS * sum(w.numel() for name, w in layers[0].items() if name not in ("n1", "n2"))
    attention_flops = 4 * B * HEADS * HEAD_DIM * T * (P + (T + 1) / 2) * LAYERS
    print(f"batch {B} x {T} tokens after a {P}-token prefix, {args.dtype}, {args.threads} threads, query block "
          f"{args.query_block}{', fp32 softmax' if args.fp32_softmax else ''}: {seconds:.2f} s (profiled), "
          f"{B * T / seconds:.0f} tokens/s, linear {linear_flops / 1e9:.0f} + attention {attention_flops / 1e9:.0f} GFLOP")
    print(prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=10))


if __name__ == "__main__":
    main()
