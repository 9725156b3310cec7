// compress/awq.cpp: AWQ (mit-han-lab/llm-awq auto_scale / auto_clip): the per-input-channel scale and
// the per-group clipping range that minimise the quantized output error on sample activations, and
// quantization with the clipped ranges.
//
// Where kick deliberately differs from the reference:
// - The scale search measures the error of the group's Linears themselves (their outputs together),
//   not of the enclosing attention/MLP block; the error is the mean over all those outputs.
// - Quantization uses kick's shared min/max grid (GPTQ's find_params, range forced to contain 0)
//   rather than pseudo_quantize_tensor; for any group whose values straddle 0 the two are identical.
// - Clipping samples every max(1, tokens / clip_samples)-th token (the reference's step is
//   tokens // 512, which is 0, an error, below 512 tokens).
// - Output errors are evaluated through the inputs' Gram matrix where that is cheaper:
//   ||x (W - Q)^T||^2 = sum((W - Q) G * (W - Q)) with G = x^T x, once per search instead of a product
//   with every token per grid point (8x fewer FLOPs in the clip search at 512 tokens and group 64). The
//   reference subtracts two nearly equal outputs instead; the sums are the same, the rounding differs,
//   and it decides near-ties (docs/performance.md compares the two forms in fp32 and fp64).
#include <algorithm>
#include <limits>

#include "internal.hpp"

