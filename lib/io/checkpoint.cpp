// Owns load_checkpoint: recognises a model by content (HF folder, safetensors file, GGUF, llama2.c;
// pickles refused) and checks every loaded Checkpoint's tensors against the shapes its config implies.
#include <cstring>
#include <fstream>

#include "kick/io.hpp"

namespace kick {

namespace {

namespace fs = std::filesystem;

nlohmann::json read_json_file(const fs::path& path) {
  std::string text = read_file(path);
  try {
    return nlohmann::json::parse(text);
  } catch (const nlohmann::json::exception& e) {
    fail("{}: not valid JSON ({})", path.string(), std::string(e.what()).substr(0, 120));
  }
}


// model.safetensors, or the shards a model.safetensors.index.json names.
std::map<std::string, Tensor> read_folder_tensors(const fs::path& dir, FileAccess access) {
  fs::path single = dir / "model.safetensors";
  fs::path index_path = dir / "model.safetensors.index.json";
  if (fs::exists(index_path)) {
    nlohmann::json index = read_json_file(index_path);
    auto weight_map = index.find("weight_map");
    if (weight_map == index.end() || !weight_map->is_object()) {
      fail("{}: missing field \"weight_map\" (expected an object of tensor -> file)", index_path.string());
    }
    std::map<std::string, std::vector<std::string>> tensors_by_file;
    for (auto it = weight_map->begin(); it != weight_map->end(); ++it) {
      if (!it.value().is_string()) {
        fail("{}: weight_map entry {} must be a file name string", index_path.string(), it.key());
      }
      tensors_by_file[it.value().get<std::string>()].push_back(it.key());
    }
    for (const auto& [file, names] : tensors_by_file) {
      if (!fs::is_regular_file(dir / file)) {
        fail("{}: weight_map names shard {} (for tensor {}) which does not exist", index_path.string(),
             file, names.front());
      }
    }
    std::map<std::string, Tensor> tensors;
    for (const auto& [file, names] : tensors_by_file) {
      std::string shard_path = (dir / file).string();
      auto shard = read_safetensors(shard_path, nullptr, access);
      for (const auto& name : names) {
        auto found = shard.find(name);
        if (found == shard.end()) {
          fail("{}: tensor {} listed in the index is not in shard {}", index_path.string(), name,
               shard_path);
        }
        tensors[name] = found->second;
      }
    }
    return tensors;
  }
  if (fs::exists(single)) return read_safetensors(single.string(), nullptr, access);
  fail("{}: no model.safetensors or model.safetensors.index.json in this folder", dir.string());
}

Checkpoint load_folder(const fs::path& dir, FileAccess access) {
  Checkpoint ck;
  fs::path config_path = dir / "config.json";
  if (!fs::exists(config_path)) fail("{}: no config.json in this folder", dir.string());
  ck.config = ModelConfig::from_hf_json(read_json_file(config_path), config_path.string());
  ck.tensors = read_folder_tensors(dir, access);

  // A folder without tokenizer.json still loads (weights-only work); the vocabulary stays empty.
  if (fs::path tok = dir / "tokenizer.json"; fs::exists(tok)) ck.vocab = read_tokenizer_json(tok.string());
  if (fs::path tok_config = dir / "tokenizer_config.json"; fs::exists(tok_config)) {
    nlohmann::json tc = read_json_file(tok_config);
    if (auto it = tc.find("chat_template"); it != tc.end() && it->is_string()) {
      ck.vocab.chat_template = it->get<std::string>();
    }
  }
  if (ck.vocab.bos_id < 0 && ck.config.bos_token_id >= 0) ck.vocab.bos_id = int32_t(ck.config.bos_token_id);
  if (ck.vocab.eos_id < 0 && ck.config.eos_token_id >= 0) ck.vocab.eos_id = int32_t(ck.config.eos_token_id);
  if (fs::path compression = dir / "compression.json"; fs::exists(compression)) {
    ck.metadata["compression"] = read_json_file(compression);
  }
  ck.format = "safetensors";
  ck.source = dir.string();
  return ck;
}

enum class FileKind { gguf, pickle, safetensors, llama2c };

FileKind sniff(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) fail("{}: cannot open for reading", path);
  unsigned char head[9] = {};
  in.read(reinterpret_cast<char*>(head), sizeof head);
  const auto got = in.gcount();
  if (got >= 4 && std::memcmp(head, "GGUF", 4) == 0) return FileKind::gguf;
  if (got >= 4 && std::memcmp(head, "PK\x03\x04", 4) == 0) return FileKind::pickle;
  if (got >= 2 && head[0] == 0x80 && head[1] >= 2 && head[1] <= 5) return FileKind::pickle;
  std::error_code ec;
  const uint64_t size = fs::file_size(path, ec);
  if (!ec && looks_like_safetensors(std::string_view(reinterpret_cast<const char*>(head), static_cast<size_t>(got)), size))
    return FileKind::safetensors;
  return FileKind::llama2c;
}

}  // namespace

