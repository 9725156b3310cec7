// tests/fuzz/fuzz_experiment.cpp: libFuzzer target for experiment files (data/experiments/*.yaml) and their
// expansion into variants and content keys.
#include "fuzz_common.hpp"
#include "kick/pipeline.hpp"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string text(reinterpret_cast<const char*>(data), size);
  return kick::fuzz::run_one("fuzz_experiment", [&] {
    kick::pipeline::Experiment experiment = kick::pipeline::parse_experiment(text, "experiment.yaml");
    kick::pipeline::assign_keys(experiment, "0123456789abcdef");
    (void)kick::pipeline::sweep_manifest(experiment).dump();
  });
}
