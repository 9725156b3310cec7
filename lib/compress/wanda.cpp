// compress/wanda.cpp: Wanda pruning (locuslab/wanda prune_wanda): score |W| * sqrt(E[x^2]) per input
// channel and prune the lowest scores within each output row (or N:M). Unstructured fp32 on CPU goes through
// the one-pass kernel (nm_mask.cpp); the ATen chain below stays the reference for the rest and for its test.
#include "internal.hpp"

namespace kick::compress {

PruneResult wanda_prune(const Tensor& weight, const Tensor& squared_norms, const SparsityConfig& config) {
  detail::check_weight(weight, "wanda_prune");
  config.validate();
  const int64_t in = weight.size(1);
  if (!squared_norms.defined() || squared_norms.numel() != in)
    fail("wanda_prune: squared_norms has shape {} (expected [{}] to match the weight's in_features)",
         squared_norms.defined() ? shape_string(squared_norms.sizes()) : std::string("undefined"), in);
  const double start = monotonic_seconds();
  auto w = weight.to(at::kFloat);
  auto scaler = squared_norms.to(w.device(), at::kFloat).reshape({1, -1});
  if (!config.structured()) {
    const auto k = static_cast<int64_t>(static_cast<double>(in) * config.ratio);
    if (auto fused = detail::prune_lowest_per_row_cpu(weight, at::sqrt(scaler).reshape({-1}), k)) {
      fused->stats.seconds = monotonic_seconds() - start;
      return std::move(*fused);
    }
  }
  PruneResult result;
  result.mask = prune_mask(w.abs() * at::sqrt(scaler), config, /*per_row=*/true);
  result.weight = weight.masked_fill(result.mask, 0);
  result.stats.sparsity = detail::fraction_zero(result.weight);
  result.stats.error = detail::relative_weight_error(weight, result.weight);
  result.stats.seconds = monotonic_seconds() - start;
  return result;
}

}  // namespace kick::compress
