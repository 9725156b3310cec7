// lib/model/bf16_gemm_cpu.cpp: bf16 matrix products on CPUs where LibTorch has no fast bf16 GEMM. LibTorch hands a
// bf16 GEMM to oneDNN only on x86 CPUs with AVX-512 (BW, VL and DQ); on the others (AMD Zen 2/3, Intel client
// cores) it falls back to a scalar loop: 0.9-5 GFLOP/s on 2 Zen 3 cores, against 60-160 for fp32 (docs/performance.md),
// which made a bf16 prefill 52x slower than fp32. There kick computes each bf16 product as oneDNN does (bf16
// inputs, fp32 accumulation, one rounding of the result to bf16) on the fp32 GEMM: the inputs are widened (exactly),
// multiplied, and the result rounded once. Only the summation order differs from the native route.
#include <atomic>
#include <cstdio>
#include <cstdlib>
#include <cstring>

#include "kick/model.hpp"

namespace kick {

namespace {

// Up to this many rows, x W^T goes through linear_bf16_fp32, which reads W's bf16 values in place, instead of
// widening all of W for a product that reads it only a few times (batched decoding steps, a batch's last tokens).
constexpr int64_t kFewRows = 16;

bool detect_native_bf16_gemm() {
  if (const char* route = std::getenv("KICK_BF16_GEMM"); route && *route) {
    if (std::strcmp(route, "native") == 0) return true;
    if (std::strcmp(route, "fp32") == 0) return false;
    // Not an exception: the first product may run inside a parallel region, where a throw would terminate.
    if (std::strcmp(route, "auto") != 0)
      std::fprintf(stderr, "kick: KICK_BF16_GEMM=%s: expected native, fp32 or auto; using auto\n", route);
  }
#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
  // LibTorch's own test before it calls oneDNN for a bf16 GEMM (mkldnn_bf16_device_check, 1.13 to 2.x).
  return __builtin_cpu_supports("avx512bw") && __builtin_cpu_supports("avx512vl") && __builtin_cpu_supports("avx512dq");
#else
  return true;  // elsewhere (aarch64 with bf16 in LibTorch 2.x, CUDA builds' CPU side) LibTorch's choice stands
#endif
}

std::atomic<int>& native_flag() {
  static std::atomic<int> flag{-1};
  return flag;
}

}  // namespace

bool cpu_bf16_gemm_native() {
  auto& flag = native_flag();
  int value = flag.load(std::memory_order_relaxed);
  if (value < 0) {
    value = detect_native_bf16_gemm() ? 1 : 0;
    flag.store(value, std::memory_order_relaxed);
  }
  return value == 1;
}

bool set_cpu_bf16_gemm_native(bool native) {
  const bool before = cpu_bf16_gemm_native();
  native_flag().store(native ? 1 : 0, std::memory_order_relaxed);
  return before;
}

bool bf16_gemm_through_fp32(at::ScalarType dtype, const at::Device& device) {
  return dtype == at::kBFloat16 && device.is_cpu() && !cpu_bf16_gemm_native();
}

bool bf16_gemm_through_fp32(const Tensor& t) { return bf16_gemm_through_fp32(t.scalar_type(), t.device()); }

Tensor matmul_through_fp32(const Tensor& a, const Tensor& b) {
  return at::matmul(a.to(at::kFloat), b.to(at::kFloat)).to(a.scalar_type());
}

Tensor linear_through_fp32(const Tensor& x, const Tensor& weight) {
  const int64_t rows = x.numel() / std::max<int64_t>(1, x.size(-1));
  if (rows <= kFewRows && linear_bf16_fp32_applies(x, weight)) return linear_bf16_fp32(x, weight).to(x.scalar_type());
  return at::linear(x.to(at::kFloat), weight.to(at::kFloat)).to(x.scalar_type());
}

Tensor matmul_routed(const Tensor& a, const Tensor& b) {
  return bf16_gemm_through_fp32(a) ? matmul_through_fp32(a, b) : at::matmul(a, b);
}

Tensor linear_routed(const Tensor& x, const Tensor& weight) {
  return bf16_gemm_through_fp32(weight) ? linear_through_fp32(x, weight) : at::linear(x, weight);
}

}  // namespace kick
