#!/usr/bin/env python3
"""Writes the fuzzers' seed corpora into tests/fuzz/corpus/<target>/: one small valid input per format (and a
few variants), so libFuzzer starts from inputs that get past the magic numbers. Standard library only; the
models are a few hundred parameters, the data files synthetic (no data set content is committed).

usage: python3 tests/fuzz/make_seeds.py
"""
import gzip
import json
import os
import random
import struct

HERE = os.path.dirname(os.path.abspath(__file__))
CORPUS = os.path.join(HERE, "corpus")
REPO = os.path.normpath(os.path.join(HERE, "..", ".."))
rng = random.Random(0)

DIM, HIDDEN, LAYERS, HEADS, KV_HEADS, SEQ = 8, 16, 1, 2, 1, 16
TOKENS = ["<unk>", "<s>", "</s>"] + [f"<0x{b:02X}>" for b in range(256)] + ["\u2581", "a", "\u2581a", "b", "\u2581ab", "c"]
WORDS = len(TOKENS) - 259


def put(target, name, data):
    os.makedirs(os.path.join(CORPUS, target), exist_ok=True)
    with open(os.path.join(CORPUS, target, name), "wb") as f:
        f.write(data)


def floats(n):
    return [rng.uniform(-1, 1) for _ in range(n)]


def f32(values):
    return struct.pack(f"<{len(values)}f", *values)


# ------------------------------------------------------------------------------------------------ safetensors
def safetensors(tensors, metadata=None):
    header, blob = {}, b""
    for name, (dtype, shape, raw) in tensors.items():
        header[name] = {"dtype": dtype, "shape": shape, "data_offsets": [len(blob), len(blob) + len(raw)]}
        blob += raw
    if metadata:
        header["__metadata__"] = metadata
    text = json.dumps(header).encode()
    text += b" " * (-len(text) % 8)
    return struct.pack("<Q", len(text)) + text + blob


def bf16(values):
    return b"".join(struct.pack("<f", v)[2:] for v in values)


put("safetensors", "two_dtypes", safetensors({"a": ("F32", [2, 3], f32(floats(6))), "b": ("BF16", [4], bf16(floats(4)))},
                                              {"format": "pt"}))
put("safetensors", "f16_i64", safetensors({"h": ("F16", [2, 2], struct.pack("<4e", 1, -2, 0.5, 3)),
                                           "i": ("I64", [2], struct.pack("<2q", 7, -1))}))
with open(os.path.join(REPO, "tests", "fixtures", "io", "dtypes.safetensors"), "rb") as f:
    put("safetensors", "fixture_dtypes", f.read())


# ------------------------------------------------------------------------------------------------------- GGUF
GGUF_U32, GGUF_I32, GGUF_F32, GGUF_BOOL, GGUF_STR, GGUF_ARR, GGUF_U64 = 4, 5, 6, 7, 8, 9, 10


def gguf_str(s):
    b = s.encode()
    return struct.pack("<Q", len(b)) + b


def gguf_value(kind, value):
    if kind == GGUF_U32:
        return struct.pack("<I", value)
    if kind == GGUF_I32:
        return struct.pack("<i", value)
    if kind == GGUF_F32:
        return struct.pack("<f", value)
    if kind == GGUF_BOOL:
        return struct.pack("<?", value)
    if kind == GGUF_STR:
        return gguf_str(value)
    if kind == GGUF_U64:
        return struct.pack("<Q", value)
    element_kind, items = value
    return struct.pack("<IQ", element_kind, len(items)) + b"".join(gguf_value(element_kind, v) for v in items)


def gguf_file(kv, tensors, alignment=32):
    out = b"GGUF" + struct.pack("<IQQ", 3, len(tensors), len(kv))
    for key, (kind, value) in kv.items():
        out += gguf_str(key) + struct.pack("<I", kind) + gguf_value(kind, value)
    data, infos = b"", b""
    for name, (ggml_type, shape, raw) in tensors.items():
        data += b"\0" * (-len(data) % alignment)
        infos += gguf_str(name) + struct.pack("<I", len(shape)) + b"".join(struct.pack("<Q", d) for d in shape)
        infos += struct.pack("<IQ", ggml_type, len(data))
        data += raw
    out += infos
    out += b"\0" * (-len(out) % alignment)
    return out + data


