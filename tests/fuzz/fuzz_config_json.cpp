// tests/fuzz/fuzz_config_json.cpp: libFuzzer target for the HF config.json mapping (ModelConfig::from_hf_json
// and validate). Inputs that are not JSON at all are the JSON parser's business, not kick's, and are skipped.
#include "fuzz_common.hpp"
#include "kick/io.hpp"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const auto json = nlohmann::json::parse(data, data + size, nullptr, /*allow_exceptions=*/false);
  if (json.is_discarded()) return 0;
  return kick::fuzz::run_one("fuzz_config_json", [&] {
    const kick::ModelConfig config = kick::ModelConfig::from_hf_json(json, "config.json");
    config.validate("config.json");
    (void)config.to_hf_json().dump();
  });
}
