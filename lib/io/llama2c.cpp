// Owns llama2.c model files: read_llama2c (legacy v0, and the "ak42" v1 fp32 / v2 Q8_0 exports) and
// write_llama2c (legacy v0 + tokenizer.bin), mapped to and from HF names and HF q/k row order.
#include <cctype>
#include <cmath>
#include <cstring>

#include "kick/io.hpp"

namespace kick {
namespace {

constexpr uint32_t kVersionedMagic = 0x616b3432;  // "ak42" little-endian
constexpr uint64_t kVersionedHeaderBytes = 256;
constexpr uint64_t kLegacyHeaderBytes = 7 * 4;

struct Llama2cHeader {
  int32_t dim, hidden_dim, n_layers, n_heads, n_kv_heads, vocab_size, seq_len;
};

int32_t read_i32(const uint8_t* p) {
  int32_t v;
  std::memcpy(&v, p, 4);
  return v;
}

void append_i32(std::string& out, int32_t v) { out.append(reinterpret_cast<const char*>(&v), 4); }
void append_f32(std::string& out, float v) { out.append(reinterpret_cast<const char*>(&v), 4); }
void append_tensor_f32(std::string& out, const Tensor& t) {
  Tensor c = t.detach().to(at::kCPU, at::kFloat).contiguous();
  out.append(static_cast<const char*>(c.data_ptr()), static_cast<size_t>(c.numel()) * 4);
}

// Rejects headers that cannot describe a llama model before any size arithmetic is done with them.
void check_header(const std::string& path, const Llama2cHeader& h, int32_t vocab_abs) {
  auto positive = [&](const char* field, int32_t v) {
    if (v <= 0) fail("{}: llama2.c header field {} is {}, expected a positive number", path, field, v);
  };
  positive("dim", h.dim);
  positive("hidden_dim", h.hidden_dim);
  positive("n_layers", h.n_layers);
  positive("n_heads", h.n_heads);
  positive("n_kv_heads", h.n_kv_heads);
  positive("vocab_size", vocab_abs);
  positive("seq_len", h.seq_len);
  // Bounds far beyond any real model keep the size arithmetic below from overflowing.
  auto at_most = [&](const char* field, int32_t v, int32_t limit) {
    if (v > limit) fail("{}: llama2.c header field {} is {}, implausibly large (limit {})", path, field, v, limit);
  };
  at_most("dim", h.dim, 1 << 20);
  at_most("hidden_dim", h.hidden_dim, 1 << 22);
  at_most("n_layers", h.n_layers, 1 << 12);
  at_most("vocab_size", vocab_abs, 1 << 24);
  at_most("seq_len", h.seq_len, 1 << 24);
  if (h.dim % h.n_heads != 0) {
    fail("{}: llama2.c header n_heads {} does not divide dim {}", path, h.n_heads, h.dim);
  }
  if (h.n_heads % h.n_kv_heads != 0) {
    fail("{}: llama2.c header n_kv_heads {} does not divide n_heads {}", path, h.n_kv_heads, h.n_heads);
  }
  if ((h.dim / h.n_heads) % 2 != 0) {
    fail("{}: llama2.c header head size {} is odd; rotary embeddings need it even", path,
         h.dim / h.n_heads);
  }
}

// Tensor element counts in the order the legacy file lists them (per-kind blocks over all layers).
struct Sizes {
  uint64_t embed, norm, wq, wkv, wo, ffn_up, ffn_down, freq;
};

Sizes sizes_of(const Llama2cHeader& h, int32_t vocab) {
  uint64_t dim = h.dim, hidden = h.hidden_dim, hs = h.dim / h.n_heads, kv_dim = hs * h.n_kv_heads;
  return Sizes{uint64_t(vocab) * dim, dim,        dim * dim,          kv_dim * dim,
               dim * dim,             hidden * dim, hidden * dim, uint64_t(h.seq_len) * hs / 2};
}

std::string layer_name(int64_t layer, const char* suffix) {
  return fmt::format("model.layers.{}.{}.weight", layer, suffix);
}

// Reads consecutive fp32 blocks out of the mapping.
class Cursor {
 public:
  Cursor(std::shared_ptr<MappedFile> file, uint64_t offset) : file_(std::move(file)), offset_(offset) {}
  Tensor take(std::vector<int64_t> shape, const std::string& what) {
    Tensor t = tensor_from_mapping(file_, offset_, shape, at::kFloat, what);
    offset_ += static_cast<uint64_t>(t.numel()) * 4;
    return t;
  }
  void skip(uint64_t bytes) { offset_ += bytes; }
  uint64_t offset() const { return offset_; }

