// [eval-tasks] tests: the shipped task files under both protocols, protocol merging, every rejection of a bad
// task file (naming file, line and field), the loader and metric registries, the template language, and the
// prompts against tests/fixtures/eval/tasks/llmkick_prompts.json, which tests/reference/llmkick_prompts.py
// rendered the way LLM-KICK's released Python code does.
#include <catch2/catch.hpp>

#include <algorithm>
#include <cstdlib>
#include <fstream>
#include <nlohmann/json.hpp>
#include <set>

#include "kick/core.hpp"
#include "kick/eval.hpp"
#include "test_helpers.hpp"

namespace fs = std::filesystem;
using namespace kick::eval;
using Catch::Matchers::Contains;
using nlohmann::json;

namespace {

const json& reference() {
  static const json j = json::parse(kick::read_file(kick::test::fixture("eval/tasks/llmkick_prompts.json")));
  return j;
}

void require_task_error(const std::string& yaml, const std::vector<std::string>& keywords,
                        const std::string& protocol = kProtocolStrict) {
  INFO(yaml);
  std::vector<std::string> all = {"bad.yaml"};
  all.insert(all.end(), keywords.begin(), keywords.end());
  kick::test::require_error([&] { parse_task_spec(yaml, "bad.yaml", protocol); }, all);
}

// A valid task; the bad-file cases below edit it.
const std::string kTinyTask = R"(name: tiny
version: 1
description: "a tiny task"
loader: nq_open
paths:
  data: retrieval_qa/nq-open-oracle.jsonl.gz
prompt:
  template: "Q: {question}\nA:"
decoding:
  mode: greedy
  max_new_tokens: 8
metrics: [retrieval_em]
protocols:
  llm-kick:
    metrics: [retrieval_em_llmkick]
  strict: {}
)";

std::string replace(std::string text, const std::string& from, const std::string& to) {
  const auto at = text.find(from);
  REQUIRE(at != std::string::npos);
  return text.replace(at, from.size(), to);
}

size_t utf8_bytes_over_4(const std::string& text) { return text.size() / 4; }

// FNV-1a 64 with the standard offset basis (0xcbf29ce484222325), as the reference script computes it.
std::string fnv1a64(const std::string& text) {
  uint64_t h = 0xcbf29ce484222325ull;
  for (unsigned char c : text) {
    h ^= c;
    h *= 0x100000001b3ull;
  }
  return fmt::format("{:016x}", h);
}

MmluExample make_mmlu(const std::string& subject, const std::string& q, std::array<std::string, 4> choices,
                      char answer) {
  MmluExample e;
  e.subject = subject;
  e.question = q;
  e.choices = std::move(choices);
  e.answer = answer;
  e.source = "hand-made";
  return e;
}

}  // namespace

TEST_CASE("every shipped task parses under both protocols", "[eval-tasks]") {
  const auto names = task_names();
  const std::vector<std::string> expected = {
      "factoid_qa",   "instruction_following",    "mmlu",         "mt_bench", "perplexity",
      "retrieval_qa", "retrieval_qa_closed_book", "summarization"};
  CHECK(names == expected);
  for (const auto& name : names) {
    for (const std::string protocol : {kProtocolLlmKick, kProtocolStrict}) {
      INFO(name << " / " << protocol);
      const TaskSpec spec = load_task(name, protocol);
      CHECK(spec.name == name);
      CHECK(spec.protocol == protocol);
      CHECK(spec.version >= 1);
      CHECK(!spec.description.empty());
      CHECK(is_known_loader(spec.loader));
      CHECK(!spec.metrics.empty());
      for (const auto& m : spec.metrics) CHECK(is_known_metric(m));
      CHECK(fs::exists(spec.data_file("data")));
    }
  }

  const auto factoid_kick = load_task("factoid_qa", kProtocolLlmKick);
  const auto factoid_strict = load_task("factoid_qa", kProtocolStrict);
  CHECK(factoid_kick.template_text("template") == "Please give answer to this question: {question}\nThe answer is ");
  CHECK(factoid_kick.decoding.max_length_factor == 3);
  CHECK(factoid_kick.decoding.mode == "greedy");
  CHECK(factoid_kick.metrics == std::vector<std::string>{"factoid_match_llmkick"});
  CHECK(factoid_kick.option("score_text", "") == "prompt_and_generation");
  CHECK(factoid_strict.metrics == std::vector<std::string>{"factoid_match", "factoid_em", "factoid_f1"});
  CHECK(factoid_strict.option("references", "") == "answers");

  const auto mmlu_kick = load_task("mmlu", kProtocolLlmKick);
  const auto mmlu_strict = load_task("mmlu", kProtocolStrict);
  CHECK(mmlu_kick.few_shot.k == 5);
  CHECK(mmlu_kick.few_shot.split == "dev");
  CHECK(mmlu_kick.few_shot.max_prompt_tokens == 2048);
  CHECK(mmlu_kick.decoding.max_new_tokens == 1);
  CHECK(mmlu_kick.option_flag("subject_leading_space", false));
  CHECK(!mmlu_strict.option_flag("subject_leading_space", true));
  CHECK(mmlu_strict.option("scoring", "") == "loglikelihood");
  CHECK(metric(mmlu_strict.metrics.at(0)).kind == "choice");

  const auto retrieval = load_task("retrieval_qa", kProtocolLlmKick);
  CHECK(retrieval.option("context_chars", "") == "3072");
  CHECK(retrieval.decoding.max_new_tokens == 32);
  CHECK(retrieval.option("score_text", "") == "first_line");
  CHECK(load_task("retrieval_qa", kProtocolStrict).metrics == std::vector<std::string>{"retrieval_em", "retrieval_f1"});

  const auto summary_kick = load_task("summarization", kProtocolLlmKick);
  const auto summary_strict = load_task("summarization", kProtocolStrict);
  CHECK(summary_kick.chat);
  CHECK(summary_kick.decoding.mode == "sample");
  CHECK(summary_kick.decoding.temperature == 0.7);
  CHECK(summary_kick.decoding.max_new_tokens == 1024);
  CHECK(summary_kick.option("chat_template", "") == "vicuna_v1.1");
  CHECK(summary_kick.prompt.count("template_small") == 1);
  CHECK(summary_strict.prompt.count("template_small") == 0);
  CHECK(summary_strict.option("story_text", "") == "paragraphs");
  for (const std::string m : {"judge_summary_aspects", "rouge1", "rouge2", "rougeL"})
    CHECK(std::count(summary_kick.metrics.begin(), summary_kick.metrics.end(), m) == 1);

  CHECK(metric(load_task("instruction_following", kProtocolLlmKick).metrics.at(0)).kind == "judge");
  CHECK(metric(load_task("mt_bench", kProtocolStrict).metrics.at(0)).kind == "judge");
  CHECK(metric(load_task("perplexity", kProtocolStrict).metrics.at(0)).kind == "perplexity");
}

