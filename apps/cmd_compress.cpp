// kick compress: prune and/or quantize a model with one method or a multi-stage recipe (YAML), on
// calibration text from KICK_DATA, and save it as a self-describing HF folder.
#include <yaml-cpp/yaml.h>

#include <cstdio>
#include <set>

#include "common.hpp"
#include "kick/compress.hpp"
#include "kick/yaml_text.hpp"

namespace kick::app {

namespace {

// "2:4" -> n = 2, m = 4.
void parse_pattern(const std::string& text, compress::SparsityConfig& sparsity) {
  auto colon = text.find(':');
  try {
    if (colon == std::string::npos) throw std::invalid_argument(text);
    sparsity.n = std::stoll(text.substr(0, colon));
    sparsity.m = std::stoll(text.substr(colon + 1));
  } catch (const std::exception&) {
    fail("--pattern {}: expected N:M, e.g. 2:4 (N zeros in every M consecutive weights)", text);
  }
}

struct StageArgs {
  std::string method;
  double sparsity = 0.5;
  std::string pattern;
  bool per_row = false;
  int bits = 4;
  int64_t group_size = 128;
  bool symmetric = false;
  double percdamp = 0.01;
  int64_t blocksize = 128;
  bool act_order = false, static_groups = false, true_sequential = false, sparsegpt_quantize = false;
  int64_t awq_grid = 20;
  bool awq_no_clip = false;
};

compress::CompressionPlan plan_from(const StageArgs& a) {
  compress::CompressionPlan plan;
  plan.method = a.method;
  plan.sparsity.ratio = a.sparsity;
  if (!a.pattern.empty()) parse_pattern(a.pattern, plan.sparsity);
  plan.magnitude_per_row = a.per_row;
  plan.quant.bits = a.bits;
  plan.quant.group_size = a.group_size;
  plan.quant.symmetric = a.symmetric;
  plan.percdamp = a.percdamp;
  plan.blocksize = a.blocksize;
  plan.act_order = a.act_order;
  plan.static_groups = a.static_groups;
  plan.true_sequential = a.true_sequential;
  plan.sparsegpt_quantize = a.sparsegpt_quantize;
  plan.awq.grid = a.awq_grid;
  plan.awq.clip = !a.awq_no_clip;
  plan.awq.quant = plan.quant;
  return plan;
}

template <typename T>
void read_key(const YAML::Node& node, const char* key, T& out, const std::string& where) {
  if (!node[key]) return;
  try {
    out = node[key].as<T>();
  } catch (const YAML::Exception&) {
    fail("{}: field '{}' has the wrong type", where, key);
  }
}

StageArgs stage_from_yaml(const YAML::Node& node, const std::string& where) {
  static const std::set<std::string> known = {"method", "sparsity", "pattern", "per_row", "bits", "group_size",
                                              "symmetric", "percdamp", "blocksize", "act_order", "static_groups",
                                              "true_sequential", "quantize", "awq_grid", "awq_clip"};
  if (!node.IsMap()) fail("{}: each stage must be a mapping", where);
  for (const auto& kv : node) {
    auto key = kv.first.as<std::string>();
    if (!known.count(key)) fail("{}: unknown field '{}'", where, key);
  }
  StageArgs a;
  if (!node["method"]) fail("{}: missing field 'method'", where);
  read_key(node, "method", a.method, where);
  read_key(node, "sparsity", a.sparsity, where);
  read_key(node, "pattern", a.pattern, where);
  read_key(node, "per_row", a.per_row, where);
  read_key(node, "bits", a.bits, where);
  read_key(node, "group_size", a.group_size, where);
  read_key(node, "symmetric", a.symmetric, where);
  read_key(node, "percdamp", a.percdamp, where);
  read_key(node, "blocksize", a.blocksize, where);
  read_key(node, "act_order", a.act_order, where);
  read_key(node, "static_groups", a.static_groups, where);
  read_key(node, "true_sequential", a.true_sequential, where);
  read_key(node, "quantize", a.sparsegpt_quantize, where);
  read_key(node, "awq_grid", a.awq_grid, where);
  bool clip = true;
  read_key(node, "awq_clip", clip, where);
  a.awq_no_clip = !clip;
  return a;
}

}  // namespace

void register_compress(CLI::App& app) {
  auto* cmd = app.add_subcommand("compress", "prune and/or quantize a model and save it with compression.json");
  struct Args {
    ModelArgs model;
    StageArgs stage;
    std::string recipe, out, save_calibration;
    compress::CalibrationConfig calibration;
    bool overwrite = false, packed = false;
    int64_t forward_batch = 8;
    std::string calibration_dtype;
  };
  auto args = std::make_shared<Args>();
  args->calibration.seqlen = 0;
  add_model_options(*cmd, args->model);
  auto& s = args->stage;
  cmd->add_option("--method", s.method, "magnitude | wanda | sparsegpt | rtn | gptq | awq");
  cmd->add_option("--recipe", args->recipe, "YAML recipe with several stages (e.g. prune then quantize)");
  cmd->add_option("--sparsity", s.sparsity, "unstructured sparsity ratio in [0, 1)")->capture_default_str();
  cmd->add_option("--pattern", s.pattern, "N:M semi-structured sparsity, e.g. 2:4");
  cmd->add_flag("--per-row", s.per_row, "magnitude: one threshold per output row instead of per matrix");
  cmd->add_option("--bits", s.bits, "quantization bits (2..8)")->capture_default_str();
  cmd->add_option("--group-size", s.group_size, "columns per quantization group (-1: per row)")->capture_default_str();
  cmd->add_flag("--sym", s.symmetric, "symmetric quantizer (default asymmetric)");
  cmd->add_option("--percdamp", s.percdamp, "SparseGPT/GPTQ damping as a fraction of mean diag(H)")->capture_default_str();
  cmd->add_option("--blocksize", s.blocksize, "SparseGPT/GPTQ column block size")->capture_default_str();
  cmd->add_flag("--act-order", s.act_order, "GPTQ: quantize columns in order of decreasing diag(H)");
  cmd->add_flag("--static-groups", s.static_groups, "GPTQ: group parameters from the unquantized weight");
  cmd->add_flag("--true-sequential", s.true_sequential, "compress q/k/v, o, gate/up, down one after another");
  cmd->add_flag("--quantize", s.sparsegpt_quantize, "SparseGPT: quantize jointly to --bits/--group-size");
  cmd->add_option("--awq-grid", s.awq_grid, "AWQ scale search grid points")->capture_default_str();
  cmd->add_flag("--awq-no-clip", s.awq_no_clip, "AWQ: skip the clipping search");
  cmd->add_option("--calibration", args->calibration.source, "calibration text (relative paths under KICK_DATA), or windows saved by --save-calibration")->capture_default_str();
  cmd->add_option("--nsamples", args->calibration.nsamples, "calibration windows")->capture_default_str();
  cmd->add_option("--seqlen", args->calibration.seqlen, "calibration window length (default: min(2048, context))");
  cmd->add_option("--seed", args->calibration.seed, "calibration sampling seed")->capture_default_str();
  cmd->add_option("--save-calibration", args->save_calibration,
                  "also write the calibration token windows (input_ids, int64 [nsamples, seqlen]) to this safetensors file");
  cmd->add_option("--forward-batch", args->forward_batch, "calibration windows per layer forward")->capture_default_str();
  cmd->add_option("--calibration-dtype", args->calibration_dtype,
                  "precision of the calibration forward passes: fp32, bf16 or fp16 (default: --dtype); "
                  "statistics and solves stay fp32");
  cmd->add_option("-o,--out", args->out, "output folder (refused if it exists, unless --overwrite)")->required();
  cmd->add_flag("--overwrite", args->overwrite, "replace an existing output folder");
  cmd->add_flag("--packed", args->packed, "also save integer codes, scales, zeros and g_idx (quantized.safetensors)");
  cmd->callback([args] {
    // Every parameter is checked before the model is loaded.
    std::vector<compress::CompressionPlan> stages;
    if (!args->recipe.empty()) {
      if (!args->stage.method.empty()) fail("--method and --recipe: give one or the other");
      // The shared reader: UTF-8 text, file:line errors, and only names as keys.
      const YAML::Node root = parse_yaml_text(read_file(args->recipe), args->recipe);
      if (!root.IsMap() || !root["stages"] || !root["stages"].IsSequence() || root["stages"].size() == 0) {
        fail("{}: expected a non-empty list 'stages'", args->recipe);
      }
      for (size_t i = 0; i < root["stages"].size(); ++i) {
        stages.push_back(plan_from(stage_from_yaml(root["stages"][i], fmt::format("{}: stages[{}]", args->recipe, i))));
      }
    } else {
      if (args->stage.method.empty()) fail("--method: required (or --recipe)");
      stages.push_back(plan_from(args->stage));
    }
    bool pruned_before = false;
    for (auto& plan : stages) {
      plan.forward_batch = args->forward_batch;
      if (!args->calibration_dtype.empty()) plan.calibration_dtype = parse_dtype(args->calibration_dtype, "--calibration-dtype");
      plan.keep_packed = args->packed && !plan.is_pruning();
      plan.preserve_zeros = pruned_before && !plan.is_pruning();
      if (plan.preserve_zeros && plan.keep_packed) {
        fail("--packed: not supported for a quantization stage after pruning (the codes would not keep the zeros)");
      }
      plan.validate(-1, -1);
      pruned_before = pruned_before || plan.is_pruning();
    }
    if (std::filesystem::exists(args->out) && !args->overwrite) {
      fail("{}: already exists; pass --overwrite to replace it", args->out);
    }

    // Compression rewrites every Linear in place: on CPU, read the weights into private memory rather
    // than take a copy-on-write fault per page (FileAccess).
    Model model = load_model(args->model, parse_device(args->model.device).is_cpu() ? FileAccess::private_memory
                                                                                   : FileAccess::copy_on_write);
    for (const auto& plan : stages) {
      plan.validate(model.config().hidden_size, model.config().intermediate_size);
      if (plan.calibration_dtype && *plan.calibration_dtype != model.options().dtype)
        note_bf16_route(*plan.calibration_dtype, model.options().device);
    }
    BackgroundHash source_hash(resolve_model_path(args->model.model));
    bool any_calibration = false;
    for (const auto& plan : stages) any_calibration = any_calibration || plan.needs_calibration();
    std::unique_ptr<compress::CalibrationData> calibration;
    if (any_calibration) {
      auto config = args->calibration;
      if (config.seqlen <= 0) config.seqlen = std::min<int64_t>(2048, model.config().max_position);
      const double t0 = monotonic_seconds();
      calibration = std::make_unique<compress::CalibrationData>(compress::load_calibration(model.tokenizer(), config));
      const std::string origin = calibration->corpus_tokens > 0 ? fmt::format("from {} corpus tokens", calibration->corpus_tokens)
                                                                 : std::string("saved windows");
      std::fprintf(stderr, "kick: calibration %s: %lld windows x %lld tokens, %s (%s)\n", calibration->source.c_str(),
                   (long long)config.nsamples, (long long)config.seqlen, origin.c_str(),
                   format_duration(monotonic_seconds() - t0).c_str());
      if (!args->save_calibration.empty()) {
        write_safetensors(args->save_calibration, {{"input_ids", calibration->windows}},
                          {{"source", calibration->source},
                           {"content_hash_fnv1a64", calibration->content_hash},
                           {"seed", std::to_string(calibration->seed)}});
      }
    }
    std::vector<compress::CompressionReport> reports;
    std::map<std::string, compress::QuantizedWeight> packed;
    for (size_t i = 0; i < stages.size(); ++i) {
      Progress progress(fmt::format("compress [{}/{}] {}", i + 1, stages.size(), stages[i].method), model.num_layers(), "layers");
      auto report = compress::compress_model(model, stages[i], calibration.get(),
                                             [&](int64_t done, int64_t) { progress.update(done); });
      std::fprintf(stderr, "kick: %s done in %s (forward %s, statistics %s, solve %s), sparsity %.4f, %zu faults\n",
                   stages[i].method.c_str(), format_duration(report.seconds_total).c_str(),
                   format_duration(report.seconds_forward).c_str(), format_duration(report.seconds_statistics).c_str(),
                   format_duration(report.seconds_solve).c_str(), report.overall_sparsity, report.faults.size());
      for (auto& [name, q] : report.packed) packed[name] = q;
      report.packed.clear();
      reports.push_back(std::move(report));
    }
    auto metadata = compress::compression_metadata(model, stages, reports, calibration.get(), source_hash.get());
    compress::save_compressed_model(args->out, model, metadata, packed, args->overwrite);
    std::printf("saved %s (compression.json: %s)\n", args->out.c_str(), stages.back().method.c_str());
  });
}

}  // namespace kick::app
