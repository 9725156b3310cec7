// lib/model/gemv_bf16.cpp: the bf16 matrix-vector product of one decoding step on CPU, y = W x with W [N, K] and
// x [K] in bf16, accumulated in fp32. Decoding one token reads every weight once, so its speed is memory bandwidth;
// LibTorch 1.13's own bf16 GEMV is a scalar loop that reaches a fraction of it, and rounds its partial sums to
// bf16 (docs/performance.md). The naive reference the tests compare against is at::mv in fp32 on the same values.
#include <ATen/Parallel.h>

#include "cpu_elements.hpp"
#include "kick/model.hpp"

namespace kick {

namespace {

using cpu::kLanes;
using cpu::load;

// Rows [begin, end) of y = W x. x is already fp32. The fixed-width lane loop lets the compiler vectorize without
// reassociating a single sum (each lane is its own accumulator); the clones pick AVX-512 or AVX2 at load time
// while the library stays built for the baseline x86-64.
KICK_CLONES_EXACT void gemv_rows(const uint16_t* weight, const float* x, uint16_t* y, int64_t k, int64_t begin, int64_t end) {
  const int64_t body = k - k % kLanes;
  for (int64_t row = begin; row < end; ++row) {
    const uint16_t* w = weight + row * k;
    float lanes[kLanes] = {};
    for (int64_t i = 0; i < body; i += kLanes) {
      for (int64_t j = 0; j < kLanes; ++j) lanes[j] += load(w, i + j) * x[i + j];
    }
    float sum = 0;
    for (int64_t j = 0; j < kLanes; ++j) sum += lanes[j];
    for (int64_t i = body; i < k; ++i) sum += load(w, i) * x[i];
    y[row] = c10::BFloat16(sum).x;  // round to nearest even, as a bf16 result of at::mv
  }
}

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
  const auto* w = reinterpret_cast<const uint16_t*>(weight.data_ptr<at::BFloat16>());
  const float* xf = x_float.data_ptr<float>();
  auto* out = reinterpret_cast<uint16_t*>(y.data_ptr<at::BFloat16>());
  // About 64 KB of weights per task: enough to amortize the scheduling, small enough to split a 576-row matrix.
  const int64_t grain = std::max<int64_t>(1, 32768 / std::max<int64_t>(1, k));
  at::parallel_for(0, n, grain, [&](int64_t begin, int64_t end) { gemv_rows(w, xf, out, k, begin, end); });
  return y;
}

}  // namespace kick