TEST_CASE("each shipped task's loader reads the shared data", "[eval-tasks]") {
  auto data = [](const std::string& name) { return load_task_data(load_task(name, kProtocolLlmKick)); };
  const auto mmlu = std::get<MmluData>(data("mmlu"));
  CHECK(mmlu.subjects.size() == 57);
  CHECK(mmlu.test_count() == 14042);
  CHECK(std::get<std::vector<QaExample>>(data("factoid_qa")).size() == 3999);
  CHECK(std::get<std::vector<QaExample>>(data("retrieval_qa")).size() == 2655);
  CHECK(std::get<std::vector<Story>>(data("summarization")).size() == 90);
  CHECK(std::get<std::vector<Instruction>>(data("instruction_following")).size() == 80);
  CHECK(std::get<std::vector<Instruction>>(data("mt_bench")).size() == 80);
  CHECK(std::get<std::string>(data("perplexity")).size() == 1290590);  // the raw file; the runner joins rows
}

TEST_CASE("protocol sections merge over the base", "[eval-tasks]") {
  const std::string yaml = R"(name: merged
version: 3
description: base description
loader: freebaseqa
paths:
  data: freebaseqa/FreebaseQA-eval.txt
prompt:
  template: "base {question}"
options:
  context_chars: 100
  passage_separator: "|"
decoding:
  mode: greedy
  max_new_tokens: 16
  stop: ["\n", "###"]
metrics: [factoid_em, factoid_f1]
protocols:
  llm-kick:
    options:
      context_chars: 7
    decoding:
      stop: ["END"]
    metrics: [factoid_match_llmkick]
  strict:
    description: strict description
    chat: true
    prompt:
      template: "strict {question}"
    decoding:
      mode: sample
      temperature: 0.5
      top_k: 40
      seed: 9
)";
  const auto kick = parse_task_spec(yaml, "merged.yaml", kProtocolLlmKick);
  CHECK(kick.version == 3);
  CHECK(kick.description == "base description");
  CHECK(kick.option("context_chars", "") == "7");                // a map key overridden
  CHECK(kick.option("passage_separator", "") == "|");            // a map key kept from the base
  CHECK(kick.decoding.max_new_tokens == 16);                     // a mapping's other fields kept
  CHECK(kick.decoding.stop == std::vector<std::string>{"END"});  // lists are replaced, not appended
  CHECK(kick.metrics == std::vector<std::string>{"factoid_match_llmkick"});
  CHECK(kick.template_text("template") == "base {question}");
  CHECK(!kick.chat);
  CHECK(kick.file == "merged.yaml");

  const auto strict = parse_task_spec(yaml, "merged.yaml", kProtocolStrict);
  CHECK(strict.description == "strict description");
  CHECK(strict.chat);
  CHECK(strict.template_text("template") == "strict {question}");
  CHECK(strict.option("context_chars", "") == "100");
  CHECK(strict.decoding.mode == "sample");
  CHECK(strict.decoding.temperature == 0.5);
  CHECK(strict.decoding.top_k == 40);
  CHECK(strict.decoding.seed == 9);
  CHECK(strict.decoding.max_new_tokens == 16);
  CHECK(strict.decoding.stop == std::vector<std::string>{"\n", "###"});
  CHECK(strict.metrics == std::vector<std::string>{"factoid_em", "factoid_f1"});
}

