// Calibration text for compression: reads a corpus from KICK_DATA (Alpaca JSON, JSON Lines or plain
// text), tokenizes it once and draws seeded windows of seqlen tokens; or reads back the windows an
// earlier run saved (--save-calibration, a safetensors file).
#include <random>

#include "kick/compress.hpp"
#include "kick/io.hpp"
#include "kick/tokenizer.hpp"

namespace kick::compress {

namespace {

// The corpus as one string of documents separated by blank lines.
std::string corpus_text(const std::string& path, const std::string& bytes) {
  auto first = bytes.find_first_not_of(" \t\r\n");
  if (first == std::string::npos) fail("{}: calibration file is empty", path);
  std::string text;
  auto append_document = [&](const std::string& doc) {
    if (doc.empty()) return;
    if (!text.empty()) text += "\n\n";
    text += doc;
  };
  if (bytes[first] == '[') {
    nlohmann::json array;
    try {
      array = nlohmann::json::parse(bytes);
    } catch (const nlohmann::json::exception& e) {
      fail("{}: not valid JSON: {}", path, e.what());
    }
    for (size_t i = 0; i < array.size(); ++i) {
      const auto& row = array[i];
      if (row.is_string()) {
        append_document(row.get<std::string>());
      } else if (row.is_object() && row.contains("text")) {
        append_document(row["text"].get<std::string>());
      } else if (row.is_object() && row.contains("instruction")) {
        std::string doc = row["instruction"].get<std::string>();
        if (row.contains("input") && !row["input"].get<std::string>().empty()) doc += "\n" + row["input"].get<std::string>();
        if (row.contains("output")) doc += "\n" + row["output"].get<std::string>();
        append_document(doc);
      } else {
        fail("{}: row {}: expected a string or an object with \"text\" or \"instruction\"", path, i);
      }
    }
  } else if (bytes[first] == '{') {
    size_t start = 0, line = 0;
    while (start < bytes.size()) {
      size_t end = bytes.find('\n', start);
      if (end == std::string::npos) end = bytes.size();
      ++line;
      std::string_view row(bytes.data() + start, end - start);
      if (row.find_first_not_of(" \t\r") != std::string_view::npos) {
        nlohmann::json j;
        try {
          j = nlohmann::json::parse(row);
        } catch (const nlohmann::json::exception&) {
          fail("{}:{}: not a JSON object", path, line);
        }
        if (!j.contains("text") || !j["text"].is_string()) fail("{}:{}: missing string field \"text\"", path, line);
        append_document(j["text"].get<std::string>());
      }
      start = end + 1;
    }
  } else {
    text = bytes;
  }
  return text;
}

// Windows saved by an earlier run: its "input_ids" [nsamples, seqlen] int64, which must match the request
// and the tokenizer's vocabulary, so that the same windows can be reused without the corpus.
CalibrationData saved_windows(const Tokenizer& tokenizer, const CalibrationConfig& config, const std::string& path,
                              const std::string& bytes) {
  nlohmann::json metadata;
  auto tensors = read_safetensors(path, &metadata);
  auto it = tensors.find("input_ids");
  if (it == tensors.end()) fail("{}: safetensors calibration file has no tensor \"input_ids\"", path);
  const Tensor& ids = it->second;
  if (ids.dim() != 2 || ids.scalar_type() != at::kLong)
    fail("{}: input_ids is {} {} (expected int64 [nsamples, seqlen], as --save-calibration writes)", path,
         dtype_name(ids.scalar_type()), shape_string(ids.sizes()));
  if (ids.size(0) != config.nsamples || ids.size(1) != config.seqlen)
    fail("{}: holds {} windows of {} tokens; pass --nsamples {} --seqlen {} to use them", path, ids.size(0),
         ids.size(1), ids.size(0), ids.size(1));
  if (ids.numel() > 0 && (ids.min().item<int64_t>() < 0 || ids.max().item<int64_t>() >= tokenizer.vocab_size()))
    fail("{}: input_ids outside this tokenizer's vocabulary [0, {})", path, tokenizer.vocab_size());
  CalibrationData data;
  data.source = path;
  data.content_hash = fnv1a64_hex(bytes);
  data.windows = ids.clone();  // not aliasing the file mapping
  if (metadata.is_object() && metadata.contains("seed") && metadata["seed"].is_string()) {
    try {
      data.seed = std::stoull(metadata["seed"].get<std::string>());
    } catch (const std::exception&) {
      fail("{}: __metadata__.seed \"{}\" is not a number", path, metadata["seed"].get<std::string>());
    }
  }
  return data;
}

}  // namespace

nlohmann::json CalibrationData::to_json() const {
  return {{"source", source},
          {"content_hash_fnv1a64", content_hash},
          {"nsamples", windows.defined() ? windows.size(0) : 0},
          {"seqlen", windows.defined() ? windows.size(1) : 0},
          {"corpus_tokens", corpus_tokens},
          {"seed", seed}};
}

CalibrationData load_calibration(const Tokenizer& tokenizer, const CalibrationConfig& config) {
  if (config.nsamples <= 0) fail("--nsamples {}: expected a positive number of calibration windows", config.nsamples);
  if (config.seqlen < 2) fail("--seqlen {}: expected at least 2 tokens", config.seqlen);
  std::filesystem::path path = config.source;
  if (path.is_relative() && !std::filesystem::exists(path)) path = data_path(path);
  const std::string bytes = read_file(path);
  // What --save-calibration writes is recognised by content, never by the file's name.
  if (looks_like_safetensors(bytes, bytes.size())) return saved_windows(tokenizer, config, path.string(), bytes);
  const std::string text = corpus_text(path.string(), bytes);
  auto ids = tokenizer.encode(text, tokenizer.add_bos_default());
  const auto available = static_cast<int64_t>(ids.size());
  if (available <= config.seqlen) {
    fail("{}: {} tokens, fewer than one calibration window of {}", path.string(), available, config.seqlen);
  }
  CalibrationData data;
  data.source = path.string();
  data.content_hash = fnv1a64_hex(bytes);
  data.corpus_tokens = available;
  data.seed = config.seed;
  data.windows = at::empty({config.nsamples, config.seqlen}, at::TensorOptions().dtype(at::kLong));
  auto windows = data.windows.accessor<int64_t, 2>();
  // mt19937_64 is specified exactly by the standard (distributions are not), so the windows are the
  // same on every platform for a seed.
  std::mt19937_64 rng(config.seed);
  const auto starts = static_cast<uint64_t>(available - config.seqlen);
  for (int64_t s = 0; s < config.nsamples; ++s) {
    const auto start = static_cast<int64_t>(rng() % starts);
    for (int64_t t = 0; t < config.seqlen; ++t) windows[s][t] = ids[static_cast<size_t>(start + t)];
  }
  return data;
}

}  // namespace kick::compress
