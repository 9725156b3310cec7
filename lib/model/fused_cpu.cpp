// lib/model/fused_cpu.cpp: RMSNorm and the rotary embedding as one pass each on CPU, for fp32 and bf16 tensors.
// As ATen ops each is 5 to 8 passes over memory, each allocating its result. Their naive references are those ATen
// chains, kept beside them (rms_norm_reference, apply_rotary_reference) and compared in tests/unit/test_model.cpp.
// Rotary rounds exactly where the ATen chain does (cos/sin to the tensor's dtype, each product, the sum), so it is
// bitwise equal to its reference in both dtypes; RMSNorm differs only in the order of its sum of squares. Built
// with -ffp-contract=off. The exp-based kernels (softmax, SiLU) are in softmax_cpu.cpp.
#include <algorithm>
#include <cmath>

#include <ATen/Parallel.h>

#include "cpu_elements.hpp"
#include "kick/model.hpp"

namespace kick {

namespace {

using namespace cpu;  // the element helpers of cpu_elements.hpp

// Rows [begin, end) of x [rows, h]: x * rsqrt(mean(x^2) + eps) * weight, as the reference rounds: (x * scale) * w.
template <typename T, typename W>
KICK_CLONES_EXACT void rms_norm_rows(const T* x, const W* weight, T* out, int64_t h, float eps, int64_t begin, int64_t end) {
  const int64_t body = h - h % kLanes;
  for (int64_t row = begin; row < end; ++row) {
    const T* in = x + row * h;
    T* o = out + row * h;
    float lanes[kLanes] = {};
    for (int64_t i = 0; i < body; i += kLanes) {
      for (int64_t j = 0; j < kLanes; ++j) lanes[j] += load(in, i + j) * load(in, i + j);
    }
    float sum = 0;
    for (int64_t j = 0; j < kLanes; ++j) sum += lanes[j];
    for (int64_t i = body; i < h; ++i) sum += load(in, i) * load(in, i);
    const float scale = 1.0f / std::sqrt(sum / static_cast<float>(h) + eps);
    for (int64_t i = 0; i < h; ++i) store(o, i, (load(in, i) * scale) * load(weight, i));
  }
}

// Positions [begin, end) of x [positions, heads, d] in place; cos/sin [positions, d] fp32 holding values already
// rounded to T (the reference's cos.to(dtype)). rotate_half(x)[j] is -x[j + d/2] for j < d/2 and x[j - d/2] after.
template <typename T>
KICK_CLONES_EXACT void rotary_positions(T* x, const float* cos, const float* sin, int64_t heads, int64_t d, int64_t begin,
                                         int64_t end) {
  const int64_t half = d / 2;
  for (int64_t pos = begin; pos < end; ++pos) {
    const float* c = cos + pos * d;
    const float* s = sin + pos * d;
    for (int64_t head = 0; head < heads; ++head) {
      T* v = x + (pos * heads + head) * d;
      for (int64_t j = 0; j < half; ++j) {
        const float a = load(v, j), b = load(v, j + half);
        const float low = round_as(v, a * c[j]) + round_as(v, -b * s[j]);
        const float high = round_as(v, b * c[j + half]) + round_as(v, a * s[j + half]);
        store(v, j, low);
        store(v, j + half, high);
      }
    }
  }
}

}  // namespace

// ---------------- RMSNorm ----------------

Tensor rms_norm_reference(const Tensor& x, const Tensor& weight, double eps) {
  auto xf = x.to(at::kFloat);
  auto normed = xf * at::rsqrt(xf.pow(2).mean(-1, /*keepdim=*/true) + eps);
  return (normed * weight.to(at::kFloat)).to(x.scalar_type());
}

Tensor rms_norm(const Tensor& x, const Tensor& weight, double eps) {
  const int64_t h = x.size(-1);
  if (!fused_dtype(x) || !fused_dtype(weight) || weight.numel() != h || !weight.is_contiguous()) {
    return rms_norm_reference(x, weight, eps);
  }
  const Tensor in = x.contiguous();
  Tensor out = at::empty_like(in);
  const int64_t rows = in.numel() / std::max<int64_t>(1, h);
  const bool bf16 = in.scalar_type() == at::kBFloat16, weight_bf16 = weight.scalar_type() == at::kBFloat16;
  const auto e = static_cast<float>(eps);
  at::parallel_for(0, rows, grain_for(h), [&](int64_t begin, int64_t end) {
    if (bf16 && weight_bf16) rms_norm_rows(data_as<uint16_t>(in), data_as<uint16_t>(weight), data_as<uint16_t>(out), h, e, begin, end);
    else if (bf16) rms_norm_rows(data_as<uint16_t>(in), data_as<float>(weight), data_as<uint16_t>(out), h, e, begin, end);
    else if (weight_bf16) rms_norm_rows(data_as<float>(in), data_as<uint16_t>(weight), data_as<float>(out), h, e, begin, end);
    else rms_norm_rows(data_as<float>(in), data_as<float>(weight), data_as<float>(out), h, e, begin, end);
  });
  return out;
}

// ---------------- rotary ----------------

Tensor apply_rotary_reference(const Tensor& x, const Tensor& cos, const Tensor& sin) {
  const int64_t half = x.size(-1) / 2;
  auto rotated = at::cat({-x.narrow(-1, half, half), x.narrow(-1, 0, half)}, -1);
  auto c = cos.unsqueeze(1).to(x.scalar_type());
  auto s = sin.unsqueeze(1).to(x.scalar_type());
  return x * c + rotated * s;
}

void apply_rotary_(Tensor& x, const Tensor& cos, const Tensor& sin) {
  // x: [B, T, heads, d] (the projection's layout, before the heads move forward); cos/sin: [B, T, d] fp32.
  const int64_t d = x.size(-1), heads = x.size(2), positions = x.size(0) * x.size(1);
  const bool fused = fused_dtype(x) && x.is_contiguous() && d % 2 == 0 && cos.scalar_type() == at::kFloat &&
                     sin.scalar_type() == at::kFloat && cos.numel() == positions * d && sin.numel() == positions * d;
  if (!fused) {
    x.copy_(apply_rotary_reference(x.transpose(1, 2), cos, sin).transpose(1, 2));
    return;
  }
  // Rounded to x's dtype once per call, not once per head in the kernel.
  const Tensor c = cos.to(x.scalar_type()).to(at::kFloat).contiguous();
  const Tensor s = sin.to(x.scalar_type()).to(at::kFloat).contiguous();
  const bool bf16 = x.scalar_type() == at::kBFloat16;
  at::parallel_for(0, positions, grain_for(heads * d), [&](int64_t begin, int64_t end) {
    if (bf16) rotary_positions(data_as<uint16_t>(x), c.data_ptr<float>(), s.data_ptr<float>(), heads, d, begin, end);
    else rotary_positions(data_as<float>(x), c.data_ptr<float>(), s.data_ptr<float>(), heads, d, begin, end);
  });
}

}  // namespace kick
