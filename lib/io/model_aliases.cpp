// Short names for the models kick's scripts fetch or the data root ships, so commands and tests need
// no long paths. Only the name maps to a path; the model's configuration still comes from its file.
#include "kick/io.hpp"

namespace kick {

std::string resolve_model_path(const std::string& name) {
  if (name == "smollm2" || name == "SmolLM2-135M-Instruct") {
    auto p = cache_root() / "models" / "SmolLM2-135M-Instruct.Q4_1.gguf";
    if (!std::filesystem::exists(p)) {
      fail("model smollm2: {} not found; run data/fetch_models.sh first", p.string());
    }
    return p.string();
  }
  if (name == "stories260K") return (data_root() / "models" / "stories260K" / "model.bin").string();
  return name;
}

}  // namespace kick