namespace kick::compress {

namespace {
using at::indexing::None;
using at::indexing::Slice;

Tensor sample_matrix(const Tensor& x_sample, int64_t in_features, const char* what, const Tensor& like) {
  if (!x_sample.defined() || x_sample.dim() < 1 || x_sample.size(-1) != in_features || x_sample.numel() == 0)
    fail("{}: x_sample has shape {} (expected non-empty [tokens, {}])", what,
         x_sample.defined() ? shape_string(x_sample.sizes()) : std::string("undefined"), in_features);
  return x_sample.reshape({-1, in_features}).to(like.device(), at::kFloat);
}

void check_awq_config(const AwqConfig& config, int64_t in_features, const char* what) {
  config.quant.validate(in_features);
  if (config.grid < 1) fail("{}: grid = {} must be >= 1", what, config.grid);
  if (config.clip_grid < 1) fail("{}: clip_grid = {} must be >= 1", what, config.clip_grid);
  if (!(config.max_shrink >= 0 && config.max_shrink < 1)) fail("{}: max_shrink = {} must be in [0, 1)", what, config.max_shrink);
  if (config.clip_samples < 1) fail("{}: clip_samples = {} must be >= 1", what, config.clip_samples);
}

// Fake-quantizes [rows, group] slices with the shared grid (pseudo_quantize_tensor's role).
Tensor fake_quantize_rows(const Tensor& rows, const QuantizerConfig& quant) {
  auto grid = detail::find_grid_params(rows, quant.bits, quant.symmetric);
  return detail::codes_to_values(detail::quantize_to_codes(rows, grid), grid);
}

}  // namespace

AwqScaleResult awq_search_scales(const std::vector<Tensor>& weights, const Tensor& x_sample, const AwqConfig& config) {
  if (weights.empty()) fail("awq_search_scales: weights is empty (expected the Linears sharing one input)");
  for (const auto& w : weights) detail::check_weight(w, "awq_search_scales");
  const int64_t in = weights.front().size(1);
  for (const auto& w : weights)
    if (w.size(1) != in)
      fail("awq_search_scales: weight has shape {} (expected in_features = {} like the first)", shape_string(w.sizes()), in);
  check_awq_config(config, in, "awq_search_scales");
  auto x = sample_matrix(x_sample, in, "awq_search_scales", weights.front());

  std::vector<Tensor> fp32;
  int64_t total_rows = 0;
  for (const auto& w : weights) {
    fp32.push_back(w.to(x.device(), at::kFloat));
    total_rows += w.size(0);
  }
  // Per grid point the direct form costs 2 T rows in, the Gram form 2 rows in^2 after T in^2 once.
  const double tokens = static_cast<double>(x.size(0)), width = static_cast<double>(in);
  const double grid_points = static_cast<double>(config.grid), rows_total = static_cast<double>(total_rows);
  const bool by_gram = tokens * width * width + grid_points * 2 * rows_total * width * width <
                       grid_points * 2 * tokens * rows_total * width;
  const Tensor gram = by_gram ? at::matmul(x.t(), x) : Tensor();
  auto x_max = x.abs().mean(0);  // get_act_scale
  AwqScaleResult result;
  double best = std::numeric_limits<double>::infinity();
  for (int64_t step = 0; step < config.grid; ++step) {
    const double ratio = static_cast<double>(step) / static_cast<double>(config.grid);
    auto s = x_max.pow(ratio).clamp_min(1e-4).view({-1});
    s = s / (s.max() * s.min()).sqrt();
    double squared = 0, count = 0;
    for (size_t k = 0; k < fp32.size(); ++k) {
      auto scaled = fp32[k] * s.view({1, -1});
      const int64_t rows = scaled.size(0), group = config.quant.group_size > 0 ? config.quant.group_size : in;
      auto quantized = fake_quantize_rows(scaled.reshape({-1, group}), config.quant).reshape({rows, in}) / s.view({1, -1});
      squared += detail::squared_output_norm(fp32[k] - quantized, x, gram);
      count += tokens * static_cast<double>(rows);
    }
    const double loss = squared / count;
    if (step == 0) result.error_at_1 = loss;  // ratio 0: s == 1, plain quantization
    if (loss < best) {
      best = loss;
      result.best_alpha = ratio;
      result.scales = s.clone();
    }
  }
  result.error = best;
  if (!result.scales.defined()) result.scales = at::ones({in}, x.options());  // every loss NaN: no scaling
  return result;
}

Tensor awq_search_clip(const Tensor& weight, const Tensor& x_sample, const AwqConfig& config) {
  detail::check_weight(weight, "awq_search_clip");
  const int64_t out = weight.size(0), in = weight.size(1);
  check_awq_config(config, in, "awq_search_clip");
  auto x = sample_matrix(x_sample, in, "awq_search_clip", weight);
  const int64_t group = config.quant.group_size > 0 ? config.quant.group_size : in, groups = in / group;
  const int64_t stride = std::max<int64_t>(1, x.size(0) / config.clip_samples);
  x = x.index({Slice(None, None, stride)});
  const int64_t tokens = x.size(0);
  auto x_groups = x.reshape({tokens, groups, group}).permute({1, 0, 2});  // [groups, tokens, group]
  // Gram form when a group is narrower than the sample (always, at the defaults): [groups, group, group].
  const Tensor gram = group < tokens ? at::bmm(x_groups.transpose(1, 2), x_groups) : Tensor();
  auto w_all = weight.to(x.device(), at::kFloat).reshape({out, groups, group});
  const int64_t shrink_steps = static_cast<int64_t>(config.max_shrink * static_cast<double>(config.clip_grid));

  constexpr int64_t kRowBatch = 256;  // bounds the [groups, tokens, rows] outputs, as the reference's oc_batch_size
  std::vector<Tensor> best_all;
  for (int64_t r0 = 0; r0 < out; r0 += kRowBatch) {
    auto w = w_all.narrow(0, r0, std::min(kRowBatch, out - r0));
    const int64_t rows = w.size(0);
    auto outputs = [&](const Tensor& wg) { return at::bmm(x_groups, wg.permute({1, 2, 0})); };  // [groups, tokens, rows]
    // Mean over the sample of the squared output error of every (row, group): [rows, groups, 1].
    auto errors_of = [&](const Tensor& quantized, const Tensor& reference_out) {
      if (!gram.defined()) return (outputs(quantized) - reference_out).pow(2).mean(1).t().reshape({rows, groups, 1});
      auto delta = (w - quantized).permute({1, 0, 2});  // [groups, rows, group]
      return (at::bmm(delta, gram) * delta).sum(-1).clamp_min(0).div(static_cast<double>(tokens)).t().reshape({rows, groups, 1});
    };
    auto org_max = w.abs().amax(-1, /*keepdim=*/true);  // [rows, groups, 1]
    auto best_max = org_max.clone();
    auto min_errors = at::full_like(org_max, std::numeric_limits<float>::infinity());
    const Tensor reference_out = gram.defined() ? Tensor() : outputs(w);
    for (int64_t i = 0; i < shrink_steps; ++i) {
      auto max_val = org_max * (1 - static_cast<double>(i) / static_cast<double>(config.clip_grid));
      auto clipped = at::minimum(at::maximum(w, -max_val), max_val);
      auto quantized = fake_quantize_rows(clipped.reshape({-1, group}), config.quant).reshape({rows, groups, group});
      auto error = errors_of(quantized, reference_out);
      auto better = error < min_errors;
      min_errors = at::where(better, error, min_errors);
      best_max = at::where(better, max_val, best_max);
    }
    best_all.push_back(best_max.squeeze(-1));
  }
  return at::cat(best_all, 0);
}

QuantResult awq_quantize(const Tensor& weight, const Tensor& clip_max, const QuantizerConfig& config) {
  detail::check_weight(weight, "awq_quantize");
  const int64_t out = weight.size(0), in = weight.size(1);
  config.validate(in);
  const double start = monotonic_seconds();
  const int64_t group = config.group_size > 0 ? config.group_size : in, groups = in / group;
  auto w = weight.to(at::kFloat);
  auto clipped = w;
  if (clip_max.defined()) {
    if (clip_max.numel() != out * groups)
      fail("awq_quantize: clip_max has shape {} (expected [{}, {}])", shape_string(clip_max.sizes()), out, groups);
    auto max_val = clip_max.to(w.device(), at::kFloat).reshape({out, groups, 1});
    clipped = at::minimum(at::maximum(w.reshape({out, groups, group}), -max_val), max_val).reshape({out, in});
  }
  QuantResult result;
  auto values = detail::rtn_groups(clipped, config, &result.packed);
  result.weight = values.to(weight.scalar_type());
  result.stats.error = detail::relative_weight_error(w, values);
  result.stats.sparsity = detail::fraction_zero(result.weight);
  result.stats.seconds = monotonic_seconds() - start;
  return result;
}

}  // namespace kick::compress
