// Saving a compressed model: the HF folder through the runtime's writer, plus compression.json (the
// model describes itself) and optionally the packed integer form of quantized Linears.
#include <chrono>
#include <ctime>

#include "kick/compress.hpp"
#include "kick/model.hpp"

namespace kick::compress {

nlohmann::json compression_metadata(const Model& model, const std::vector<CompressionPlan>& stages,
                                    const std::vector<CompressionReport>& reports, const CalibrationData* calibration,
                                    const std::string& source_hash) {
  auto now = std::chrono::system_clock::to_time_t(std::chrono::system_clock::now());
  char created[32];
  std::strftime(created, sizeof created, "%Y-%m-%dT%H:%M:%SZ", std::gmtime(&now));
  nlohmann::json j = {{"format", "kick.compression/1"},
                      {"kick_version", version_string()},
                      {"git_revision", git_revision()},
                      {"created", created},
                      {"source_model", {{"path", model.source()}, {"content_hash_fnv1a64", source_hash}}},
                      {"dtype", dtype_name(model.options().dtype)},
                      {"calibration", calibration ? calibration->to_json() : nlohmann::json(nullptr)},
                      {"stages", nlohmann::json::array()}};
  for (size_t i = 0; i < stages.size(); ++i) {
    auto stage = stages[i].to_json();
    if (i < reports.size()) stage["report"] = reports[i].to_json();
    j["stages"].push_back(stage);
  }
  if (!stages.empty()) j["method"] = stages.back().method;
  return j;
}

void save_compressed_model(const std::string& dir, const Model& model, const nlohmann::json& metadata,
                           const std::map<std::string, QuantizedWeight>& packed, bool overwrite) {
  std::map<std::string, std::string> extra = {{"compression.json", metadata.dump(2) + "\n"}};
  if (!packed.empty()) {
    std::map<std::string, Tensor> tensors;
    int bits = 0;
    for (const auto& [name, q] : packed) {
      tensors[name + ".qweight"] = q.codes.to(at::kCPU).contiguous();
      tensors[name + ".scales"] = q.scales.to(at::kCPU).contiguous();
      tensors[name + ".zeros"] = q.zeros.to(at::kCPU).contiguous();
      tensors[name + ".g_idx"] = q.g_idx.to(at::kCPU).contiguous();
      bits = q.bits;
    }
    // The writer needs a path; stage the file beside the target and hand its bytes to the atomic save.
    auto staging = std::filesystem::path(dir).parent_path() / (std::filesystem::path(dir).filename().string() + ".packed.tmp");
    write_safetensors(staging.string(), tensors, {{"format", "kick.packed/1"}, {"bits", std::to_string(bits)}});
    extra["quantized.safetensors"] = read_file(staging);
    std::filesystem::remove(staging);
  }
  save_hf_checkpoint(dir, model.to_checkpoint(), extra, overwrite);
}

}  // namespace kick::compress
