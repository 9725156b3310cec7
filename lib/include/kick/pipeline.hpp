// kick/pipeline.hpp: compress-then-evaluate experiments (data/experiments/*.yaml) expanded into cells, the
// content keys that let a sweep reuse what it made, and the paper-style report (Markdown tables and a
// self-contained HTML page with SVG charts) built from a sweep's results folder. No process handling here:
// `kick sweep` (apps/cmd_sweep.cpp) runs the cells.
#pragma once

#include <nlohmann/json.hpp>

#include <cstdint>
#include <filesystem>
#include <string>
#include <vector>

namespace kick::pipeline {

// One model of the grid: the dense model, or one compression setting of it.
struct Variant {
  std::string label;     // "dense", "wanda 50%", "sparsegpt 2:4", "gptq w8g128"
  std::string method;    // "dense" or a kick compress method
  double sparsity = 0;   // unstructured ratio (0 when none)
  std::string pattern;   // "2:4" ... or empty
  int bits = 0;          // quantization bits (0 when none)
  int64_t group_size = 0;
  std::vector<std::string> compress_args;  // `kick compress` arguments besides -m/-o (empty for dense)
  std::string key;       // content key (see assign_keys); names the variant's folders
  nlohmann::json to_json() const;
};

// One evaluation of every variant: a task under a protocol, on the first `limit` examples.
struct TaskCell {
  std::string task;
  std::string protocol = "llm-kick";
  int64_t limit = 0;
  int64_t batch_size = 8;
  std::string metric;    // the headline metric in the tables; empty: chosen by headline_metric()
  nlohmann::json to_json() const;
};

struct Experiment {
  std::string name, description, model, file;
  std::string device = "cpu", dtype = "fp32";  // passed to every kick compress / kick evaluate job
  int version = 1;
  int64_t nsamples = 128, seqlen = 2048;  // calibration windows for the methods that need them
  uint64_t calibration_seed = 0;
  std::string calibration_source;         // empty: kick compress's default
  std::vector<Variant> variants;          // dense first when the experiment has it
  std::vector<TaskCell> tasks;
  std::vector<uint64_t> seeds{0};
};

// Parses and expands an experiment file: grid entries are {method, sparsity: [..], pattern: [..], bits: [..],
// group_size}, every combination becoming one variant. Unknown keys, unknown methods, empty grids, bad
// values: kick::Error naming the file and the key.
Experiment parse_experiment(const std::string& yaml_text, const std::string& file);
Experiment load_experiment(const std::filesystem::path& path);

// Sets every variant's key to FNV-1a 64 of (the model's content hash, the compress arguments): the same
// model compressed the same way has the same key, so a sweep (or another experiment) reuses the folder.
void assign_keys(Experiment& experiment, const std::string& model_content_hash);

// Where a sweep keeps things under its output folder.
std::filesystem::path variant_model_dir(const std::filesystem::path& out, const Variant& v);  // out/models/<key>
std::filesystem::path variant_eval_dir(const std::filesystem::path& out, const Variant& v);   // out/evals/<key>
std::filesystem::path cell_summary_path(const std::filesystem::path& out, const Variant& v, const TaskCell& t);
// sweep.json: the experiment as run (variants with keys, tasks, seeds), what `kick report` reads.
nlohmann::json sweep_manifest(const Experiment& experiment);

// ---------------------------------------------------------------------------------------------- report

// The metric a table shows for a task's summary: the cell's own choice, else "perplexity", "accuracy", the
// task file's first metric the summary holds, or the summary's first. Lower is better only for perplexity.
std::string headline_metric(const TaskCell& cell, const nlohmann::json& summary);
bool lower_is_better(const std::string& metric);
// "Matching" the dense model: within 5% of it (relative), in the metric's better direction or ahead.
bool matches_dense(double value, double dense, const std::string& metric, double tolerance = 0.05);

struct ReportCell {
  std::string variant_label, variant_key, task, protocol, metric;
  bool present = false;   // a summary.json exists
  double mean = 0, stdev = 0;
  int64_t examples = 0, failed = 0;
};

struct ReportData {
  nlohmann::json manifest;            // sweep.json
  std::vector<Variant> variants;
  std::vector<TaskCell> tasks;
  std::vector<ReportCell> cells;      // variants x tasks, in that order
  const ReportCell* find(const std::string& key, const TaskCell& task) const;
};

// Reads sweep.json and every cell's summary.json under a sweep's output folder (missing cells are kept as
// absent, so a partial sweep still reports).
ReportData collect_report(const std::filesystem::path& sweep_dir);
// Markdown: per task, a table of methods (rows) x settings (columns) with the dense baseline, matching
// cells marked; then a long table of every cell.
std::string report_markdown(const ReportData& data);
// One self-contained HTML page (inline CSS and SVG, no script, no network): per task, metric against
// sparsity per method with the dense line and the 5% band; and perplexity against each task's metric.
std::string report_html(const ReportData& data);

}  // namespace kick::pipeline