def llama_gguf():
    head_dim = DIM // HEADS
    kv = {
        "general.architecture": (GGUF_STR, "llama"),
        "general.alignment": (GGUF_U32, 32),
        "llama.context_length": (GGUF_U32, SEQ),
        "llama.embedding_length": (GGUF_U32, DIM),
        "llama.block_count": (GGUF_U32, LAYERS),
        "llama.feed_forward_length": (GGUF_U32, HIDDEN),
        "llama.attention.head_count": (GGUF_U32, HEADS),
        "llama.attention.head_count_kv": (GGUF_U32, KV_HEADS),
        "llama.attention.layer_norm_rms_epsilon": (GGUF_F32, 1e-5),
        "llama.rope.freq_base": (GGUF_F32, 10000.0),
        "tokenizer.ggml.model": (GGUF_STR, "llama"),
        "tokenizer.ggml.tokens": (GGUF_ARR, (GGUF_STR, TOKENS)),
        "tokenizer.ggml.scores": (GGUF_ARR, (GGUF_F32, [0.0] * 259 + [-float(i + 1) for i in range(WORDS)])),
        "tokenizer.ggml.token_type": (GGUF_ARR, (GGUF_I32, [2, 3, 3] + [6] * 256 + [1] * WORDS)),
        "tokenizer.ggml.bos_token_id": (GGUF_U32, 1),
        "tokenizer.ggml.eos_token_id": (GGUF_U32, 2),
    }
    vocab = len(TOKENS)
    shapes = {  # GGUF order: fastest dimension first
        "token_embd.weight": [DIM, vocab],
        "blk.0.attn_norm.weight": [DIM],
        "blk.0.attn_q.weight": [DIM, DIM],
        "blk.0.attn_k.weight": [DIM, KV_HEADS * head_dim],
        "blk.0.attn_v.weight": [DIM, KV_HEADS * head_dim],
        "blk.0.attn_output.weight": [DIM, DIM],
        "blk.0.ffn_norm.weight": [DIM],
        "blk.0.ffn_gate.weight": [DIM, HIDDEN],
        "blk.0.ffn_up.weight": [DIM, HIDDEN],
        "blk.0.ffn_down.weight": [HIDDEN, DIM],
        "output_norm.weight": [DIM],
    }
    tensors = {}
    for name, shape in shapes.items():
        n = 1
        for d in shape:
            n *= d
        tensors[name] = (0, shape, f32(floats(n)))  # type 0: F32
    return gguf_file(kv, tensors)


put("gguf", "tiny_llama", llama_gguf())
with open(os.path.join(REPO, "tests", "fixtures", "gguf", "quant_types.gguf"), "rb") as f:
    put("gguf", "fixture_quant_types", f.read())