 private:
  std::shared_ptr<MappedFile> file_;
  uint64_t offset_;
};

ModelConfig config_from_header(const Llama2cHeader& h, int32_t vocab_abs, bool tied) {
  ModelConfig c;
  c.architecture = "llama";
  c.vocab_size = vocab_abs;
  c.hidden_size = h.dim;
  c.intermediate_size = h.hidden_dim;
  c.num_layers = h.n_layers;
  c.num_heads = h.n_heads;
  c.num_kv_heads = h.n_kv_heads;
  c.head_dim = h.dim / h.n_heads;
  c.max_position = h.seq_len;
  c.rms_norm_eps = 1e-5;
  c.rope_theta = 10000.0;
  c.tie_word_embeddings = tied;
  c.bos_token_id = 1;
  c.eos_token_id = 2;
  return c;
}

// Per-layer weights given as [n_layers, rows, cols] blocks, stored under HF names; q/k rows go from
// llama2.c's interleaved RoPE pairs to HF rotate-half order.
void add_layer_blocks(Checkpoint& ck, const Llama2cHeader& h, const Tensor& rms_att, const Tensor& wq,
                      const Tensor& wk, const Tensor& wv, const Tensor& wo, const Tensor& rms_ffn,
                      const Tensor& w1, const Tensor& w2, const Tensor& w3) {
  for (int64_t l = 0; l < h.n_layers; ++l) {
    ck.tensors[layer_name(l, "input_layernorm")] = rms_att[l];
    ck.tensors[layer_name(l, "self_attn.q_proj")] = permute_rope_rows(wq[l], h.n_heads);
    ck.tensors[layer_name(l, "self_attn.k_proj")] = permute_rope_rows(wk[l], h.n_kv_heads);
    ck.tensors[layer_name(l, "self_attn.v_proj")] = wv[l];
    ck.tensors[layer_name(l, "self_attn.o_proj")] = wo[l];
    ck.tensors[layer_name(l, "post_attention_layernorm")] = rms_ffn[l];
    ck.tensors[layer_name(l, "mlp.gate_proj")] = w1[l];
    ck.tensors[layer_name(l, "mlp.down_proj")] = w2[l];
    ck.tensors[layer_name(l, "mlp.up_proj")] = w3[l];
  }
}

void read_legacy(const std::shared_ptr<MappedFile>& file, Checkpoint& ck) {
  const std::string& path = file->path();
  if (file->size() < kLegacyHeaderBytes) {
    fail("{}: truncated llama2.c file: {} bytes, the header alone needs {}", path, file->size(),
         kLegacyHeaderBytes);
  }
  const uint8_t* p = file->data();
  Llama2cHeader h{read_i32(p), read_i32(p + 4), read_i32(p + 8), read_i32(p + 12),
                  read_i32(p + 16), read_i32(p + 20), read_i32(p + 24)};
  // A negative vocab_size marks an untied classifier stored after the freq_cis tables.
  const bool tied = h.vocab_size > 0;
  const int32_t vocab = h.vocab_size == INT32_MIN ? 0 : std::abs(h.vocab_size);
  check_header(path, h, vocab);
  Sizes s = sizes_of(h, vocab);
  const uint64_t L = h.n_layers;
  uint64_t floats = s.embed + L * (2 * s.norm + s.wq + 2 * s.wkv + s.wo + 3 * s.ffn_up) + s.norm +
                    2 * s.freq + (tied ? 0 : s.embed);
  uint64_t expected = kLegacyHeaderBytes + floats * 4;
  if (file->size() != expected) {
    fail("{}: llama2.c size mismatch: the header implies {} bytes, the file has {} bytes{}", path,
         expected, file->size(), file->size() < expected ? " (truncated)" : "");
  }
  ck.config = config_from_header(h, vocab, tied);
  const int64_t dim = h.dim, hidden = h.hidden_dim, kv_dim = int64_t(h.dim / h.n_heads) * h.n_kv_heads;
  const int64_t nl = h.n_layers;
  Cursor cur(file, kLegacyHeaderBytes);
  ck.tensors["model.embed_tokens.weight"] = cur.take({vocab, dim}, "token_embedding");
  Tensor rms_att = cur.take({nl, dim}, "rms_att");
  Tensor wq = cur.take({nl, dim, dim}, "wq");
  Tensor wk = cur.take({nl, kv_dim, dim}, "wk");
  Tensor wv = cur.take({nl, kv_dim, dim}, "wv");
  Tensor wo = cur.take({nl, dim, dim}, "wo");
  Tensor rms_ffn = cur.take({nl, dim}, "rms_ffn");
  Tensor w1 = cur.take({nl, hidden, dim}, "w1");
  Tensor w2 = cur.take({nl, dim, hidden}, "w2");
  Tensor w3 = cur.take({nl, hidden, dim}, "w3");
  ck.tensors["model.norm.weight"] = cur.take({dim}, "rms_final");
  cur.skip(2 * s.freq * 4);  // freq_cis_real/imag: recomputed from rope_theta at run time
  if (!tied) ck.tensors["lm_head.weight"] = cur.take({vocab, dim}, "wcls");
  add_layer_blocks(ck, h, rms_att, wq, wk, wv, wo, rms_ffn, w1, w2, w3);
}

void read_versioned(const std::shared_ptr<MappedFile>& file, Checkpoint& ck) {
  const std::string& path = file->path();
  if (file->size() < kVersionedHeaderBytes) {
    fail("{}: truncated llama2.c file: {} bytes, the versioned header needs {}", path, file->size(),
         kVersionedHeaderBytes);
  }
  const uint8_t* p = file->data();
  const int32_t version = read_i32(p + 4);
  if (version != 1 && version != 2) {
    fail("{}: llama2.c header version {} is not supported (expected 1 fp32 or 2 Q8_0)", path, version);
  }
  Llama2cHeader h{read_i32(p + 8),  read_i32(p + 12), read_i32(p + 16), read_i32(p + 20),
                  read_i32(p + 24), read_i32(p + 28), read_i32(p + 32)};
  const bool tied = p[36] != 0;
  check_header(path, h, h.vocab_size);
  const int32_t vocab = h.vocab_size;
  Sizes s = sizes_of(h, vocab);
  const uint64_t L = h.n_layers;
  const uint64_t norm_floats = 2 * L * s.norm + s.norm;
  const uint64_t matrix_elems =
      s.embed + L * (s.wq + 2 * s.wkv + s.wo + 3 * s.ffn_up) + (tied ? 0 : s.embed);
  int32_t group_size = 0;
  uint64_t expected = 0;
  if (version == 1) {
    expected = kVersionedHeaderBytes + (norm_floats + matrix_elems) * 4;
  } else {
    group_size = read_i32(p + 37);
    if (group_size <= 0 || matrix_elems % uint64_t(group_size) != 0) {
      fail("{}: llama2.c header group_size {} does not divide the weights", path, group_size);
    }
    expected = kVersionedHeaderBytes + norm_floats * 4 + matrix_elems + matrix_elems / group_size * 4;
  }
  if (file->size() != expected) {
    fail("{}: llama2.c v{} size mismatch: the header implies {} bytes, the file has {} bytes{}", path,
         version, expected, file->size(), file->size() < expected ? " (truncated)" : "");
  }
  ck.config = config_from_header(h, vocab, tied);
  const int64_t dim = h.dim, hidden = h.hidden_dim, kv_dim = int64_t(h.dim / h.n_heads) * h.n_kv_heads;
  const int64_t nl = h.n_layers;
  Cursor cur(file, kVersionedHeaderBytes);
  Tensor rms_att = cur.take({nl, dim}, "rms_att");
  Tensor rms_ffn = cur.take({nl, dim}, "rms_ffn");
  ck.tensors["model.norm.weight"] = cur.take({dim}, "rms_final");

  // Matrices in file order; v1 stores them as fp32, v2 as int8 groups followed by all the scales.
  Tensor matrices;
  if (version == 1) {
    matrices = cur.take({int64_t(matrix_elems)}, "weights");
  } else {
    Tensor q = tensor_from_mapping(file, cur.offset(), {int64_t(matrix_elems / group_size), group_size},
                                   at::kChar, "Q8_0 weights");
    Tensor scales = tensor_from_mapping(file, cur.offset() + matrix_elems,
                                        {int64_t(matrix_elems / group_size), 1}, at::kFloat,
                                        "Q8_0 scales");
    matrices = (q.to(at::kFloat) * scales).reshape({-1});
  }
  int64_t at_elem = 0;
  auto next = [&](std::vector<int64_t> shape) {
    int64_t n = 1;
    for (int64_t d : shape) n *= d;
    Tensor t = matrices.narrow(0, at_elem, n).view(shape);
    at_elem += n;
    return t;
  };
  ck.tensors["model.embed_tokens.weight"] = next({vocab, dim});
  Tensor wq = next({nl, dim, dim});
  Tensor wk = next({nl, kv_dim, dim});
  Tensor wv = next({nl, kv_dim, dim});
  Tensor wo = next({nl, dim, dim});
  Tensor w1 = next({nl, hidden, dim});
  Tensor w2 = next({nl, dim, hidden});
  Tensor w3 = next({nl, hidden, dim});
  if (!tied) ck.tensors["lm_head.weight"] = next({vocab, dim});
  add_layer_blocks(ck, h, rms_att, wq, wk, wv, wo, rms_ffn, w1, w2, w3);
  ck.metadata["llama2c_version"] = version;
}

VocabSpec read_tokenizer_bin(const std::string& path, int64_t vocab_size) {
  MappedFile file(path);
  const uint8_t* base = file.span(0, 4, "max_token_length");
  int32_t max_token_length = read_i32(base);
  if (max_token_length <= 0) {
    fail("{}: tokenizer.bin max_token_length is {}, expected a positive number", path, max_token_length);
  }
  VocabSpec v;
  v.model = "llama2c";
  v.bos_id = 1;
  v.eos_id = 2;
  v.unk_id = 0;
  v.add_bos = true;
  v.add_eos = false;
  v.tokens.reserve(vocab_size);
  v.scores.reserve(vocab_size);
  v.token_types.reserve(vocab_size);
  uint64_t offset = 4;
  for (int64_t id = 0; id < vocab_size; ++id) {
    std::string what = fmt::format("token {}", id);
    const uint8_t* p = file.span(offset, 8, what);
    float score;
    std::memcpy(&score, p, 4);
    int32_t len = read_i32(p + 4);
    if (len < 0 || len > max_token_length) {
      fail("{}: token {} has length {}, expected 0..{}", path, id, len, max_token_length);
    }
    const uint8_t* text = file.span(offset + 8, uint64_t(len), what);
    std::string token(reinterpret_cast<const char*>(text), size_t(len));
    offset += 8 + uint64_t(len);
    int32_t type = 1;
    if (id == 0) {
      type = 2;
    } else if (id <= 2) {
      type = 3;
    } else if (token.size() == 6 && token.rfind("<0x", 0) == 0 && token[5] == '>' &&
               std::isxdigit(static_cast<unsigned char>(token[3])) &&
               std::isxdigit(static_cast<unsigned char>(token[4]))) {
      type = 6;
    }
    v.tokens.push_back(std::move(token));
    v.scores.push_back(score);
    v.token_types.push_back(type);
  }
  if (offset != file.size()) {
    fail("{}: tokenizer.bin has {} bytes after {} tokens; wrong tokenizer for this model?", path,
         file.size() - offset, vocab_size);
  }
  return v;
}

std::string replace_all(std::string text, const std::string& from, const std::string& to) {
  for (size_t pos = text.find(from); pos != std::string::npos; pos = text.find(from, pos + to.size())) {
    text.replace(pos, from.size(), to);
  }
  return text;
}

Tensor required(const Checkpoint& ck, const std::string& name, const std::string& path) {
  auto it = ck.tensors.find(name);
  if (it == ck.tensors.end()) fail("{}: cannot write llama2.c: checkpoint has no tensor {}", path, name);
  return it->second;
}

}  // namespace

Checkpoint read_llama2c(const std::string& model_path, const std::string& tokenizer_path, FileAccess access) {
  auto file = std::make_shared<MappedFile>(model_path, access);
  Checkpoint ck;
  uint32_t magic = 0;
  if (file->size() >= 4) std::memcpy(&magic, file->data(), 4);
  if (magic == kVersionedMagic) {
    read_versioned(file, ck);
  } else {
    read_legacy(file, ck);
  }
  ck.config.validate(model_path);
  ck.vocab = read_tokenizer_bin(tokenizer_path, ck.config.vocab_size);
  ck.format = "llama2c";
  ck.source = model_path;
  return ck;
}

void write_llama2c(const std::string& model_path, const std::string& tokenizer_path,
                   const Checkpoint& ckpt) {
  const ModelConfig& c = ckpt.config;
  c.validate(model_path);
  if (c.head_dim * c.num_heads != c.hidden_size) {
    fail("{}: llama2.c needs head_dim x num_heads == hidden_size, got {} x {} != {}", model_path,
         c.head_dim, c.num_heads, c.hidden_size);
  }
  const int64_t limit = INT32_MAX;
  if (c.hidden_size > limit || c.intermediate_size > limit || c.vocab_size > limit ||
      c.max_position > limit || c.num_layers > limit) {
    fail("{}: config values exceed llama2.c's int32 header", model_path);
  }
  const bool tied = c.tie_word_embeddings || ckpt.tensors.count("lm_head.weight") == 0;
  std::string out;
  append_i32(out, int32_t(c.hidden_size));
  append_i32(out, int32_t(c.intermediate_size));
  append_i32(out, int32_t(c.num_layers));
  append_i32(out, int32_t(c.num_heads));
  append_i32(out, int32_t(c.num_kv_heads));
  append_i32(out, int32_t(tied ? c.vocab_size : -c.vocab_size));
  append_i32(out, int32_t(c.max_position));

  append_tensor_f32(out, required(ckpt, "model.embed_tokens.weight", model_path));
  auto each_layer = [&](const char* suffix, auto transform) {
    for (int64_t l = 0; l < c.num_layers; ++l) {
      append_tensor_f32(out, transform(required(ckpt, layer_name(l, suffix), model_path)));
    }
  };
  auto same = [](const Tensor& t) { return t; };
  // Back from HF rotate-half rows to llama2.c's interleaved pairs.
  auto q_rows = [&](const Tensor& t) { return permute_rope_rows(t, c.num_heads, true); };
  auto k_rows = [&](const Tensor& t) { return permute_rope_rows(t, c.num_kv_heads, true); };
  each_layer("input_layernorm", same);
  each_layer("self_attn.q_proj", q_rows);
  each_layer("self_attn.k_proj", k_rows);
  each_layer("self_attn.v_proj", same);
  each_layer("self_attn.o_proj", same);
  each_layer("post_attention_layernorm", same);
  each_layer("mlp.gate_proj", same);
  each_layer("mlp.down_proj", same);
  each_layer("mlp.up_proj", same);
  append_tensor_f32(out, required(ckpt, "model.norm.weight", model_path));

  // freq_cis as llama2.c's model.py precomputes it (fp32): theta^(-2i/d) times the position.
  const int64_t hs = c.head_dim;
  Tensor exponents = at::arange(0, hs, 2, at::kLong).narrow(0, 0, hs / 2).to(at::kFloat) / double(hs);
  Tensor inv_freq = at::pow(at::Scalar(c.rope_theta), exponents).to(at::kFloat).reciprocal();
  Tensor positions = at::arange(c.max_position, at::kFloat);
  Tensor angles = at::outer(positions, inv_freq);
  append_tensor_f32(out, at::cos(angles));
  append_tensor_f32(out, at::sin(angles));
  if (!tied) append_tensor_f32(out, required(ckpt, "lm_head.weight", model_path));

  // tokenizer.bin: max_token_length, then (score f32, length i32, bytes) per token.
  const VocabSpec& v = ckpt.vocab;
  if (int64_t(v.tokens.size()) != c.vocab_size) {
    fail("{}: vocabulary has {} tokens but config vocab_size is {}", tokenizer_path, v.tokens.size(),
         c.vocab_size);
  }
  size_t max_len = 1;
  for (const auto& t : v.tokens) max_len = std::max(max_len, t.size());  // U+2581 -> ' ' only shrinks
  std::string tok;
  append_i32(tok, int32_t(max_len));
  for (size_t i = 0; i < v.tokens.size(); ++i) {
    // llama2.c's tokenizer.bin carries real spaces where SentencePiece vocabularies use U+2581.
    std::string text = v.model == "llama" ? replace_all(v.tokens[i], "\u2581", " ") : v.tokens[i];
    append_f32(tok, i < v.scores.size() ? v.scores[i] : 0.0f);
    append_i32(tok, int32_t(text.size()));
    tok += text;
  }
  write_file_atomically(model_path, out);
  write_file_atomically(tokenizer_path, tok);
}

}  // namespace kick
