// compress/quantizer.cpp: the min/max uniform quantizer every quantizing method shares (the grid of
// GPTQ's Quantizer.find_params/quantize), round-to-nearest quantization, and QuantizedWeight decoding.
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

Tensor rtn_groups(const Tensor& weight_fp32, const QuantizerConfig& config, QuantizedWeight* packed) {
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
  return values;
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
  auto values = detail::rtn_groups(w, config, &result.packed);
  result.weight = values.to(weight.scalar_type());
  result.stats.error = detail::relative_weight_error(w, values);
  result.stats.sparsity = detail::fraction_zero(result.weight);
  result.stats.seconds = monotonic_seconds() - start;
  return result;
}

}  // namespace kick::compress
