// Tests of lib/pipeline: experiment files expanded into variants and cells (and refused with the file and key
// when wrong), content keys, and the report's tables and HTML against hand-made summaries.
#include <catch2/catch.hpp>
#include <nlohmann/json.hpp>

#include <fstream>

#include "kick/core.hpp"
#include "kick/pipeline.hpp"
#include "test_helpers.hpp"

using namespace kick;
using nlohmann::json;

namespace {

const std::string kExperiment = R"(name: grid
model: stories260K
calibration: {nsamples: 4, seqlen: 64, seed: 3}
grid:
  - {method: wanda, sparsity: [0.5, 0.1], pattern: ["2:4"]}
  - {method: magnitude, sparsity: 0.3}
  - {method: gptq, bits: [8, 4], group_size: 64, args: ["--act-order"]}
tasks:
  - {task: perplexity, protocol: strict, limit: 2}
  - {task: mmlu, limit: 5, batch_size: 4}
seeds: [0, 1]
)";

void write(const std::filesystem::path& path, const std::string& text) {
  std::filesystem::create_directories(path.parent_path());
  std::ofstream(path) << text;
}

}  // namespace

TEST_CASE("experiments expand into variants with kick compress arguments and task cells", "[pipeline]") {
  auto x = pipeline::parse_experiment(kExperiment, "grid.yaml");
  REQUIRE(x.variants.size() == 7);  // dense, wanda 50% / 10% / 2:4, magnitude 30%, gptq w8 / w4
  CHECK(x.variants[0].label == "dense");
  CHECK(x.variants[0].compress_args.empty());
  CHECK(x.variants[1].label == "wanda 50%");
  CHECK(x.variants[1].compress_args ==
        std::vector<std::string>{"--method", "wanda", "--sparsity", "0.5", "--nsamples", "4", "--seqlen", "64", "--seed", "3"});
  CHECK(x.variants[3].label == "wanda 2:4");
  CHECK(x.variants[3].sparsity == 0.5);
  CHECK(x.variants[4].compress_args == std::vector<std::string>{"--method", "magnitude", "--sparsity", "0.3"});  // no calibration
  CHECK(x.variants[5].label == "gptq w8g64 --act-order");
  CHECK(x.variants[6].bits == 4);
  REQUIRE(x.tasks.size() == 2);
  CHECK(x.tasks[1].protocol == "llm-kick");
  CHECK(x.tasks[1].batch_size == 4);
  CHECK(x.seeds == std::vector<uint64_t>{0, 1});
  CHECK(x.device == "cpu");
  CHECK(x.dtype == "fp32");
  const auto gpu = pipeline::parse_experiment("device: cuda\ndtype: fp16\n" + kExperiment, "gpu.yaml");
  CHECK(gpu.device == "cuda");
  CHECK(pipeline::sweep_manifest(gpu)["dtype"] == "fp16");

  pipeline::assign_keys(x, "abc");
  auto again = pipeline::parse_experiment(kExperiment, "elsewhere.yaml");
  pipeline::assign_keys(again, "abc");
  for (size_t i = 0; i < x.variants.size(); ++i) CHECK(x.variants[i].key == again.variants[i].key);  // same content, same key
  pipeline::assign_keys(again, "abd");
  CHECK(x.variants[1].key != again.variants[1].key);  // another model, another key
  CHECK(x.variants[0].key.rfind("dense-", 0) == 0);
  const auto manifest = pipeline::sweep_manifest(x);
  CHECK(manifest["variants"].size() == 7);
  CHECK(manifest["tasks"][0]["task"] == "perplexity");
}

TEST_CASE("bad experiment files are refused with the file and the key", "[pipeline]") {
  const std::string tasks = "tasks:\n  - {task: perplexity}\n";
  auto bad = [&](const std::string& yaml, const std::vector<std::string>& words) {
    test::require_error([&] { pipeline::parse_experiment(yaml, "x.yaml"); }, words);
  };
  bad("model: m\n" + tasks, {"x.yaml", "name: required"});
  bad("name: n\nmodel: m\ncolour: red\n" + tasks, {"x.yaml", "unknown key 'colour'"});
  bad("name: n\nmodel: m\ngrid:\n  - {method: wanda, sparsity: [1.5]}\n" + tasks, {"grid[0]", "sparsity: 1.5 is outside (0, 1)"});
  bad("name: n\nmodel: m\ngrid:\n  - {method: wanda, pattern: [\"4:2\"]}\n" + tasks, {"grid[0]", "'4:2'"});
  bad("name: n\nmodel: m\ngrid:\n  - {method: wanda}\n" + tasks, {"grid[0]", "needs sparsity and/or pattern"});
  bad("name: n\nmodel: m\ngrid:\n  - {method: gptq, bits: [9]}\n" + tasks, {"grid[0]", "bits: 9 is outside 2..8"});
  bad("name: n\nmodel: m\ngrid:\n  - {method: gptq, sparsity: 0.5, bits: 4}\n" + tasks, {"grid[0]", "quantization method"});
  bad("name: n\nmodel: m\ngrid:\n  - {method: wanda, sparsity: [0.5, 0.5]}\n" + tasks, {"'wanda 50%' appears twice"});
  bad("name: n\nmodel: m\ntasks: []\n", {"tasks: expected a non-empty list"});
  bad("name: n\nmodel: m\ntasks:\n  - {task: mmlu, protocol: loose}\n", {"tasks[0]", "'loose'"});
  bad("name: n\nmodel: m\ndense: false\n" + tasks, {"no variants"});
  bad("name: [unclosed\n", {"x.yaml:"});
  // Found by fuzzing: a name that is not UTF-8 parsed, then broke sweep.json's writer with a bare JSON error.
  bad("name: n\xffo\nmodel: m\n" + tasks, {"x.yaml", "not UTF-8 text", "0xFF", "offset 7"});
  bad("name: n\nmodel: m\ngrid:\n  - {method: wanda,[\"2:4\"]}\n" + tasks, {"grid[0]", "a list used as a key"});
  bad("name: \"n\\_\"\nmodel: m\n" + tasks, {"x.yaml:1", "not UTF-8"});  // yaml-cpp decodes \_ (U+00A0) to one raw byte
  bad("name: n\nmodel: m\ngrid:\n  - {method: [wanda], sparsity: 0.5}\n" + tasks, {"grid[0]"});
}

