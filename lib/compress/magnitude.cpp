// compress/magnitude.cpp: magnitude pruning (the baseline of Wanda's prune_magnitude): drop the
// smallest |W| over the whole matrix, per row, or N:M.
#include "internal.hpp"

namespace kick::compress {

PruneResult magnitude_prune(const Tensor& weight, const SparsityConfig& config, bool per_row) {
  detail::check_weight(weight, "magnitude_prune");
  config.validate();
  const double start = monotonic_seconds();
  if (per_row && !config.structured()) {
    const auto k = static_cast<int64_t>(static_cast<double>(weight.size(1)) * config.ratio);
    if (auto fused = detail::prune_lowest_per_row_cpu(weight, Tensor(), k)) {
      fused->stats.seconds = monotonic_seconds() - start;
      return std::move(*fused);
    }
  }
  PruneResult result;
  result.mask = prune_mask(weight.to(at::kFloat).abs(), config, per_row);
  result.weight = weight.masked_fill(result.mask, 0);
  result.stats.sparsity = detail::fraction_zero(result.weight);
  result.stats.error = detail::relative_weight_error(weight, result.weight);
  result.stats.seconds = monotonic_seconds() - start;
  return result;
}

}  // namespace kick::compress
