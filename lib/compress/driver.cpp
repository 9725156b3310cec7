// The one calibration driver every method uses: layer by layer, capture each decoder layer's input for
// all calibration windows, accumulate statistics per distinct Linear input (q/k/v share one, gate/up
// share one), prepare each group once (its sample's Gram matrix, SparseGPT/GPTQ's shared Hessian factor),
// solve each Linear with its method's pure function (on CPU as tasks side by side, task_list.cpp), then
// re-run the compressed layer to produce the next layer's input (all but the last layer). Peak memory: the model plus two
// activation buffers and one layer's statistics.
#include <map>
#include <set>

#include "internal.hpp"
#include "kick/model.hpp"

namespace kick::compress {

namespace {

struct LinearGroup {
  const char* key;
  std::vector<std::string> linears;
};

// Linears that read the same input; statistics are accumulated once per group.
const std::vector<LinearGroup>& linear_groups() {
  static const std::vector<LinearGroup> groups = {
      {"attn_in", {"self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj"}},
      {"attn_out", {"self_attn.o_proj"}},
      {"mlp_in", {"mlp.gate_proj", "mlp.up_proj"}},
      {"mlp_out", {"mlp.down_proj"}}};
  return groups;
}

constexpr int64_t kErrorSampleTokens = 2048;

// Statistics and a strided token sample for one group's input during one layer.
struct GroupCapture {
  std::unique_ptr<InputStatistics> stats;
  std::vector<Tensor> sample_chunks;
  int64_t sample_stride = 1;
  Tensor sample() const { return sample_chunks.empty() ? Tensor() : at::cat(sample_chunks, 0); }
};

// ||x W^T - x' W'^T||^2 / ||x W^T||^2 on a token sample x, where x' = x / s differs from x only where
// AWQ folded input scales s into W' (so x' W'^T = x (W' / s)^T). Where AWQ also divided W's rows by the
// next group's scales r (v_proj, up_proj), the reference is the folded, unquantized W / r: the error
// measures quantization, not the fold. Through the sample's Gram matrix x^T x (as its Cholesky factor L:
// ||m L||^2) when the group's input is narrow enough for that to be cheaper (a triangular [in, in] product per
// Linear instead of a [tokens, out] one), else directly; the forms differ only in rounding.
// The two norms are separate tasks: the reference does not wait for the solve.
Tensor reference_weight(const Tensor& original, const Tensor& row_scales) {
  auto w = original.to(at::kFloat);
  return row_scales.defined() ? w / row_scales.view({-1, 1}) : w;
}
double reference_output_norm(const Tensor& original, const Tensor& row_scales, const Tensor& x,
                             const detail::SampleGram& gram) {
  return detail::squared_output_norm(reference_weight(original, row_scales), x, gram);
}
double residual_output_norm(const Tensor& original, const Tensor& compressed, const Tensor& input_scales,
                            const Tensor& row_scales, const Tensor& x, const detail::SampleGram& gram) {
  auto seen = compressed.to(at::kFloat);
  if (input_scales.defined()) seen = seen / input_scales.view({1, -1});
  return detail::squared_output_norm(reference_weight(original, row_scales) - seen, x, gram);
}

// Searches AWQ scales for one group and folds them: the group's weights are multiplied by s per input
// channel and the op that feeds them (RMSNorm weight, or v_proj/up_proj rows) divided by s, so the
// unquantized layer computes the same function. The group's input sample is divided by s to match;
// s is kept in folded_scales and, for the Linear whose rows were divided, in row_folds[that Linear].
nlohmann::json fold_awq_scales(DecoderLayer& layer, const std::string& key, const std::vector<std::string>& linears,
                               Tensor& sample, Tensor& folded_scales, std::map<std::string, Tensor>& row_folds,
                               const AwqConfig& config) {
  std::vector<Tensor> weights;
  for (const auto& name : linears) weights.push_back(layer.linear(name));
  auto scaled = awq_search_scales(weights, sample, config);
  // With grouped-query attention v_proj's rows do not line up with o_proj's columns: skip, as the reference.
  const bool foldable = key != "attn_out" || layer.v_proj.size(0) == layer.o_proj.size(1);
  if (foldable) {
    auto s = scaled.scales.to(layer.q_proj.device()).to(layer.q_proj.scalar_type());
    if (key == "attn_in") layer.input_norm.div_(s);
    if (key == "mlp_in") layer.post_attention_norm.div_(s);
    if (key == "attn_out") layer.v_proj.div_(s.view({-1, 1}));
    if (key == "mlp_out") layer.up_proj.div_(s.view({-1, 1}));
    for (const auto& name : linears) layer.linear(name).mul_(s.view({1, -1}));
    sample = sample / scaled.scales.to(sample.device()).view({1, -1});
    folded_scales = scaled.scales.to(sample.device(), at::kFloat);
    if (key == "attn_out") row_folds["self_attn.v_proj"] = folded_scales;
    if (key == "mlp_out") row_folds["mlp.up_proj"] = folded_scales;
  }
  return {{"alpha", scaled.best_alpha}, {"error", scaled.error}, {"error_unscaled", scaled.error_at_1},
          {"folded", foldable}};
}

Tensor find_or_undefined(const std::map<std::string, Tensor>& tensors, const std::string& key) {
  auto it = tensors.find(key);
  return it == tensors.end() ? Tensor() : it->second;
}

// AWQ quantizes with the plan's quantizer: one source of truth for bits and group size.
AwqConfig awq_config(const CompressionPlan& plan) {
  AwqConfig config = plan.awq;
  config.quant = plan.quant;
  return config;
}

// Compresses one Linear in place with the plan's method and returns its statistics. In place: a loaded
// model's weights are private file mappings, and replacing the tensor instead would keep the file's
// pages mapped beside the new ones (peak RSS up by the model's size, for ~0.5 s less copy-on-write).
LayerStats solve_linear(const CompressionPlan& plan, const std::string& name, Tensor& weight,
                        const InputStatistics& stats, const PreparedHessian* hessian, const Tensor& sample,
                        QuantizedWeight* packed) {
  if (plan.method == "magnitude") {
    auto r = magnitude_prune(weight, plan.sparsity, plan.magnitude_per_row);
    weight.copy_(r.weight);
    return r.stats;
  }
  if (plan.method == "wanda") {
    auto r = wanda_prune(weight, stats.squared_norms(), plan.sparsity);
    weight.copy_(r.weight);
    return r.stats;
  }
  if (plan.method == "sparsegpt") {
    SparseGptConfig c;
    c.sparsity = plan.sparsity;
    c.percdamp = plan.percdamp;
    c.blocksize = plan.blocksize;
    if (plan.sparsegpt_quantize) c.quantize = plan.quant;
    auto r = hessian ? sparsegpt_prune(weight, *hessian, c) : sparsegpt_prune(weight, stats.hessian(), c);
    weight.copy_(r.weight);
    return r.stats;
  }
  if (plan.method == "rtn") {
    auto r = rtn_quantize(weight, plan.quant);
    weight.copy_(r.weight);
    if (packed) *packed = r.packed;
    return r.stats;
  }
  if (plan.method == "gptq") {
    GptqConfig c;
    c.quant = plan.quant;
    c.percdamp = plan.percdamp;
    c.blocksize = plan.blocksize;
    c.act_order = plan.act_order;
    c.static_groups = plan.static_groups;
    auto r = hessian ? gptq_quantize(weight, *hessian, c) : gptq_quantize(weight, stats.hessian(), c);
    weight.copy_(r.weight);
    if (packed) *packed = r.packed;
    return r.stats;
  }
  if (plan.awq_scale_only) return LayerStats{};
  // AWQ: the reference skips clipping for q/k, whose errors the attention softmax dominates.
  const bool clip = plan.awq.clip && name != "self_attn.q_proj" && name != "self_attn.k_proj" && sample.defined();
  Tensor clip_max = clip ? awq_search_clip(weight, sample, awq_config(plan)) : Tensor();
  auto r = awq_quantize(weight, clip_max, plan.quant);
  weight.copy_(r.weight);
  if (packed) *packed = r.packed;
  return r.stats;
}

}  // namespace

bool CompressionPlan::is_pruning() const {
  return method == "magnitude" || method == "wanda" || method == "sparsegpt";
}

bool CompressionPlan::needs_calibration() const {
  return method == "wanda" || method == "sparsegpt" || method == "gptq" || method == "awq";
}

void CompressionPlan::validate(int64_t hidden_size, int64_t intermediate_size) const {
  static const std::set<std::string> methods = {"magnitude", "wanda", "sparsegpt", "rtn", "gptq", "awq"};
  if (!methods.count(method)) {
    fail("--method {}: unknown (expected magnitude, wanda, sparsegpt, rtn, gptq or awq)", method);
  }
  if (is_pruning()) sparsity.validate();
  if (!is_pruning() || sparsegpt_quantize) {
    quant.validate(hidden_size);
    quant.validate(intermediate_size);
  }
  if (percdamp <= 0) fail("--percdamp {}: expected a positive damping fraction", percdamp);
  if (blocksize <= 0) fail("--blocksize {}: expected a positive number of columns", blocksize);
  if (forward_batch <= 0) fail("--forward-batch {}: expected a positive number of windows", forward_batch);
  if (method == "awq" && awq.grid < 2) fail("--awq-grid {}: expected at least 2 grid points", awq.grid);
  if (calibration_dtype && !at::isFloatingType(*calibration_dtype))
    fail("--calibration-dtype {}: expected a floating-point dtype", dtype_name(*calibration_dtype));
}

nlohmann::json CompressionPlan::to_json() const {
  nlohmann::json j = {{"method", method}, {"true_sequential", true_sequential}};
  if (calibration_dtype) j["calibration_dtype"] = dtype_name(*calibration_dtype);
  if (is_pruning()) {
    j["sparsity"] = sparsity.structured() ? nlohmann::json{{"pattern", sparsity.describe()}}
                                          : nlohmann::json{{"ratio", sparsity.ratio}};
  }
  if (method == "magnitude") j["per_row"] = magnitude_per_row;
  if (method == "sparsegpt" || method == "gptq") {
    j["percdamp"] = percdamp;
    j["blocksize"] = blocksize;
  }
  if (!is_pruning() || sparsegpt_quantize) {
    j["quantizer"] = {{"bits", quant.bits}, {"group_size", quant.group_size}, {"symmetric", quant.symmetric}};
  }
  if (method == "gptq") {
    j["act_order"] = act_order;
    j["static_groups"] = static_groups;
  }
  if (method == "awq") {
    j["awq"] = {{"grid", awq.grid}, {"clip", awq.clip}, {"clip_grid", awq.clip_grid},
                {"max_shrink", awq.max_shrink}, {"clip_samples", awq.clip_samples}};
  }
  return j;
}

nlohmann::json CompressionReport::to_json() const {
  return {{"layers", layers},
          {"faults", faults},
          {"overall_sparsity", overall_sparsity},
          {"seconds", {{"forward", seconds_forward}, {"statistics", seconds_statistics},
                       {"solve", seconds_solve}, {"total", seconds_total}}}};
}

CompressionReport compress_model(Model& model, const CompressionPlan& plan, const CalibrationData* calibration,
                                 const LayerProgress& progress) {
  at::NoGradGuard no_grad;
  const auto& config = model.config();
  plan.validate(config.hidden_size, config.intermediate_size);
  if (plan.needs_calibration() && calibration == nullptr) {
    fail("--method {}: needs calibration data", plan.method);
  }
  CompressionReport report;
  const double run_start = monotonic_seconds();
  const bool calibrate = calibration != nullptr;
  const auto device = model.options().device;
  const at::ScalarType forward_dtype = plan.calibration_dtype.value_or(model.options().dtype);

  Tensor inputs, outputs;
  int64_t windows = 0, seqlen = 0;
  if (calibrate) {
    windows = calibration->windows.size(0);
    seqlen = calibration->windows.size(1);
    if (seqlen > config.max_position) fail("calibration seqlen {} exceeds the model's context of {}", seqlen, config.max_position);
    const double t0 = monotonic_seconds();
    inputs = at::empty({windows, seqlen, config.hidden_size}, at::TensorOptions().dtype(forward_dtype).device(device));
    for (int64_t w = 0; w < windows; w += plan.forward_batch) {
      const int64_t n = std::min(plan.forward_batch, windows - w);
      inputs.narrow(0, w, n).copy_(model.embed(calibration->windows.narrow(0, w, n)));
    }
    outputs = at::empty_like(inputs);
    report.seconds_forward += monotonic_seconds() - t0;
  }
  // Rotary tables and the causal mask depend only on the batch shape; build them once per size.
  std::map<int64_t, AttentionInputs> attention_by_batch;
  auto attention_for = [&](int64_t n) -> const AttentionInputs& {
    auto it = attention_by_batch.find(n);
    if (it == attention_by_batch.end()) it = attention_by_batch.emplace(n, model.attention_inputs(n, seqlen, 0)).first;
    return it->second;
  };
  // With a hook: the capture pass, which stops once down_proj's input is seen. Without: the compressed
  // layer's outputs become the next layer's inputs. Both run on a copy in the calibration dtype.
  auto run_layer = [&](const DecoderLayer& layer, const LinearInputHook& hook) {
    const DecoderLayer compute = layer.to(forward_dtype);
    for (int64_t w = 0; w < windows; w += plan.forward_batch) {
      const int64_t n = std::min(plan.forward_batch, windows - w);
      if (hook) {
        compute.feed_linear_inputs(inputs.narrow(0, w, n), attention_for(n), hook);
      } else {
        outputs.narrow(0, w, n).copy_(compute.forward(inputs.narrow(0, w, n), attention_for(n)));
      }
    }
  };

  const bool wants_hessian = plan.method == "sparsegpt" || plan.method == "gptq";
  // Side by side only while one thread per matrix stays cheap: up to 4096 input columns (SmolLM2: 576
  // and 1536). A 7B model's 11008-wide down_proj would factor for many seconds on a single core; its
  // layers run one op at a time on all threads, as before.
  constexpr int64_t kSideBySideMaxWidth = 4096;
  const bool side_by_side = device.is_cpu() && std::max(config.hidden_size, config.intermediate_size) <= kSideBySideMaxWidth;
  int64_t zeros = 0, total = 0;
  for (int64_t li = 0; li < model.num_layers(); ++li) {
    DecoderLayer& layer = model.layer(li);
    nlohmann::json layer_report = {{"layer", li}, {"linears", nlohmann::json::object()}};
    // The uncompressed weights, for preserve_zeros and the output error (which needs calibration samples).
    std::map<std::string, Tensor> originals;
    if (calibrate || plan.preserve_zeros)
      for (const char* name : kLinearNames) originals[name] = layer.linear(name).clone();

    // Phases: all groups at once, or (true sequential) one group after another, each seeing the
    // already-compressed groups before it. AWQ searches on the uncompressed layer, as the reference.
    std::vector<std::vector<size_t>> phases;
    if (plan.true_sequential && plan.method != "awq") {
      for (size_t g = 0; g < linear_groups().size(); ++g) phases.push_back({g});
    } else {
      phases.push_back({0, 1, 2, 3});
    }
    std::map<std::string, GroupCapture> captures;
    for (const auto& phase : phases) {
      std::map<std::string, std::string> first_linear_of_group;
      for (size_t g : phase) {
        const auto& group = linear_groups()[g];
        const int64_t in = layer.linear(group.linears[0]).size(1);
        auto& capture = captures[group.key];
        capture.stats = std::make_unique<InputStatistics>(in, wants_hessian, device, /*channel_moments=*/plan.method == "wanda");
        capture.sample_chunks.clear();
        capture.sample_stride = std::max<int64_t>(1, windows * seqlen / (plan.method == "awq" ? std::max<int64_t>(plan.awq.clip_samples, kErrorSampleTokens) : kErrorSampleTokens));
        first_linear_of_group[group.linears[0]] = group.key;
      }
      if (calibrate) {
        double stats_seconds = 0;
        const double t0 = monotonic_seconds();
        LinearInputHook hook = [&](int64_t, const std::string& linear, const Tensor& x) {
          auto it = first_linear_of_group.find(linear);
          if (it == first_linear_of_group.end()) return;
          const double s0 = monotonic_seconds();
          auto& capture = captures[it->second];
          auto flat = x.reshape({-1, x.size(-1)});
          capture.stats->add(flat);
          capture.sample_chunks.push_back(flat.slice(0, 0, flat.size(0), capture.sample_stride).to(at::kFloat).clone());
          stats_seconds += monotonic_seconds() - s0;
        };
        run_layer(layer, hook);
        report.seconds_statistics += stats_seconds;
        report.seconds_forward += monotonic_seconds() - t0 - stats_seconds;
      }
      const double solve_start = monotonic_seconds();
      // Per group: its token sample, the sample's Gram matrix (for the output error, when the input is
      // narrow enough for that to be cheaper) and, for SparseGPT/GPTQ, the prepared Hessian that all of
      // the group's Linears share.
      std::map<std::string, Tensor> samples, scaled_samples, folded_scales, row_folds;
      std::map<std::string, detail::SampleGram> grams;
      std::map<std::string, PreparedHessian> prepared;
      std::vector<std::string> keys;
      for (size_t g : phase) {
        const auto& group = linear_groups()[g];
        auto& capture = captures[group.key];
        keys.push_back(group.key);
        samples[group.key] = capture.sample();
        scaled_samples[group.key] = samples[group.key];
        grams[group.key] = detail::SampleGram{};
        if (wants_hessian) prepared[group.key] = PreparedHessian{};
        if (capture.stats->nonfinite() > 0) {
          report.faults.push_back({{"layer", li}, {"input", group.key}, {"kind", "nonfinite_activations"},
                                   {"count", capture.stats->nonfinite()}});
        }
      }
      // One task per group (its Gram, and the prepared Hessian its Linears share), then one per Linear
      // after its group's; widest first within each, so that the longest chains start first.
      std::vector<detail::ListedTask> listed;
      std::map<std::string, int64_t> group_task;
      std::stable_sort(keys.begin(), keys.end(), [&](const std::string& a, const std::string& b) {
        return captures.at(a).stats->in_features() > captures.at(b).stats->in_features();
      });
      for (const auto& key : keys) {
        group_task[key] = static_cast<int64_t>(listed.size());
        listed.push_back({-1, [&, key] {
          Tensor& x = samples.at(key);
          if (x.defined() && x.size(1) * 2 <= x.size(0)) grams.at(key) = detail::sample_gram(x);
          // A bf16 forward's sample holds bf16 values: back in bf16 (exactly), its direct products run as the
          // forward's GEMMs do (squared_output_norm).
          else if (x.defined() && forward_dtype == at::kBFloat16 && device.is_cpu() && plan.method != "awq")
            x = x.to(at::kBFloat16);
          if (wants_hessian)
            prepared.at(key) = prepare_hessian(captures.at(key).stats->hessian(), plan.percdamp,
                                               plan.method == "gptq" && plan.act_order);
        }});
      }
      // AWQ: search and fold every group's scales first (folding into v_proj/up_proj must happen
      // before those are quantized), then quantize all Linears, as the reference does.
      if (plan.method == "awq") {
        detail::run_task_list(listed, side_by_side);
        listed.clear();
        group_task.clear();
        for (size_t g : phase) {
          const auto& group = linear_groups()[g];
          layer_report["awq_" + std::string(group.key)] =
              fold_awq_scales(layer, group.key, group.linears, scaled_samples[group.key], folded_scales[group.key],
                              row_folds, awq_config(plan));
        }
      }
      // Every Linear of the phase as one task; the report is written afterwards, in order.
      struct LinearTask {
        const char* group;
        std::string name;
        LayerStats stats;
        QuantizedWeight packed;
        double reference_norm = -1, residual_norm = -1;
        int64_t zeros = 0;
      };
      std::vector<LinearTask> tasks;
      for (size_t g : phase)
        for (const auto& name : linear_groups()[g].linears) tasks.push_back({linear_groups()[g].key, name, {}, {}, -1, -1, 0});
      std::vector<size_t> by_cost(tasks.size());
      for (size_t i = 0; i < by_cost.size(); ++i) by_cost[i] = i;
      auto cost = [&](size_t i) {
        const Tensor& weight = layer.linear(tasks[i].name);
        return static_cast<double>(weight.numel()) * static_cast<double>(weight.size(1));
      };
      std::stable_sort(by_cost.begin(), by_cost.end(), [&](size_t a, size_t b) { return cost(a) > cost(b); });
      const bool quantizes = !plan.is_pruning();
      for (size_t i : by_cost) {
        auto after = group_task.find(tasks[i].group);
        listed.push_back({after == group_task.end() ? -1 : after->second, [&, i] {
          auto& task = tasks[i];
          Tensor& weight = layer.linear(task.name);
          auto hessian = prepared.find(task.group);
          task.stats = solve_linear(plan, task.name, weight, *captures.at(task.group).stats,
                                    hessian == prepared.end() ? nullptr : &hessian->second,
                                    scaled_samples.at(task.group), plan.keep_packed && quantizes ? &task.packed : nullptr);
          const Tensor original = find_or_undefined(originals, task.name);
          if (plan.preserve_zeros) weight.masked_fill_(original == 0, 0);
          const Tensor& x = samples.at(task.group);
          if (x.defined() && x.size(0) > 0)
            task.residual_norm = residual_output_norm(original, weight, find_or_undefined(folded_scales, task.group),
                                                      find_or_undefined(row_folds, task.name), x, grams.at(task.group));
          task.zeros = (weight == 0).sum().item<int64_t>();
        }});
      }
      // The reference norms last: they fill the threads while the longest solves finish.
      for (size_t i : by_cost) {
        const Tensor& x = samples.at(tasks[i].group);
        if (!x.defined() || x.size(0) == 0) continue;
        auto after = group_task.find(tasks[i].group);
        listed.push_back({after == group_task.end() ? -1 : after->second, [&, i] {
          auto& task = tasks[i];
          task.reference_norm = reference_output_norm(find_or_undefined(originals, task.name),
                                                      find_or_undefined(row_folds, task.name),
                                                      samples.at(task.group), grams.at(task.group));
        }});
      }
      // AWQ's clip search is large GEMMs over the token sample: one Linear at a time, on all threads.
      detail::run_task_list(listed, side_by_side && plan.method != "awq");
      for (auto& task : tasks) {
        if (plan.keep_packed && quantizes) report.packed[fmt::format("model.layers.{}.{}", li, task.name)] = task.packed;
        if (task.stats.cholesky_retries > 0) {
          report.faults.push_back({{"layer", li}, {"linear", task.name}, {"kind", "cholesky_retry"},
                                   {"retries", task.stats.cholesky_retries}, {"damping", task.stats.damping}});
        }
        auto j = task.stats.to_json();
        j["output_error_sample"] = task.residual_norm < 0 ? -1.0 : task.residual_norm / std::max(task.reference_norm, 1e-30);
        layer_report["linears"][task.name] = j;
        zeros += task.zeros;
        total += layer.linear(task.name).numel();
      }
      report.seconds_solve += monotonic_seconds() - solve_start;
    }
    // The last layer's compressed outputs would feed nothing: no pass for them (the references run it anyway).
    if (calibrate && li + 1 < model.num_layers()) {
      const double t0 = monotonic_seconds();
      run_layer(layer, nullptr);
      // One reduction instead of a bool tensor of the outputs' size (12 ms a layer in bf16 on SmolLM2): a NaN or
      // Inf makes the sum non-finite, and finite activations never sum past the dtype's range.
      if (!at::isfinite(outputs.sum()).item<bool>()) {
        report.faults.push_back({{"layer", li}, {"kind", "nonfinite_layer_output"}});
      }
      std::swap(inputs, outputs);
      report.seconds_forward += monotonic_seconds() - t0;
    }
    report.layers.push_back(layer_report);
    // Each layer's temporaries differ in size and lifetime (samples, Grams, factors, per-task scratch), and
    // the freed heap they leave, kept by configure_allocator's high trim threshold, fragments layer after
    // layer: 1.8 instead of 1.1 GB peak on SmolLM2 fp32. Up to 256 MB stays free for reuse.
    release_free_heap(size_t{256} << 20);
    if (progress) progress(li + 1, model.num_layers());
  }
  report.overall_sparsity = total > 0 ? double(zeros) / double(total) : 0;
  report.seconds_total = monotonic_seconds() - run_start;
  return report;
}

}  // namespace kick::compress
