#!/usr/bin/env python3
"""Logits of SmolLM2-135M-Instruct from llama.cpp (PyPI llama-cpp-python) on fixed token ids, the
independent implementation kick's decoder is compared against (tests/unit/test_model.cpp).

Keeps the fixture small: per position, llama.cpp's top-8 token ids with their logits and the logits of
a fixed probe set of 48 ids. Token ids are given directly so the tokenizer is tested on its own.

usage: python3 tests/reference/llamacpp_logits.py [GGUF] [OUT_JSON]
"""
import json
import os
import sys

import llama_cpp
import numpy as np

gguf = sys.argv[1] if len(sys.argv) > 1 else os.path.expanduser("~/.cache/kick/models/SmolLM2-135M-Instruct.Q4_1.gguf")
out = sys.argv[2] if len(sys.argv) > 2 else os.path.join(os.path.dirname(__file__), "..", "fixtures", "model", "smollm2_llamacpp_logits.json")

llm = llama_cpp.Llama(model_path=gguf, n_ctx=512, logits_all=True, n_threads=2, verbose=False, seed=0)  # 0.3.16 built with CMAKE_ARGS="-DGGML_NATIVE=OFF -DGGML_AVX512=OFF"
prompts = [
    "<|im_start|>user\nWhat is the capital of France?<|im_end|>\n<|im_start|>assistant\n",
    "The quick brown fox jumps over the lazy dog. 1234567890",
    "def fibonacci(n):\n    if n < 2:\n        return n\n",
]
probe = list(range(0, 48 * 1000, 1000))
fixture = {"model": "SmolLM2-135M-Instruct.Q4_1.gguf", "llama_cpp_python": llama_cpp.__version__, "probe_ids": probe, "prompts": []}
for text in prompts:
    ids = llm.tokenize(text.encode(), add_bos=False, special=True)
    llm.reset()
    llm.eval(ids)
    logits = np.array(llm.scores[: len(ids)], dtype=np.float32)
    entry = {"text": text, "tokens": ids, "top_ids": [], "top_logits": [], "probe_logits": []}
    for row in logits:
        top = np.argsort(-row)[:8]
        entry["top_ids"].append(top.tolist())
        entry["top_logits"].append(row[top].round(5).tolist())
        entry["probe_logits"].append(row[probe].round(5).tolist())
    # llama.cpp's own greedy continuation of the first prompt, 24 tokens
    fixture["prompts"].append(entry)

llm.reset()
ids = fixture["prompts"][0]["tokens"]
greedy = []
for tok in llm.generate(ids, temp=0.0, top_k=1, reset=True):
    if tok == llm.token_eos() or len(greedy) >= 24:
        break
    greedy.append(int(tok))
fixture["greedy_continuation_of_prompt0"] = greedy
with open(out, "w") as f:
    json.dump(fixture, f)
print("wrote", out, "greedy:", llm.detokenize(greedy).decode(errors="replace"))