TEST_CASE("bad task files are refused naming the file, line and field", "[eval-tasks]") {
  REQUIRE_NOTHROW(parse_task_spec(kTinyTask, "tiny.yaml", kProtocolStrict));

  SECTION("unknown keys") {
    require_task_error(replace(kTinyTask, "metrics: [retrieval_em]\n", "metrics: [retrieval_em]\ntemprature: 0.7\n"),
                       {"bad.yaml:13", "temprature", "unknown field"});
    require_task_error(replace(kTinyTask, "  mode: greedy\n", "  mode: greedy\n  temprature: 0.7\n"),
                       {"bad.yaml:11", "decoding.temprature", "unknown field"});
    require_task_error(replace(kTinyTask, "  strict: {}\n", "  strict:\n    nmae: x\n"),
                       {"bad.yaml:17", "protocols.strict.nmae", "unknown field"});
    require_task_error(replace(kTinyTask, "  strict: {}\n", "  strict:\n    few_shot: {k: 1, splt: dev}\n"),
                       {"bad.yaml:17", "protocols.strict.few_shot.splt", "unknown field"});
    require_task_error(replace(kTinyTask, "  data: retrieval_qa", "  evidence: x\n  data: retrieval_qa"),
                       {"bad.yaml:6", "paths.evidence", "unknown path for loader nq_open"});
    require_task_error(replace(kTinyTask, "  template:", "  header: \"h\"\n  template:"),
                       {"bad.yaml:8", "prompt.header", "unknown template"});
    require_task_error(
        replace(kTinyTask, "metrics: [retrieval_em]\n", "metrics: [retrieval_em]\noptions: {context_char: 5}\n"),
        {"bad.yaml:13", "options.context_char", "unknown option for loader nq_open", "context_chars"});
    require_task_error(replace(kTinyTask, "  max_new_tokens: 8\n", "  max_new_tokens: 8\n  max_new_tokens: 9\n"),
                       {"bad.yaml:12", "decoding.max_new_tokens", "twice"});
    require_task_error(replace(kTinyTask, "  strict: {}\n", "  strict:\n    name: other\n"),
                       {"bad.yaml:17", "protocols.strict.name", "cannot be overridden"});
  }
  SECTION("missing fields") {
    require_task_error(replace(kTinyTask, "loader: nq_open\n", ""), {"loader", "missing"});
    require_task_error(replace(kTinyTask, "version: 1\n", ""), {"version", "missing"});
    require_task_error(replace(kTinyTask, "metrics: [retrieval_em]\n", ""), {"metrics", "missing"});
    require_task_error(replace(kTinyTask, "metrics: [retrieval_em]\n", "metrics: []\n"),
                       {"bad.yaml:12", "metrics", "no metric"});
    require_task_error(replace(kTinyTask, "  data: retrieval_qa/nq-open-oracle.jsonl.gz\n", "  {}\n"),
                       {"paths.data", "missing"});
    require_task_error(replace(kTinyTask, "paths:\n  data: retrieval_qa/nq-open-oracle.jsonl.gz\n", ""),
                       {"paths.data", "missing", "nq_open"});
    require_task_error(replace(kTinyTask, "prompt:\n  template: \"Q: {question}\\nA:\"\n", ""),
                       {"prompt.template", "missing"});
    require_task_error(kTinyTask.substr(0, kTinyTask.find("protocols:")), {"protocols", "missing"});
    require_task_error(replace(kTinyTask, "  strict: {}\n", ""), {"protocols.strict", "missing"});
    require_task_error(replace(kTinyTask, "  mode: greedy\n", "  mode: sample\n"), {"decoding.temperature", "above 0"});
  }
  SECTION("unknown loader, metric or protocol") {
    require_task_error(replace(kTinyTask, "loader: nq_open", "loader: nq_closed"),
                       {"bad.yaml:4", "loader", "unknown loader 'nq_closed'", "nq_open"});
    require_task_error(replace(kTinyTask, "metrics: [retrieval_em]", "metrics: [retrieval_em, rouge3]"),
                       {"bad.yaml:12", "metrics[1]", "unknown metric 'rouge3'", "rougeL"});
    // The section of the protocol not asked for is checked too.
    require_task_error(replace(kTinyTask, "metrics: [retrieval_em_llmkick]", "metrics: [nope]"),
                       {"bad.yaml:15", "protocols.llm-kick.metrics[0]", "unknown metric 'nope'"}, kProtocolStrict);
  }
  SECTION("unknown protocols") {
    require_task_error(replace(kTinyTask, "  strict: {}\n", "  strict: {}\n  lenient: {}\n"),
                       {"bad.yaml:17", "protocols.lenient", "unknown protocol", "llm-kick, strict"});
    require_task_error(kTinyTask, {"unknown protocol 'lenient'", "llm-kick, strict"}, "lenient");
  }
  SECTION("wrong YAML types") {
    require_task_error(replace(kTinyTask, "paths:\n  data: retrieval_qa/nq-open-oracle.jsonl.gz", "paths: somewhere"),
                       {"bad.yaml:5", "paths", "expected a mapping, got 'somewhere'"});
    require_task_error(replace(kTinyTask, "version: 1", "version: one"),
                       {"bad.yaml:2", "version", "expected an integer", "'one'"});
    require_task_error(replace(kTinyTask, "version: 1", "version: 0"), {"bad.yaml:2", "version", ">= 1"});
    require_task_error(replace(kTinyTask, "metrics: [retrieval_em]", "metrics: retrieval_em"),
                       {"bad.yaml:12", "metrics", "expected a list"});
    require_task_error(replace(kTinyTask, "description: \"a tiny task\"", "description: [a, b]"),
                       {"bad.yaml:3", "description", "expected a string, got a list"});
    require_task_error(replace(kTinyTask, "  max_new_tokens: 8", "  max_new_tokens: lots"),
                       {"bad.yaml:11", "decoding.max_new_tokens", "expected an integer"});
    require_task_error(replace(kTinyTask, "  mode: greedy", "  mode: beam"),
                       {"bad.yaml:10", "decoding.mode", "greedy or sample"});
    require_task_error(replace(kTinyTask, "  strict: {}\n", "  strict:\n    chat: maybe\n"),
                       {"bad.yaml:17", "protocols.strict.chat", "true or false"});
    require_task_error(replace(kTinyTask, "  strict: {}\n", "  strict:\n    decoding: [1, 2]\n"),
                       {"bad.yaml:17", "protocols.strict.decoding", "expected a mapping, got a list"});
    require_task_error(replace(kTinyTask, "  strict: {}\n", "  strict:\n    decoding: {top_p: 1.5}\n"),
                       {"bad.yaml:17", "protocols.strict.decoding.top_p", "(0, 1]"});
    require_task_error(replace(kTinyTask, "  data: retrieval_qa/nq-open-oracle.jsonl.gz", "  data: [a, b]"),
                       {"bad.yaml:6", "paths.data", "expected a string"});
    require_task_error(
        replace(kTinyTask, "metrics: [retrieval_em]\n", "metrics: [retrieval_em]\noptions: {strip_prompt: maybe}\n"),
        {"bad.yaml:13", "options.strip_prompt", "true or false"});
    require_task_error(
        replace(kTinyTask, "metrics: [retrieval_em]\n", "metrics: [retrieval_em]\noptions: {score_text: all}\n"),
        {"bad.yaml:13", "options.score_text", "first_line"});
    require_task_error(
        replace(kTinyTask, "metrics: [retrieval_em]\n", "metrics: [retrieval_em]\noptions: {context_chars: -3}\n"),
        {"bad.yaml:13", "options.context_chars", "integer >= 0"});
    require_task_error("- just\n- a list\n", {"bad.yaml:1", "expected a mapping"});
    require_task_error("name: [unclosed\n", {"bad.yaml", "not valid YAML"});
  }
  SECTION("templates are checked against the loader's variables") {
    require_task_error(replace(kTinyTask, "Q: {question}", "Q: {query}"),
                       {"bad.yaml:8", "prompt.template", "unknown variable {query}", "{question}"});
    require_task_error(replace(kTinyTask, "Q: {question}", "Q: {question"),
                       {"bad.yaml:8", "prompt.template", "never closed"});
  }
  SECTION("MMLU scoring and metrics must agree") {
    std::string mmlu = kick::read_file(tasks_dir() / "mmlu.yaml");
    REQUIRE_NOTHROW(parse_task_spec(mmlu, "mmlu.yaml", kProtocolLlmKick));
    require_task_error(replace(mmlu, "metrics: [mmlu_choice_loglikelihood]", "metrics: [mmlu_accuracy]"),
                       {"protocols.strict.metrics[0]", "does not read what options.scoring loglikelihood produces"});
  }
}

