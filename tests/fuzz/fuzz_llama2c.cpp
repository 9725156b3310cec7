// tests/fuzz/fuzz_llama2c.cpp: libFuzzer target for llama2.c's model.bin and tokenizer.bin readers. Input:
// a little-endian uint32 model size, the model bytes, then the tokenizer bytes.
#include <cstring>

#include "fuzz_common.hpp"
#include "kick/io.hpp"
#include "kick/tokenizer.hpp"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size < 4) return 0;
  uint32_t model_size = 0;
  std::memcpy(&model_size, data, 4);
  data += 4;
  size -= 4;
  model_size = static_cast<uint32_t>(std::min<size_t>(model_size, size));
  return kick::fuzz::run_one("fuzz_llama2c", [&] {
    const auto model = kick::fuzz::write_scratch("model.bin", data, model_size);
    const auto tokenizer = kick::fuzz::write_scratch("tokenizer.bin", data + model_size, size - model_size);
    const kick::Checkpoint ckpt = kick::read_llama2c(model.string(), tokenizer.string());
    const auto tok = kick::make_tokenizer(ckpt.vocab);
    const auto ids = tok->encode("Once upon a time, 12 cats", true);
    (void)tok->decode(ids);
  });
}
