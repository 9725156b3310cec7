// lib/io/gguf_dequant.hpp (internal): the ggml tensor types kick can read from GGUF files, their
// block layouts, and block dequantization to fp32. Used only by lib/io/gguf.cpp and its tests.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

namespace kick::gguf {

// ggml's type ids as they appear in a GGUF tensor info.
enum class GgmlType : uint32_t {
  F32 = 0, F16 = 1, Q4_0 = 2, Q4_1 = 3, Q5_0 = 6, Q5_1 = 7, Q8_0 = 8,
  Q2_K = 10, Q3_K = 11, Q4_K = 12, Q5_K = 13, Q6_K = 14, BF16 = 30,
};

// One block of `block_elements` values is stored in `block_bytes` bytes; a tensor row (GGUF ne[0])
// holds a whole number of blocks.
struct TypeLayout {
  GgmlType type;
  std::string_view name;
  int64_t block_elements;
  int64_t block_bytes;
};

// The layout of a type kick can dequantize, or nullptr for any other id.
const TypeLayout* find_type_layout(uint32_t type_id);

// ggml's name for any type id it defines ("IQ2_XXS", "Q8_K"...), or "unknown" — for error messages.
std::string ggml_type_name(uint32_t type_id);

// Dequantizes `n_blocks` consecutive blocks of `layout` at `src` into `dst`
// (n_blocks * block_elements floats), in parallel over blocks.
void dequantize_blocks(const TypeLayout& layout, const uint8_t* src, int64_t n_blocks, float* dst);

}  // namespace kick::gguf