// The line of the bad fixture file is fixed; check the file path and line come through load_task_file.
TEST_CASE("task files on disk: names, folder, unknown tasks", "[eval-tasks]") {
  const fs::path dir = kick::test::fixture("eval/tasks/task_files");
  CHECK(task_names(dir) == std::vector<std::string>{"misnamed", "tiny_qa", "unknown_metric"});
  const auto tiny = load_task("tiny_qa", kProtocolLlmKick, dir);
  CHECK(tiny.file == (dir / "tiny_qa.yaml").string());
  CHECK(tiny.metrics == std::vector<std::string>{"factoid_match_llmkick"});
  kick::test::require_error([&] { load_task("unknown_metric", kProtocolStrict, dir); },
                {(dir / "unknown_metric.yaml").string() + ":16", "metrics[0]", "unknown metric 'exact_match'"});
  kick::test::require_error([&] { load_task("misnamed", kProtocolStrict, dir); }, {"misnamed.yaml", "name", "'tiny_qa'"});
  kick::test::require_error([&] { load_task("tiny", kProtocolStrict, dir); },
                {"unknown task 'tiny'", "misnamed, tiny_qa, unknown_metric", dir.string()});
  kick::test::require_error([&] { load_task("factoid", kProtocolStrict); }, {"unknown task 'factoid'", "factoid_qa", "mmlu"});
  kick::test::require_error([&] { task_names(dir / "nowhere"); }, {"nowhere", "KICK_TASKS"});

  const std::string previous = std::getenv("KICK_TASKS") ? std::getenv("KICK_TASKS") : "";
  ::setenv("KICK_TASKS", dir.c_str(), 1);
  CHECK(tasks_dir() == dir);
  CHECK(task_names().size() == 3);
  if (previous.empty())
    ::unsetenv("KICK_TASKS");
  else
    ::setenv("KICK_TASKS", previous.c_str(), 1);
  CHECK(fs::exists(tasks_dir() / "mmlu.yaml"));
}

