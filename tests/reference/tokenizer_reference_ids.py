#!/usr/bin/env python3
"""Token ids from independent tokenizers for a fixed text set, the fixture tests/unit/test_tokenizer_reference.cpp
compares kick against.

- SmolLM2-135M-Instruct (GPT-2 byte-level BPE, `smollm` pre-tokenizer): llama.cpp's tokenizer
  (llama-cpp-python, vocab_only) on the GGUF, and PyPI `tokenizers` on a tokenizer.json this script builds
  from the GGUF's vocabulary and merges with SmolLM2's published pre-tokenizer (Digits(individual_digits)
  then ByteLevel).
- stories260K (llama2.c score BPE): a Python port of llama2.c's `encode` (run.c), and llama.cpp's
  SentencePiece tokenizer on a vocab-only GGUF this script writes from tokenizer.bin.

usage: python3 tests/reference/tokenizer_reference_ids.py   (needs gguf, tokenizers, llama-cpp-python)
"""
import json
import os
import struct
import tempfile

import gguf
import llama_cpp
from tokenizers import Tokenizer

HERE = os.path.dirname(os.path.abspath(__file__))
OUT = os.path.join(HERE, "..", "fixtures", "tokenizer", "reference_ids.json")
GGUF = os.path.expanduser("~/.cache/kick/models/SmolLM2-135M-Instruct.Q4_1.gguf")
DATA = os.environ.get("KICK_DATA", os.path.join(HERE, "..", "..", "..", "shared", "data"))
STORIES_TOK = os.path.join(DATA, "models", "stories260K", "tokenizer.bin")

TEXTS = [
    "Hello world",
    "The quick brown fox jumps over the lazy dog.",
    "  leading spaces, trailing spaces   ",
    "multiple   spaces\tand\ttabs\nnew\n\n\nlines",
    "\n\n\n",
    "3.14159 and 1234567890 and 2023-11-24",
    "Prices: $1,000,000.99 (approx.) 50% off!!!",
    "don't I'LL we've they're it's",
    "def fib(n):\n    return n if n < 2 else fib(n - 1) + fib(n - 2)\n",
    "Ünïcödé àccénts: café, naïve, Zürich, São Paulo",
    "中文分词测试：我们今天去公园。",
    "日本語のテキストです。カタカナとひらがな。",
    "Русский текст для проверки.",
    "نص عربي للاختبار",
    "emoji 👍🏽🎉 and symbols ©®™ ∑∫√",
    "<|im_start|>user\nWhat is 2+2?<|im_end|>\n<|im_start|>assistant\n",
    "Once upon a time, there was a little girl named Lily.",
    "a",
    "",
]


def smollm2_tokenizer_json(reader):
    f = reader.fields
    tokens = [bytes(f["tokenizer.ggml.tokens"].parts[i]).decode("utf-8") for i in f["tokenizer.ggml.tokens"].data]
    merges = [bytes(f["tokenizer.ggml.merges"].parts[i]).decode("utf-8") for i in f["tokenizer.ggml.merges"].data]
    types = [int(f["tokenizer.ggml.token_type"].parts[i][0]) for i in f["tokenizer.ggml.token_type"].data]
    byte_level = {"type": "ByteLevel", "add_prefix_space": False, "trim_offsets": True, "use_regex": True}
    added = [{"id": i, "content": t, "single_word": False, "lstrip": False, "rstrip": False, "normalized": False, "special": True}
             for i, (t, ty) in enumerate(zip(tokens, types)) if ty == 3]
    return {
        "version": "1.0", "truncation": None, "padding": None, "added_tokens": added, "normalizer": None,
        "pre_tokenizer": {"type": "Sequence", "pretokenizers": [{"type": "Digits", "individual_digits": True}, byte_level]},
        "post_processor": None, "decoder": byte_level,
        "model": {"type": "BPE", "dropout": None, "unk_token": None, "continuing_subword_prefix": None,
                  "end_of_word_suffix": None, "fuse_unk": False, "byte_fallback": False,
                  "vocab": {t: i for i, t in enumerate(tokens)}, "merges": merges},
    }


def read_llama2c_tokenizer(path):
    raw = open(path, "rb").read()
    (max_len,) = struct.unpack_from("<i", raw, 0)
    pos, vocab, scores = 4, [], []
    while pos < len(raw):
        score, n = struct.unpack_from("<fi", raw, pos)
        pos += 8
        vocab.append(raw[pos:pos + n].decode("utf-8", errors="surrogateescape"))
        scores.append(score)
        pos += n
    return vocab, scores


def run_c_encode(text, vocab, scores):
    """llama2.c's encode(): dummy prefix, per-codepoint lookup with byte fallback, best-score merges."""
    index = {t: i for i, t in enumerate(vocab)}
    tokens = []
    if text:
        tokens.append(index[" "])
    for ch in text:
        if ch in index:
            tokens.append(index[ch])
        else:
            tokens.extend(b + 3 for b in ch.encode("utf-8"))
    while True:
        best, best_id, best_i = -1e10, -1, -1
        for i in range(len(tokens) - 1):
            merged = vocab[tokens[i]] + vocab[tokens[i + 1]]
            if merged in index and scores[index[merged]] > best:
                best, best_id, best_i = scores[index[merged]], index[merged], i
        if best_i < 0:
            break
        tokens[best_i:best_i + 2] = [best_id]
    return tokens


def stories_vocab_gguf(vocab, scores, path):
    w = gguf.GGUFWriter(path, "llama")
    w.add_block_count(1)
    w.add_context_length(512)
    w.add_embedding_length(64)
    w.add_feed_forward_length(172)
    w.add_head_count(8)
    w.add_head_count_kv(4)
    w.add_layer_norm_rms_eps(1e-5)
    w.add_tokenizer_model("llama")
    w.add_token_list([t.replace(" ", "\u2581") for t in vocab])
    w.add_token_scores(scores)
    types = [2 if i == 0 else 3 if i in (1, 2) else 6 if 3 <= i < 259 else 1 for i in range(len(vocab))]
    w.add_token_types(types)
    w.add_bos_token_id(1)
    w.add_eos_token_id(2)
    w.add_unk_token_id(0)
    w.add_add_space_prefix(True)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()


def main():
    out = {"texts": TEXTS, "smollm2": {}, "stories260k": {}}
    reader = gguf.GGUFReader(GGUF)
    hf = Tokenizer.from_str(json.dumps(smollm2_tokenizer_json(reader)))
    llm = llama_cpp.Llama(model_path=GGUF, vocab_only=True, verbose=False)
    out["smollm2"]["tokenizers"] = [hf.encode(t, add_special_tokens=False).ids for t in TEXTS]
    out["smollm2"]["llama_cpp"] = [llm.tokenize(t.encode(), add_bos=False, special=True) for t in TEXTS]

    vocab, scores = read_llama2c_tokenizer(STORIES_TOK)
    out["stories260k"]["run_c"] = [run_c_encode(t, vocab, scores) for t in TEXTS]
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "stories-vocab.gguf")
        stories_vocab_gguf(vocab, scores, path)
        spm = llama_cpp.Llama(model_path=path, vocab_only=True, verbose=False)
        out["stories260k"]["llama_cpp"] = [spm.tokenize(t.encode(), add_bos=False, special=False) for t in TEXTS]
    with open(OUT, "w") as f:
        json.dump(out, f, ensure_ascii=False)
    for name in ("smollm2", "stories260k"):
        a, b = list(out[name].values())
        same = sum(x == y for x, y in zip(a, b))
        print(f"{name}: the two references agree on {same}/{len(TEXTS)} texts")


main()