void check_checkpoint_tensors(const Checkpoint& ckpt) {
  const ModelConfig& c = ckpt.config;
  const std::string& source = ckpt.source;
  c.validate(source);
  const int64_t V = c.vocab_size, H = c.hidden_size, I = c.intermediate_size;
  const int64_t q_rows = c.num_heads * c.head_dim, kv_rows = c.num_kv_heads * c.head_dim;
  auto expect = [&](const std::string& name, std::vector<int64_t> shape) {
    auto it = ckpt.tensors.find(name);
    if (it == ckpt.tensors.end()) {
      fail("{}: missing tensor {} (expected shape {})", source, name, shape_string(shape));
    }
    if (!it->second.defined() || it->second.sizes() != at::IntArrayRef(shape)) {
      fail("{}: tensor {} has shape {}, expected {} from the config", source, name,
           it->second.defined() ? shape_string(it->second.sizes()) : "undefined", shape_string(shape));
    }
    if (!at::isFloatingType(it->second.scalar_type())) {
      fail("{}: tensor {} has dtype {}, expected a floating type", source, name,
           at::toString(it->second.scalar_type()));
    }
  };
  expect("model.embed_tokens.weight", {V, H});
  expect("model.norm.weight", {H});
  for (int64_t l = 0; l < c.num_layers; ++l) {
    auto name = [&](const char* suffix) { return fmt::format("model.layers.{}.{}.weight", l, suffix); };
    expect(name("input_layernorm"), {H});
    expect(name("post_attention_layernorm"), {H});
    expect(name("self_attn.q_proj"), {q_rows, H});
    expect(name("self_attn.k_proj"), {kv_rows, H});
    expect(name("self_attn.v_proj"), {kv_rows, H});
    expect(name("self_attn.o_proj"), {H, q_rows});
    expect(name("mlp.gate_proj"), {I, H});
    expect(name("mlp.up_proj"), {I, H});
    expect(name("mlp.down_proj"), {H, I});
  }
  // Tied models may still carry a copy of lm_head.weight; it must then fit too.
  if (!c.tie_word_embeddings || ckpt.tensors.count("lm_head.weight")) expect("lm_head.weight", {V, H});
}

Checkpoint load_checkpoint(const std::string& path, const LoadOptions& options) {
  if (!fs::exists(path)) fail("{}: no such file or folder", path);
  // The weights are at least as large in memory as on disk (quantized GGUF grows up to ~7x when dequantized).
  uint64_t bytes = 0;
  if (fs::is_directory(path)) {
    for (const auto& e : fs::directory_iterator(path)) {
      if (e.is_regular_file() && e.path().extension() == ".safetensors") bytes += e.file_size();
    }
  } else {
    bytes = fs::file_size(path);
  }
  check_fits_in_memory(bytes, path + " (model weights)");
  Checkpoint ck;
  if (fs::is_directory(path)) {
    ck = load_folder(path, options.weights);
  } else {
    switch (sniff(path)) {
      case FileKind::gguf:
        // Mapped whatever options.weights says: quantized tensors are dequantized into new memory anyway, and
        // the F32 ones that alias the file would keep a private copy of all of it alive.
        ck = checkpoint_from_gguf(read_gguf(path), path);
        break;
      case FileKind::pickle:
        fail("{}: PyTorch pickle checkpoints are not loaded (arbitrary code execution); convert to "
             "safetensors",
             path);
      case FileKind::safetensors: {
        fs::path dir = fs::path(path).parent_path();
        ck = load_folder(dir.empty() ? fs::path(".") : dir, options.weights);
        break;
      }
      case FileKind::llama2c: {
        std::string tokenizer = options.tokenizer_path;
        if (tokenizer.empty()) tokenizer = (fs::path(path).parent_path() / "tokenizer.bin").string();
        if (!fs::exists(tokenizer)) {
          fail("{}: not GGUF, safetensors or pickle, so read as llama2.c, but its tokenizer {} does "
               "not exist (pass the tokenizer path)",
               path, tokenizer);
        }
        ck = read_llama2c(path, tokenizer);  // mapped, as GGUF: the Q8_0 export is dequantized
        break;
      }
    }
  }
  // Every error below names the file the user passed, whichever reader produced the checkpoint.
  if (ck.source.empty()) ck.source = path;
  check_checkpoint_tensors(ck);
  return ck;
}

}  // namespace kick
