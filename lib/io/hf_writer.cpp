// Owns save_hf_checkpoint: a Checkpoint as a Hugging Face folder, built in a temporary sibling folder
// and renamed into place so readers never see a half-written model.
#include <random>

#include "kick/io.hpp"

namespace kick {
namespace {

namespace fs = std::filesystem;

std::string token_text(const VocabSpec& v, int32_t id) {
  if (id < 0 || id >= int32_t(v.tokens.size())) return "";
  return v.tokens[size_t(id)];
}

nlohmann::json tokenizer_config(const Checkpoint& ckpt) {
  const VocabSpec& v = ckpt.vocab;
  nlohmann::json tc = {
      {"tokenizer_class", "PreTrainedTokenizerFast"},
      {"add_bos_token", v.add_bos},
      {"add_eos_token", v.add_eos},
      {"clean_up_tokenization_spaces", false},
      {"model_max_length", ckpt.config.max_position},
  };
  auto set_token = [&](const char* key, int32_t id) {
    std::string text = token_text(v, id);
    if (!text.empty()) tc[key] = text;
  };
  set_token("bos_token", v.bos_id);
  set_token("eos_token", v.eos_id);
  set_token("unk_token", v.unk_id);
  set_token("pad_token", v.pad_id);
  if (!v.chat_template.empty()) tc["chat_template"] = v.chat_template;
  return tc;
}

std::string random_suffix() {
  std::random_device rd;
  return fmt::format("{:08x}", rd());
}

// transformers spells dtypes as torch does ("bfloat16"), not as kick's flags do ("bf16").
std::string torch_dtype_name(at::ScalarType dtype) {
  switch (dtype) {
    case at::kBFloat16: return "bfloat16";
    case at::kHalf: return "float16";
    case at::kDouble: return "float64";
    default: return "float32";
  }
}

void write_text(const fs::path& path, const std::string& text) { write_file_atomically(path, text); }

}  // namespace

void save_hf_checkpoint(const std::string& dir, const Checkpoint& ckpt,
                        const std::map<std::string, std::string>& extra_files, bool overwrite) {
  fs::path target = fs::path(dir);
  if (target.filename().empty()) target = target.parent_path();  // "out/" -> "out"
  if (fs::exists(target) && !overwrite) {
    fail("{}: already exists; refusing to overwrite it (pass overwrite to replace it)", dir);
  }
  ckpt.config.validate(dir);

  std::map<std::string, Tensor> tensors;
  for (const auto& [name, tensor] : ckpt.tensors) {
    // transformers re-ties lm_head to the embedding; a stored copy would only waste space.
    if (ckpt.config.tie_word_embeddings && name == "lm_head.weight") continue;
    tensors.emplace(name, tensor);
  }
  nlohmann::json config = ckpt.config.to_hf_json();
  if (auto it = tensors.find("model.embed_tokens.weight"); it != tensors.end()) {
    config["torch_dtype"] = torch_dtype_name(it->second.scalar_type());
  }
  config["kick_version"] = version_string();
  nlohmann::json generation = {{"_from_model_config", true}};
  if (ckpt.config.bos_token_id >= 0) generation["bos_token_id"] = ckpt.config.bos_token_id;
  if (ckpt.config.eos_token_id >= 0) generation["eos_token_id"] = ckpt.config.eos_token_id;

  if (target.has_parent_path()) fs::create_directories(target.parent_path());
  fs::path staging = fs::path(target.string() + ".tmp-" + random_suffix());
  fs::create_directory(staging);
  try {
    write_safetensors((staging / "model.safetensors").string(), tensors, {{"format", "pt"}});
    write_text(staging / "config.json", config.dump(2) + "\n");
    write_text(staging / "generation_config.json", generation.dump(2) + "\n");
    if (!ckpt.vocab.tokens.empty()) {
      write_text(staging / "tokenizer.json", tokenizer_json_from_vocab(ckpt.vocab).dump(2) + "\n");
      write_text(staging / "tokenizer_config.json", tokenizer_config(ckpt).dump(2) + "\n");
    }
    for (const auto& [name, contents] : extra_files) {
      if (name.empty() || name.find('/') != std::string::npos || name == "." || name == "..") {
        fail("{}: extra file name \"{}\" must be a plain file name", dir, name);
      }
      write_text(staging / name, contents);
    }
  } catch (...) {
    std::error_code ec;
    fs::remove_all(staging, ec);
    throw;
  }

  // Swap in: the old folder is moved aside first and deleted only once the new one is in place.
  fs::path aside;
  std::error_code ec;
  if (fs::exists(target)) {
    aside = fs::path(target.string() + ".old-" + random_suffix());
    fs::rename(target, aside, ec);
    if (ec) {
      fs::remove_all(staging, ec);
      fail("{}: cannot move the existing folder aside: {}", dir, ec.message());
    }
  }
  fs::rename(staging, target, ec);
  if (ec) {
    std::string why = ec.message();
    if (!aside.empty()) fs::rename(aside, target, ec);
    fs::remove_all(staging, ec);
    fail("{}: cannot rename {} into place: {}", dir, staging.string(), why);
  }
  if (!aside.empty()) fs::remove_all(aside, ec);
}

}  // namespace kick
