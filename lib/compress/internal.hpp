// compress/internal.hpp: helpers shared by the algorithm cores of lib/compress (not part of the public
// interface): argument checks, the min/max quantizer grid, and the damped inverse-Hessian factor.
#pragma once

#include <algorithm>
#include <cmath>
#include <functional>
#include <optional>
#include <vector>

#include "kick/compress.hpp"

namespace kick::compress::detail {

// ---- argument checks (config.cpp): one-line kick::Error naming the argument ----
void check_weight(const Tensor& weight, const char* what);                      // 2-D floating point
void check_hessian(const Tensor& hessian, int64_t in_features, const char* what);  // [in, in]
void check_percdamp_blocksize(double percdamp, int64_t blocksize, const char* what);

// torch.round (half to even) without a libm call per element: adding and subtracting 1.5 * 2^23 rounds
// in the default rounding mode for |v| <= 2^22; other values (and NaN) go through nearbyint. Kernels
// using it must be built without -ffast-math (which would fold the two additions away).
inline float round_half_even(float v) {
  constexpr float kShift = 12582912.0f;  // 1.5 * 2^23
  if (std::fabs(v) <= 4194304.0f) return std::copysign((v + kShift) - kShift, v);  // -0.3 -> -0, as torch
  return std::nearbyint(v);
}

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
// One element of each, in the same order of operations, for the CPU kernels (built without contraction).
inline float quantize_to_code(float x, float scale, float zero, float maxq) {
  return std::min(std::max(round_half_even(x / scale) + zero, 0.0f), maxq);
}
inline float code_to_value(float code, float scale, float zero) { return scale * (code - zero); }
// Group-wise RTN of an fp32 [out, in] matrix: returns the dequantized values and fills `packed`.
// rtn_groups dispatches to rtn_groups_cpu (one fused pass, fp32 CPU) or rtn_groups_reference (ATen ops,
// any device); both give the same bits.
// With totals, also the sums rtn_quantize reports, gathered in the same pass and added to *totals: sum w^2,
// sum (w - q)^2 and the number of zero values (rtn_groups zeroes *totals first).
struct RtnTotals {
  double weight_sq = 0, error_sq = 0;
  int64_t zeros = 0;
};
Tensor rtn_groups(const Tensor& weight_fp32, const QuantizerConfig& config, QuantizedWeight* packed,
                  RtnTotals* totals = nullptr);
Tensor rtn_groups_reference(const Tensor& weight_fp32, const QuantizerConfig& config, QuantizedWeight* packed,
                            RtnTotals* totals = nullptr);
Tensor rtn_groups_cpu(const Tensor& weight_fp32, const QuantizerConfig& config, QuantizedWeight* packed,
                      RtnTotals* totals = nullptr);

// ---- Hessian accumulation and preparation (statistics.cpp) ----
// h's upper triangle (row-major [in, in] fp32) <- beta * h + alpha * x^T x for x [n, in] fp32; what lies
// below the diagonal is unspecified. syrk_upper calls BLAS ssyrk where kick was built with one
// (KICK_HAVE_BLAS_SYRK) and the tensors are contiguous fp32 on CPU, else the reference: ATen GEMMs
// over the block upper triangle, any device.
void syrk_upper(Tensor& h, const Tensor& x, double alpha, double beta);
void syrk_upper_reference(Tensor& h, const Tensor& x, double alpha, double beta);
bool syrk_uses_blas();
Tensor symmetric_from_upper(const Tensor& h);  // h's upper triangle mirrored below the diagonal
Tensor symmetric_from_upper_reference(const Tensor& h);  // the same through ATen ops (any device)
bool all_finite(const Tensor& t);              // no NaN or infinity anywhere in t
Tensor gram(const Tensor& x);                  // x^T x for x [n, in], exactly symmetric, through syrk_upper
// A token sample x [n, in] in the form the output-error report uses: the lower Cholesky factor L of x^T x when
// fp32 gives one (then ||x m^T||^2 = ||m L||^2, a triangular product at half a GEMM's FLOPs), else x^T x itself
// (`full`; a sample whose Gram matrix is singular: dead channels, fewer tokens than columns).
struct SampleGram {
  Tensor lower, full;
};
SampleGram sample_gram(const Tensor& x);
// ||m L||^2 for m [out, in] and lower-triangular L [in, in]: BLAS strmm on a copy of m where kick was built with a
// BLAS (KICK_HAVE_BLAS_SYRK) and L is contiguous fp32 on CPU, else the reference, a full GEMM.
double squared_norm_times_lower(const Tensor& m, const Tensor& lower);
double squared_norm_times_lower_reference(const Tensor& m, const Tensor& lower);
struct InverseHessianFactor {
  Tensor upper;          // upper Cholesky factor of (H + damp I)^-1
  double damping = 0;    // fraction of mean(diag H) actually added
  int64_t retries = 0;   // failed factorizations before this one
};
// Damps H (a copy is made) by percdamp * mean(diag H); on a failed factorization retries with the
// damping ten times larger, up to 5 tries, then falls back to the damped diagonal of H. Never throws.
InverseHessianFactor inverse_hessian_factor(const Tensor& hessian, double percdamp);
// A PreparedHessian must match the weight and the config it is used with; a one-line error if not.
void check_prepared(const PreparedHessian& prepared, int64_t in_features, double percdamp, bool act_order,
                    const char* what);

// ---- the driver's per-layer scheduler (task_list.cpp) ----
struct ListedTask {
  int64_t after = -1;          // index of an earlier task that must finish first, or -1
  std::function<void()> run;
};
// Runs every task once; in list order, or side by side (CPU, more than one thread): each thread takes
// the first task of the list that is free and ready, and runs it alone. The first exception stops the
// rest and is rethrown.
void run_task_list(const std::vector<ListedTask>& tasks, bool side_by_side);

// ---- the OBS column sweep of one block, shared by SparseGPT and GPTQ (obs_sweep.cpp) ----
struct ObsSweep {
  Tensor block;  // [rows, count] fp32: the block's weights; later columns receive each column's error
  Tensor hinv;   // [count, count] fp32: the block's diagonal block of the upper Cholesky factor of H^-1
  Tensor mask;   // [rows, count] bool, true = pruned, or undefined; N:M selection fills it during the sweep
  int64_t nm_n = 0, nm_m = 0;             // N:M: the n lowest W^2 / d^2 of every m columns, chosen on arrival
  std::vector<const GridParams*> grids;   // quantizer grid of every column, or empty (no quantization)
};
struct ObsSweepResult {
  Tensor values;  // [rows, count] the pruned / quantized weights
  Tensor errors;  // [rows, count] (w - q) / d, for the lazy update of the columns after the block
  Tensor codes;   // [rows, count] fp32 integer codes when quantizing, else undefined
  Tensor losses;  // [rows] sum over the block of (w - q)^2 / d^2
};
// Dispatches to the CPU kernel for fp32 CPU blocks, else to the reference.
ObsSweepResult obs_sweep(ObsSweep& sweep);
ObsSweepResult obs_sweep_reference(ObsSweep& sweep);  // one ATen op per column, any device
ObsSweepResult obs_sweep_cpu(ObsSweep& sweep);        // rows in parallel; same arithmetic, same order

// ---- channel moments (statistics.cpp) ----
// Per-column sums of x^2 and |x| over the rows of x ([n, in]) whose values are all finite, and how many
// rows those were. The CPU kernel (fp32 or bf16, contiguous) sums in fixed row chunks combined in order; the
// reference is ATen ops, any device and dtype. They differ by rounding only.
struct ChannelSums {
  Tensor squares, absolutes;
  int64_t finite_rows = 0;
};
ChannelSums channel_sums_cpu(const Tensor& x);
ChannelSums channel_sums_reference(const Tensor& x);

// ---- selection (nm_mask.cpp) ----
// Mask of the k lowest scores of each row of [R, C] scores, ties broken by position: exactly what a
// stable ascending sort's first k select, in linear time. lowest_k_by_sort is that sort (the reference).
Tensor lowest_k_per_row(const Tensor& scores, int64_t k);
Tensor lowest_k_by_sort(const Tensor& scores, int64_t k);
// The k-th smallest (1-based) of `count` floats, none NaN, by radix select (a high-bits histogram, then
// nth_element within one bucket): what lowest_k_per_row uses on long rows.
float kth_smallest_radix(const float* values, int64_t count, int64_t k);

// Unstructured per-row pruning of an fp32 CPU weight in one pass per row: the k lowest scores |w| * column_scale
// (|w| when column_scale is undefined) of each row set to +0, ties broken by position, with the mask and the
// stats (sparsity, relative weight error) of the result. Bitwise the weight and mask of prune_mask(scores,
// ratio, per_row) + masked_fill; the error is summed in fp64 per row (the reference sums in fp32). nullopt
// when it does not apply (another dtype or device) or a score is NaN: the caller takes the reference path.
std::optional<PruneResult> prune_lowest_per_row_cpu(const Tensor& weight, const Tensor& column_scale, int64_t k);

double fraction_zero(const Tensor& tensor);
// ||a - b||^2 / ||a||^2 (0 when a is all zero).
double relative_weight_error(const Tensor& original, const Tensor& changed);
// ||x m^T||^2 (summed over tokens and outputs) for a weight difference or weight m [out, in] and inputs
// x [tokens, in]; through gram = x^T x [in, in] when that is given (the same sum, other rounding). Directly,
// in fp32, or with bf16 x as a bf16 GEMM (m rounded to bf16, products summed in fp32 inside the GEMM, outputs
// rounded to bf16 and their squares summed in fp32): what a bf16 forward computes.
double squared_output_norm(const Tensor& m, const Tensor& x, const Tensor& gram);
// The same through a SampleGram of x: ||m L||^2, or through x^T x, or (neither given) directly.
double squared_output_norm(const Tensor& m, const Tensor& x, const SampleGram& gram);

}  // namespace kick::compress::detail
