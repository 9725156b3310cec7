// Owns ModelConfig: validation and the HF config.json mapping (LlamaConfig out; Llama/Mistral in).
#include "kick/io.hpp"

namespace kick {
namespace {

const char* json_type_name(const nlohmann::json& v) { return v.type_name(); }

// Required or optional integer field; `fallback` is used when optional and absent/null.
int64_t int_field(const nlohmann::json& j, const char* field, const std::string& source,
                  const int64_t* fallback) {
  auto it = j.find(field);
  if (it == j.end() || it->is_null()) {
    if (fallback) return *fallback;
    fail("{}: missing field \"{}\" (expected an integer)", source, field);
  }
  if (!it->is_number_integer()) {
    fail("{}: field \"{}\" must be an integer, got {} {}", source, field, json_type_name(*it),
         it->dump());
  }
  return it->get<int64_t>();
}

double float_field(const nlohmann::json& j, const char* field, const std::string& source,
                   double fallback) {
  auto it = j.find(field);
  if (it == j.end() || it->is_null()) return fallback;
  if (!it->is_number()) {
    fail("{}: field \"{}\" must be a number, got {} {}", source, field, json_type_name(*it),
         it->dump());
  }
  return it->get<double>();
}

bool bool_field(const nlohmann::json& j, const char* field, const std::string& source, bool fallback) {
  auto it = j.find(field);
  if (it == j.end() || it->is_null()) return fallback;
  if (!it->is_boolean()) {
    fail("{}: field \"{}\" must be true or false, got {} {}", source, field, json_type_name(*it),
         it->dump());
  }
  return it->get<bool>();
}

// eos_token_id may be an integer or a list of them (Llama 3 style); the first is the primary one.
int64_t token_id_field(const nlohmann::json& j, const char* field, const std::string& source) {
  auto it = j.find(field);
  if (it == j.end() || it->is_null()) return -1;
  if (it->is_number_integer()) return it->get<int64_t>();
  if (it->is_array() && !it->empty() && (*it)[0].is_number_integer()) return (*it)[0].get<int64_t>();
  fail("{}: field \"{}\" must be an integer or a non-empty list of integers, got {}", source, field,
       it->dump());
}

}  // namespace

void ModelConfig::validate(const std::string& source) const {
  if (architecture != "llama") {
    fail("{}: architecture \"{}\" is not supported (expected llama)", source, architecture);
  }
  auto positive = [&](const char* field, int64_t v) {
    if (v <= 0) fail("{}: {} must be positive, got {}", source, field, v);
  };
  positive("vocab_size", vocab_size);
  positive("hidden_size", hidden_size);
  positive("intermediate_size", intermediate_size);
  positive("num_hidden_layers", num_layers);
  positive("num_attention_heads", num_heads);
  positive("num_key_value_heads", num_kv_heads);
  positive("head_dim", head_dim);
  positive("max_position_embeddings", max_position);
  if (num_heads % num_kv_heads != 0) {
    fail("{}: num_attention_heads {} is not a multiple of num_key_value_heads {}", source, num_heads,
         num_kv_heads);
  }
  if (head_dim % 2 != 0) fail("{}: head_dim {} must be even for rotary embeddings", source, head_dim);
  if (!(rms_norm_eps > 0)) fail("{}: rms_norm_eps must be positive, got {}", source, rms_norm_eps);
  if (!(rope_theta > 0)) fail("{}: rope_theta must be positive, got {}", source, rope_theta);
  if (bos_token_id >= vocab_size) {
    fail("{}: bos_token_id {} is outside the vocabulary ({})", source, bos_token_id, vocab_size);
  }
  if (eos_token_id >= vocab_size) {
    fail("{}: eos_token_id {} is outside the vocabulary ({})", source, eos_token_id, vocab_size);
  }
}

nlohmann::json ModelConfig::to_hf_json() const {
  nlohmann::json j = {
      {"architectures", {"LlamaForCausalLM"}},
      {"model_type", "llama"},
      {"hidden_size", hidden_size},
      {"intermediate_size", intermediate_size},
      {"num_hidden_layers", num_layers},
      {"num_attention_heads", num_heads},
      {"num_key_value_heads", num_kv_heads},
      {"head_dim", head_dim},
      {"max_position_embeddings", max_position},
      {"rms_norm_eps", rms_norm_eps},
      {"rope_theta", rope_theta},
      {"rope_scaling", nullptr},
      {"tie_word_embeddings", tie_word_embeddings},
      {"vocab_size", vocab_size},
      {"hidden_act", "silu"},
      {"attention_bias", false},
      {"attention_dropout", 0.0},
      {"mlp_bias", false},
      {"initializer_range", 0.02},
      {"pretraining_tp", 1},
      {"use_cache", true},
      {"torch_dtype", "float32"},
  };
  if (bos_token_id >= 0) j["bos_token_id"] = bos_token_id;
  if (eos_token_id >= 0) j["eos_token_id"] = eos_token_id;
  return j;
}

ModelConfig ModelConfig::from_hf_json(const nlohmann::json& j, const std::string& source) {
  if (!j.is_object()) fail("{}: expected a JSON object, got {}", source, j.type_name());

  // Llama and Mistral share the tensor layout and the math kick implements.
  bool architecture_known = false;
  if (auto it = j.find("architectures"); it != j.end() && !it->is_null()) {
    if (!it->is_array() || it->empty() || !(*it)[0].is_string()) {
      fail("{}: field \"architectures\" must be a non-empty list of strings, got {}", source,
           it->dump());
    }
    std::string arch = (*it)[0].get<std::string>();
    if (arch != "LlamaForCausalLM" && arch != "MistralForCausalLM") {
      fail("{}: field \"architectures\" is [\"{}\"]; expected LlamaForCausalLM or MistralForCausalLM",
           source, arch);
    }
    architecture_known = true;
  }
  if (auto it = j.find("model_type"); it != j.end() && !it->is_null()) {
    if (!it->is_string() || (it->get<std::string>() != "llama" && it->get<std::string>() != "mistral")) {
      fail("{}: field \"model_type\" is {}; expected \"llama\" or \"mistral\"", source, it->dump());
    }
    architecture_known = true;
  }
  if (!architecture_known) {
    fail("{}: missing field \"architectures\" or \"model_type\" (expected LlamaForCausalLM / llama)",
         source);
  }
  if (auto it = j.find("hidden_act"); it != j.end() && !it->is_null() && *it != "silu") {
    fail("{}: field \"hidden_act\" is {}; expected \"silu\"", source, it->dump());
  }
  if (auto it = j.find("rope_scaling"); it != j.end() && !it->is_null()) {
    fail("{}: field \"rope_scaling\" is {}; only plain RoPE (null) is supported", source,
         it->dump().substr(0, 80));
  }
  if (bool_field(j, "attention_bias", source, false)) {
    fail("{}: field \"attention_bias\" is true; expected false (bias-free attention)", source);
  }
  if (bool_field(j, "mlp_bias", source, false)) {
    fail("{}: field \"mlp_bias\" is true; expected false (bias-free MLP)", source);
  }

  ModelConfig c;
  c.architecture = "llama";
  c.vocab_size = int_field(j, "vocab_size", source, nullptr);
  c.hidden_size = int_field(j, "hidden_size", source, nullptr);
  c.intermediate_size = int_field(j, "intermediate_size", source, nullptr);
  c.num_layers = int_field(j, "num_hidden_layers", source, nullptr);
  c.num_heads = int_field(j, "num_attention_heads", source, nullptr);
  c.num_kv_heads = int_field(j, "num_key_value_heads", source, &c.num_heads);
  if (c.num_heads <= 0) fail("{}: num_attention_heads must be positive, got {}", source, c.num_heads);
  if (!j.contains("head_dim") && c.hidden_size % c.num_heads != 0) {
    fail("{}: hidden_size {} is not a multiple of num_attention_heads {} and no \"head_dim\" is given",
         source, c.hidden_size, c.num_heads);
  }
  const int64_t default_head_dim = c.hidden_size / c.num_heads;
  c.head_dim = int_field(j, "head_dim", source, &default_head_dim);
  const int64_t default_max_position = 2048;
  c.max_position = int_field(j, "max_position_embeddings", source, &default_max_position);
  c.rms_norm_eps = float_field(j, "rms_norm_eps", source, 1e-6);  // LlamaConfig's default
  c.rope_theta = float_field(j, "rope_theta", source, 10000.0);
  c.tie_word_embeddings = bool_field(j, "tie_word_embeddings", source, false);
  c.bos_token_id = token_id_field(j, "bos_token_id", source);
  c.eos_token_id = token_id_field(j, "eos_token_id", source);
  c.validate(source);
  return c;
}

}  // namespace kick
