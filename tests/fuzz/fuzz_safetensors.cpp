// tests/fuzz/fuzz_safetensors.cpp: libFuzzer target for the safetensors reader (header JSON, offsets, dtypes).
#include "fuzz_common.hpp"
#include "kick/io.hpp"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  return kick::fuzz::run_one("fuzz_safetensors", [&] {
    const auto path = kick::fuzz::write_scratch("model.safetensors", data, size);
    nlohmann::json metadata;
    const auto tensors = kick::read_safetensors(path.string(), &metadata);
    for (const auto& [name, tensor] : tensors) (void)tensor.sum().item<double>();  // touch every byte it claims
  });
}