TEST_CASE("the report's tables and charts carry the summaries' numbers, matching cells marked", "[pipeline]") {
  auto x = pipeline::parse_experiment(R"(name: report-test
model: stories260K
grid:
  - {method: magnitude, sparsity: [0.1, 0.5]}
  - {method: wanda, sparsity: [0.5], pattern: ["2:4"]}
tasks:
  - {task: perplexity, protocol: strict}
  - {task: factoid_qa, protocol: strict}
)", "r.yaml");
  pipeline::assign_keys(x, "hash");
  const auto dir = test::scratch_dir("pipeline_report");
  std::filesystem::remove_all(dir);
  write(dir / "sweep.json", pipeline::sweep_manifest(x).dump());
  // perplexity: dense 20, magnitude 10% 20.9 (within 5%), 50% 400; wanda 50% 40; wanda 2:4 missing.
  // factoid_qa: dense 0.30, magnitude 10% 0.29 (within 5%), 50% 0.01, wanda 50% 0.2.
  const std::vector<std::pair<double, double>> values = {{20, 0.30}, {20.9, 0.29}, {400, 0.01}, {40, 0.2}};
  for (size_t i = 0; i < values.size(); ++i) {
    const auto& v = x.variants[i];
    const json ppl = {{"metrics", {{"perplexity", {{"mean", values[i].first}, {"stdev", 0}, {"examples", 16}}}}}, {"failed", 0}};
    const json qa = {{"metrics", {{"factoid_em", {{"mean", 0.0}}}, {"factoid_match", {{"mean", values[i].second}, {"stdev", 0.01}, {"examples", 100}}}}},
                     {"failed", 1}};
    write(pipeline::cell_summary_path(dir, v, x.tasks[0]), ppl.dump());
    write(pipeline::cell_summary_path(dir, v, x.tasks[1]), qa.dump());
  }
  const auto data = pipeline::collect_report(dir);
  REQUIRE(data.cells.size() == 10);
  const auto* wanda24 = data.find(x.variants[4].key, x.tasks[0]);
  REQUIRE(wanda24);
  CHECK_FALSE(wanda24->present);
  const auto* qa_dense = data.find(x.variants[0].key, x.tasks[1]);
  REQUIRE(qa_dense);
  CHECK(qa_dense->metric == "factoid_match");  // the task file's first metric, not the summary's alphabetical first
  CHECK(qa_dense->mean == 0.30);

  const std::string md = pipeline::report_markdown(data);
  INFO(md);
  CHECK(md.find("| method | 10% | 50% | 2:4 |") != std::string::npos);
  CHECK(md.find("| magnitude | **20.9** | 400 |  |") != std::string::npos);
  CHECK(md.find("| wanda |  | 40 | … |") != std::string::npos);
  CHECK(md.find("| magnitude | **0.29** | 0.01 |  |") != std::string::npos);
  CHECK(md.find("Dense: 20\n") != std::string::npos);
  CHECK(md.find("| wanda 2:4 | perplexity | strict | | not run yet |") != std::string::npos);

  const std::string html = pipeline::report_html(data);
  CHECK(html.rfind("<!DOCTYPE html>", 0) == 0);
  CHECK(html.find("<script") == std::string::npos);
  // Self-contained: the only URL is the SVG namespace (an identifier, never fetched).
  auto count = [&](const std::string& needle) {
    size_t n = 0;
    for (size_t at = html.find(needle); at != std::string::npos; at = html.find(needle, at + 1)) ++n;
    return n;
  };
  CHECK(count("http") == count("xmlns=\"http://www.w3.org/2000/svg\""));
  CHECK(html.find("<svg") != std::string::npos);
  CHECK(html.find("factoid_qa against perplexity") != std::string::npos);
  CHECK(html.find("<td class=\"match\">20.9</td>") != std::string::npos);
  CHECK(html.find("<td>400</td>") != std::string::npos);

  CHECK(pipeline::matches_dense(20.9, 20, "perplexity"));
  CHECK_FALSE(pipeline::matches_dense(21.1, 20, "perplexity"));
  CHECK(pipeline::matches_dense(0.285, 0.30, "accuracy"));
  CHECK_FALSE(pipeline::matches_dense(0.28, 0.30, "accuracy"));
  test::require_error([&] { pipeline::collect_report(dir / "nothing"); }, {"sweep.json: not found"});
}
