#!/usr/bin/env python3
"""llama.cpp's prefill and decode tokens/s on a GGUF model, measured the way `kick bench runtime` measures kick's:
a prompt of random token ids in one batch (logits of the last position only), then greedy steps of one token,
best of N after one warm-up round, with a given thread count. The other half of tests/bench/runtime_vs_llamacpp.sh.

Equal precision: llama.cpp is given the same weights kick computes with. The source GGUF (SmolLM2's Q4_1) is
requantized with llama.cpp's own llama_model_quantize to F32 or BF16, so its kernels run on the dequantized
Q4_1 values that kick's fp32/bf16 runtime holds (kick dequantizes the same file when it loads it).

usage: python3 tests/bench/llamacpp_runtime.py --gguf FILE --work DIR [--types f32,bf16] [--threads 2]
       [--prompt-tokens 256] [--decode-tokens 32] [--repeats 3] [--json OUT]
"""
import argparse
import json
import os
import random
import sys
import time

import llama_cpp

FTYPES = {"f32": llama_cpp.LLAMA_FTYPE_ALL_F32, "bf16": llama_cpp.LLAMA_FTYPE_MOSTLY_BF16}


def requantize(source, kind, work):
    out = os.path.join(work, f"{os.path.splitext(os.path.basename(source))[0]}.{kind}.gguf")
    if os.path.exists(out):
        return out
    params = llama_cpp.llama_model_quantize_default_params()
    params.ftype = FTYPES[kind]
    params.allow_requantize = True
    params.nthread = 2
    tmp = out + ".tmp"
    if llama_cpp.llama_model_quantize(source.encode(), tmp.encode(), params) != 0:
        sys.exit(f"llamacpp_runtime.py: llama_model_quantize {source} -> {kind} failed")
    os.replace(tmp, out)
    return out


def measure(path, threads, prompt_tokens, decode_tokens, repeats, seed):
    n_ctx = prompt_tokens + decode_tokens + 16
    llm = llama_cpp.Llama(model_path=path, n_ctx=n_ctx, n_batch=max(512, prompt_tokens), n_ubatch=max(512, prompt_tokens),
                          n_threads=threads, n_threads_batch=threads, logits_all=False, verbose=False, seed=seed)
    rng = random.Random(seed)
    prompt = [rng.randrange(3, llm.n_vocab()) for _ in range(prompt_tokens)]
    prefill_best = decode_best = float("inf")
    for r in range(repeats + 1):  # the first round warms up
        llm.reset()
        llm._ctx.kv_cache_clear()
        t0 = time.perf_counter()
        llm.eval(prompt)
        prefill = time.perf_counter() - t0
        t0 = time.perf_counter()
        for _ in range(decode_tokens):
            next_id = int(llm.scores[llm.n_tokens - 1].argmax())
            llm.eval([next_id])
        decode = time.perf_counter() - t0
        if r > 0:
            prefill_best = min(prefill_best, prefill)
            decode_best = min(decode_best, decode)
    return {"prefill_tokens_per_s": prompt_tokens / prefill_best, "decode_tokens_per_s": decode_tokens / decode_best}


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--gguf", required=True)
    ap.add_argument("--work", required=True, help="folder for the requantized files (kept for reuse)")
    ap.add_argument("--types", default="f32,bf16")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--prompt-tokens", type=int, default=256)
    ap.add_argument("--decode-tokens", type=int, default=32)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--json")
    args = ap.parse_args()
    os.makedirs(args.work, exist_ok=True)
    report = {"llama_cpp_python": llama_cpp.__version__, "threads": args.threads, "prompt_tokens": args.prompt_tokens,
              "decode_tokens": args.decode_tokens, "runs": []}
    for kind in args.types.split(","):
        if kind not in FTYPES:
            sys.exit(f"llamacpp_runtime.py: --types: '{kind}' is not one of {', '.join(FTYPES)}")
        path = requantize(args.gguf, kind, args.work)
        figures = measure(path, args.threads, args.prompt_tokens, args.decode_tokens, args.repeats, args.seed)
        report["runs"].append({"type": kind, "file": path, **figures})
        print(f"llama.cpp {kind}: prefill {figures['prefill_tokens_per_s']:.1f} tokens/s, "
              f"decode {figures['decode_tokens_per_s']:.1f} tokens/s", file=sys.stderr)
    text = json.dumps(report, indent=2) + "\n"
    if args.json:
        with open(args.json + ".tmp", "w") as f:
            f.write(text)
        os.replace(args.json + ".tmp", args.json)
    else:
        sys.stdout.write(text)


if __name__ == "__main__":
    main()