TEST_CASE("TaskSpec accessors name the task file", "[eval-tasks]") {
  TaskSpec spec = parse_task_spec(kTinyTask, "tiny.yaml", kProtocolStrict);
  kick::test::require_error([&] { spec.data_file("evidence"); }, {"tiny.yaml", "paths.evidence", "not set"});
  kick::test::require_error([&] { spec.template_text("header"); }, {"tiny.yaml", "prompt.header", "not set"});
  spec.paths["data"] = "no/such/file.gz";
  kick::test::require_error([&] { spec.data_file("data"); }, {"tiny.yaml", "paths.data", "no/such/file.gz", "does not exist"});
  spec.paths["data"] = (kick::data_root() / "retrieval_qa" / "nq-open-oracle.jsonl.gz").string();  // absolute
  CHECK(spec.data_file("data") == kick::data_root() / "retrieval_qa" / "nq-open-oracle.jsonl.gz");
  spec.options["buckets"] = {"small", "mid"};
  kick::test::require_error([&] { spec.option("buckets", ""); }, {"tiny.yaml", "options.buckets", "one value, got 2"});
  spec.options["strip_prompt"] = {"perhaps"};
  kick::test::require_error([&] { spec.option_flag("strip_prompt", false); }, {"tiny.yaml", "options.strip_prompt", "perhaps"});
  CHECK(spec.option("absent", "fallback") == "fallback");
  CHECK(spec.option_flag("absent", true));
}

TEST_CASE("the loader and metric registries", "[eval-tasks]") {
  for (const std::string name :
       {"freebaseqa", "nq_open", "triviaqa_rc", "mmlu", "cnn_dailymail", "vicuna80", "mt_bench", "text"})
    CHECK(is_known_loader(name));
  CHECK(!is_known_loader("wikitext3"));

  const auto names = metric_names();
  CHECK(std::set<std::string>(names.begin(), names.end()).size() == names.size());
  for (const auto& name : names) {
    const auto& info = metric(name);
    INFO(name);
    CHECK(info.name == name);
    CHECK(!info.description.empty());
    CHECK((info.kind == "text" || info.kind == "choice" || info.kind == "judge" || info.kind == "perplexity"));
    CHECK(static_cast<bool>(info.fn) == (info.kind == "text"));
  }
  kick::test::require_error([] { metric("bleu"); }, {"unknown metric 'bleu'", "rougeL"});

  auto score = [](const std::string& name, const std::string& prediction, const std::vector<std::string>& refs) {
    return metric(name).fn(prediction, refs);
  };
  // LLM-KICK's factoid match: spaces removed, case folded, substring of prompt + generation.
  CHECK(score("factoid_match_llmkick", "Q: which country? The answer is GhaNa.", {"gha na"}) == 1.0);
  CHECK(score("factoid_match_llmkick", "The answer is Togo", {"ghana"}) == 0.0);
  CHECK(score("factoid_match", "The answer is Ghana.", {"ghana"}) == 1.0);
  CHECK(score("factoid_match", "Ghanaian", {"ghana"}) == 0.0);
  CHECK(score("factoid_em", "the Ghana", {"ghana", "x"}) == 1.0);
  CHECK(score("factoid_f1", "republic of ghana", {"ghana"}) == Approx(0.5));
  // An empty answer: contained in every gold under LLM-KICK's EM, never credited by strict EM.
  CHECK(score("retrieval_em_llmkick", "", {"Paris"}) == 1.0);
  CHECK(score("retrieval_em", "", {"Paris"}) == 0.0);
  CHECK(score("retrieval_em_llmkick", "It is Paris, France", {"paris"}) == 1.0);
  CHECK(score("retrieval_em", "paris!", {"Paris"}) == 1.0);
  CHECK(score("retrieval_f1", "in paris", {"Paris"}) == Approx(2.0 / 3.0));
  CHECK(score("rouge1", "the cat sat", {"the cat sat"}) == Approx(1.0));
  CHECK(score("rouge2", "cat sat down", {"the cat sat"}) == Approx(0.5));
  CHECK(score("rougeL", "dogs run", {"the cat sat"}) == 0.0);
  CHECK(score("mmlu_accuracy_llmkick", " B", {"B"}) == 1.0);
  CHECK(score("mmlu_accuracy_llmkick", " B.", {"B"}) == 0.0);  // the last character decides
  CHECK(score("mmlu_accuracy", " b)", {"B"}) == 1.0);
  kick::test::require_error([&] { score("mmlu_accuracy", "B", {}); }, {"mmlu_accuracy", "reference letter"});
}

