// tests/fuzz/fuzz_tokenizer_json.cpp: libFuzzer target for tokenizer.json (vocab, merges, added tokens,
// pre-tokenizer) and the tokenizer built from it, which then encodes and decodes a fixed text.
#include "fuzz_common.hpp"
#include "kick/io.hpp"
#include "kick/tokenizer.hpp"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  return kick::fuzz::run_one("fuzz_tokenizer_json", [&] {
    const auto path = kick::fuzz::write_scratch("tokenizer.json", data, size);
    const kick::VocabSpec vocab = kick::read_tokenizer_json(path.string());
    const auto tok = kick::make_tokenizer(vocab);
    const auto ids = tok->encode("Hello world! 123 caf\xc3\xa9 <|im_start|>user\n\xf0\x9f\x98\x80", true);
    (void)tok->decode(ids, true);
    for (int32_t id : ids) (void)tok->piece(id);
  });
}
