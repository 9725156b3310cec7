// kick/evaluate.hpp: running a task (kick/eval.hpp) against a loaded model (kick/model.hpp): the batched
// runner per task kind (MMLU with a shared few-shot KV prefix, generation tasks, perplexity), the per-example
// JSONL log that makes runs resumable, and the summary (mean and standard deviation over seeds, provenance).
#pragma once

#include <nlohmann/json.hpp>

#include <cstdint>
#include <filesystem>
#include <array>
#include <map>
#include <string>
#include <vector>

#include "kick/eval.hpp"
#include "kick/model.hpp"

namespace kick::eval {

// Per-example results, one JSON object per line, appended and flushed as batches finish. Opening an existing
// log keeps its complete lines and drops a torn last line (a run killed mid-write), so a resumed run redoes
// exactly the examples that have no line.
class ResultsLog {
 public:
  explicit ResultsLog(std::filesystem::path path);
  bool has(const std::string& id) const { return records_.count(id) > 0; }
  const std::map<std::string, nlohmann::json>& records() const { return records_; }
  size_t resumed() const { return resumed_; }
  // Appends records (each must carry a string "id") not yet present; flushes before returning.
  void append(const std::vector<nlohmann::json>& records);
  const std::filesystem::path& path() const { return path_; }

 private:
  std::filesystem::path path_;
  std::map<std::string, nlohmann::json> records_;
  size_t resumed_ = 0;
};

class Judge;

struct RunOptions {
  int64_t limit = 0;                 // the first N examples in the data's order (0: all)
  std::vector<uint64_t> seeds{0};    // sampled tasks run once per seed; greedy tasks once
  int64_t batch_size = 8;            // rows per generation / scoring batch
  std::filesystem::path out_dir;     // results land in out_dir/<task>.<protocol>/
  // Judged tasks (summarization, instruction following): LLM-KICK's judges compare a reference answer (answer 1,
  // e.g. the dense model's, read from judge_reference/<task>.<protocol>/seed<S>.jsonl of an earlier run) with this
  // model's (answer 2). Without a judge, judge metrics are skipped and the summary says so.
  Judge* judge = nullptr;
  std::filesystem::path judge_reference;
  // Instead of a reference run: answer 1 is the data set's own reference (CNN/DailyMail's highlights joined by
  // newlines), for when no reference model's answers exist (LLM-KICK's were GPT-3.5's, not shipped).
  bool judge_against_references = false;
  size_t judge_concurrency = 4;
};

struct MetricSummary {
  double mean = 0, stdev = 0;        // over seeds (stdev 0 for a single seed)
  std::vector<double> per_seed;      // each seed's mean over examples
  int64_t examples = 0;              // scored examples per seed
};

struct TaskSummary {
  std::string task, protocol;
  int version = 0;
  std::map<std::string, MetricSummary> metrics;
  std::vector<uint64_t> seeds;
  int64_t examples = 0;   // examples per seed
  int64_t failed = 0;     // examples that could not be scored (e.g. judge failures), all seeds
  int64_t resumed = 0;    // examples read back from an earlier run's log
  double seconds = 0;
  nlohmann::json details;  // task-specific breakdowns (MMLU per subject/category)
  nlohmann::json to_json() const;
};

// Runs one task for every seed, resuming from the logs in out_dir, and writes summary.json there
// (atomically) with the provenance given in `provenance` (model, compression, tool version ...).
TaskSummary evaluate_task(const Model& model, const TaskSpec& spec, const RunOptions& options,
                          const nlohmann::json& provenance = nlohmann::json::object());

// What a results file says about the model: its path, content hash, and compression.json when the model is
// a folder that has one.
nlohmann::json model_provenance(const Model& model, const std::string& model_path);

// A Markdown table: task | protocol | metric | mean | stdev | n.
std::string summaries_markdown(const std::vector<TaskSummary>& summaries);

// The few-shot MMLU scorer on its own (used by evaluate_task): letter predictions for `questions` of one
// subject sharing `shots`, reusing the KV cache of the common prefix. Exposed for tests and benchmarks.
struct MmluPrediction {
  char predicted = 0;              // 'A'..'D', or 0 when the llm-kick rule finds no letter
  std::array<double, 4> logprobs{};  // log-probabilities of " A".." D" after the prompt
  int shots = 0;
  bool prefix_reused = false;
};
// The subject's first few_shot.k dev rows (none when the subject has no dev file).
std::vector<MmluExample> mmlu_subject_shots(const TaskSpec& spec, const MmluData& data, const std::string& subject);
std::vector<MmluPrediction> score_mmlu_subject(const Model& model, const TaskSpec& spec,
                                               const std::vector<MmluExample>& shots,
                                               const std::vector<MmluExample>& questions, int64_t batch_size,
                                               bool reuse_prefix = true);
// The naive reference, LLM-KICK's own way: each question's whole prompt alone, batch 1, nothing shared. llm-kick:
// one greedy token through generate() and its letter (logprobs are left 0); strict: the whole prompt's
// next-token log-probabilities of " A".." D". Same prompts as score_mmlu_subject.
std::vector<MmluPrediction> score_mmlu_subject_per_question(const Model& model, const TaskSpec& spec,
                                                            const std::vector<MmluExample>& shots,
                                                            const std::vector<MmluExample>& questions);

}  // namespace kick::eval
