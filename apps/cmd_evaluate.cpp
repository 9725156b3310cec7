// kick evaluate: runs LLM-KICK tasks (data/tasks/*.yaml) against a model, resuming from the per-example logs
// in the output folder, and prints a Markdown table of the summaries. Exit status 3 when any example failed.
#include <cstdio>
#include <sstream>

#include "common.hpp"
#include "kick/evaluate.hpp"
#include "kick/judge.hpp"

namespace kick::app {

namespace {

std::vector<std::string> split_list(const std::string& text) {
  std::vector<std::string> out;
  std::stringstream stream(text);
  for (std::string item; std::getline(stream, item, ',');) {
    if (!item.empty()) out.push_back(item);
  }
  return out;
}

}  // namespace

void register_evaluate(CLI::App& app) {
  auto* cmd = app.add_subcommand("evaluate", "run LLM-KICK tasks on a model; resumable, results as JSONL + summary.json");
  struct Args {
    ModelArgs model;
    std::string tasks, protocol = eval::kProtocolLlmKick, seeds, out;
    int64_t limit = 0, batch_size = 8;
    std::string judge_url, judge_name = "gpt-4", judge_key_env, judge_local, judge_reference;
    bool judge_against_references = false;
    int64_t judge_max_tokens = 1024;
    size_t judge_concurrency = 4;
  };
  auto args = std::make_shared<Args>();
  add_model_options(*cmd, args->model);
  cmd->add_option("--task", args->tasks, "comma-separated task names (see --list-tasks)")->required();
  cmd->add_option("--protocol", args->protocol, "llm-kick (what the paper's code does) or strict")
      ->check(CLI::IsMember({eval::kProtocolLlmKick, eval::kProtocolStrict}))
      ->capture_default_str();
  cmd->add_option("--limit", args->limit, "first N examples (MMLU: per subject; perplexity: windows); 0 = all")
      ->capture_default_str();
  cmd->add_option("--seeds", args->seeds, "comma-separated sampling seeds (default: the task's; greedy tasks run once)");
  cmd->add_option("--batch-size", args->batch_size, "rows per generation/scoring batch")->capture_default_str();
  cmd->add_option("-o,--out", args->out, "results folder (an existing one is resumed)")->required();
  cmd->add_option("--judge-url", args->judge_url, "OpenAI-compatible base URL of the judge, e.g. http://127.0.0.1:8080/v1");
  cmd->add_option("--judge-name", args->judge_name, "model name sent to the judge endpoint")->capture_default_str();
  cmd->add_option("--judge-key-env", args->judge_key_env, "environment variable holding the judge's API key");
  cmd->add_option("--judge-local", args->judge_local, "judge with a model kick loads, in process (instead of --judge-url)");
  cmd->add_flag("--judge-against-references", args->judge_against_references,
               "pairwise judges compare with the data set's own reference answer (CNN/DailyMail highlights), not a reference run");
  cmd->add_option("--judge-max-tokens", args->judge_max_tokens, "the judge's reply budget")->capture_default_str();
  cmd->add_option("--judge-reference", args->judge_reference,
                  "results folder of the reference model (answer 1 of LLM-KICK's pairwise judges), e.g. the dense run");
  cmd->add_option("--judge-concurrency", args->judge_concurrency, "judge requests in flight")->capture_default_str();
  cmd->callback([args] {
    eval::RunOptions options;
    options.limit = args->limit;
    options.batch_size = args->batch_size;
    options.out_dir = args->out;
    options.seeds.clear();
    for (const auto& s : split_list(args->seeds)) {
      try {
        options.seeds.push_back(std::stoull(s));
      } catch (const std::exception&) {
        fail("--seeds: \"{}\" is not a non-negative integer", s);
      }
    }
    if (args->limit < 0) fail("--limit: expected >= 0, got {}", args->limit);
    if (args->batch_size < 1) fail("--batch-size: expected >= 1, got {}", args->batch_size);
    if (args->judge_max_tokens < 1) fail("--judge-max-tokens: expected >= 1, got {}", args->judge_max_tokens);
    if (args->judge_against_references && !args->judge_reference.empty()) {
      fail("--judge-against-references and --judge-reference: give one reference");
    }
    // Every task file is read before the model loads, so a typo costs nothing.
    std::vector<eval::TaskSpec> specs;
    for (const auto& name : split_list(args->tasks)) specs.push_back(eval::load_task(name, args->protocol));
    if (specs.empty()) fail("--task: no task named");
    if (!args->judge_url.empty() && !args->judge_local.empty()) fail("--judge-url and --judge-local: give one judge");
    const bool judged = !args->judge_url.empty() || !args->judge_local.empty();
    for (const auto& spec : specs) {
      for (const auto& m : spec.metrics) {
        if (judged && args->judge_reference.empty() && !args->judge_against_references &&
            (m == "judge_pairwise_llmkick" || m == "judge_summary_aspects")) {
          fail("--judge-reference: {} ({}) compares against a reference run's answers; give that run's folder "
               "(or --judge-against-references)", m, spec.name);
        }
      }
    }
    Model model = load_model(args->model);
    std::optional<Model> judge_model;
    std::unique_ptr<eval::Judge> judge;
    if (!args->judge_url.empty()) {
      eval::HttpJudgeOptions judge_options;
      judge_options.base_url = args->judge_url;
      judge_options.model = args->judge_name;
      judge_options.api_key_env = args->judge_key_env;
      judge_options.max_tokens = args->judge_max_tokens;
      judge = eval::make_http_judge(judge_options);
    } else if (!args->judge_local.empty()) {
      ModelArgs judge_args = args->model;
      judge_args.model = args->judge_local;
      judge_args.tokenizer.clear();
      judge_model.emplace(load_model(judge_args));
      eval::LocalJudgeOptions local_options;
      local_options.max_tokens = args->judge_max_tokens;
      judge = eval::make_local_judge(*judge_model, local_options);
    }
    options.judge = judge.get();
    options.judge_reference = args->judge_reference;
    options.judge_against_references = args->judge_against_references;
    options.judge_concurrency = args->judge_concurrency;
    const nlohmann::json provenance = {{"model", eval::model_provenance(model, args->model.model)}};
    std::vector<eval::TaskSummary> summaries;
    for (const auto& spec : specs) {
      summaries.push_back(eval::evaluate_task(model, spec, options, provenance));
      const auto& s = summaries.back();
      std::fprintf(stderr, "kick: %s (%s): %lld examples (%lld resumed) in %s -> %s\n", s.task.c_str(), s.protocol.c_str(),
                   (long long)s.examples, (long long)s.resumed, format_duration(s.seconds).c_str(),
                   (std::filesystem::path(args->out) / (s.task + "." + s.protocol)).c_str());
    }
    std::printf("%s", eval::summaries_markdown(summaries).c_str());
    std::fflush(stdout);
    int64_t failed = 0;
    for (const auto& s : summaries) failed += s.failed;
    if (failed > 0) {
      std::fprintf(stderr, "kick: %lld examples failed; see the JSONL logs\n", (long long)failed);
      throw CLI::RuntimeError(3);
    }
  });
}

}  // namespace kick::app