TEST_CASE("render_template: variables, escaped braces, errors", "[eval-tasks]") {
  const std::map<std::string, std::string> vars = {{"question", "What is {x}?"}, {"n", "3"}};
  CHECK(render_template("Q: {question}\nA:", vars) == "Q: What is {x}?\nA:");  // values are not re-read
  CHECK(render_template("{{literal}} {n}}} {{{n}", vars) == "{literal} 3} {3");
  CHECK(render_template("", vars).empty());
  CHECK(render_template("no variables", {}) == "no variables");
  kick::test::require_error([&] { render_template("{answer}", vars, "mmlu.yaml: prompt.header"); },
                {"mmlu.yaml: prompt.header", "unknown variable {answer}", "{n}, {question}"});
  kick::test::require_error([&] { render_template("a } b", vars); }, {"template", "single '}'"});
  kick::test::require_error([&] { render_template("a { b", vars); }, {"never closed"});
  kick::test::require_error([&] { render_template("{1x}", vars); }, {"'{1x}'", "not a variable name"});
  kick::test::require_error([&] { render_template("{}", vars); }, {"not a variable name"});
}

TEST_CASE("utf8_prefix counts code points as Python slicing does", "[eval-tasks]") {
  const std::string text = "h\xC3\xA9llo \xE6\x9D\xB1\xE4\xBA\xAC \xF0\x9F\x98\x80!";  // "héllo 東京 😀!"
  CHECK(utf8_prefix(text, 0).empty());
  CHECK(utf8_prefix(text, 2) == "h\xC3\xA9");
  CHECK(utf8_prefix(text, 7) == "h\xC3\xA9llo \xE6\x9D\xB1");
  CHECK(utf8_prefix(text, 10) == "h\xC3\xA9llo \xE6\x9D\xB1\xE4\xBA\xAC \xF0\x9F\x98\x80");
  CHECK(utf8_prefix(text, 11) == text);
  CHECK(utf8_prefix(text, 100) == text);
  CHECK(utf8_prefix("", 3).empty());
}

TEST_CASE("MMLU prompts: exact text, the double-space subject, shot dropping", "[eval-tasks]") {
  const auto shot1 = make_mmlu("abstract_algebra", "Find 2 + 2.", {"1", "2", "3", "4"}, 'D');
  const auto shot2 = make_mmlu("abstract_algebra", "Is Z a group?", {"Yes", "No", "Only finite", "Never"}, 'A');
  const auto question = make_mmlu("abstract_algebra", "Order of S_3?", {"2", "3", "6", "9"}, 'C');
  CHECK(mmlu_format_example(shot1, true) == "Find 2 + 2.\nA. 1\nB. 2\nC. 3\nD. 4\nAnswer: D\n\n");
  CHECK(mmlu_format_example(question, false) == "Order of S_3?\nA. 2\nB. 3\nC. 6\nD. 9\nAnswer:");
  CHECK(mmlu_subject_text("abstract_algebra", true) == " abstract algebra");
  CHECK(mmlu_subject_text("abstract_algebra", false) == "abstract algebra");
  CHECK(mmlu_subject_text("virology", true) == " virology");
  CHECK(mmlu_subject_text("virology", false) == "virology");

  const std::string header = "The following are multiple choice questions (with answers) about {subject}.\n\n";
  const std::string head = "The following are multiple choice questions (with answers) about  abstract algebra.\n\n";
  const std::string tail = "Order of S_3?\nA. 2\nB. 3\nC. 6\nD. 9\nAnswer:";
  const std::string both =
      "Find 2 + 2.\nA. 1\nB. 2\nC. 3\nD. 4\nAnswer: D\n\n"
      "Is Z a group?\nA. Yes\nB. No\nC. Only finite\nD. Never\nAnswer: A\n\n";
  auto p = mmlu_prompt(header, " abstract algebra", {shot1, shot2}, question, 5);
  CHECK(p.text == head + both + tail);
  CHECK(p.shots == 2);
  CHECK(p.fits);
  CHECK(mmlu_prompt(header, " abstract algebra", {shot1, shot2}, question, 1).text ==
        head + "Find 2 + 2.\nA. 1\nB. 2\nC. 3\nD. 4\nAnswer: D\n\n" + tail);

  // A counter of bytes: the budget drops the LAST shot first, then the next.
  const TokenCounter bytes = [](const std::string& s) { return s.size(); };
  const std::string one_shot = head + "Find 2 + 2.\nA. 1\nB. 2\nC. 3\nD. 4\nAnswer: D\n\n" + tail;
  p = mmlu_prompt(header, " abstract algebra", {shot1, shot2}, question, 5, static_cast<int64_t>(one_shot.size()),
                  bytes);
  CHECK(p.text == one_shot);
  CHECK(p.shots == 1);
  CHECK(p.fits);
  p = mmlu_prompt(header, " abstract algebra", {shot1, shot2}, question, 5, static_cast<int64_t>(one_shot.size() - 1),
                  bytes);
  CHECK(p.text == head + tail);
  CHECK(p.shots == 0);
  CHECK(p.fits);
  p = mmlu_prompt(header, " abstract algebra", {shot1, shot2}, question, 5, 10, bytes);
  CHECK(p.text == head + tail);
  CHECK(!p.fits);
  kick::test::require_error([&] { mmlu_prompt(header, "x", {shot1}, question, 5, 100); }, {"token counter"});

  // Through the shipped task: llm-kick keeps the double space, strict drops it.
  auto kick = load_task("mmlu", kProtocolLlmKick);
  auto strict = load_task("mmlu", kProtocolStrict);
  CHECK(render_mmlu_prompt(kick, {shot1, shot2}, question, bytes).text == head + both + tail);
  CHECK(render_mmlu_prompt(strict, {shot1, shot2}, question, bytes).text ==
        "The following are multiple choice questions (with answers) about abstract algebra.\n\n" + both + tail);
  kick.few_shot.max_prompt_tokens = static_cast<int64_t>(one_shot.size());
  CHECK(render_mmlu_prompt(kick, {shot1, shot2}, question, bytes).shots == 1);
  CHECK(references_for(kick, question) == std::vector<std::string>{"C"});
}

