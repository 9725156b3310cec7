// compress/gptq.cpp: GPTQ (IST-DASLab/gptq fasterquant): quantize column by column, spreading each
// column's rounding error over the not-yet-quantized columns through the upper Cholesky factor of
// H^-1, with lazy block updates, optional activation order and static groups.
#include <algorithm>

#include "internal.hpp"

namespace kick::compress {

namespace {
using at::indexing::None;
using at::indexing::Slice;
}

// The configuration is checked before the factorization, so that a bad one fails at once.
QuantResult gptq_quantize(const Tensor& weight, const Tensor& hessian, const GptqConfig& config) {
  detail::check_weight(weight, "gptq_quantize");
  detail::check_hessian(hessian, weight.size(1), "gptq_quantize");
  config.quant.validate(weight.size(1));
  detail::check_percdamp_blocksize(config.percdamp, config.blocksize, "gptq_quantize");
  return gptq_quantize(weight, prepare_hessian(hessian.to(weight.device()), config.percdamp, config.act_order), config);
}

QuantResult gptq_quantize(const Tensor& weight, const PreparedHessian& prepared, const GptqConfig& config) {
  detail::check_weight(weight, "gptq_quantize");
  const int64_t rows = weight.size(0), columns = weight.size(1);
  config.quant.validate(columns);
  detail::check_percdamp_blocksize(config.percdamp, config.blocksize, "gptq_quantize");
  detail::check_prepared(prepared, columns, config.percdamp, config.act_order, "gptq_quantize");
  const double start = monotonic_seconds();
  const int bits = config.quant.bits;
  const bool symmetric = config.quant.symmetric;
  const int64_t group_size = config.quant.group_size;
  const bool grouped = group_size > 0, static_groups = grouped && config.static_groups;

  auto W = weight.to(at::kFloat).clone();
  detail::GridParams grid;
  if (!grouped) grid = detail::find_grid_params(W, bits, symmetric);  // before dead columns, as the reference
  if (prepared.any_dead) W.index_put_({Slice(), prepared.dead.to(W.device())}, 0.0);

  std::vector<detail::GridParams> group_grids;  // in order of their group index
  if (static_groups)
    for (int64_t c = 0; c < columns; c += group_size)
      group_grids.push_back(detail::find_grid_params(W.narrow(1, c, group_size), bits, symmetric));

  Tensor perm, invperm;
  std::vector<int64_t> perm_host;
  if (config.act_order) {
    perm = prepared.perm.to(W.device());
    W = W.index_select(1, perm);
    invperm = at::argsort(perm);
    auto cpu = perm.cpu().contiguous();
    perm_host.assign(cpu.data_ptr<int64_t>(), cpu.data_ptr<int64_t>() + columns);
  }

  const auto Hinv = prepared.upper.to(W.device());
  auto Q = at::zeros_like(W), codes = at::zeros_like(W);
  auto losses = at::zeros({rows}, W.options());
  for (int64_t i1 = 0; i1 < columns; i1 += config.blocksize) {
    const int64_t i2 = std::min(i1 + config.blocksize, columns);
    detail::ObsSweep sweep;
    sweep.block = W.index({Slice(), Slice(i1, i2)}).clone();
    sweep.hinv = Hinv.index({Slice(i1, i2), Slice(i1, i2)});
    // Grids of the groups that start in this block first, then pointers to them (none is added while
    // pointers are held). Like the reference, from W as it stood at the start of this block (the block's
    // own updates live in the sweep): groups that start mid-block see the earlier blocks' updates only.
    for (int64_t column = i1; grouped && !static_groups && column < i2; ++column)
      if (column % group_size == 0)
        group_grids.push_back(
            detail::find_grid_params(W.narrow(1, column, std::min(group_size, columns - column)), bits, symmetric));
    for (int64_t column = i1; column < i2; ++column) {
      if (static_groups) {
        sweep.grids.push_back(&group_grids[(config.act_order ? perm_host[column] : column) / group_size]);
      } else {
        sweep.grids.push_back(grouped ? &group_grids[column / group_size] : &grid);
      }
    }
    auto swept = detail::obs_sweep(sweep);
    Q.index_put_({Slice(), Slice(i1, i2)}, swept.values);
    codes.index_put_({Slice(), Slice(i1, i2)}, swept.codes);
    losses += swept.losses / 2;
    if (i2 < columns)
      W.index({Slice(), Slice(i2, None)}).sub_(at::matmul(swept.errors, Hinv.index({Slice(i1, i2), Slice(i2, None)})));
  }

  // Group of every original column: dynamic act-order groups follow the permuted order.
  auto long_options = W.options().dtype(at::kLong);
  Tensor g_idx = grouped ? at::arange(columns, long_options).div(group_size, "floor") : at::zeros({columns}, long_options);
  if (config.act_order) {
    Q = Q.index_select(1, invperm);
    codes = codes.index_select(1, invperm);
    if (grouped && !static_groups) g_idx = g_idx.index_select(0, invperm);
  }
  if (!grouped) group_grids.push_back(grid);
  std::vector<Tensor> scales, zeros;
  for (const auto& g : group_grids) {
    scales.push_back(g.scale);
    zeros.push_back(g.zero);
  }

  QuantResult result;
  result.weight = Q.to(weight.scalar_type());
  result.packed.codes = codes.to(at::kByte);
  result.packed.scales = at::cat(scales, 1);
  result.packed.zeros = at::cat(zeros, 1);
  result.packed.g_idx = g_idx.to(at::kInt);
  result.packed.bits = bits;
  result.stats.sparsity = detail::fraction_zero(result.weight);
  result.stats.error = losses.sum().item<double>();  // the reference's OBS loss estimate
  result.stats.damping = prepared.damping;
  result.stats.cholesky_retries = prepared.retries;
  result.stats.seconds = monotonic_seconds() - start;
  return result;
}

}  // namespace kick::compress
