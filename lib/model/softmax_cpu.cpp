// lib/model/softmax_cpu.cpp: the two exp-based element-wise chains of the decoder as one pass each on CPU, for
// fp32 and bf16 tensors: the attention softmax (with the causal square of a query block) and SiLU(gate) * up. Their
// naive references are ATen's masked_fill + softmax and silu_mul_reference (silu then mul), compared in
// tests/unit/test_model.cpp. Both use exp_fp32 below (within 2 ulp of fp32 exp on [-87, 88], 0 below and inf
// above) and compute in fp32, so they agree
// with their references to fp32 rounding before the final rounding to the tensor's dtype. In a bf16 MMLU batch
// ATen's softmax alone took 16% of the time (docs/performance.md).
#include <algorithm>
#include <cmath>
#include <limits>
#include <vector>

#include <ATen/Parallel.h>

#include "cpu_elements.hpp"
#include "kick/model.hpp"

namespace kick {

namespace {

using namespace cpu;  // the element helpers of cpu_elements.hpp

// e^x for fp32: Cody-Waite reduction to r in [-ln2/2, ln2/2], a degree-7 Taylor polynomial (truncation error
// below 5e-9 relative), 2^n from the exponent bits. Below -87 the result is 0 (e^-87 is 1.6e-38, at the edge of
// fp32's normal range, and -inf must give exactly 0 for masked keys); above 88 it is +inf. NaN stays NaN, and is
// clamped like the rest before the integer conversion (converting a NaN float to int is undefined).
inline float exp_fp32(float x) {
  const float clamped = std::min(88.0f, std::max(-87.0f, x));  // std::max(-87, NaN) is -87
  const float n = std::floor(clamped * 1.44269504088896341f + 0.5f);
  const float r = (clamped - n * 0.693359375f) - n * -2.12194440e-4f;
  float p = 1.0f / 5040.0f;
  p = p * r + 1.0f / 720.0f;
  p = p * r + 1.0f / 120.0f;
  p = p * r + 1.0f / 24.0f;
  p = p * r + 1.0f / 6.0f;
  p = p * r + 0.5f;
  p = p * r + 1.0f;
  p = p * r + 1.0f;
  const uint32_t exponent_bits = static_cast<uint32_t>(static_cast<int32_t>(n) + 127) << 23;
  float scale;
  std::memcpy(&scale, &exponent_bits, sizeof scale);
  const float result = p * scale;
  return x != x ? x : (x < -87.0f ? 0.0f : (x > 88.0f ? std::numeric_limits<float>::infinity() : result));
}

// Elements [begin, end): silu(gate) * up, rounded after the SiLU and after the product as the two ATen ops round.
template <typename T>
KICK_CLONES_FMA void silu_mul_range(const T* gate, const T* up, T* out, int64_t begin, int64_t end) {
  for (int64_t i = begin; i < end; ++i) {
    const float g = load(gate, i);
    const float silu = round_as(gate, g / (1.0f + exp_fp32(-g)));
    store(out, i, silu * load(up, i));
  }
}

// Rows [begin, end) of scores [rows, n] in place. Row r keeps its first visible(r) entries, where
// visible(r) = n - causal_rows + (r % causal_rows) + 1 for a causal query block of causal_rows rows, else n; the
// rest become exactly 0. Max, exponentials and their sum in fp32 (buffer: n floats), one rounding at the store.
template <typename T>
KICK_CLONES_FMA void softmax_rows(T* scores, int64_t n, int64_t causal_rows, float* buffer, int64_t begin, int64_t end) {
  for (int64_t row = begin; row < end; ++row) {
    T* x = scores + row * n;
    const int64_t visible = causal_rows > 0 ? n - causal_rows + row % causal_rows + 1 : n;
    const int64_t body = visible - visible % kLanes;
    for (int64_t i = 0; i < visible; ++i) buffer[i] = load(x, i);
    float lanes[kLanes];
    for (int64_t j = 0; j < kLanes; ++j) lanes[j] = -std::numeric_limits<float>::infinity();
    for (int64_t i = 0; i < body; i += kLanes) {
      for (int64_t j = 0; j < kLanes; ++j) lanes[j] = std::max(lanes[j], buffer[i + j]);
    }
    float max = -std::numeric_limits<float>::infinity();
    for (int64_t j = 0; j < kLanes; ++j) max = std::max(max, lanes[j]);
    for (int64_t i = body; i < visible; ++i) max = std::max(max, buffer[i]);
    for (int64_t j = 0; j < kLanes; ++j) lanes[j] = 0;
    for (int64_t i = 0; i < body; i += kLanes) {
      for (int64_t j = 0; j < kLanes; ++j) {
        buffer[i + j] = exp_fp32(buffer[i + j] - max);
        lanes[j] += buffer[i + j];
      }
    }
    float sum = 0;
    for (int64_t j = 0; j < kLanes; ++j) sum += lanes[j];
    for (int64_t i = body; i < visible; ++i) {
      buffer[i] = exp_fp32(buffer[i] - max);
      sum += buffer[i];
    }
    const float inverse = 1.0f / sum;
    for (int64_t i = 0; i < visible; ++i) store(x, i, buffer[i] * inverse);
    for (int64_t i = visible; i < n; ++i) store(x, i, 0.0f);
  }
}

}  // namespace

// ---------------- SiLU(gate) * up ----------------

Tensor silu_mul_reference(const Tensor& gate, const Tensor& up) { return at::silu(gate) * up; }

Tensor silu_mul(const Tensor& gate, const Tensor& up) {
  if (!fused_dtype(gate) || gate.scalar_type() != up.scalar_type() || !gate.sizes().equals(up.sizes()) ||
      up.device() != gate.device()) {
    return silu_mul_reference(gate, up);
  }
  const Tensor g = gate.contiguous(), u = up.contiguous();
  Tensor out = at::empty_like(g);
  const bool bf16 = g.scalar_type() == at::kBFloat16;
  at::parallel_for(0, g.numel(), 16384, [&](int64_t begin, int64_t end) {
    if (bf16) silu_mul_range(data_as<uint16_t>(g), data_as<uint16_t>(u), data_as<uint16_t>(out), begin, end);
    else silu_mul_range(data_as<float>(g), data_as<float>(u), data_as<float>(out), begin, end);
  });
  return out;
}

// ---------------- softmax ----------------

bool softmax_cpu_applies(const Tensor& scores) { return fused_dtype(scores) && scores.is_contiguous() && scores.dim() >= 1; }

void softmax_cpu_(Tensor& scores, int64_t causal_rows) {
  if (!softmax_cpu_applies(scores)) {
    fail("softmax_cpu_: expected a contiguous fp32 or bf16 CPU tensor, got {} {} on {}", shape_string(scores.sizes()),
         c10::toString(scores.scalar_type()), scores.device().str());
  }
  const int64_t n = scores.size(-1);
  const int64_t rows = n == 0 ? 0 : scores.numel() / n;
  if (causal_rows < 0 || causal_rows > n) fail("softmax_cpu_: causal block of {} rows over {} keys", causal_rows, n);
  const bool bf16 = scores.scalar_type() == at::kBFloat16;
  at::parallel_for(0, rows, grain_for(n), [&](int64_t begin, int64_t end) {
    std::vector<float> buffer(static_cast<size_t>(n));  // once per task, not per row
    if (bf16) softmax_rows(data_as<uint16_t>(scores), n, causal_rows, buffer.data(), begin, end);
    else softmax_rows(data_as<float>(scores), n, causal_rows, buffer.data(), begin, end);
  });
}

}  // namespace kick
