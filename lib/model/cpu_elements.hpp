// lib/model/cpu_elements.hpp: element access for the model's hand-written CPU kernels (gemv_bf16.cpp,
// fused_cpu.cpp, softmax_cpu.cpp). They compute in fp32 and store fp32 or bf16 (as raw uint16_t bits), rounding
// once per store as ATen does. Internal to lib/model.
#pragma once

#include <algorithm>
#include <cstdint>
#include <cstring>

#include "kick/model.hpp"

namespace kick::cpu {

constexpr int64_t kLanes = 16;  // fp32 lanes of one AVX-512 register; two AVX2 registers

inline float load(const float* p, int64_t i) { return p[i]; }
inline float load(const uint16_t* p, int64_t i) {
  const uint32_t widened = static_cast<uint32_t>(p[i]) << 16;
  float out;
  std::memcpy(&out, &widened, sizeof out);
  return out;
}

// fp32 -> bf16, round to nearest even, NaN to the canonical quiet NaN: c10::BFloat16's rule, branch-free so the
// loops vectorize.
inline uint16_t to_bf16_bits(float value) {
  uint32_t bits;
  std::memcpy(&bits, &value, sizeof bits);
  const uint32_t rounded = (bits + 0x7FFFu + ((bits >> 16) & 1u)) >> 16;
  return static_cast<uint16_t>(value != value ? 0x7FC0u : rounded);
}
inline void store(float* p, int64_t i, float v) { p[i] = v; }
inline void store(uint16_t* p, int64_t i, float v) { p[i] = to_bf16_bits(v); }

// v rounded to the storage type of p and back: what an ATen op on that dtype leaves between two steps.
inline float round_as(const float*, float v) { return v; }
inline float round_as(const uint16_t*, float v) {
  const uint16_t bits = to_bf16_bits(v);
  return load(&bits, 0);
}

// Whether the kernels take this tensor: on CPU, in fp32 or bf16.
inline bool fused_dtype(const Tensor& t) {
  return t.device().is_cpu() && (t.scalar_type() == at::kFloat || t.scalar_type() == at::kBFloat16);
}

// The tensor's data as float or as bf16 bits.
template <typename T>
T* data_as(const Tensor& t) {
  return reinterpret_cast<T*>(t.data_ptr());
}

// Items per parallel task for about 16K elements of work each.
inline int64_t grain_for(int64_t elements_per_item) {
  return std::max<int64_t>(1, 16384 / std::max<int64_t>(1, elements_per_item));
}

}  // namespace kick::cpu

// Vectorized clones of a kernel, picked at load time while the library stays built for baseline x86-64.
// KICK_CLONES_EXACT: AVX-512F / AVX2 clones. GCC may still contract a * b + c into an FMA under avx512f, so the
// files whose kernels must round like their ATen references are also built with -ffp-contract=off (lib/CMakeLists).
// KICK_CLONES_FMA: x86-64-v4 / v3 clones, which have FMA, for kernels checked against their references by tolerance.
#if defined(__GNUC__) && defined(__x86_64__) && !defined(__clang__)
#define KICK_CLONES_EXACT __attribute__((target_clones("avx512f", "avx2", "default")))
#define KICK_CLONES_FMA __attribute__((target_clones("arch=x86-64-v4", "arch=x86-64-v3", "default")))
#else
#define KICK_CLONES_EXACT
#define KICK_CLONES_FMA
#endif
