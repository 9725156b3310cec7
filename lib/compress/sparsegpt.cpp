// compress/sparsegpt.cpp: SparseGPT (IST-DASLab/sparsegpt fasterprune): OBS pruning column by column
// in blocks with lazy updates through the upper Cholesky factor of H^-1, optionally with joint
// quantization of the surviving weights.
#include <algorithm>

#include "internal.hpp"

namespace kick::compress {

namespace {
using at::indexing::None;
using at::indexing::Slice;

// The unstructured mask of one block, chosen over the whole block (all rows x block columns) from
// W^2 / diag(Hinv)^2 as the reference does. kick deliberately prunes exactly floor(numel * ratio)
// entries (stable order); the reference's `tmp <= sorted[k]` prunes k + 1, and one even at ratio 0.
Tensor block_mask(const Tensor& block, const Tensor& hinv_block, double ratio) {
  auto mask = at::zeros(block.sizes(), block.options().dtype(at::kBool));
  auto score = block.pow(2) / at::diag(hinv_block).reshape({1, -1}).pow(2);
  const auto k = static_cast<int64_t>(static_cast<double>(score.numel()) * ratio);
  if (k == 0) return mask;
  auto order = std::get<1>(at::sort(score.reshape({-1}), /*stable=*/c10::optional<bool>(true), /*dim=*/0));
  return mask.reshape({-1}).scatter_(0, order.narrow(0, 0, k), true).reshape(block.sizes());
}

}  // namespace

PruneResult sparsegpt_prune(const Tensor& weight, const Tensor& hessian, const SparseGptConfig& config) {
  detail::check_weight(weight, "sparsegpt_prune");
  const int64_t rows = weight.size(0), columns = weight.size(1);
  detail::check_hessian(hessian, columns, "sparsegpt_prune");
  const auto& sparsity = config.sparsity;
  sparsity.validate();
  detail::check_percdamp_blocksize(config.percdamp, config.blocksize, "sparsegpt_prune");
  if (sparsity.structured() && (columns % sparsity.m != 0 || config.blocksize % sparsity.m != 0))
    fail("sparsegpt_prune: sparsity {} needs m = {} to divide in_features = {} and blocksize = {}",
         sparsity.describe(), sparsity.m, columns, config.blocksize);
  if (config.quantize) config.quantize->validate(columns);
  const double start = monotonic_seconds();

  auto W = weight.to(at::kFloat).clone();
  auto H = hessian.to(W.device(), at::kFloat).clone();
  const bool grouped = config.quantize && config.quantize->group_size > 0;
  detail::GridParams grid;
  // Per-row grid from the weight before pruning, as the reference's quantizer.find_params(W).
  if (config.quantize && !grouped) grid = detail::find_grid_params(W, config.quantize->bits, config.quantize->symmetric);
  detail::handle_dead_columns(H, W);
  auto factor = detail::inverse_hessian_factor(H, config.percdamp);
  const auto& Hinv = factor.upper;

  auto mask = at::zeros({rows, columns}, W.options().dtype(at::kBool));
  auto losses = at::zeros({rows}, W.options());
  for (int64_t i1 = 0; i1 < columns; i1 += config.blocksize) {
    const int64_t i2 = std::min(i1 + config.blocksize, columns), count = i2 - i1;
    auto W1 = W.index({Slice(), Slice(i1, i2)}).clone();
    auto Q1 = at::zeros_like(W1), Err1 = at::zeros_like(W1), Losses1 = at::zeros_like(W1);
    auto Hinv1 = Hinv.index({Slice(i1, i2), Slice(i1, i2)});
    auto mask1 = sparsity.structured() ? at::zeros(W1.sizes(), W1.options().dtype(at::kBool))
                                       : block_mask(W1, Hinv1, sparsity.ratio);
    for (int64_t i = 0; i < count; ++i) {
      auto w = W1.select(1, i);
      auto d = Hinv1.index({i, i});
      if (sparsity.structured() && i % sparsity.m == 0) {
        auto score = W1.narrow(1, i, sparsity.m).pow(2) / at::diag(Hinv1).narrow(0, i, sparsity.m).reshape({1, -1}).pow(2);
        auto lowest = std::get<1>(at::topk(score, sparsity.n, /*dim=*/1, /*largest=*/false));
        mask1.scatter_(1, lowest + i, true);
      }
      auto q = w.clone().masked_fill_(mask1.select(1, i), 0);
      if (config.quantize) {
        // kick addition: grouped joint quantization, each group's grid found like GPTQ's (from W as
        // it stands at the start of the block); the reference only has the per-row grid.
        if (grouped && (i1 + i) % config.quantize->group_size == 0)
          grid = detail::find_grid_params(W.narrow(1, i1 + i, config.quantize->group_size), config.quantize->bits,
                                          config.quantize->symmetric);
        q = detail::codes_to_values(detail::quantize_to_codes(q.unsqueeze(1), grid), grid).flatten();
      }
      Q1.select(1, i).copy_(q);
      Losses1.select(1, i).copy_((w - q).pow(2) / d.pow(2));
      auto err1 = (w - q) / d;
      W1.narrow(1, i, count - i).sub_(at::matmul(err1.unsqueeze(1), Hinv1.index({i, Slice(i, None)}).unsqueeze(0)));
      Err1.select(1, i).copy_(err1);
    }
    W.index_put_({Slice(), Slice(i1, i2)}, Q1);
    mask.index_put_({Slice(), Slice(i1, i2)}, mask1);
    losses += at::sum(Losses1, 1) / 2;
    if (i2 < columns)
      W.index({Slice(), Slice(i2, None)}).sub_(at::matmul(Err1, Hinv.index({Slice(i1, i2), Slice(i2, None)})));
  }

  PruneResult result;
  result.weight = W.to(weight.scalar_type());
  result.mask = mask;
  result.stats.sparsity = detail::fraction_zero(result.weight);
  result.stats.error = losses.sum().item<double>();  // the reference's OBS loss estimate
  result.stats.damping = factor.damping;
  result.stats.cholesky_retries = factor.retries;
  result.stats.seconds = monotonic_seconds() - start;
  return result;
}

}  // namespace kick::compress