TEST_CASE("MMLU prompts match LLM-KICK's rendering (pandas) on fixture and real CSVs", "[eval-tasks]") {
  const TokenCounter counter = utf8_bytes_over_4;
  const std::string header = "The following are multiple choice questions (with answers) about {subject}.\n\n";
  for (const auto& [subject, expected] : reference().at("mmlu_subjects").items()) {
    CHECK(mmlu_subject_text(subject, true) == expected.get<std::string>());
  }
  CHECK(reference().at("mmlu_subjects").size() == mmlu_subjects().size());

  const auto fixture = load_mmlu(kick::test::fixture("eval/tasks/mmlu"));
  for (const auto& c : reference().at("mmlu_fixture")) {
    const std::string subject = c.at("subject");
    const auto& question = fixture.test.at(subject).at(c.at("question").get<size_t>());
    const auto p = mmlu_prompt(header, mmlu_subject_text(subject, true), fixture.dev.at(subject), question, 5,
                               c.at("budget").get<int64_t>(), counter);
    INFO(subject << " question " << c.at("question") << " budget " << c.at("budget"));
    CHECK(p.text == c.at("text").get<std::string>());
    CHECK(p.shots == c.at("shots").get<int>());
    CHECK(p.fits == c.at("fits").get<bool>());
  }

  const fs::path mmlu = kick::data_root() / "mmlu";
  for (const auto& c : reference().at("mmlu_real")) {
    const std::string subject = c.at("subject");
    const auto dev = load_mmlu_csv(mmlu / "dev" / (subject + "_dev.csv"), subject);
    const auto test = load_mmlu_csv(mmlu / "test" / (subject + "_test.csv"), subject);
    auto spec = load_task("mmlu", kProtocolLlmKick);
    spec.few_shot.max_prompt_tokens = c.at("budget").get<int64_t>();
    const auto p = render_mmlu_prompt(spec, dev, test.at(c.at("question").get<size_t>()), counter);
    INFO(subject << " question " << c.at("question") << " budget " << c.at("budget"));
    CHECK(p.text.size() == c.at("length").get<size_t>());
    CHECK(fnv1a64(p.text) == c.at("fnv").get<std::string>());
    CHECK(p.shots == c.at("shots").get<int>());
    CHECK(p.fits == c.at("fits").get<bool>());
  }
}

TEST_CASE("QA prompts match LLM-KICK's rendering", "[eval-tasks]") {
  const auto factoid_kick = load_task("factoid_qa", kProtocolLlmKick);
  const auto factoid_strict = load_task("factoid_qa", kProtocolStrict);
  for (const auto& c : reference().at("factoid")) {
    QaExample ex;
    ex.question = c.at("question");
    CHECK(render_qa_prompt(factoid_kick, ex) == c.at("prompt").get<std::string>());
    CHECK(render_qa_prompt(factoid_strict, ex) + " " == c.at("prompt").get<std::string>());
  }

  const auto open_kick = load_task("retrieval_qa", kProtocolLlmKick);
  const auto open_strict = load_task("retrieval_qa", kProtocolStrict);
  const auto closed_kick = load_task("retrieval_qa_closed_book", kProtocolLlmKick);
  const auto& hand = reference().at("retrieval_handmade");
  QaExample ex;
  ex.question = hand.at("question");
  ex.passages = {{"", hand.at("wiki"), "wikipedia"}, {"", hand.at("web"), "web"}};
  CHECK(render_qa_prompt(open_kick, ex) == hand.at("open_book").get<std::string>());
  CHECK(render_qa_prompt(closed_kick, ex) == hand.at("closed_book").get<std::string>());
  // strict separates the two passages; the cut is still 3072 code points of context.
  const std::string strict_prompt = render_qa_prompt(open_strict, ex);
  CHECK(strict_prompt != render_qa_prompt(open_kick, ex));
  const std::string wiki = hand.at("wiki").get<std::string>().substr(2);  // its two leading spaces stripped
  CHECK(strict_prompt.rfind(wiki + "\n\nnaïve café", 0) == 0);

  const auto nq = load_nq_open(kick::data_root() / "retrieval_qa" / "nq-open-oracle.jsonl.gz");
  for (const auto& c : reference().at("retrieval_nq")) {
    const auto& row = nq.at(c.at("row").get<size_t>());
    CHECK(row.question == c.at("question").get<std::string>());
    CHECK(render_qa_prompt(open_kick, row) == c.at("open_book").get<std::string>());
    CHECK(render_qa_prompt(closed_kick, row) == c.at("closed_book").get<std::string>());
  }
}

