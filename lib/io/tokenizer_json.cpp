// tokenizer.json (Hugging Face tokenizers) <-> VocabSpec: BPE models with byte fallback become kick's
// "llama" kind (merge ranks turned into scores), ByteLevel ones its "gpt2" kind with the pre-tokenizer
// recognised by structure; writing produces a file PyPI `tokenizers` loads with the same ids.
#include <algorithm>
#include <filesystem>
#include <type_traits>

#include "kick/io.hpp"

namespace kick {

namespace {

constexpr const char* kSpaceMarker = "\xE2\x96\x81";

std::string replace_all(std::string s, const std::string& from, const std::string& to) {
  for (size_t at = s.find(from); at != std::string::npos; at = s.find(from, at + to.size())) s.replace(at, from.size(), to);
  return s;
}

// An optional field of an object, with its default when absent or null; present with another type, it is
// an error naming the field (nlohmann's value() would throw its own type_error, found by fuzzing).
template <typename T>
T optional_field(const nlohmann::json& object, const char* key, T fallback, const std::string& path, const char* where) {
  static_assert(std::is_same<T, bool>::value || std::is_same<T, std::string>::value, "bool or string fields only");
  if (!object.is_object() || !object.contains(key) || object[key].is_null()) return fallback;
  const auto& field = object[key];
  const bool matches = std::is_same<T, bool>::value ? field.is_boolean() : field.is_string();
  if (!matches)
    fail("{}: {}.{} is {} (expected {})", path, where, key, field.type_name(), std::is_same<T, bool>::value ? "a boolean" : "a string");
  return field.get<T>();
}

// Whether a JSON component (possibly a Sequence) contains a component of `type`.
const nlohmann::json* find_component(const nlohmann::json& j, const std::string& type) {
  if (!j.is_object()) return nullptr;
  if (j.contains("type") && j["type"].is_string() && j["type"].get<std::string>() == type) return &j;
  for (const char* list : {"pretokenizers", "normalizers", "decoders", "processors"}) {
    if (j.contains(list) && j[list].is_array()) {
      for (const auto& c : j[list]) {
        if (const auto* found = find_component(c, type)) return found;
      }
    }
  }
  return nullptr;
}

std::string token_string(const nlohmann::json& t) {
  if (t.is_string()) return t.get<std::string>();
  if (t.is_object() && t.contains("content") && t["content"].is_string()) return t["content"].get<std::string>();
  return "";
}

}  // namespace

VocabSpec read_tokenizer_json(const std::string& path) {
  nlohmann::json j;
  try {
    j = nlohmann::json::parse(read_file(path));
  } catch (const nlohmann::json::exception& e) {
    fail("{}: not valid JSON ({})", path, e.what());
  }
  if (!j.contains("model") || !j["model"].is_object()) fail("{}: missing object 'model'", path);
  const auto& model = j["model"];
  const std::string model_type = optional_field<std::string>(model, "type", "", path, "model");
  if (model_type != "BPE") fail("{}: model.type '{}' is not supported (expected BPE)", path, model_type);
  if (!model.contains("vocab") || !model["vocab"].is_object()) fail("{}: missing object 'model.vocab'", path);
  VocabSpec v;
  // Ids index a dense table, so each must be below the number of entries: an id of 10^9 in a small file would
  // otherwise allocate gigabytes (found by fuzzing).
  size_t entries = model["vocab"].size();
  if (j.contains("added_tokens")) {
    if (!j["added_tokens"].is_array()) fail("{}: 'added_tokens' is not an array", path);
    entries += j["added_tokens"].size();
  }
  size_t size = 0;
  for (const auto& [token, id] : model["vocab"].items()) {
    if (!id.is_number_integer() || id.get<int64_t>() < 0) fail("{}: model.vocab['{}'] is not a non-negative integer id", path, token);
    if (static_cast<uint64_t>(id.get<int64_t>()) >= entries)
      fail("{}: model.vocab['{}'] has id {}, expected below the {} entries of vocab and added_tokens", path, token, id.get<int64_t>(), entries);
    size = std::max(size, static_cast<size_t>(id.get<int64_t>()) + 1);
  }
  if (j.contains("added_tokens")) {
    for (const auto& t : j["added_tokens"]) {
      if (!t.is_object() || !t.contains("id") || !t["id"].is_number_integer()) fail("{}: added_tokens entry without an integer 'id'", path);
      const int64_t id = t["id"].get<int64_t>();
      if (id < 0 || static_cast<uint64_t>(id) >= entries)
        fail("{}: added_tokens id {} is outside 0..{} (the entries of vocab and added_tokens)", path, id, entries - 1);
      size = std::max(size, static_cast<size_t>(id) + 1);
    }
  }
  v.tokens.assign(size, "");
  v.token_types.assign(size, 1);
  for (const auto& [token, id] : model["vocab"].items()) v.tokens[static_cast<size_t>(id.get<int64_t>())] = token;
  if (j.contains("added_tokens")) {
    for (const auto& t : j["added_tokens"]) {
      const auto id = static_cast<size_t>(t["id"].get<int64_t>());
      v.tokens[id] = optional_field<std::string>(t, "content", "", path, "added_tokens[]");
      v.token_types[id] = optional_field<bool>(t, "special", false, path, "added_tokens[]") ? 3 : 4;
    }
  }
  std::vector<std::string> merges;
  if (model.contains("merges")) {
    if (!model["merges"].is_array()) fail("{}: 'model.merges' is not an array", path);
    for (const auto& m : model["merges"]) {
      if (m.is_string()) {
        merges.push_back(m.get<std::string>());
      } else if (m.is_array() && m.size() == 2 && m[0].is_string() && m[1].is_string()) {
        merges.push_back(m[0].get<std::string>() + " " + m[1].get<std::string>());
      } else {
        fail("{}: model.merges entry {} is neither 'a b' nor [a, b]", path, merges.size());
      }
    }
  }
  std::unordered_map<std::string, int32_t> ids;
  for (size_t i = 0; i < v.tokens.size(); ++i) ids.emplace(v.tokens[i], static_cast<int32_t>(i));
  for (size_t r = 0; r < merges.size(); ++r) {
    const auto space = merges[r].find(' ');
    if (space == std::string::npos) fail("{}: model.merges[{}] '{}' is not 'left right'", path, r, merges[r]);
    const std::string left = merges[r].substr(0, space), right = merges[r].substr(space + 1);
    if (!ids.count(left) || !ids.count(right)) fail("{}: model.merges[{}] names a token not in the vocabulary", path, r);
  }
  const bool byte_fallback = optional_field<bool>(model, "byte_fallback", false, path, "model");
  const nlohmann::json pre = j.value("pre_tokenizer", nlohmann::json());
  const nlohmann::json normalizer = j.value("normalizer", nlohmann::json());
  if (byte_fallback || find_component(pre, "Metaspace") || find_component(normalizer, "Prepend")) {
    v.model = "llama";
    // Score-priority merging reproduces rank-ordered merging when each merged token scores -rank.
    v.scores.assign(v.tokens.size(), -1e9f);
    for (size_t r = 0; r < merges.size(); ++r) {
      const std::string merged = replace_all(merges[r], " ", "");
      auto it = ids.find(merged);
      if (it != ids.end() && v.scores[static_cast<size_t>(it->second)] == -1e9f) {
        v.scores[static_cast<size_t>(it->second)] = -static_cast<float>(r);
      }
    }
    for (size_t i = 0; i < v.tokens.size(); ++i) {
      const auto& t = v.tokens[i];
      if (t.size() == 6 && t.compare(0, 3, "<0x") == 0 && t.back() == '>') v.token_types[i] = 6;
    }
    const auto* meta = find_component(pre, "Metaspace");
    v.add_space_prefix = find_component(normalizer, "Prepend") != nullptr ||
                         (meta && optional_field<std::string>(*meta, "prepend_scheme", "always", path, "Metaspace") != "never" &&
                          optional_field<bool>(*meta, "add_prefix_space", true, path, "Metaspace"));
  } else if (find_component(pre, "ByteLevel")) {
    v.model = "gpt2";
    v.merges = merges;
    v.add_space_prefix = false;
    const auto* digits = find_component(pre, "Digits");
    v.pre = digits && optional_field<bool>(*digits, "individual_digits", false, path, "Digits") ? "smollm" : "gpt2";
    if (const auto* split = find_component(pre, "Split")) {
      const auto pattern = split->contains("pattern") ? optional_field<std::string>(split->at("pattern"), "Regex", "", path, "Split.pattern") : "";
      if (pattern.find("\\p{N}{1,3}") != std::string::npos) v.pre = "llama3";
    }
  } else {
    fail("{}: pre_tokenizer is neither ByteLevel nor Metaspace and model.byte_fallback is off", path);
  }
  if (model.contains("unk_token") && model["unk_token"].is_string()) {
    auto it = ids.find(model["unk_token"].get<std::string>());
    if (it != ids.end()) v.unk_id = it->second;
  }
  // BOS from the post-processor template, BOS/EOS names from tokenizer_config.json beside the file.
  // Named, not a temporary: find_component points into it (ASan: stack-use-after-scope when it was j.value(...)).
  const nlohmann::json post_processor = j.value("post_processor", nlohmann::json());
  if (const auto* tp = find_component(post_processor, "TemplateProcessing")) {
    if (tp->contains("single") && (*tp)["single"].is_array() && !(*tp)["single"].empty()) {
      const auto& first = (*tp)["single"][0];
      if (first.is_object() && first.contains("SpecialToken")) {
        auto it = ids.find(optional_field<std::string>(first["SpecialToken"], "id", "", path, "TemplateProcessing.single[0].SpecialToken"));
        if (it != ids.end()) {
          v.bos_id = it->second;
          v.add_bos = true;
        }
      }
    }
  }
  const auto config_path = std::filesystem::path(path).parent_path() / "tokenizer_config.json";
  if (std::filesystem::exists(config_path)) {
    nlohmann::json config;
    try {
      config = nlohmann::json::parse(read_file(config_path));
    } catch (const nlohmann::json::exception& e) {
      fail("{}: not valid JSON ({})", config_path.string(), e.what());
    }
    auto lookup = [&](const char* key) {
      auto it = config.contains(key) ? ids.find(token_string(config[key])) : ids.end();
      return it == ids.end() ? -1 : it->second;
    };
    if (lookup("bos_token") >= 0) v.bos_id = lookup("bos_token");
    if (lookup("eos_token") >= 0) v.eos_id = lookup("eos_token");
    if (lookup("pad_token") >= 0) v.pad_id = lookup("pad_token");
    if (config.contains("add_bos_token") && config["add_bos_token"].is_boolean()) v.add_bos = config["add_bos_token"].get<bool>();
    if (config.contains("chat_template") && config["chat_template"].is_string()) v.chat_template = config["chat_template"].get<std::string>();
  }
  return v;
}

nlohmann::json tokenizer_json_from_vocab(const VocabSpec& vocab) {
  using nlohmann::json;
  const bool spm = vocab.model == "llama" || vocab.model == "llama2c";
  if (!spm && vocab.model != "gpt2") fail("tokenizer.json: vocabulary kind '{}' cannot be written", vocab.model);
  auto spelled = [&](const std::string& t) { return vocab.model == "llama2c" ? replace_all(t, " ", kSpaceMarker) : t; };
  json added = json::array();
  json vocab_map = json::object();
  for (size_t i = 0; i < vocab.tokens.size(); ++i) {
    const int32_t type = i < vocab.token_types.size() ? vocab.token_types[i] : 1;
    const bool special = type == 3 || static_cast<int32_t>(i) == vocab.bos_id || static_cast<int32_t>(i) == vocab.eos_id ||
                         (spm && static_cast<int32_t>(i) == vocab.unk_id);
    const std::string token = spelled(vocab.tokens[i]);
    if (!vocab_map.contains(token)) vocab_map[token] = i;
    if (special || type == 4) {
      added.push_back({{"id", i}, {"content", token}, {"single_word", false}, {"lstrip", false}, {"rstrip", false},
                       {"normalized", false}, {"special", special}});
    }
  }
  json merges = json::array();
  json model = {{"type", "BPE"}, {"dropout", nullptr}, {"continuing_subword_prefix", nullptr},
                {"end_of_word_suffix", nullptr}, {"vocab", vocab_map}};
  json out = {{"version", "1.0"}, {"truncation", nullptr}, {"padding", nullptr}, {"added_tokens", added}};
  if (spm) {
    // Merges from scores: every split of a token into two vocabulary tokens, ordered by the merged
    // token's score (highest first), which is the order score-priority BPE applies them in.
    struct Merge {
      float score;
      size_t id;
      std::string text;
    };
    std::vector<Merge> list;
    std::unordered_map<std::string, size_t> ids;
    for (size_t i = 0; i < vocab.tokens.size(); ++i) ids.emplace(spelled(vocab.tokens[i]), i);
    for (size_t i = 0; i < vocab.tokens.size(); ++i) {
      const int32_t type = i < vocab.token_types.size() ? vocab.token_types[i] : 1;
      if (type != 1) continue;
      const std::string t = spelled(vocab.tokens[i]);
      for (size_t k = 1; k < t.size(); ++k) {
        if ((static_cast<unsigned char>(t[k]) & 0xC0) == 0x80) continue;  // not a character boundary
        const std::string left = t.substr(0, k), right = t.substr(k);
        if (ids.count(left) && ids.count(right)) list.push_back({vocab.scores.at(i), i, left + " " + right});
      }
    }
    std::stable_sort(list.begin(), list.end(), [](const Merge& a, const Merge& b) {
      return a.score > b.score || (a.score == b.score && a.id < b.id);
    });
    for (const auto& m : list) merges.push_back(m.text);
    model["unk_token"] = vocab.unk_id >= 0 ? json(spelled(vocab.tokens[static_cast<size_t>(vocab.unk_id)])) : json(nullptr);
    model["fuse_unk"] = true;
    model["byte_fallback"] = true;
    json normalizers = json::array();
    if (vocab.add_space_prefix || vocab.model == "llama2c") normalizers.push_back({{"type", "Prepend"}, {"prepend", kSpaceMarker}});
    normalizers.push_back({{"type", "Replace"}, {"pattern", {{"String", " "}}}, {"content", kSpaceMarker}});
    out["normalizer"] = {{"type", "Sequence"}, {"normalizers", normalizers}};
    out["pre_tokenizer"] = nullptr;
    out["decoder"] = {{"type", "Sequence"},
                      {"decoders", json::array({{{"type", "Replace"}, {"pattern", {{"String", kSpaceMarker}}}, {"content", " "}},
                                                {{"type", "ByteFallback"}},
                                                {{"type", "Fuse"}},
                                                {{"type", "Strip"}, {"content", " "}, {"start", 1}, {"stop", 0}}})}};
  } else {
    for (const auto& m : vocab.merges) merges.push_back(m);
    model["unk_token"] = nullptr;
    model["fuse_unk"] = false;
    model["byte_fallback"] = false;
    json byte_level = {{"type", "ByteLevel"}, {"add_prefix_space", false}, {"trim_offsets", true}, {"use_regex", true}};
    out["normalizer"] = nullptr;
    if (vocab.pre == "smollm") {
      out["pre_tokenizer"] = {{"type", "Sequence"},
                              {"pretokenizers", json::array({{{"type", "Digits"}, {"individual_digits", true}}, byte_level})}};
    } else if (vocab.pre == "gpt2" || vocab.pre == "default") {
      out["pre_tokenizer"] = byte_level;
    } else {
      fail("tokenizer.json: pre-tokenizer '{}' cannot be written", vocab.pre);
    }
    out["decoder"] = byte_level;
  }
  model["merges"] = merges;
  if (vocab.add_bos && vocab.bos_id >= 0) {
    const std::string bos = spelled(vocab.tokens[static_cast<size_t>(vocab.bos_id)]);
    out["post_processor"] = {{"type", "TemplateProcessing"},
                             {"single", json::array({{{"SpecialToken", {{"id", bos}, {"type_id", 0}}}},
                                                     {{"Sequence", {{"id", "A"}, {"type_id", 0}}}}})},
                             {"pair", json::array({{{"SpecialToken", {{"id", bos}, {"type_id", 0}}}},
                                                   {{"Sequence", {{"id", "A"}, {"type_id", 0}}}},
                                                   {{"Sequence", {{"id", "B"}, {"type_id", 1}}}}})},
                             {"special_tokens", {{bos, {{"id", bos}, {"ids", json::array({vocab.bos_id})}, {"tokens", json::array({bos})}}}}}};
  } else {
    out["post_processor"] = nullptr;
  }
  out["model"] = model;
  return out;
}

}  // namespace kick
