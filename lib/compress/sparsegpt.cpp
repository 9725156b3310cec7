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
  auto score = block.pow(2) / at::diag(hinv_block).reshape({1, -1}).pow(2);
  const auto k = static_cast<int64_t>(static_cast<double>(score.numel()) * ratio);
  return detail::lowest_k_per_row(score.reshape({1, -1}), k).reshape(block.sizes());
}

void check_config(int64_t columns, const SparseGptConfig& config) {
  const auto& sparsity = config.sparsity;
  sparsity.validate();
  detail::check_percdamp_blocksize(config.percdamp, config.blocksize, "sparsegpt_prune");
  if (sparsity.structured() && (columns % sparsity.m != 0 || config.blocksize % sparsity.m != 0))
    fail("sparsegpt_prune: sparsity {} needs m = {} to divide in_features = {} and blocksize = {}",
         sparsity.describe(), sparsity.m, columns, config.blocksize);
  if (config.quantize) config.quantize->validate(columns);
}

}  // namespace

// The configuration is checked before the factorization, so that a bad one fails at once.
PruneResult sparsegpt_prune(const Tensor& weight, const Tensor& hessian, const SparseGptConfig& config) {
  detail::check_weight(weight, "sparsegpt_prune");
  detail::check_hessian(hessian, weight.size(1), "sparsegpt_prune");
  check_config(weight.size(1), config);
  return sparsegpt_prune(weight, prepare_hessian(hessian.to(weight.device()), config.percdamp), config);
}

PruneResult sparsegpt_prune(const Tensor& weight, const PreparedHessian& prepared, const SparseGptConfig& config) {
  detail::check_weight(weight, "sparsegpt_prune");
  const int64_t rows = weight.size(0), columns = weight.size(1);
  const auto& sparsity = config.sparsity;
  check_config(columns, config);
  detail::check_prepared(prepared, columns, config.percdamp, /*act_order=*/false, "sparsegpt_prune");
  const double start = monotonic_seconds();

  auto W = weight.to(at::kFloat).clone();
  const bool grouped = config.quantize && config.quantize->group_size > 0;
  detail::GridParams grid;
  // Per-row grid from the weight before pruning, as the reference's quantizer.find_params(W).
  if (config.quantize && !grouped) grid = detail::find_grid_params(W, config.quantize->bits, config.quantize->symmetric);
  if (prepared.any_dead) W.index_put_({Slice(), prepared.dead.to(W.device())}, 0.0);
  const auto Hinv = prepared.upper.to(W.device());

  auto mask = at::zeros({rows, columns}, W.options().dtype(at::kBool));
  auto losses = at::zeros({rows}, W.options());
  std::vector<detail::GridParams> group_grids;  // grouped joint quantization: one per group, in order
  if (grouped) group_grids.reserve(static_cast<size_t>(columns / config.quantize->group_size));
  for (int64_t i1 = 0; i1 < columns; i1 += config.blocksize) {
    const int64_t i2 = std::min(i1 + config.blocksize, columns), count = i2 - i1;
    detail::ObsSweep sweep;
    sweep.block = W.index({Slice(), Slice(i1, i2)}).clone();
    sweep.hinv = Hinv.index({Slice(i1, i2), Slice(i1, i2)});
    if (sparsity.structured()) {
      sweep.mask = at::zeros(sweep.block.sizes(), W.options().dtype(at::kBool));
      sweep.nm_n = sparsity.n;
      sweep.nm_m = sparsity.m;
    } else {
      sweep.mask = block_mask(sweep.block, sweep.hinv, sparsity.ratio);
    }
    if (config.quantize) {
      // kick addition: grouped joint quantization, each group's grid found like GPTQ's (from W as it
      // stands at the start of the block that group starts in); the reference only has the per-row grid.
      if (grouped) {
        const int64_t group_size = config.quantize->group_size;
        for (int64_t c = i1; c < i2; ++c)
          if (c % group_size == 0)
            group_grids.push_back(detail::find_grid_params(W.narrow(1, c, group_size), config.quantize->bits,
                                                           config.quantize->symmetric));
        for (int64_t c = i1; c < i2; ++c) sweep.grids.push_back(&group_grids[c / group_size]);
      } else {
        sweep.grids.assign(count, &grid);
      }
    }
    auto swept = detail::obs_sweep(sweep);
    W.index_put_({Slice(), Slice(i1, i2)}, swept.values);
    mask.index_put_({Slice(), Slice(i1, i2)}, sweep.mask);
    losses += swept.losses / 2;
    if (i2 < columns)
      W.index({Slice(), Slice(i2, None)}).sub_(at::matmul(swept.errors, Hinv.index({Slice(i1, i2), Slice(i2, None)})));
  }

  PruneResult result;
  result.weight = W.to(weight.scalar_type());
  result.mask = mask;
  result.stats.sparsity = detail::fraction_zero(result.weight);
  result.stats.error = losses.sum().item<double>();  // the reference's OBS loss estimate
  result.stats.damping = prepared.damping;
  result.stats.cholesky_retries = prepared.retries;
  result.stats.seconds = monotonic_seconds() - start;
  return result;
}

}  // namespace kick::compress
