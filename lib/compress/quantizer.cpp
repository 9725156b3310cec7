// compress/quantizer.cpp: the min/max uniform quantizer every quantizing method shares (the grid of
// GPTQ's Quantizer.find_params/quantize), round-to-nearest quantization (a fused CPU kernel beside its
// ATen reference), and QuantizedWeight decoding.
#include <algorithm>
#include <cmath>
#include <limits>
#include <map>
#include <mutex>

#include <ATen/Parallel.h>

#include "internal.hpp"

namespace kick::compress {
namespace detail {

// Follows GPTQ's quant.py find_params(weight=True, perchannel=True): the range always includes 0;
// symmetric puts the zero point at (maxq + 1) / 2; an all-zero row gets the range [-1, 1].
GridParams find_grid_params(const Tensor& rows_by_cols, int bits, bool symmetric) {
  GridParams grid;
  grid.maxq = (int64_t{1} << bits) - 1;
  auto origin = at::zeros({rows_by_cols.size(0)}, rows_by_cols.options());
  auto xmin = at::minimum(rows_by_cols.amin(1), origin);
  auto xmax = at::maximum(rows_by_cols.amax(1), origin);
  if (symmetric) {
    xmax = at::maximum(xmin.abs(), xmax);
    xmin = at::where(xmin < 0, -xmax, xmin);
  }
  auto empty = (xmin == 0) & (xmax == 0);
  xmin = at::where(empty, -at::ones_like(xmin), xmin);
  xmax = at::where(empty, at::ones_like(xmax), xmax);
  auto scale = (xmax - xmin) / static_cast<double>(grid.maxq);
  auto zero = symmetric ? at::full_like(scale, static_cast<double>(grid.maxq + 1) / 2) : at::round(-xmin / scale);
  grid.scale = scale.reshape({-1, 1});
  grid.zero = zero.reshape({-1, 1});
  return grid;
}

Tensor quantize_to_codes(const Tensor& x, const GridParams& grid) {
  return at::clamp(at::round(x / grid.scale) + grid.zero, 0, static_cast<double>(grid.maxq));
}

Tensor codes_to_values(const Tensor& codes, const GridParams& grid) { return grid.scale * (codes - grid.zero); }

Tensor rtn_groups_reference(const Tensor& weight_fp32, const QuantizerConfig& config, QuantizedWeight* packed,
                            RtnTotals* totals) {
  const int64_t out = weight_fp32.size(0), in = weight_fp32.size(1);
  const int64_t group_size = config.group_size > 0 ? config.group_size : in;
  const int64_t groups = in / group_size;
  auto rows = weight_fp32.reshape({out * groups, group_size});
  auto grid = find_grid_params(rows, config.bits, config.symmetric);
  auto codes = quantize_to_codes(rows, grid);
  auto values = codes_to_values(codes, grid).reshape({out, in});
  if (packed) {
    packed->codes = codes.reshape({out, in}).to(at::kByte);
    packed->scales = grid.scale.reshape({out, groups});
    packed->zeros = grid.zero.reshape({out, groups});
    packed->g_idx = at::arange(in, weight_fp32.options().dtype(at::kLong)).div(group_size, "floor").to(at::kInt);
    packed->bits = config.bits;
  }
  if (totals) {
    auto w = weight_fp32.to(at::kDouble);
    totals->weight_sq += w.pow(2).sum().item<double>();
    totals->error_sq += (w - values.to(at::kDouble)).pow(2).sum().item<double>();
    totals->zeros += (values == 0).sum().item<int64_t>();
  }
  return values;
}

// One pass per (row, group) instead of ~15 whole-matrix ATen passes, with the reference's arithmetic in
// its order (this file is built without floating-point contraction): the same bits.
Tensor rtn_groups_cpu(const Tensor& weight_fp32, const QuantizerConfig& config, QuantizedWeight* packed,
                      RtnTotals* totals) {
  auto w = weight_fp32.contiguous();
  const int64_t out = w.size(0), in = w.size(1);
  const int64_t group_size = config.group_size > 0 ? config.group_size : in;
  const int64_t groups = in / group_size;
  const int64_t maxq_int = (int64_t{1} << config.bits) - 1;
  const float maxq = static_cast<float>(maxq_int);
  const float symmetric_zero = static_cast<float>(static_cast<double>(maxq_int + 1) / 2);
  auto values = at::empty_like(w);
  auto codes = at::empty({out, in}, w.options().dtype(at::kByte));
  auto scales = at::empty({out, groups}, w.options());
  auto zeros = at::empty({out, groups}, w.options());
  const float* src = w.data_ptr<float>();
  float* dst = values.data_ptr<float>();
  uint8_t* code_out = codes.data_ptr<uint8_t>();
  float* scale_out = scales.data_ptr<float>();
  float* zero_out = zeros.data_ptr<float>();
  const bool symmetric = config.symmetric;
  // Per-chunk sums, added up in chunk order afterwards: the same total run to run at a fixed thread count.
  std::mutex totals_mutex;
  std::map<int64_t, RtnTotals> chunk_totals;
  at::parallel_for(0, out * groups, 64, [&](int64_t begin, int64_t end) {
    RtnTotals chunk;
    for (int64_t g = begin; g < end; ++g) {
      const float* x = src + g * group_size;  // row-major [out, in]: group g of row g / groups is contiguous
      float lo = x[0], hi = x[0];
      bool has_nan = false;
      for (int64_t k = 0; k < group_size; ++k) {
        has_nan = has_nan || x[k] != x[k];
        lo = std::min(lo, x[k]);
        hi = std::max(hi, x[k]);
      }
      // NaN propagates as through amin/amax, and from there through every step below as in the reference.
      if (has_nan) lo = hi = std::numeric_limits<float>::quiet_NaN();
      float xmin = std::min(lo, 0.0f), xmax = std::max(hi, 0.0f);
      if (symmetric) {
        xmax = std::max(std::fabs(xmin), xmax);
        if (xmin < 0) xmin = -xmax;
      }
      if (xmin == 0 && xmax == 0) {
        xmin = -1;
        xmax = 1;
      }
      const float scale = (xmax - xmin) / maxq;
      const float zero = symmetric ? symmetric_zero : round_half_even(-xmin / scale);
      scale_out[g] = scale;
      zero_out[g] = zero;
      // fp32 within a group (a few hundred terms at most), double across groups.
      float weight_sq = 0, error_sq = 0;
      int64_t zero_values = 0;
      for (int64_t k = 0; k < group_size; ++k) {
        const float code = quantize_to_code(x[k], scale, zero, maxq);
        code_out[g * group_size + k] = code == code ? static_cast<uint8_t>(code) : 0;  // NaN: no defined code
        const float value = code_to_value(code, scale, zero);
        dst[g * group_size + k] = value;
        const float e = x[k] - value;
        weight_sq += x[k] * x[k];
        error_sq += e * e;
        zero_values += value == 0;
      }
      chunk.weight_sq += weight_sq;
      chunk.error_sq += error_sq;
      chunk.zeros += zero_values;
    }
    if (totals) {
      std::lock_guard<std::mutex> lock(totals_mutex);
      chunk_totals[begin] = chunk;
    }
  });
  for (const auto& [begin, chunk] : chunk_totals) {
    totals->weight_sq += chunk.weight_sq;
    totals->error_sq += chunk.error_sq;
    totals->zeros += chunk.zeros;
  }
  if (packed) {
    packed->codes = codes;
    packed->scales = scales;
    packed->zeros = zeros;
    packed->g_idx = at::arange(in, w.options().dtype(at::kLong)).div(group_size, "floor").to(at::kInt);
    packed->bits = config.bits;
  }
  return values;
}

Tensor rtn_groups(const Tensor& weight_fp32, const QuantizerConfig& config, QuantizedWeight* packed, RtnTotals* totals) {
  if (totals) *totals = RtnTotals{};
  if (weight_fp32.device().is_cpu() && weight_fp32.scalar_type() == at::kFloat)
    return rtn_groups_cpu(weight_fp32, config, packed, totals);
  return rtn_groups_reference(weight_fp32, config, packed, totals);
}

}  // namespace detail

Tensor QuantizedWeight::dequantize() const {
  if (!codes.defined() || codes.dim() != 2 || !scales.defined() || !zeros.defined() || !g_idx.defined() ||
      g_idx.numel() != codes.size(1) || scales.sizes() != zeros.sizes() || scales.size(0) != codes.size(0))
    fail("QuantizedWeight::dequantize: inconsistent shapes codes {} scales {} zeros {} g_idx {}",
         codes.defined() ? shape_string(codes.sizes()) : "undefined",
         scales.defined() ? shape_string(scales.sizes()) : "undefined",
         zeros.defined() ? shape_string(zeros.sizes()) : "undefined",
         g_idx.defined() ? shape_string(g_idx.sizes()) : "undefined");
  auto index = g_idx.to(at::kLong);
  auto scale = scales.to(at::kFloat).index_select(1, index);
  auto zero = zeros.to(at::kFloat).index_select(1, index);
  return scale * (codes.to(at::kFloat) - zero);
}

QuantResult rtn_quantize(const Tensor& weight, const QuantizerConfig& config) {
  detail::check_weight(weight, "rtn_quantize");
  config.validate(weight.size(1));
  const double start = monotonic_seconds();
  auto w = weight.to(at::kFloat);
  QuantResult result;
  detail::RtnTotals totals;
  auto values = detail::rtn_groups(w, config, &result.packed, &totals);
  result.weight = values.to(weight.scalar_type());
  result.stats.error = totals.weight_sq > 0 ? totals.error_sq / totals.weight_sq : 0.0;  // as relative_weight_error
  // Narrower dtypes can flush tiny values to zero: count those on the result.
  result.stats.sparsity = weight.scalar_type() == at::kFloat ? static_cast<double>(totals.zeros) / static_cast<double>(values.numel())
                                                            : detail::fraction_zero(result.weight);
  result.stats.seconds = monotonic_seconds() - start;
  return result;
}

}  // namespace kick::compress
