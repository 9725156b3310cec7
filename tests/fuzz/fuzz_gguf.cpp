// tests/fuzz/fuzz_gguf.cpp: libFuzzer target for the GGUF reader (header, key/values, tensor infos, alignment)
// and the conversion to a checkpoint (metadata -> config, vocab, dequantization of every quant type).
#include "fuzz_common.hpp"
#include "kick/io.hpp"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  return kick::fuzz::run_one("fuzz_gguf", [&] {
    const auto path = kick::fuzz::write_scratch("model.gguf", data, size);
    kick::GgufContents contents = kick::read_gguf(path.string());
    const kick::Checkpoint ckpt = kick::checkpoint_from_gguf(std::move(contents), path.string());
    for (const auto& [name, tensor] : ckpt.tensors) (void)tensor.sum().item<double>();
  });
}
