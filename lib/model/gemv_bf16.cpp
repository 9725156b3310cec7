// lib/model/gemv_bf16.cpp: bf16-weight matrix-vector products on CPU, accumulated in fp32: the one of a decoding
// step, y = W x with W [N, K] and x [K] in bf16 (gemv_bf16), and the head's fp32 logits for a few rows
// (linear_bf16_fp32). Decoding one token reads every weight once, so its speed is memory bandwidth;
// LibTorch 1.13's own bf16 GEMV is a scalar loop that reaches a fraction of it, and rounds its partial sums to
// bf16 (docs/performance.md). The naive reference the tests compare against is at::mv in fp32 on the same values.
#include <ATen/Parallel.h>

#include "cpu_elements.hpp"
#include "kick/model.hpp"

namespace kick {

namespace {

using cpu::kLanes;
using cpu::load;

// Rows [begin, end) of y = W x for each of x_rows vectors x (already fp32, [x_rows, k]); y is [x_rows, n] in Out
// (bf16 bits or fp32). The fixed-width lane loop lets the compiler vectorize without reassociating a single sum
// (each lane is its own accumulator). A row of W (1 KB at k = 576) stays in L1 while every vector reads it.
template <typename Out>
KICK_CLONES_EXACT void gemv_rows(const uint16_t* weight, const float* x, int64_t x_rows, Out* y, int64_t k, int64_t n,
                                 int64_t begin, int64_t end) {
  const int64_t body = k - k % kLanes;
  for (int64_t row = begin; row < end; ++row) {
    const uint16_t* w = weight + row * k;
    for (int64_t r = 0; r < x_rows; ++r) {
      const float* xr = x + r * k;
      float lanes[kLanes] = {};
      for (int64_t i = 0; i < body; i += kLanes) {
        for (int64_t j = 0; j < kLanes; ++j) lanes[j] += load(w, i + j) * xr[i + j];
      }
      float sum = 0;
      for (int64_t j = 0; j < kLanes; ++j) sum += lanes[j];
      for (int64_t i = body; i < k; ++i) sum += load(w, i) * xr[i];
      cpu::store(y + r * n, row, sum);  // bf16: round to nearest even, as a bf16 result of at::mv
    }
  }
}

// About 64 KB of weights per task: enough to amortize the scheduling, small enough to split a 576-row matrix.
int64_t rows_per_task(int64_t k) { return std::max<int64_t>(1, 32768 / std::max<int64_t>(1, k)); }

}  // namespace

bool gemv_bf16_applies(const Tensor& weight, const Tensor& x) {
  return weight.device().is_cpu() && x.device().is_cpu() && weight.scalar_type() == at::kBFloat16 &&
         x.scalar_type() == at::kBFloat16 && weight.dim() == 2 && weight.is_contiguous() && x.numel() == weight.size(1);
}

Tensor gemv_bf16(const Tensor& weight, const Tensor& x) {
  if (!gemv_bf16_applies(weight, x)) {
    fail("gemv_bf16: expected a contiguous bf16 CPU matrix [N, K] and K bf16 values, got {} {} and {} {}",
         shape_string(weight.sizes()), c10::toString(weight.scalar_type()), shape_string(x.sizes()),
         c10::toString(x.scalar_type()));
  }
  const int64_t n = weight.size(0), k = weight.size(1);
  const Tensor x_float = x.reshape({k}).to(at::kFloat).contiguous();
  Tensor y = at::empty({n}, weight.options());
  const auto* w = cpu::data_as<const uint16_t>(weight);
  const float* xf = x_float.data_ptr<float>();
  auto* out = cpu::data_as<uint16_t>(y);
  at::parallel_for(0, n, rows_per_task(k), [&](int64_t begin, int64_t end) { gemv_rows(w, xf, 1, out, k, n, begin, end); });
  return y;
}

bool linear_bf16_fp32_applies(const Tensor& x, const Tensor& weight) {
  return weight.device().is_cpu() && x.device().is_cpu() && weight.scalar_type() == at::kBFloat16 && weight.dim() == 2 &&
         weight.is_contiguous() && weight.size(1) > 0 && x.dim() >= 1 && x.size(-1) == weight.size(1);
}

Tensor linear_bf16_fp32(const Tensor& x, const Tensor& weight) {
  if (!linear_bf16_fp32_applies(x, weight)) {
    fail("linear_bf16_fp32: expected a contiguous bf16 CPU matrix [N, K] and CPU inputs [..., K], got {} {} and {}",
         shape_string(weight.sizes()), c10::toString(weight.scalar_type()), shape_string(x.sizes()));
  }
  const int64_t n = weight.size(0), k = weight.size(1), x_rows = x.numel() / k;
  const Tensor x_float = x.reshape({x_rows, k}).to(at::kFloat).contiguous();
  auto sizes = x.sizes().vec();
  sizes.back() = n;
  Tensor y = at::empty(sizes, x_float.options());
  const auto* w = cpu::data_as<const uint16_t>(weight);
  const float* xf = x_float.data_ptr<float>();
  float* out = y.data_ptr<float>();
  at::parallel_for(0, n, rows_per_task(k), [&](int64_t begin, int64_t end) { gemv_rows(w, xf, x_rows, out, k, n, begin, end); });
  return y;
}

}  // namespace kick
