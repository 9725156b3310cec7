// lib/eval/results.cpp: where evaluation results live: the per-example JSONL log (append, flush, resume
// after a kill), the task summary as JSON and Markdown, and the model's provenance (path, content hash,
// its compression.json).
#include <cstdio>
#include <fstream>
#include <sstream>

#include <fmt/format.h>

#include "kick/core.hpp"
#include "kick/evaluate.hpp"

namespace kick::eval {

ResultsLog::ResultsLog(std::filesystem::path path) : path_(std::move(path)) {
  if (!std::filesystem::exists(path_)) return;
  std::string text = read_file(path_);
  // A run killed mid-write leaves a last line without its newline: it is dropped (and its example redone).
  const size_t complete = text.rfind('\n') == std::string::npos ? 0 : text.rfind('\n') + 1;
  if (complete != text.size()) {
    std::filesystem::resize_file(path_, complete);
    text.resize(complete);
  }
  std::istringstream lines(text);
  std::string line;
  size_t number = 0;
  while (std::getline(lines, line)) {
    ++number;
    if (line.empty()) continue;
    nlohmann::json record;
    try {
      record = nlohmann::json::parse(line);
    } catch (const nlohmann::json::exception& e) {
      fail("{}:{}: not a JSON object ({}); move the file away to start over", path_.string(), number, e.what());
    }
    if (!record.is_object() || !record.contains("id") || !record["id"].is_string()) {
      fail("{}:{}: expected an object with a string \"id\"", path_.string(), number);
    }
    std::string id = record["id"].get<std::string>();
    records_[id] = std::move(record);
  }
  resumed_ = records_.size();
}

void ResultsLog::append(const std::vector<nlohmann::json>& records) {
  std::string text;
  for (const auto& record : records) {
    const std::string id = record.at("id").get<std::string>();
    if (records_.count(id)) continue;
    text += record.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
    text += '\n';
    records_[id] = record;
  }
  if (text.empty()) return;
  std::filesystem::create_directories(path_.parent_path());
  std::FILE* file = std::fopen(path_.c_str(), "ab");
  if (!file) fail("{}: cannot open for appending", path_.string());
  const bool ok = std::fwrite(text.data(), 1, text.size(), file) == text.size() && std::fflush(file) == 0;
  std::fclose(file);
  if (!ok) fail("{}: write failed (disk full?)", path_.string());
}

nlohmann::json TaskSummary::to_json() const {
  nlohmann::json metrics_json = nlohmann::json::object();
  for (const auto& [name, m] : metrics) {
    metrics_json[name] = {{"mean", m.mean}, {"stdev", m.stdev}, {"per_seed", m.per_seed}, {"examples", m.examples}};
  }
  return {{"task", task},       {"version", version}, {"protocol", protocol}, {"seeds", seeds},
          {"examples", examples}, {"failed", failed},   {"resumed", resumed},   {"seconds", seconds},
          {"metrics", metrics_json}, {"details", details}};
}

nlohmann::json model_provenance(const Model& model, const std::string& model_path) {
  nlohmann::json out = {{"path", model_path}, {"source", model.source()},
                        {"parameters", model.parameter_count()}, {"dtype", dtype_name(model.options().dtype)}};
  std::filesystem::path source = model.source();
  std::vector<std::filesystem::path> weight_files;
  if (std::filesystem::is_directory(source)) {
    for (const auto& entry : std::filesystem::directory_iterator(source)) {
      if (entry.path().extension() == ".safetensors") weight_files.push_back(entry.path());
    }
    std::sort(weight_files.begin(), weight_files.end());
    const auto compression = source / "compression.json";
    if (std::filesystem::exists(compression)) {
      try {
        out["compression"] = nlohmann::json::parse(read_file(compression));
      } catch (const nlohmann::json::exception& e) {
        fail("{}: not valid JSON ({})", compression.string(), e.what());
      }
    }
  } else if (std::filesystem::is_regular_file(source)) {
    weight_files.push_back(source);
  }
  std::string hashes;
  for (const auto& file : weight_files) hashes += content_hash(file);
  out["content_hash_fnv1a64"] = weight_files.size() == 1 ? hashes : fnv1a64_hex(hashes);
  if (!out.contains("compression")) out["compression"] = nullptr;
  return out;
}

std::string summaries_markdown(const std::vector<TaskSummary>& summaries) {
  std::string out = "| task | protocol | metric | mean | stdev | n | failed |\n|---|---|---|---:|---:|---:|---:|\n";
  for (const auto& s : summaries) {
    for (const auto& [name, m] : s.metrics) {
      out += fmt::format("| {} | {} | {} | {:.4f} | {:.4f} | {} | {} |\n", s.task, s.protocol, name, m.mean, m.stdev,
                         m.examples, s.failed);
    }
  }
  for (const auto& s : summaries) {
    if (!s.details.is_object() || !s.details.contains("judge_tally")) continue;
    const auto& t = s.details["judge_tally"];
    out += fmt::format("\n{} ({}) judge: {} examples judged, {} parsed, {} unparseable, {} without a reply\n", s.task,
                       s.protocol, t.value("judged", 0), t.value("parsed", 0), t.value("unparseable", 0), t.value("request_failed", 0));
  }
  return out;
}

}  // namespace kick::eval
