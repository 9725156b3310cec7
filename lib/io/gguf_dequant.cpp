// lib/io/gguf_dequant.cpp: owns block dequantization of the ggml tensor types kick reads from GGUF
// (F32, F16, BF16, Q4_0, Q4_1, Q5_0, Q5_1, Q8_0, Q2_K, Q3_K, Q4_K, Q5_K, Q6_K) to fp32. Each type is a
// plain scalar decoder of one block, written from the block layouts of ggml's ggml-common.h; blocks are
// decoded in parallel. Arithmetic is kept in the same order as ggml's reference (scale products first,
// then times the quant, then the min subtracted) so results match other implementations bit for bit.
#include "gguf_dequant.hpp"

#include <ATen/Parallel.h>
#include <c10/util/Half.h>

#include <algorithm>
#include <array>
#include <cstring>

namespace kick::gguf {

namespace {

constexpr int kSuperBlock = 256;  // QK_K: the k-quants' super-block size

float fp16_at(const uint8_t* p) {
  uint16_t bits;
  std::memcpy(&bits, p, 2);
  return static_cast<float>(c10::Half(bits, c10::Half::from_bits()));
}

void decode_f32(const uint8_t* block, float* out) { std::memcpy(out, block, 4); }

void decode_f16(const uint8_t* block, float* out) { out[0] = fp16_at(block); }

void decode_bf16(const uint8_t* block, float* out) {
  uint16_t high;
  std::memcpy(&high, block, 2);
  const uint32_t bits = static_cast<uint32_t>(high) << 16;  // bf16 is the top half of an fp32
  std::memcpy(out, &bits, 4);
}

// Q4_0: fp16 d, then 16 bytes; element j < 16 is the low nibble of byte j, element j + 16 its high
// nibble; value = (q - 8) * d.
void decode_q4_0(const uint8_t* block, float* out) {
  const float d = fp16_at(block);
  const uint8_t* qs = block + 2;
  for (int j = 0; j < 16; ++j) {
    out[j] = static_cast<float>((qs[j] & 0x0F) - 8) * d;
    out[j + 16] = static_cast<float>((qs[j] >> 4) - 8) * d;
  }
}

// Q4_1: fp16 d and m, then nibbles as Q4_0; value = q * d + m.
void decode_q4_1(const uint8_t* block, float* out) {
  const float d = fp16_at(block);
  const float m = fp16_at(block + 2);
  const uint8_t* qs = block + 4;
  for (int j = 0; j < 16; ++j) {
    out[j] = static_cast<float>(qs[j] & 0x0F) * d + m;
    out[j + 16] = static_cast<float>(qs[j] >> 4) * d + m;
  }
}

// The fifth bit of element j of a Q5 block: bit j of a little-endian 32-bit mask.
int fifth_bit(uint32_t high_bits, int j) { return static_cast<int>((high_bits >> j) & 1u) << 4; }

// Q5_0: fp16 d, 4 bytes of fifth bits, 16 bytes of nibbles; value = (q - 16) * d.
void decode_q5_0(const uint8_t* block, float* out) {
  const float d = fp16_at(block);
  uint32_t high_bits;
  std::memcpy(&high_bits, block + 2, 4);
  const uint8_t* qs = block + 6;
  for (int j = 0; j < 16; ++j) {
    out[j] = static_cast<float>(((qs[j] & 0x0F) | fifth_bit(high_bits, j)) - 16) * d;
    out[j + 16] = static_cast<float>(((qs[j] >> 4) | fifth_bit(high_bits, j + 16)) - 16) * d;
  }
}

// Q5_1: fp16 d and m, fifth bits, nibbles; value = q * d + m.
void decode_q5_1(const uint8_t* block, float* out) {
  const float d = fp16_at(block);
  const float m = fp16_at(block + 2);
  uint32_t high_bits;
  std::memcpy(&high_bits, block + 4, 4);
  const uint8_t* qs = block + 8;
  for (int j = 0; j < 16; ++j) {
    out[j] = static_cast<float>((qs[j] & 0x0F) | fifth_bit(high_bits, j)) * d + m;
    out[j + 16] = static_cast<float>((qs[j] >> 4) | fifth_bit(high_bits, j + 16)) * d + m;
  }
}

// Q8_0: fp16 d, 32 signed bytes; value = q * d.
void decode_q8_0(const uint8_t* block, float* out) {
  const float d = fp16_at(block);
  for (int j = 0; j < 32; ++j) out[j] = static_cast<float>(static_cast<int8_t>(block[2 + j])) * d;
}

// Q2_K (84 bytes): 16 scale bytes (low nibble scale, high nibble min, one per 16 elements), 64 bytes of
// 2-bit quants, fp16 d, fp16 dmin. Element i = 128 h + 32 j + l takes bits 2j..2j+1 of byte 32 h + l.
void decode_q2_k(const uint8_t* block, float* out) {
  const uint8_t* scales = block;
  const uint8_t* qs = block + 16;
  const float d = fp16_at(block + 80);
  const float dmin = fp16_at(block + 82);
  for (int i = 0; i < kSuperBlock; ++i) {
    const int half = i / 128, shift = 2 * ((i % 128) / 32), l = i % 32;
    const int q = (qs[32 * half + l] >> shift) & 3;
    const uint8_t sc = scales[i / 16];
    const float scale = d * static_cast<float>(sc & 0x0F);
    const float min = dmin * static_cast<float>(sc >> 4);
    out[i] = scale * static_cast<float>(q) - min;
  }
}

// Q3_K (110 bytes): 32 bytes of high-bit masks, 64 bytes of 2-bit quants, 12 bytes of sixteen 6-bit
// signed scales, fp16 d. Element i = 128 h + 32 j + l: low bits as Q2_K, high bit = bit (4 h + j) of
// mask byte l; a clear high bit means q - 4.
void decode_q3_k(const uint8_t* block, float* out) {
  const uint8_t* masks = block;
  const uint8_t* qs = block + 32;
  const uint8_t* packed = block + 96;
  const float d = fp16_at(block + 108);
  std::array<float, 16> scale;
  for (int k = 0; k < 16; ++k) {
    // Low 4 bits: nibbles of bytes 0..7 (low nibbles first); high 2 bits: 2-bit fields of bytes 8..11.
    const int low = k < 8 ? (packed[k] & 0x0F) : (packed[k - 8] >> 4);
    const int high = (packed[8 + k % 4] >> (2 * (k / 4))) & 3;
    scale[k] = d * static_cast<float>((low | (high << 4)) - 32);
  }
  for (int i = 0; i < kSuperBlock; ++i) {
    const int half = i / 128, j = (i % 128) / 32, l = i % 32;
    const int low = (qs[32 * half + l] >> (2 * j)) & 3;
    const bool high = (masks[l] >> (4 * half + j)) & 1;
    out[i] = scale[i / 16] * static_cast<float>(low - (high ? 0 : 4));
  }
}

// The eight 6-bit scales and mins of a Q4_K/Q5_K super-block, packed in 12 bytes: sub-blocks 0..3 in
// the low 6 bits of bytes 0..3 (scales) and 4..7 (mins); sub-blocks 4..7 in the nibbles of bytes 8..11
// with their top 2 bits in the top bits of bytes 0..7.
void unpack_k_scales(const uint8_t* packed, std::array<uint8_t, 8>& scales, std::array<uint8_t, 8>& mins) {
  for (int s = 0; s < 4; ++s) {
    scales[s] = packed[s] & 63;
    mins[s] = packed[s + 4] & 63;
    scales[s + 4] = static_cast<uint8_t>((packed[s + 8] & 0x0F) | ((packed[s] >> 6) << 4));
    mins[s + 4] = static_cast<uint8_t>((packed[s + 8] >> 4) | ((packed[s + 4] >> 6) << 4));
  }
}

// Q4_K (144 bytes) and Q5_K (176 bytes): fp16 d, fp16 dmin, 12 bytes of scales/mins, [Q5_K: 32 bytes
// of fifth bits], 128 bytes of nibbles. Element i = 64 g + 32 n + l is in sub-block s = 2 g + n: nibble n
// of byte 32 g + l, fifth bit = bit s of byte l; value = (d * scale[s]) * q - dmin * min[s].
template <bool kFiveBits>
void decode_q45_k(const uint8_t* block, float* out) {
  const float d = fp16_at(block);
  const float dmin = fp16_at(block + 2);
  std::array<uint8_t, 8> scales, mins;
  unpack_k_scales(block + 4, scales, mins);
  const uint8_t* high_bits = block + 16;
  const uint8_t* qs = kFiveBits ? block + 48 : block + 16;
  for (int i = 0; i < kSuperBlock; ++i) {
    const int group = i / 64, nibble = (i % 64) / 32, l = i % 32;
    const int s = 2 * group + nibble;
    int q = (qs[32 * group + l] >> (4 * nibble)) & 0x0F;
    if (kFiveBits) q |= ((high_bits[l] >> s) & 1) << 4;
    const float scale = d * static_cast<float>(scales[s]);
    const float min = dmin * static_cast<float>(mins[s]);
    out[i] = scale * static_cast<float>(q) - min;
  }
}

// Q6_K (210 bytes): 128 bytes of low nibbles, 64 bytes of 2-bit highs, 16 signed scales (one per 16
// elements), fp16 d. Element i = 128 h + r: low nibble (r / 64) of byte 64 h + r % 64, high bits
// 2 (r / 32) of byte 32 h + r % 32; value = (d * scale) * (q - 32).
void decode_q6_k(const uint8_t* block, float* out) {
  const uint8_t* low_bits = block;
  const uint8_t* high_bits = block + 128;
  const auto* scales = reinterpret_cast<const int8_t*>(block + 192);
  const float d = fp16_at(block + 208);
  for (int i = 0; i < kSuperBlock; ++i) {
    const int half = i / 128, r = i % 128;
    const int low = (low_bits[64 * half + r % 64] >> (4 * (r / 64))) & 0x0F;
    const int high = (high_bits[32 * half + r % 32] >> (2 * (r / 32))) & 3;
    const float scale = d * static_cast<float>(scales[i / 16]);
    out[i] = scale * static_cast<float>((low | (high << 4)) - 32);
  }
}

using BlockDecoder = void (*)(const uint8_t* block, float* out);

struct TypeEntry {
  TypeLayout layout;
  BlockDecoder decode;
};

constexpr std::array<TypeEntry, 13> kTypes = {{
    {{GgmlType::F32, "F32", 1, 4}, decode_f32},
    {{GgmlType::F16, "F16", 1, 2}, decode_f16},
    {{GgmlType::Q4_0, "Q4_0", 32, 18}, decode_q4_0},
    {{GgmlType::Q4_1, "Q4_1", 32, 20}, decode_q4_1},
    {{GgmlType::Q5_0, "Q5_0", 32, 22}, decode_q5_0},
    {{GgmlType::Q5_1, "Q5_1", 32, 24}, decode_q5_1},
    {{GgmlType::Q8_0, "Q8_0", 32, 34}, decode_q8_0},
    {{GgmlType::Q2_K, "Q2_K", kSuperBlock, 84}, decode_q2_k},
    {{GgmlType::Q3_K, "Q3_K", kSuperBlock, 110}, decode_q3_k},
    {{GgmlType::Q4_K, "Q4_K", kSuperBlock, 144}, decode_q45_k<false>},
    {{GgmlType::Q5_K, "Q5_K", kSuperBlock, 176}, decode_q45_k<true>},
    {{GgmlType::Q6_K, "Q6_K", kSuperBlock, 210}, decode_q6_k},
    {{GgmlType::BF16, "BF16", 1, 2}, decode_bf16},
}};

const TypeEntry* find_entry(uint32_t type_id) {
  for (const auto& entry : kTypes) {
    if (static_cast<uint32_t>(entry.layout.type) == type_id) return &entry;
  }
  return nullptr;
}

}  // namespace

const TypeLayout* find_type_layout(uint32_t type_id) {
  const TypeEntry* entry = find_entry(type_id);
  return entry ? &entry->layout : nullptr;
}

std::string ggml_type_name(uint32_t type_id) {
  static constexpr std::array<const char*, 42> kNames = {
      "F32",   "F16",    "Q4_0",   "Q4_1",    "Q4_2",   "Q4_3",    "Q5_0",  "Q5_1",  "Q8_0",
      "Q8_1",  "Q2_K",   "Q3_K",   "Q4_K",    "Q5_K",   "Q6_K",    "Q8_K",  "IQ2_XXS", "IQ2_XS",
      "IQ3_XXS", "IQ1_S", "IQ4_NL", "IQ3_S",  "IQ2_S",  "IQ4_XS",  "I8",    "I16",   "I32",
      "I64",   "F64",    "IQ1_M",  "BF16",    "Q4_0_4_4", "Q4_0_4_8", "Q4_0_8_8", "TQ1_0", "TQ2_0",
      "IQ4_NL_4_4", "IQ4_NL_4_8", "IQ4_NL_8_8", "MXFP4", "NVFP4", "Q1_0"};
  if (type_id < kNames.size()) return kNames[type_id];
  return "unknown";
}

void dequantize_blocks(const TypeLayout& layout, const uint8_t* src, int64_t n_blocks, float* dst) {
  const TypeEntry* entry = find_entry(static_cast<uint32_t>(layout.type));
  const BlockDecoder decode = entry->decode;
  const int64_t elements = layout.block_elements, bytes = layout.block_bytes;
  // About 16K values per task: enough work to amortise scheduling, small enough to balance.
  const int64_t grain = std::max<int64_t>(1, 16384 / elements);
  at::parallel_for(0, n_blocks, grain, [&](int64_t begin, int64_t end) {
    for (int64_t b = begin; b < end; ++b) decode(src + b * bytes, dst + b * elements);
  });
}

}  // namespace kick::gguf
