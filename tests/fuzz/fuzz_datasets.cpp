// tests/fuzz/fuzz_datasets.cpp: libFuzzer target for every dataset reader of lib/eval. The first byte picks
// the reader (modulo their number), the rest is the file.
#include "fuzz_common.hpp"
#include "kick/eval.hpp"

// A TriviaQA evidence folder with one document on each side, so inputs naming "doc.txt" reach the evidence reader.
static std::filesystem::path evidence_folder() {
  static const std::filesystem::path dir = [] {
    const auto d = kick::fuzz::scratch_file("evidence");
    for (const char* side : {"wikipedia", "web"}) {
      std::filesystem::create_directories(d / side);
      std::ofstream(d / side / "doc.txt") << "William Shakespeare wrote Hamlet around 1600.\n";
    }
    return d;
  }();
  return dir;
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size < 1) return 0;
  const unsigned reader = data[0] % 9;
  ++data;
  --size;
  return kick::fuzz::run_one("fuzz_datasets", [&] {
    namespace ev = kick::eval;
    switch (reader) {
      case 0: (void)ev::load_mmlu_csv(kick::fuzz::write_scratch("astronomy_test.csv", data, size), "astronomy"); break;
      case 1: (void)ev::load_freebaseqa_json(kick::fuzz::write_scratch("FreebaseQA-eval.json", data, size)); break;
      case 2: (void)ev::load_freebaseqa_txt(kick::fuzz::write_scratch("FreebaseQA-eval.txt", data, size)); break;
      case 3: (void)ev::load_nq_open(kick::fuzz::write_scratch("nq-open.jsonl", data, size)); break;
      case 4: (void)ev::load_nq_open(kick::fuzz::write_scratch("nq-open.jsonl.gz", data, size)); break;
      case 5: (void)ev::load_triviaqa_rc(kick::fuzz::write_scratch("triviaqa.json", data, size), evidence_folder()); break;
      case 6: (void)ev::load_story(kick::fuzz::write_scratch("a.story", data, size)); break;
      case 7: (void)ev::load_vicuna80(kick::fuzz::write_scratch("vicuna80.jsonl", data, size)); break;
      case 8: (void)ev::load_mt_bench(kick::fuzz::write_scratch("mt_bench.jsonl", data, size)); break;
    }
  });
}
