// tests/fuzz/fuzz_task_file.cpp: libFuzzer target for task files (data/tasks/*.yaml) under both protocols.
#include "fuzz_common.hpp"
#include "kick/eval.hpp"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string text(reinterpret_cast<const char*>(data), size);
  return kick::fuzz::run_one("fuzz_task_file", [&] {
    for (const char* protocol : {"llm-kick", "strict"}) {
      try {
        (void)kick::eval::parse_task_spec(text, "task.yaml", protocol);
      } catch (const kick::Error&) {
      }
    }
  });
}
