// Tests of the evaluation runner (lib/eval/runner.cpp, mmlu_scoring.cpp, results.cpp): the shared few-shot
// prefix gives the scores of whole prompts, a run killed mid-write resumes to the uninterrupted results, and the
// per-example log keeps complete lines only.
#include <catch2/catch.hpp>

#include <map>
#include <set>

#include <fstream>

#include "kick/evaluate.hpp"
#include "test_helpers.hpp"

using namespace kick;

namespace {

std::vector<std::string> read_lines(const std::filesystem::path& path) {
  std::ifstream in(path);
  std::vector<std::string> lines;
  for (std::string line; std::getline(in, line);) lines.push_back(line);
  return lines;
}

}  // namespace

TEST_CASE("MMLU scoring with the cached few-shot prefix equals scoring whole prompts and per-question generation", "[evaluate][smollm2]") {
  if (!std::filesystem::exists(test::smollm2_gguf())) {
    WARN("skipped: " << test::smollm2_gguf() << " absent (run data/fetch_models.sh)");
    return;
  }
  Model model = Model::load(test::smollm2_gguf().string());
  for (const char* protocol : {eval::kProtocolLlmKick, eval::kProtocolStrict}) {
    eval::TaskSpec spec = eval::load_task("mmlu", protocol);
    const auto data = eval::load_mmlu(data_path("mmlu"));
    const std::string subject = "high_school_geography";
    std::vector<eval::MmluExample> questions(data.test.at(subject).begin(), data.test.at(subject).begin() + 5);
    std::vector<eval::MmluExample> shots(data.dev.at(subject).begin(), data.dev.at(subject).begin() + 5);
    auto cached = eval::score_mmlu_subject(model, spec, shots, questions, 3, true);
    auto whole = eval::score_mmlu_subject(model, spec, shots, questions, 2, false);
    // The naive reference: each prompt alone, LLM-KICK's one-token generate() under llm-kick.
    auto alone = eval::score_mmlu_subject_per_question(model, spec, shots, questions);
    REQUIRE(cached.size() == questions.size());
    REQUIRE(alone.size() == questions.size());
    for (size_t i = 0; i < questions.size(); ++i) {
      CHECK(cached[i].predicted == alone[i].predicted);
      CHECK_FALSE(alone[i].prefix_reused);
      if (std::string(protocol) == eval::kProtocolStrict) {
        for (size_t c = 0; c < 4; ++c) CHECK(cached[i].logprobs[c] == Approx(alone[i].logprobs[c]).margin(2e-3));
      }
      CHECK(cached[i].prefix_reused);
      CHECK_FALSE(whole[i].prefix_reused);
      CHECK(cached[i].shots == 5);
      for (size_t c = 0; c < 4; ++c) CHECK(cached[i].logprobs[c] == Approx(whole[i].logprobs[c]).margin(2e-3));
      CHECK(cached[i].predicted == whole[i].predicted);
    }
  }
}

TEST_CASE("MMLU questions that keep fewer shots share a prefix per shot count, equal to whole prompts", "[evaluate][smollm2]") {
  if (!std::filesystem::exists(test::smollm2_gguf())) {
    WARN("skipped: " << test::smollm2_gguf() << " absent (run data/fetch_models.sh)");
    return;
  }
  Model model = Model::load(test::smollm2_gguf().string());
  eval::TaskSpec spec = eval::load_task("mmlu", eval::kProtocolStrict);
  const auto data = eval::load_mmlu(data_path("mmlu"));
  const std::string subject = "high_school_geography";
  std::vector<eval::MmluExample> questions(data.test.at(subject).begin(), data.test.at(subject).begin() + 12);
  std::vector<eval::MmluExample> shots(data.dev.at(subject).begin(), data.dev.at(subject).begin() + 5);
  // The smallest budget at which the questions split into two shot counts of two or more questions each, as long
  // questions do under the real 2048-token budget.
  auto count = [&](const std::string& text) { return model.tokenizer().encode(text, model.tokenizer().add_bos_default(), false).size(); };
  int64_t budget = 0;
  for (int64_t b = 100; b < 1200 && budget == 0; b += 10) {
    spec.few_shot.max_prompt_tokens = b;
    std::map<int, int> by_shots;
    for (const auto& q : questions) {
      const auto prompt = eval::render_mmlu_prompt(spec, shots, q, count);
      if (prompt.fits) ++by_shots[prompt.shots];
    }
    int groups = 0;
    for (const auto& [n, members] : by_shots) groups += (n > 0 && members >= 2) ? 1 : 0;
    if (groups >= 2) budget = b;
  }
  REQUIRE(budget > 0);
  spec.few_shot.max_prompt_tokens = budget;
  auto cached = eval::score_mmlu_subject(model, spec, shots, questions, 3, true);
  auto whole = eval::score_mmlu_subject(model, spec, shots, questions, 4, false);
  std::set<int> reused_shot_counts;
  for (size_t i = 0; i < questions.size(); ++i) {
    INFO("question " << i << " with " << cached[i].shots << " shots");
    CHECK(cached[i].shots == whole[i].shots);
    if (cached[i].prefix_reused) reused_shot_counts.insert(cached[i].shots);
    for (size_t c = 0; c < 4; ++c) CHECK(cached[i].logprobs[c] == Approx(whole[i].logprobs[c]).margin(2e-3));
    CHECK(cached[i].predicted == whole[i].predicted);
  }
  CHECK(reused_shot_counts.size() >= 2);  // a cached prefix per shot count, not only for the full-shot prompts
}