# ---------------------------------------------------------------------------------------------------- llama2.c
def llama2c_model(vocab):
    head = DIM // HEADS
    kv_dim = KV_HEADS * head
    header = struct.pack("<7i", DIM, HIDDEN, LAYERS, HEADS, KV_HEADS, vocab, SEQ)
    counts = [vocab * DIM, LAYERS * DIM, LAYERS * DIM * DIM, LAYERS * DIM * kv_dim, LAYERS * DIM * kv_dim,
              LAYERS * DIM * DIM, LAYERS * DIM, LAYERS * HIDDEN * DIM, LAYERS * DIM * HIDDEN, LAYERS * HIDDEN * DIM, DIM,
              SEQ * head // 2, SEQ * head // 2]
    return header + b"".join(f32(floats(n)) for n in counts)


def llama2c_tokenizer(tokens):
    out = struct.pack("<i", max(len(t.encode()) for t in tokens))
    for i, t in enumerate(tokens):
        b = t.replace("\u2581", " ").encode()
        out += struct.pack("<fi", -float(i), len(b)) + b
    return out


l2c_tokens = ["<unk>", "<s>", "</s>"] + [f"<0x{b:02X}>" for b in range(256)] + [" ", " a", "b", " ab", "c"]
model = llama2c_model(len(l2c_tokens))
put("llama2c", "tiny", struct.pack("<I", len(model)) + model + llama2c_tokenizer(l2c_tokens))


# ------------------------------------------------------------------------------------------------ config.json
put("config_json", "llama", json.dumps({
    "architectures": ["LlamaForCausalLM"], "model_type": "llama", "vocab_size": 49152, "hidden_size": 576,
    "intermediate_size": 1536, "num_hidden_layers": 30, "num_attention_heads": 9, "num_key_value_heads": 3,
    "max_position_embeddings": 8192, "rms_norm_eps": 1e-5, "rope_theta": 100000, "tie_word_embeddings": True,
    "bos_token_id": 1, "eos_token_id": 2}).encode())
put("config_json", "mistral_head_dim", json.dumps({
    "architectures": ["MistralForCausalLM"], "model_type": "mistral", "vocab_size": 32000, "hidden_size": 4096,
    "intermediate_size": 14336, "num_hidden_layers": 32, "num_attention_heads": 32, "num_key_value_heads": 8,
    "head_dim": 128, "max_position_embeddings": 32768, "rms_norm_eps": 1e-5, "eos_token_id": [2, 3]}).encode())


# --------------------------------------------------------------------------------------------- tokenizer.json
def bytes_to_unicode():
    """GPT-2's printable stand-ins for the 256 byte values (every byte-level BPE vocabulary holds them)."""
    keep = list(range(ord("!"), ord("~") + 1)) + list(range(ord("\u00a1"), ord("\u00ac") + 1)) + list(range(ord("\u00ae"), ord("\u00ff") + 1))
    chars, extra = [], 0
    for b in range(256):
        if b in keep:
            chars.append(chr(b))
        else:
            chars.append(chr(256 + extra))
            extra += 1
    return chars


byte_vocab = {"<|endoftext|>": 0, "<|im_start|>": 1}
for ch in bytes_to_unicode():
    byte_vocab.setdefault(ch, len(byte_vocab))
for merged in ("He", "ll", "Hell", "Hello", "\u0120w"):
    byte_vocab[merged] = len(byte_vocab)
byte_level = {
    "version": "1.0",
    "added_tokens": [{"id": 0, "content": "<|endoftext|>", "special": True}, {"id": 1, "content": "<|im_start|>", "special": True}],
    "normalizer": None,
    "pre_tokenizer": {"type": "Sequence", "pretokenizers": [
        {"type": "Digits", "individual_digits": True},
        {"type": "ByteLevel", "add_prefix_space": False, "trim_offsets": True, "use_regex": True}]},
    "model": {"type": "BPE", "dropout": None, "unk_token": None, "fuse_unk": False, "byte_fallback": False,
              "vocab": byte_vocab,
              "merges": ["H e", "l l", "He ll", "Hell o", "\u0120 w"]},
}
put("tokenizer_json", "byte_level_bpe", json.dumps(byte_level).encode())
sentencepiece_like = {
    "version": "1.0",
    "added_tokens": [{"id": 0, "content": "<unk>", "special": True}, {"id": 1, "content": "<s>", "special": True},
                     {"id": 2, "content": "</s>", "special": True}],
    "normalizer": {"type": "Sequence", "normalizers": [{"type": "Prepend", "prepend": "\u2581"},
                                                       {"type": "Replace", "pattern": {"String": " "}, "content": "\u2581"}]},
    "pre_tokenizer": None,
    "decoder": {"type": "Sequence", "decoders": [{"type": "Replace", "pattern": {"String": "\u2581"}, "content": " "},
                                                 {"type": "ByteFallback"}, {"type": "Fuse"}, {"type": "Strip", "content": " ", "start": 1, "stop": 0}]},
    "model": {"type": "BPE", "byte_fallback": True, "unk_token": "<unk>",
              "vocab": {t: i for i, t in enumerate(TOKENS)},
              "merges": ["\u2581 a", "\u2581a b"]},
}
put("tokenizer_json", "sentencepiece_bpe", json.dumps(sentencepiece_like).encode())
# A LLaMA-style post-processor that prepends <s>: the reader follows "single"[0].SpecialToken.id into
# "special_tokens" (the path that held a pointer into a temporary, found by ASan, not by fuzzing).
with_template = dict(sentencepiece_like)
with_template["post_processor"] = {
    "type": "Sequence",
    "processors": [{"type": "ByteLevel", "trim_offsets": False},
                   {"type": "TemplateProcessing",
                    "single": [{"SpecialToken": {"id": "<s>", "type_id": 0}}, {"Sequence": {"id": "A", "type_id": 0}}],
                    "pair": [{"SpecialToken": {"id": "<s>", "type_id": 0}}, {"Sequence": {"id": "A", "type_id": 0}},
                             {"Sequence": {"id": "B", "type_id": 1}}],
                    "special_tokens": {"<s>": {"id": "<s>", "ids": [1], "tokens": ["<s>"]}}}]}
put("tokenizer_json", "template_processing", json.dumps(with_template).encode())


# ------------------------------------------------------------------------------------ task and experiment files
for name in ("mmlu", "factoid_qa", "retrieval_qa", "summarization", "instruction_following", "perplexity"):
    with open(os.path.join(REPO, "data", "tasks", f"{name}.yaml"), "rb") as f:
        put("task_file", name, f.read())
for name in ("tiny", "bad_method"):
    path = os.path.join(REPO, "tests", "fixtures", "experiments", f"{name}.yaml")
    if os.path.exists(path):
        with open(path, "rb") as f:
            put("experiment", name, f.read())
with open(os.path.join(REPO, "data", "experiments", "smollm2_scaled.yaml"), "rb") as f:
    put("experiment", "smollm2_scaled", f.read())


# ------------------------------------------------------------------------------- data sets (first byte: reader)
def dataset(reader, name, payload):
    put("datasets", name, bytes([reader]) + payload)


dataset(0, "mmlu_csv", b'"What is 2+2?",3,4,5,"six, or so",B\nWhich planet is red?,Venus,Mars,Earth,Jupiter,B\n')
dataset(1, "freebaseqa_json", json.dumps({"Dataset": "FreebaseQA-eval", "Version": "1.0", "Questions": [
    {"Question-ID": "FreebaseQA-eval-0", "RawQuestion": "Which city is the capital of France?",
     "ProcessedQuestion": "which city is the capital of france",
     "Parses": [{"Parse-Id": "FreebaseQA-eval-0.P0", "PotentialTopicEntityMention": "france",
                 "TopicEntityName": "france", "TopicEntityMid": "m.0f8l9c", "InferentialChain": "location.country.capital",
                 "Answers": [{"AnswersMid": "m.05qtj", "AnswersName": ["paris", "paree"]}]}]}]}).encode())
dataset(2, "freebaseqa_txt", b"Which city is the capital of France? | paris \nA boar is what type of creature? | pig \n")
nq = json.dumps({"question": "who wrote hamlet", "answers": ["William Shakespeare", "Shakespeare"],
                 "ctxs": [{"title": "Hamlet", "text": "Hamlet is a tragedy written by William Shakespeare."}]}) + "\n"
dataset(3, "nq_open_jsonl", nq.encode())
dataset(4, "nq_open_gz", gzip.compress(nq.encode(), mtime=0))
dataset(5, "triviaqa_rc", json.dumps({"Data": [{"QuestionId": "tc_1", "Question": "Who wrote Hamlet?",
                                                "Answer": {"Value": "Shakespeare", "Aliases": ["Shakespeare", "William Shakespeare"], "NormalizedAliases": ["shakespeare", "william shakespeare"]},
                                                "EntityPages": [{"Filename": "doc.txt", "Title": "Hamlet"}],
                                                "SearchResults": [{"Filename": "doc.txt", "Title": "Hamlet (web)"}]}], "Domain": "Web", "Version": 1.0}).encode())
dataset(6, "story", b"(CNN) -- A short story about a cat.\n\nThe cat sat on the mat.\n\n@highlight\n\nCat sits on mat\n\n@highlight\n\nMat unharmed\n")
dataset(7, "vicuna80", b'{"question_id": 1, "text": "How can I sleep better?", "category": "generic"}\n')
dataset(8, "mt_bench", b'{"question_id": 81, "category": "writing", "turns": ["Write a haiku.", "Now make it rhyme."]}\n')


# ------------------------------------------------------------ judges (first byte: 0 = prompt file, else a reply)
for name in ("llmkick_summary", "llmkick_mt_general", "fastchat_single_multi_turn"):
    with open(os.path.join(REPO, "data", "judges", f"{name}.yaml"), "rb") as f:
        put("judge", name, b"\x00" + f.read())
put("judge", "reply_rating", b"\x01The answer is clear and correct. Rating: [[8]]")
put("judge", "reply_pair", b"\x017 4\nAssistant 1 was more helpful than Assistant 2.")
put("judge", "reply_summary", b"\x017 8\n8 8.5\n9 7\n6 6\nAssistant 2 misses the main event.")
print("seeds written under", CORPUS)