TEST_CASE("story_text and summary prompts under both protocols", "[eval-tasks]") {
  Story story;
  story.id = "hand";
  story.bucket = "small";
  story.lines = {"  First paragraph.  ",
                 "",
                 "Second\xC2\xA0paragraph.\t",
                 "",
                 "@highlight",
                 "",
                 "One point",
                 "",
                 "@highlight",
                 "",
                 "Two point"};
  story.paragraphs = {"First paragraph.", "Second\xC2\xA0paragraph."};
  story.highlights = {"One point", "Two point"};
  story.source = "hand.story";
  CHECK(story_text(story, true) == "First paragraph.Second\xC2\xA0paragraph.@highlightOne point@highlightTwo point");
  CHECK(story_text(story, false) == "First paragraph.\n\nSecond\xC2\xA0paragraph.");
  // Python's strip() removes Unicode whitespace at the ends of a line too (U+00A0, U+3000).
  story.lines = {"\xC2\xA0 x \xE3\x80\x80", "y"};
  CHECK(story_text(story, true) == "xy");

  const auto kick = load_task("summarization", kProtocolLlmKick);
  const auto strict = load_task("summarization", kProtocolStrict);
  const auto stories = std::get<std::vector<Story>>(load_task_data(kick));
  const auto& expected = reference().at("stories");
  REQUIRE(stories.size() == expected.size());
  for (size_t i = 0; i < stories.size(); ++i) {
    const auto& s = stories[i];
    INFO(s.bucket << "/" << s.id);
    REQUIRE(s.bucket == expected[i].at("bucket").get<std::string>());
    REQUIRE(s.id == expected[i].at("id").get<std::string>());
    const std::string prompt = render_summary_prompt(kick, s);
    CHECK(prompt.size() == expected[i].at("length").get<size_t>());
    CHECK(fnv1a64(prompt) == expected[i].at("fnv").get<std::string>());
    CHECK(prompt.find("@highlight") != std::string::npos);

    const std::string clean = render_summary_prompt(strict, s);
    CHECK(clean.rfind("Summarize the given news in less than 150 words", 0) == 0);
    CHECK(clean.find("@highlight") == std::string::npos);
    CHECK(clean.find(s.paragraphs.front()) != std::string::npos);
    CHECK(clean.find(s.paragraphs.back()) != std::string::npos);
    CHECK(references_for(strict, s) == references_for(kick, s));
    CHECK(references_for(kick, s).at(0).find(s.highlights.back()) != std::string::npos);
  }
  CHECK(render_summary_prompt(kick, stories.front()).rfind("Summarize the given story", 0) == 0);
  CHECK(render_summary_prompt(kick, stories.back()).rfind("Summarize the given news", 0) == 0);

  // Two prompts LLM-KICK released (json_utils/new_question.jsonl) are rendered byte for byte.
  std::ifstream excerpt(kick::test::fixture("eval/tasks/llmkick_new_question_excerpt.jsonl"));
  std::string line;
  int matched = 0;
  while (std::getline(excerpt, line)) {
    const auto released = json::parse(line).at("text").get<std::string>();
    bool found = false;
    for (const auto& s : stories)
      if (s.bucket == "small" && render_summary_prompt(kick, s) == released) found = true;
    CHECK(found);
    matched += found;
  }
  CHECK(matched == 2);
}

TEST_CASE("instruction prompts and references_for", "[eval-tasks]") {
  const auto spec = load_task("mt_bench", kProtocolStrict);
  Instruction ins;
  ins.turns = {"Write a haiku about {braces}.", "Now in French."};
  ins.source = "mt_bench.jsonl:1";
  CHECK(render_instruction_prompt(spec, ins) == "Write a haiku about {braces}.");
  CHECK(render_instruction_prompt(spec, ins, 1) == "Now in French.");
  kick::test::require_error([&] { render_instruction_prompt(spec, ins, 2); }, {"mt_bench.jsonl:1", "turn 3", "2 turn"});

  QaExample ex;
  ex.answers = {"Ghana", "Republic of Ghana"};
  ex.reference_answers = {"Ghana"};
  ex.source = "eval.txt:7";
  auto kick = load_task("factoid_qa", kProtocolLlmKick);
  const auto strict = load_task("factoid_qa", kProtocolStrict);
  CHECK(references_for(kick, ex) == std::vector<std::string>{"Ghana"});
  CHECK(references_for(strict, ex) == ex.answers);
  kick.options.erase("references");  // the protocol's default
  CHECK(references_for(kick, ex) == std::vector<std::string>{"Ghana"});
  ex.reference_answers.clear();
  kick::test::require_error([&] { references_for(kick, ex); }, {"eval.txt:7", "reference_answers"});

  Story story;
  story.highlights = {"First.", "Second."};
  CHECK(references_for(strict, story) == std::vector<std::string>{"First.\nSecond."});
  story.highlights.clear();
  story.source = "x.story";
  kick::test::require_error([&] { references_for(strict, story); }, {"x.story", "@highlight"});
}
