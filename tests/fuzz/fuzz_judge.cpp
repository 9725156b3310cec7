// tests/fuzz/fuzz_judge.cpp: libFuzzer target for what a judge brings in from outside: judge prompt files
// (data/judges/*.yaml, or $KICK_JUDGES) parsed and rendered, and the judge's replies read by every reply parser.
// The first byte picks: 0 = a prompt file, rendered with both the pairwise and the rating variables;
// anything else = a reply, given to all four parsers (a reply parser reports failure in Parsed, never throws).
#include "fuzz_common.hpp"
#include "kick/eval.hpp"
#include "kick/judge.hpp"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size == 0) return 0;
  const std::string text(reinterpret_cast<const char*>(data) + 1, size - 1);
  return kick::fuzz::run_one("fuzz_judge", [&] {
    if (data[0] == 0) {
      kick::eval::JudgePrompt prompt;
      try {
        prompt = kick::eval::parse_judge_prompt(text, "judge.yaml");
      } catch (const kick::Error&) {
        return;
      }
      const std::map<std::string, std::map<std::string, std::string>> variable_sets = {
          {"pairwise", {{"question", "Q {x}"}, {"answer_1", "first }{"}, {"answer_2", "second"}}},
          {"rating", {{"question", "Q"}, {"answer", "A"}}},
          {"two turns", {{"question_1", "Q1"}, {"answer_1", "A1"}, {"question_2", "Q2"}, {"answer_2", "A2"}}}};
      for (const auto& [what, vars] : variable_sets) {
        try {
          (void)kick::eval::render_judge_prompt(prompt, vars);
        } catch (const kick::Error&) {
        }
      }
      return;
    }
    (void)kick::eval::parse_judge_rating(text);
    (void)kick::eval::parse_judge_verdict(text);
    (void)kick::eval::parse_judge_pair_llmkick(text);
    (void)kick::eval::parse_judge_summary_llmkick(text);
  });
}
