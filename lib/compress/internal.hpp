// compress/internal.hpp: helpers shared by the algorithm cores of lib/compress (not part of the public
// interface): argument checks, the min/max quantizer grid, and the damped inverse-Hessian factor.
#pragma once

#include "kick/compress.hpp"

namespace kick::compress::detail {

// ---- argument checks (config.cpp): one-line kick::Error naming the argument ----
void check_weight(const Tensor& weight, const char* what);                      // 2-D floating point
void check_hessian(const Tensor& hessian, int64_t in_features, const char* what);  // [in, in]
void check_percdamp_blocksize(double percdamp, int64_t blocksize, const char* what);

// ---- the min/max quantizer (quantizer.cpp), GPTQ's Quantizer.find_params with perchannel=True ----
struct GridParams {
  Tensor scale;  // [rows, 1]
  Tensor zero;   // [rows, 1], integer-valued
  int64_t maxq = 15;
};
// Parameters per row of `rows_by_cols` (fp32): the range always contains 0.
GridParams find_grid_params(const Tensor& rows_by_cols, int bits, bool symmetric);
// clamp(round(x / scale) + zero, 0, maxq), as fp32 integers.
Tensor quantize_to_codes(const Tensor& x, const GridParams& grid);
// scale * (codes - zero): the value the reference's quantize() returns.
Tensor codes_to_values(const Tensor& codes, const GridParams& grid);
// Group-wise RTN of an fp32 [out, in] matrix: returns the dequantized values and fills `packed`.
Tensor rtn_groups(const Tensor& weight_fp32, const QuantizerConfig& config, QuantizedWeight* packed);

// ---- Hessian preparation (statistics.cpp) ----
// Columns whose Hessian diagonal is zero never see input: H[d, d] = 1 and W[:, d] = 0 (both in place).
void handle_dead_columns(Tensor& hessian, Tensor& weight);
struct InverseHessianFactor {
  Tensor upper;          // upper Cholesky factor of (H + damp I)^-1
  double damping = 0;    // fraction of mean(diag H) actually added
  int64_t retries = 0;   // failed factorizations before this one
};
// Damps H (a copy is made) by percdamp * mean(diag H); on a failed factorization retries with the
// damping ten times larger, up to 5 tries, then falls back to the damped diagonal of H. Never throws.
InverseHessianFactor inverse_hessian_factor(const Tensor& hessian, double percdamp);

double fraction_zero(const Tensor& tensor);
// ||a - b||^2 / ||a||^2 (0 when a is all zero).
double relative_weight_error(const Tensor& original, const Tensor& changed);

}  // namespace kick::compress::detail
