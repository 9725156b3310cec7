// kick/io.hpp: model files in and out. One in-memory form (Checkpoint: HF tensor names in HF layout,
// a ModelConfig, a VocabSpec) that every loader produces and every writer consumes.
#pragma once

#include <nlohmann/json.hpp>

#include <map>
#include <string>
#include <string_view>
#include <vector>

#include "kick/core.hpp"

namespace kick {

// LLaMA-family architecture hyper-parameters, from config.json, GGUF metadata or a llama2.c header;
// never from file names.
struct ModelConfig {
  std::string architecture = "llama";
  int64_t vocab_size = 0;
  int64_t hidden_size = 0;
  int64_t intermediate_size = 0;
  int64_t num_layers = 0;
  int64_t num_heads = 0;
  int64_t num_kv_heads = 0;
  int64_t head_dim = 0;  // hidden_size / num_heads unless the file says otherwise
  int64_t max_position = 2048;
  double rms_norm_eps = 1e-5;
  double rope_theta = 10000.0;
  bool tie_word_embeddings = false;
  int64_t bos_token_id = -1;
  int64_t eos_token_id = -1;

  // Throws naming `source` and the field when a value is missing or inconsistent.
  void validate(const std::string& source) const;
  nlohmann::json to_hf_json() const;
  static ModelConfig from_hf_json(const nlohmann::json& j, const std::string& source);
};

// A tokenizer's vocabulary as the files carry it; lib/tokenizer builds a Tokenizer from it.
struct VocabSpec {
  // "llama": SentencePiece-style score-merged BPE with byte fallback (GGUF llama vocab, tokenizer.json
  //          with byte_fallback); "llama2c": llama2.c's tokenizer.bin (same algorithm, real spaces);
  // "gpt2":  byte-level BPE with merges and a named pre-tokenizer.
  std::string model;
  std::string pre = "default";  // gpt2 pre-tokenizer: "smollm", "gpt2", "llama3", "default", ...
  std::vector<std::string> tokens;
  std::vector<float> scores;          // llama / llama2c
  std::vector<int32_t> token_types;   // GGUF convention: 1 normal, 2 unknown, 3 control, 4 user, 5 unused, 6 byte
  std::vector<std::string> merges;    // gpt2: "left right", rank = index
  int32_t bos_id = -1, eos_id = -1, unk_id = -1, pad_id = -1;
  bool add_bos = false;
  bool add_eos = false;
  bool add_space_prefix = true;       // llama: prepend a space (as U+2581) before encoding
  std::string chat_template;          // the file's Jinja template, informational
};

struct Checkpoint {
  ModelConfig config;
  // HF names ("model.layers.0.self_attn.q_proj.weight", ...) in HF layout: q/k rows in rotate-half
  // order. Any floating dtype; loaders dequantize quantized formats.
  std::map<std::string, Tensor> tensors;
  VocabSpec vocab;
  nlohmann::json metadata = nlohmann::json::object();  // format-specific extras (GGUF kv, compression.json)
  std::string format;  // "safetensors", "gguf", "llama2c"
  std::string source;  // the path it was read from
};

struct LoadOptions {
  std::string tokenizer_path;  // llama2.c: tokenizer.bin; default: beside the model
  // How safetensors weight files are held: mapped (the default; cheapest for evaluation) or read into private
  // memory (for rewriting most weights in place; see FileAccess). GGUF and llama2.c files are always mapped.
  FileAccess weights = FileAccess::copy_on_write;
};

// Named models kick knows how to find: "smollm2" (SmolLM2-135M-Instruct, fetched by
// data/fetch_models.sh into cache_root()/models) and "stories260K" (in the data root). Anything else is
// returned unchanged as a path.
std::string resolve_model_path(const std::string& name_or_path);

// Loads a model from a folder (config.json + *.safetensors [+ index] + tokenizer.json), a .gguf
// file, or a llama2.c .bin; the format is recognised by content. Pickle checkpoints are refused.
Checkpoint load_checkpoint(const std::string& path, const LoadOptions& options = {});

// Checks that every tensor the config implies exists with the implied shape; throws naming the tensor,
// the expected and the actual shape. load_checkpoint runs it for every format.
void check_checkpoint_tensors(const Checkpoint& ckpt);

// --- format-level readers and writers (lib/io/*.cpp) ---

// A file's first bytes (at least 9) and its size describe a safetensors file: a little-endian u64 header
// length that fits in the file, then the JSON header's '{'. For recognising files by content.
bool looks_like_safetensors(std::string_view head, uint64_t file_size);
// safetensors: one file. Tensors alias the file's bytes (mapped copy-on-write, or read: `access`).
std::map<std::string, Tensor> read_safetensors(const std::string& path, nlohmann::json* metadata = nullptr,
                                               FileAccess access = FileAccess::copy_on_write);
// Writes one safetensors file atomically; `metadata` goes to "__metadata__".
void write_safetensors(const std::string& path, const std::map<std::string, Tensor>& tensors,
                       const std::map<std::string, std::string>& metadata = {});

// GGUF v2/v3. `kv` holds every metadata pair as JSON (arrays as arrays); tensors are dequantized to fp32
// and keep GGUF names and GGUF layout.
struct GgufContents {
  uint32_t version = 0;
  nlohmann::json kv = nlohmann::json::object();
  std::map<std::string, Tensor> tensors;
  std::map<std::string, std::string> tensor_types;  // name -> "Q4_1", "F32", ...
};
GgufContents read_gguf(const std::string& path, FileAccess access = FileAccess::copy_on_write);
// Writes a GGUF v3 file (F32 or F16 tensors; metadata from JSON: integers as I64/U32 by key, strings,
// floats, bools, arrays), atomically.
void write_gguf(const std::string& path, const nlohmann::json& kv,
                const std::map<std::string, Tensor>& tensors);
// Checkpoint <-> GGUF ("llama" architecture): names, q/k permutation, metadata, tokenizer.
Checkpoint checkpoint_from_gguf(GgufContents gguf, const std::string& path);
void write_checkpoint_gguf(const std::string& path, const Checkpoint& ckpt);

// llama2.c legacy (v0) .bin and tokenizer.bin.
Checkpoint read_llama2c(const std::string& model_path, const std::string& tokenizer_path,
                        FileAccess access = FileAccess::copy_on_write);
void write_llama2c(const std::string& model_path, const std::string& tokenizer_path,
                   const Checkpoint& ckpt);

// tokenizer.json (HF tokenizers) <-> VocabSpec.
VocabSpec read_tokenizer_json(const std::string& path);
nlohmann::json tokenizer_json_from_vocab(const VocabSpec& vocab);

// Saves as an HF folder: model.safetensors, config.json, generation_config.json, tokenizer.json,
// tokenizer_config.json, plus `extra_files` (name -> contents, e.g. compression.json). Written
// into a temporary sibling folder and renamed into place; refuses an existing folder unless overwrite.
void save_hf_checkpoint(const std::string& dir, const Checkpoint& ckpt,
                        const std::map<std::string, std::string>& extra_files = {},
                        bool overwrite = false);

// The inverse of the llama.cpp/Meta interleaved-RoPE row order: converts q or k projection rows from
// interleaved pairs to HF's rotate-half halves (and back with `inverse`).
Tensor permute_rope_rows(const Tensor& weight, int64_t n_heads, bool inverse = false);

}  // namespace kick