TEST_CASE("the results log drops a torn last line and never duplicates an id", "[evaluate]") {
  const auto dir = test::scratch_dir("results_log");
  const auto path = dir / "seed0.jsonl";
  {
    eval::ResultsLog log(path);
    log.append({{{"id", "a"}, {"v", 1}}, {{"id", "b"}, {"v", 2}}});
    log.append({{{"id", "a"}, {"v", 9}}});  // already there: ignored
  }
  {
    std::ofstream torn(path, std::ios::app);
    torn << R"({"id": "c", "v")";  // a kill in the middle of a write
  }
  eval::ResultsLog resumed(path);
  CHECK(resumed.resumed() == 2);
  CHECK(resumed.has("a"));
  CHECK_FALSE(resumed.has("c"));
  CHECK(resumed.records().at("a")["v"] == 1);
  CHECK(read_lines(path).size() == 2);
  resumed.append({{{"id", "c"}, {"v", 3}}});
  CHECK(read_lines(path).size() == 3);

  std::ofstream(dir / "bad.jsonl") << "{\"id\": \"x\"}\nnot json\n";
  CHECK_THROWS_WITH(eval::ResultsLog(dir / "bad.jsonl"), Catch::Matchers::Contains("bad.jsonl:2"));
}

TEST_CASE("an interrupted evaluation resumes to the uninterrupted results", "[evaluate]") {
  Model model = Model::load((test::stories260k_dir() / "model.bin").string());
  eval::TaskSpec spec = eval::load_task("factoid_qa", eval::kProtocolStrict);
  spec.decoding.max_new_tokens = 8;
  eval::RunOptions options;
  options.limit = 7;
  options.batch_size = 3;
  options.out_dir = test::scratch_dir("evaluate_full");
  auto full = eval::evaluate_task(model, spec, options);
  const auto log_name = std::filesystem::path("factoid_qa.strict") / "seed0.jsonl";
  const auto full_lines = read_lines(options.out_dir / log_name);
  REQUIRE(full_lines.size() == 7);
  CHECK(full.examples == 7);
  CHECK(std::filesystem::exists(options.out_dir / "factoid_qa.strict" / "summary.json"));

  // A run killed after its first batch, in the middle of writing the second.
  options.out_dir = test::scratch_dir("evaluate_resumed");
  std::filesystem::create_directories(options.out_dir / "factoid_qa.strict");
  {
    std::ofstream partial(options.out_dir / log_name);
    for (size_t i = 0; i < 3; ++i) partial << full_lines[i] << "\n";
    partial << full_lines[3].substr(0, full_lines[3].size() / 2);
  }
  auto resumed = eval::evaluate_task(model, spec, options);
  CHECK(resumed.resumed == 3);
  auto resumed_lines = read_lines(options.out_dir / log_name);
  std::sort(resumed_lines.begin(), resumed_lines.end());
  auto expected = full_lines;
  std::sort(expected.begin(), expected.end());
  CHECK(resumed_lines == expected);
  for (const auto& [name, m] : full.metrics) CHECK(resumed.metrics.at(name).mean == m.mean);
}
