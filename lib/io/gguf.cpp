// lib/io/gguf.cpp: owns the GGUF v2/v3 format: the reader (header, metadata of every value type including
// nested arrays, tensor infos, alignment, every tensor dequantized to fp32 by gguf_dequant), the v3
// writer (F32/F16 tensors, JSON metadata typed the way llama.cpp expects), the llama Checkpoint mapping
// both ways (names, q/k row order, config, vocabulary), and the interleaved <-> rotate-half permutation.
#include <ATen/ATen.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>
#include <optional>
#include <utility>

#include "gguf_dequant.hpp"
#include "kick/io.hpp"

namespace kick {

namespace {

// GGUF metadata value types.
enum ValueType : uint32_t {
  kU8 = 0, kI8 = 1, kU16 = 2, kI16 = 3, kU32 = 4, kI32 = 5, kF32 = 6, kBool = 7,
  kString = 8, kArray = 9, kU64 = 10, kI64 = 11, kF64 = 12,
};

constexpr uint32_t kGgufMagic = 0x46554747;  // "GGUF" read as a little-endian uint32
constexpr uint64_t kDefaultAlignment = 32;
constexpr uint32_t kMaxDims = 4;              // GGML_MAX_DIMS
constexpr int kMaxArrayNesting = 8;
constexpr size_t kMaxTensorNameBytes = 63;    // GGML_MAX_NAME - 1: llama.cpp refuses longer names

uint64_t align_up(uint64_t x, uint64_t alignment) { return (x + alignment - 1) / alignment * alignment; }

bool is_power_of_two(uint64_t x) { return x != 0 && (x & (x - 1)) == 0; }

// Smallest encoded size of one value of a metadata type, for rejecting array counts that cannot fit.
uint64_t min_value_bytes(uint32_t type) {
  switch (type) {
    case kU8: case kI8: case kBool: return 1;
    case kU16: case kI16: return 2;
    case kU32: case kI32: case kF32: return 4;
    case kString: return 8;           // the length prefix
    case kArray: return 4 + 8;        // element type + count
    default: return 8;
  }
}

// Sequential reader over the header region of a mapped GGUF file; every read is bounds-checked and
// every failure names the file and what was being read.
class HeaderReader {
 public:
  explicit HeaderReader(const MappedFile& file) : file_(file) {}

  uint64_t position() const { return pos_; }
  uint64_t remaining() const { return file_.size() - pos_; }

  const uint8_t* take(uint64_t n, const std::string& what) {
    if (n > remaining()) {
      fail("{}: GGUF header runs past the end of the file ({} bytes) reading {} ({} bytes at byte {})",
           file_.path(), file_.size(), what, n, pos_);
    }
    const uint8_t* p = file_.data() + pos_;
    pos_ += n;
    return p;
  }

  template <typename T>
  T scalar(const std::string& what) {
    T value;
    std::memcpy(&value, take(sizeof(T), what), sizeof(T));
    return value;
  }

  std::string string(const std::string& what) {
    const auto length = scalar<uint64_t>(what + " length");
    if (length > remaining()) {
      fail("{}: {} claims a string of {} bytes at byte {}, but only {} bytes remain in the file",
           file_.path(), what, length, pos_, remaining());
    }
    const uint8_t* p = take(length, what);
    return std::string(reinterpret_cast<const char*>(p), length);
  }

 private:
  const MappedFile& file_;
  uint64_t pos_ = 0;
};

// F32 metadata becomes the double with the float's shortest decimal spelling (1e-05f -> 1e-05), so
// config values read from GGUF equal the ones written in config.json; the float round-trips exactly.
double float_as_decimal_double(float value) {
  if (!std::isfinite(value)) return static_cast<double>(value);
  return std::stod(fmt::format("{}", value));
}

nlohmann::json read_value(HeaderReader& in, uint32_t type, const std::string& key, const std::string& path,
                          int depth) {
  const std::string what = "metadata " + key;
  switch (type) {
    case kU8: return in.scalar<uint8_t>(what);
    case kI8: return in.scalar<int8_t>(what);
    case kU16: return in.scalar<uint16_t>(what);
    case kI16: return in.scalar<int16_t>(what);
    case kU32: return in.scalar<uint32_t>(what);
    case kI32: return in.scalar<int32_t>(what);
    case kU64: return in.scalar<uint64_t>(what);
    case kI64: return in.scalar<int64_t>(what);
    case kF64: return in.scalar<double>(what);
    case kF32: {
      const auto value = in.scalar<float>(what);
      // Array elements (scores: tens of thousands) skip the decimal round trip; the float is exact anyway.
      return depth == 0 ? float_as_decimal_double(value) : static_cast<double>(value);
    }
    case kBool: {
      const auto byte = in.scalar<uint8_t>(what);
      if (byte > 1) fail("{}: metadata {} is a bool holding {} (expected 0 or 1)", path, key, byte);
      return byte == 1;
    }
    case kString: return in.string(what);
    case kArray: {
      if (depth >= kMaxArrayNesting) {
        fail("{}: metadata {} nests arrays more than {} deep", path, key, kMaxArrayNesting);
      }
      const auto element_type = in.scalar<uint32_t>(what + " element type");
      const auto count = in.scalar<uint64_t>(what + " element count");
      if (element_type > kF64) fail("{}: metadata {} is an array of unknown value type {}", path, key, element_type);
      if (count > in.remaining() / min_value_bytes(element_type)) {
        fail("{}: metadata {} claims {} array elements, more than the {} bytes left in the file can hold", path,
             key, count, in.remaining());
      }
      nlohmann::json array = nlohmann::json::array();
      for (uint64_t i = 0; i < count; ++i) array.push_back(read_value(in, element_type, key, path, depth + 1));
      return array;
    }
    default: fail("{}: metadata {} has unknown value type {}", path, key, type);
  }
}

struct TensorInfo {
  std::string name;
  std::vector<int64_t> shape;  // torch order: GGUF ne reversed
  uint32_t type_id = 0;
  uint64_t offset = 0;         // relative to the start of the data section
};

TensorInfo read_tensor_info(HeaderReader& in, const std::string& path) {
  TensorInfo info;
  info.name = in.string("tensor name");
  const std::string what = "tensor info of " + info.name;
  const auto n_dims = in.scalar<uint32_t>(what);
  if (n_dims == 0 || n_dims > kMaxDims) {
    fail("{}: tensor {} has {} dimensions (expected 1 to {})", path, info.name, n_dims, kMaxDims);
  }
  std::vector<int64_t> ne(n_dims);
  uint64_t numel = 1;
  for (auto& extent : ne) {
    const auto value = in.scalar<uint64_t>(what);
    if (value > static_cast<uint64_t>(std::numeric_limits<int64_t>::max()) ||
        (value != 0 && numel > static_cast<uint64_t>(std::numeric_limits<int64_t>::max()) / value)) {
      fail("{}: tensor {} has an impossible dimension {}", path, info.name, value);
    }
    numel *= value;
    extent = static_cast<int64_t>(value);
  }
  info.shape.assign(ne.rbegin(), ne.rend());
  info.type_id = in.scalar<uint32_t>(what);
  info.offset = in.scalar<uint64_t>(what);
  return info;
}

}  // namespace

GgufContents read_gguf(const std::string& path, FileAccess access) {
  auto file = std::make_shared<MappedFile>(path, access);
  HeaderReader in(*file);
  GgufContents out;

  if (file->size() < 4 || std::memcmp(file->data(), "GGUF", 4) != 0) {
    fail("{}: not a GGUF file (bad magic: the first 4 bytes are not \"GGUF\")", path);
  }
  in.take(4, "magic");
  out.version = in.scalar<uint32_t>("version");
  if (out.version != 2 && out.version != 3) {
    // A big-endian file reads as a byte-swapped small number.
    const bool swapped = (out.version & 0xFFFFu) == 0 && out.version != 0;
    fail("{}: GGUF version {} is not supported (kick reads versions 2 and 3{})", path, out.version,
         swapped ? "; this looks like a big-endian file" : "");
  }
  const auto tensor_count = in.scalar<uint64_t>("tensor count");
  const auto kv_count = in.scalar<uint64_t>("metadata count");
  // Every metadata pair and tensor info needs well over 8 bytes, so larger counts are lies.
  if (kv_count > in.remaining() / 8 || tensor_count > in.remaining() / 8) {
    fail("{}: GGUF header claims {} metadata pairs and {} tensors, which cannot fit in the {}-byte file", path,
         kv_count, tensor_count, file->size());
  }
  for (uint64_t i = 0; i < kv_count; ++i) {
    auto key = in.string(fmt::format("metadata key #{}", i));
    const auto type = in.scalar<uint32_t>("type of metadata " + key);
    if (out.kv.contains(key)) fail("{}: metadata {} appears twice", path, key);
    out.kv[key] = read_value(in, type, key, path, 0);
  }

  std::vector<TensorInfo> infos;
  infos.reserve(tensor_count);
  for (uint64_t i = 0; i < tensor_count; ++i) infos.push_back(read_tensor_info(in, path));

  uint64_t alignment = kDefaultAlignment;
  if (out.kv.contains("general.alignment")) {
    const auto& value = out.kv["general.alignment"];
    if (!value.is_number_unsigned() || !is_power_of_two(value.get<uint64_t>())) {
      fail("{}: general.alignment {} is not a power of two", path, value.dump());
    }
    alignment = value.get<uint64_t>();
  }
  const uint64_t data_start = align_up(in.position(), alignment);

  for (const auto& info : infos) {
    if (out.tensors.count(info.name)) fail("{}: tensor {} appears twice", path, info.name);
    const gguf::TypeLayout* layout = gguf::find_type_layout(info.type_id);
    if (!layout) {
      fail("{}: tensor {} has ggml type id {} ({}), which kick cannot dequantize", path, info.name, info.type_id,
           gguf::ggml_type_name(info.type_id));
    }
    const int64_t row = info.shape.back();
    if (row % layout->block_elements != 0) {
      fail("{}: tensor {} has rows of {} elements (ne[0]), not a multiple of the {} block size {}", path,
           info.name, row, layout->name, layout->block_elements);
    }
    // Checked products: extents whose product wraps would pass the size check below with a tiny byte count and
    // then describe a tensor far larger than the file (found by fuzzing: a read past the mapping).
    int64_t numel = 1;
    for (int64_t extent : info.shape) {
      if (extent <= 0 || numel > std::numeric_limits<int64_t>::max() / extent) {
        fail("{}: tensor {} has a shape whose element count is zero, negative or beyond 2^63", path, info.name);
      }
      numel *= extent;
    }
    const int64_t n_blocks = numel / layout->block_elements;
    if (static_cast<uint64_t>(n_blocks) > std::numeric_limits<uint64_t>::max() / static_cast<uint64_t>(layout->block_bytes)) {
      fail("{}: tensor {} is larger than any file could hold", path, info.name);
    }
    const uint64_t bytes = static_cast<uint64_t>(n_blocks) * static_cast<uint64_t>(layout->block_bytes);
    if (info.offset % alignment != 0) {
      fail("{}: tensor {} data offset {} is not a multiple of the alignment {}", path, info.name, info.offset,
           alignment);
    }
    if (info.offset > file->size() || data_start > file->size() - info.offset ||
        bytes > file->size() - data_start - info.offset) {
      fail("{}: tensor {} data (bytes {} + {} + {}) runs past the end of the file ({} bytes)", path, info.name,
           data_start, info.offset, bytes, file->size());
    }
    const uint64_t begin = data_start + info.offset;
    Tensor tensor;
    if (layout->type == gguf::GgmlType::F32 && begin % alignof(float) == 0) {
      // Already fp32: alias the copy-on-write mapping instead of copying.
      tensor = tensor_from_mapping(file, begin, info.shape, at::kFloat, "tensor " + info.name);
    } else {
      tensor = at::empty(info.shape, at::TensorOptions().dtype(at::kFloat));
      gguf::dequantize_blocks(*layout, file->data() + begin, n_blocks, tensor.data_ptr<float>());
    }
    out.tensors.emplace(info.name, std::move(tensor));
    out.tensor_types.emplace(info.name, std::string(layout->name));
  }
  return out;
}

// ------------------------------------------------------------------------------------------------
// Writer

namespace {

bool ends_with(const std::string& s, std::string_view suffix) {
  return s.size() >= suffix.size() && s.compare(s.size() - suffix.size(), suffix.size(), suffix) == 0;
}

bool starts_with(const std::string& s, std::string_view prefix) { return s.rfind(prefix, 0) == 0; }

// Keys llama.cpp reads with a fixed type; JSON alone cannot say (10000 could be U32 or F32).
bool is_u32_key(const std::string& key) {
  static constexpr std::string_view kSuffixes[] = {
      ".context_length",       ".block_count",          ".embedding_length",   ".feed_forward_length",
      ".attention.head_count", ".attention.head_count_kv", ".rope.dimension_count", ".vocab_size",
      ".attention.key_length", ".attention.value_length", ".expert_count",     ".expert_used_count"};
  if (key == "general.alignment" || key == "general.file_type" || key == "general.quantization_version") return true;
  if (starts_with(key, "tokenizer.ggml.") && ends_with(key, "_token_id")) return true;
  return std::any_of(std::begin(kSuffixes), std::end(kSuffixes),
                     [&](std::string_view suffix) { return ends_with(key, suffix); });
}

bool is_f32_key(const std::string& key) {
  static constexpr std::string_view kSuffixes[] = {".rope.freq_base", ".attention.layer_norm_rms_epsilon",
                                                   ".attention.layer_norm_epsilon", ".rope.scaling.factor"};
  return std::any_of(std::begin(kSuffixes), std::end(kSuffixes),
                     [&](std::string_view suffix) { return ends_with(key, suffix); });
}

// Arrays whose element type llama.cpp fixes.
std::optional<uint32_t> fixed_array_element_type(const std::string& key) {
  if (key == "tokenizer.ggml.token_type") return kI32;
  if (key == "tokenizer.ggml.scores") return kF32;
  if (key == "tokenizer.ggml.tokens" || key == "tokenizer.ggml.merges") return kString;
  return std::nullopt;
}

bool fits_u32(const nlohmann::json& value) {
  if (value.is_number_unsigned()) return value.get<uint64_t>() <= std::numeric_limits<uint32_t>::max();
  if (!value.is_number_integer()) return false;
  const auto v = value.get<int64_t>();
  return v >= 0 && v <= static_cast<int64_t>(std::numeric_limits<uint32_t>::max());
}

// The GGUF type of a JSON integer with no fixed type: U32 when it fits, else I64 (U64 past int64).
uint32_t integer_type(const nlohmann::json& value) {
  if (value.is_number_unsigned()) {
    const auto v = value.get<uint64_t>();
    if (v <= std::numeric_limits<uint32_t>::max()) return kU32;
    return v <= static_cast<uint64_t>(std::numeric_limits<int64_t>::max()) ? kI64 : kU64;
  }
  const auto v = value.get<int64_t>();
  return v >= 0 && v <= static_cast<int64_t>(std::numeric_limits<uint32_t>::max()) ? kU32 : kI64;
}

class GgufBuffer {
 public:
  template <typename T>
  void scalar(T value) { bytes_.append(reinterpret_cast<const char*>(&value), sizeof(T)); }
  void string(std::string_view s) {
    scalar<uint64_t>(s.size());
    bytes_.append(s.data(), s.size());
  }
  void raw(const void* p, size_t n) { bytes_.append(static_cast<const char*>(p), n); }
  void pad_to(uint64_t alignment) { bytes_.resize(align_up(bytes_.size(), alignment), '\0'); }
  std::string_view view() const { return bytes_; }

 private:
  std::string bytes_;
};

class MetadataWriter {
 public:
  MetadataWriter(GgufBuffer& out, const std::string& path) : out_(out), path_(path) {}

  void pair(const std::string& key, const nlohmann::json& value) {
    out_.string(key);
    const uint32_t type = value_type(key, value);
    out_.scalar<uint32_t>(type);
    payload(key, value, type);
  }

 private:
  uint32_t value_type(const std::string& key, const nlohmann::json& value) const {
    if (value.is_array()) return kArray;
    if (is_u32_key(key)) {
      if (!fits_u32(value)) {
        fail("{}: metadata {} must be an unsigned 32-bit integer, got {}", path_, key, value.dump());
      }
      return kU32;
    }
    if (is_f32_key(key)) {
      if (!value.is_number()) fail("{}: metadata {} must be a number, got {}", path_, key, value.dump());
      return kF32;
    }
    return scalar_type(key, value);
  }

  uint32_t scalar_type(const std::string& key, const nlohmann::json& value) const {
    if (value.is_boolean()) return kBool;
    if (value.is_string()) return kString;
    if (value.is_number_float()) return kF32;
    if (value.is_number_integer()) return integer_type(value);
    if (value.is_array()) return kArray;
    fail("{}: metadata {} is {}, which GGUF cannot hold", path_, key, value.type_name());
  }

  // One element type for a whole array: fixed by key, else the widest the elements need.
  uint32_t element_type(const std::string& key, const nlohmann::json& array) const {
    if (auto fixed = fixed_array_element_type(key)) return *fixed;
    if (array.empty()) return kI32;
    bool all_strings = true, all_bools = true, all_arrays = true, all_numbers = true, any_float = false;
    bool fits_i32 = true, fits_i64 = true;
    for (const auto& e : array) {
      all_strings &= e.is_string();
      all_bools &= e.is_boolean();
      all_arrays &= e.is_array();
      all_numbers &= e.is_number();
      any_float |= e.is_number_float();
      if (e.is_number_unsigned()) {
        const auto v = e.get<uint64_t>();
        fits_i32 &= v <= static_cast<uint64_t>(std::numeric_limits<int32_t>::max());
        fits_i64 &= v <= static_cast<uint64_t>(std::numeric_limits<int64_t>::max());
      } else if (e.is_number_integer()) {
        const auto v = e.get<int64_t>();
        fits_i32 &= v >= std::numeric_limits<int32_t>::min() && v <= std::numeric_limits<int32_t>::max();
      }
    }
    if (all_strings) return kString;
    if (all_bools) return kBool;
    if (all_arrays) return kArray;
    if (all_numbers) return any_float ? kF32 : fits_i32 ? kI32 : fits_i64 ? kI64 : kU64;
    fail("{}: metadata {} mixes element types, but a GGUF array holds one type", path_, key);
  }

  void payload(const std::string& key, const nlohmann::json& value, uint32_t type) {
    try {
      switch (type) {
        case kBool: out_.scalar<uint8_t>(value.get<bool>() ? 1 : 0); return;
        case kString: out_.string(value.get_ref<const std::string&>()); return;
        case kF32: out_.scalar<float>(value.get<float>()); return;
        case kU32: out_.scalar<uint32_t>(value.get<uint32_t>()); return;
        case kI32: out_.scalar<int32_t>(value.get<int32_t>()); return;
        case kI64: out_.scalar<int64_t>(value.get<int64_t>()); return;
        case kU64: out_.scalar<uint64_t>(value.get<uint64_t>()); return;
        case kArray: {
          const uint32_t element = element_type(key, value);
          out_.scalar<uint32_t>(element);
          out_.scalar<uint64_t>(value.size());
          for (const auto& e : value) {
            // An array element that is itself an array carries its own element type and count.
            if (element == kArray && !e.is_array()) fail("{}: metadata {} mixes arrays and scalars", path_, key);
            payload(key, e, element);
          }
          return;
        }
        default: fail("{}: metadata {}: internal error, unexpected type {}", path_, key, type);
      }
    } catch (const nlohmann::json::exception&) {
      fail("{}: metadata {} value {} does not fit its GGUF type {}", path_, key, value.dump(), type);
    }
  }

  GgufBuffer& out_;
  const std::string& path_;
};

}  // namespace

void write_gguf(const std::string& path, const nlohmann::json& kv, const std::map<std::string, Tensor>& tensors) {
  if (!kv.is_object()) fail("{}: GGUF metadata must be a JSON object, got {}", path, kv.type_name());
  uint64_t alignment = kDefaultAlignment;
  if (kv.contains("general.alignment")) {
    const auto& value = kv["general.alignment"];
    if (!value.is_number_integer() || value.get<int64_t>() <= 0 || !is_power_of_two(value.get<uint64_t>())) {
      fail("{}: general.alignment {} is not a power of two", path, value.dump());
    }
    alignment = value.get<uint64_t>();
  }

  GgufBuffer out;
  out.scalar<uint32_t>(kGgufMagic);
  out.scalar<uint32_t>(3);
  out.scalar<uint64_t>(tensors.size());
  out.scalar<uint64_t>(kv.size());
  MetadataWriter metadata(out, path);
  // general.architecture first, as llama.cpp's writer does; the rest in key order.
  if (kv.contains("general.architecture")) metadata.pair("general.architecture", kv["general.architecture"]);
  for (const auto& [key, value] : kv.items()) {
    if (key != "general.architecture") metadata.pair(key, value);
  }

  std::vector<Tensor> payloads;
  payloads.reserve(tensors.size());
  uint64_t offset = 0;
  for (const auto& [name, tensor] : tensors) {
    if (name.size() > kMaxTensorNameBytes) {
      fail("{}: tensor name {} is longer than the {} bytes llama.cpp accepts", path, name, kMaxTensorNameBytes);
    }
    if (!at::isFloatingType(tensor.scalar_type())) {
      fail("{}: tensor {} has dtype {}; GGUF export takes floating tensors", path, name,
           c10::toString(tensor.scalar_type()));
    }
    const bool half = tensor.scalar_type() == at::kHalf;
    Tensor data = tensor.detach().to(at::kCPU, half ? at::kHalf : at::kFloat).contiguous();
    out.string(name);
    const int64_t n_dims = std::max<int64_t>(1, data.dim());
    out.scalar<uint32_t>(static_cast<uint32_t>(n_dims));
    if (data.dim() == 0) {
      out.scalar<uint64_t>(1);
    } else {
      for (int64_t d = data.dim() - 1; d >= 0; --d) out.scalar<uint64_t>(static_cast<uint64_t>(data.size(d)));
    }
    out.scalar<uint32_t>(static_cast<uint32_t>(half ? gguf::GgmlType::F16 : gguf::GgmlType::F32));
    out.scalar<uint64_t>(offset);
    offset = align_up(offset + data.nbytes(), alignment);
    payloads.push_back(std::move(data));
  }
  out.pad_to(alignment);
  for (const auto& data : payloads) {
    out.raw(data.data_ptr(), data.nbytes());
    out.pad_to(alignment);
  }
  write_file_atomically(path, out.view());
}

// ------------------------------------------------------------------------------------------------
// RoPE row order

Tensor permute_rope_rows(const Tensor& weight, int64_t n_heads, bool inverse) {
  if (weight.dim() < 1 || n_heads <= 0 || weight.size(0) % (2 * n_heads) != 0) {
    fail("permute_rope_rows: {} rows of a {} tensor do not split into {} heads of (pair, 2) rows",
         weight.dim() < 1 ? 0 : weight.size(0), shape_string(weight.sizes()), n_heads);
  }
  const int64_t rows = weight.size(0);
  const int64_t pairs = rows / n_heads / 2;
  std::vector<int64_t> split = {n_heads, inverse ? 2 : pairs, inverse ? pairs : 2};
  const auto rest = weight.sizes().slice(1);
  split.insert(split.end(), rest.begin(), rest.end());
  // Interleaved rows are (head, pair, 2); rotate-half rows are (head, 2, pair): swapping the two inner
  // axes converts one into the other.
  return weight.reshape(split).transpose(1, 2).reshape(weight.sizes()).contiguous();
}

// ------------------------------------------------------------------------------------------------
// Checkpoint <-> GGUF

namespace {

struct LayerTensorName {
  std::string_view gguf;  // after "blk.N."
  std::string_view hf;    // after "model.layers.N."
};

constexpr LayerTensorName kLayerTensorNames[] = {
    {"attn_norm.weight", "input_layernorm.weight"},
    {"attn_q.weight", "self_attn.q_proj.weight"},
    {"attn_k.weight", "self_attn.k_proj.weight"},
    {"attn_v.weight", "self_attn.v_proj.weight"},
    {"attn_output.weight", "self_attn.o_proj.weight"},
    {"ffn_norm.weight", "post_attention_layernorm.weight"},
    {"ffn_gate.weight", "mlp.gate_proj.weight"},
    {"ffn_up.weight", "mlp.up_proj.weight"},
    {"ffn_down.weight", "mlp.down_proj.weight"},
};

constexpr std::pair<std::string_view, std::string_view> kGlobalTensorNames[] = {
    {"token_embd.weight", "model.embed_tokens.weight"},
    {"output_norm.weight", "model.norm.weight"},
    {"output.weight", "lm_head.weight"},
};

// Splits "<prefix><digits>.<rest>" into (layer, rest).
std::optional<std::pair<std::string, std::string>> split_layer_name(const std::string& name, std::string_view prefix) {
  if (!starts_with(name, prefix)) return std::nullopt;
  const size_t dot = name.find('.', prefix.size());
  if (dot == std::string::npos || dot == prefix.size()) return std::nullopt;
  std::string layer = name.substr(prefix.size(), dot - prefix.size());
  if (!std::all_of(layer.begin(), layer.end(), [](char c) { return c >= '0' && c <= '9'; })) return std::nullopt;
  return std::make_pair(std::move(layer), name.substr(dot + 1));
}

std::optional<std::string> hf_name_of(const std::string& gguf_name) {
  for (const auto& [g, h] : kGlobalTensorNames) {
    if (gguf_name == g) return std::string(h);
  }
  if (auto parts = split_layer_name(gguf_name, "blk.")) {
    for (const auto& names : kLayerTensorNames) {
      if (parts->second == names.gguf) return "model.layers." + parts->first + "." + std::string(names.hf);
    }
  }
  return std::nullopt;
}

std::optional<std::string> gguf_name_of(const std::string& hf_name) {
  for (const auto& [g, h] : kGlobalTensorNames) {
    if (hf_name == h) return std::string(g);
  }
  if (auto parts = split_layer_name(hf_name, "model.layers.")) {
    for (const auto& names : kLayerTensorNames) {
      if (parts->second == names.hf) return "blk." + parts->first + "." + std::string(names.gguf);
    }
  }
  return std::nullopt;
}

// Typed access to GGUF metadata with one-line errors naming the file and the key.
class KvReader {
 public:
  KvReader(const nlohmann::json& kv, const std::string& path) : kv_(kv), path_(path) {}

  bool has(const std::string& key) const { return kv_.contains(key); }

  const nlohmann::json& require(const std::string& key) const {
    if (!kv_.contains(key)) fail("{}: missing required GGUF key {}", path_, key);
    return kv_[key];
  }

  int64_t integer(const std::string& key, std::optional<int64_t> fallback = std::nullopt) const {
    if (!has(key) && fallback) return *fallback;
    const auto& value = require(key);
    if (!value.is_number_integer()) fail("{}: GGUF key {} should be an integer, got {}", path_, key, value.dump());
    constexpr auto kInt64Max = static_cast<uint64_t>(std::numeric_limits<int64_t>::max());
    if (value.is_number_unsigned() && value.get<uint64_t>() > kInt64Max) {
      fail("{}: GGUF key {} is out of range: {}", path_, key, value.dump());
    }
    return value.get<int64_t>();
  }

  double number(const std::string& key, std::optional<double> fallback = std::nullopt) const {
    if (!has(key) && fallback) return *fallback;
    const auto& value = require(key);
    if (!value.is_number()) fail("{}: GGUF key {} should be a number, got {}", path_, key, value.dump());
    return value.get<double>();
  }

  bool boolean(const std::string& key, bool fallback) const {
    if (!has(key)) return fallback;
    const auto& value = kv_[key];
    if (!value.is_boolean()) fail("{}: GGUF key {} should be a bool, got {}", path_, key, value.dump());
    return value.get<bool>();
  }

  std::string text(const std::string& key, std::optional<std::string> fallback = std::nullopt) const {
    if (!has(key) && fallback) return *fallback;
    const auto& value = require(key);
    if (!value.is_string()) fail("{}: GGUF key {} should be a string, got {}", path_, key, value.type_name());
    return value.get<std::string>();
  }

  template <typename T>
  std::vector<T> array(const std::string& key) const {
    if (!has(key)) return {};
    const auto& value = kv_[key];
    try {
      return value.get<std::vector<T>>();
    } catch (const nlohmann::json::exception&) {
      fail("{}: GGUF key {} is not an array of the expected element type", path_, key);
    }
  }

 private:
  const nlohmann::json& kv_;
  const std::string& path_;
};

// The metadata arrays that hold the vocabulary: they go to VocabSpec, not to ckpt.metadata.
constexpr std::string_view kVocabArrays[] = {"tokenizer.ggml.tokens", "tokenizer.ggml.scores",
                                             "tokenizer.ggml.token_type", "tokenizer.ggml.merges"};

VocabSpec vocab_from_kv(const KvReader& kv) {
  VocabSpec vocab;
  if (!kv.has("tokenizer.ggml.model")) return vocab;
  vocab.model = kv.text("tokenizer.ggml.model");
  vocab.pre = kv.text("tokenizer.ggml.pre", std::string("default"));
  vocab.tokens = kv.array<std::string>("tokenizer.ggml.tokens");
  vocab.scores = kv.array<float>("tokenizer.ggml.scores");
  vocab.token_types = kv.array<int32_t>("tokenizer.ggml.token_type");
  vocab.merges = kv.array<std::string>("tokenizer.ggml.merges");
  auto id = [&](const char* key) { return static_cast<int32_t>(kv.integer(key, -1)); };
  vocab.bos_id = id("tokenizer.ggml.bos_token_id");
  vocab.eos_id = id("tokenizer.ggml.eos_token_id");
  vocab.unk_id = id("tokenizer.ggml.unknown_token_id");
  vocab.pad_id = id("tokenizer.ggml.padding_token_id");
  // llama.cpp's defaults: SentencePiece-style vocabularies add BOS and a leading space, byte-level BPE neither.
  const bool sentencepiece = vocab.model == "llama";
  vocab.add_bos = kv.boolean("tokenizer.ggml.add_bos_token", sentencepiece);
  vocab.add_eos = kv.boolean("tokenizer.ggml.add_eos_token", false);
  vocab.add_space_prefix = kv.boolean("tokenizer.ggml.add_space_prefix", sentencepiece);
  vocab.chat_template = kv.text("tokenizer.chat_template", std::string());
  return vocab;
}

}  // namespace

Checkpoint checkpoint_from_gguf(GgufContents gguf, const std::string& path) {
  const KvReader kv(gguf.kv, path);
  const std::string arch = kv.text("general.architecture");
  if (arch != "llama") fail("{}: GGUF architecture '{}' is not supported (kick reads llama)", path, arch);

  Checkpoint ckpt;
  ckpt.format = "gguf";
  ckpt.source = path;
  ckpt.vocab = vocab_from_kv(kv);

  ModelConfig& config = ckpt.config;
  config.architecture = "llama";
  config.num_layers = kv.integer("llama.block_count");
  config.hidden_size = kv.integer("llama.embedding_length");
  config.intermediate_size = kv.integer("llama.feed_forward_length");
  config.num_heads = kv.integer("llama.attention.head_count");
  if (config.num_heads <= 0) fail("{}: llama.attention.head_count is {}", path, config.num_heads);
  config.num_kv_heads = kv.integer("llama.attention.head_count_kv", config.num_heads);
  config.max_position = kv.integer("llama.context_length", config.max_position);
  config.rope_theta = kv.number("llama.rope.freq_base", 10000.0);
  config.rms_norm_eps = kv.number("llama.attention.layer_norm_rms_epsilon", config.rms_norm_eps);
  config.head_dim = kv.integer("llama.attention.key_length",
                               kv.integer("llama.rope.dimension_count", config.hidden_size / config.num_heads));
  if (kv.has("llama.vocab_size")) {
    config.vocab_size = kv.integer("llama.vocab_size");
  } else if (!ckpt.vocab.tokens.empty()) {
    config.vocab_size = static_cast<int64_t>(ckpt.vocab.tokens.size());
  } else {
    fail("{}: missing required GGUF key llama.vocab_size (and no tokenizer.ggml.tokens to count)", path);
  }
  config.tie_word_embeddings = gguf.tensors.count("output.weight") == 0;
  config.bos_token_id = ckpt.vocab.bos_id;
  config.eos_token_id = ckpt.vocab.eos_id;

  nlohmann::json skipped = nlohmann::json::array();
  for (auto& [name, tensor] : gguf.tensors) {
    auto hf = hf_name_of(name);
    if (!hf) {
      // Tensors the llama graph does not use (rope_freqs.weight, ...): noted, not loaded.
      skipped.push_back(name);
      continue;
    }
    const bool is_q = ends_with(name, ".attn_q.weight"), is_k = ends_with(name, ".attn_k.weight");
    if (is_q || is_k) {
      // llama.cpp's converter stores q/k rows in interleaved-pair order; HF layout is rotate-half.
      const int64_t heads = is_q ? config.num_heads : config.num_kv_heads;
      if (tensor.dim() != 2 || heads <= 0 || tensor.size(0) % (2 * heads) != 0) {
        fail("{}: tensor {} of shape {} does not split into {} heads of row pairs", path, name,
             shape_string(tensor.sizes()), heads);
      }
      tensor = permute_rope_rows(tensor, heads);
    }
    ckpt.tensors.emplace(std::move(*hf), std::move(tensor));
  }

  nlohmann::json kept = nlohmann::json::object();
  for (const auto& [key, value] : gguf.kv.items()) {
    if (std::find(std::begin(kVocabArrays), std::end(kVocabArrays), key) == std::end(kVocabArrays)) kept[key] = value;
  }
  ckpt.metadata["gguf"] = std::move(kept);
  nlohmann::json type_counts = nlohmann::json::object();
  for (const auto& [name, type] : gguf.tensor_types) type_counts[type] = type_counts.value(type, 0) + 1;
  ckpt.metadata["gguf_tensor_types"] = std::move(type_counts);
  ckpt.metadata["gguf_version"] = gguf.version;
  if (!skipped.empty()) ckpt.metadata["gguf_skipped_tensors"] = std::move(skipped);
  return ckpt;
}

namespace {

// llama2.c vocabularies spell spaces as ' '; GGUF's SentencePiece vocabularies as U+2581.
std::string with_sentencepiece_spaces(const std::string& token) {
  std::string out;
  for (char c : token) out += c == ' ' ? std::string("\xE2\x96\x81") : std::string(1, c);
  return out;
}

nlohmann::json kv_from_checkpoint(const Checkpoint& ckpt) {
  const ModelConfig& c = ckpt.config;
  const VocabSpec& v = ckpt.vocab;
  nlohmann::json kv = nlohmann::json::object();
  // Descriptive general.* strings survive (name, license, ...); file type and layout keys describe the old file.
  if (ckpt.metadata.contains("gguf") && ckpt.metadata["gguf"].is_object()) {
    for (const auto& [key, value] : ckpt.metadata["gguf"].items()) {
      if (starts_with(key, "general.") && value.is_string() && key != "general.architecture") kv[key] = value;
    }
  }
  kv["general.architecture"] = "llama";
  if (!kv.contains("general.name")) kv["general.name"] = "kick export";
  kv["general.file_type"] = 0;  // LLAMA_FTYPE_ALL_F32
  kv["llama.block_count"] = c.num_layers;
  kv["llama.context_length"] = c.max_position;
  kv["llama.embedding_length"] = c.hidden_size;
  kv["llama.feed_forward_length"] = c.intermediate_size;
  kv["llama.attention.head_count"] = c.num_heads;
  kv["llama.attention.head_count_kv"] = c.num_kv_heads > 0 ? c.num_kv_heads : c.num_heads;
  kv["llama.rope.freq_base"] = c.rope_theta;
  kv["llama.attention.layer_norm_rms_epsilon"] = c.rms_norm_eps;
  kv["llama.vocab_size"] = c.vocab_size;
  const int64_t head_dim = c.head_dim > 0 ? c.head_dim : c.hidden_size / std::max<int64_t>(1, c.num_heads);
  kv["llama.rope.dimension_count"] = head_dim;
  if (c.num_heads > 0 && head_dim * c.num_heads != c.hidden_size) {
    kv["llama.attention.key_length"] = head_dim;
    kv["llama.attention.value_length"] = head_dim;
  }

  if (!v.model.empty()) {
    const bool llama2c = v.model == "llama2c";
    kv["tokenizer.ggml.model"] = llama2c ? "llama" : v.model;
    kv["tokenizer.ggml.pre"] = v.pre;
    if (llama2c) {
      std::vector<std::string> tokens;
      tokens.reserve(v.tokens.size());
      for (const auto& t : v.tokens) tokens.push_back(with_sentencepiece_spaces(t));
      kv["tokenizer.ggml.tokens"] = tokens;
    } else {
      kv["tokenizer.ggml.tokens"] = v.tokens;
    }
    if (!v.scores.empty()) kv["tokenizer.ggml.scores"] = v.scores;
    if (!v.token_types.empty()) kv["tokenizer.ggml.token_type"] = v.token_types;
    if (!v.merges.empty()) kv["tokenizer.ggml.merges"] = v.merges;
    kv["tokenizer.ggml.add_bos_token"] = v.add_bos;
    kv["tokenizer.ggml.add_eos_token"] = v.add_eos;
    kv["tokenizer.ggml.add_space_prefix"] = v.add_space_prefix;
    if (!v.chat_template.empty()) kv["tokenizer.chat_template"] = v.chat_template;
  }
  auto id = [&](const char* key, int64_t vocab_id, int64_t config_id) {
    const int64_t chosen = vocab_id >= 0 ? vocab_id : config_id;
    if (chosen >= 0) kv[key] = chosen;
  };
  id("tokenizer.ggml.bos_token_id", v.bos_id, c.bos_token_id);
  id("tokenizer.ggml.eos_token_id", v.eos_id, c.eos_token_id);
  id("tokenizer.ggml.unknown_token_id", v.unk_id, -1);
  id("tokenizer.ggml.padding_token_id", v.pad_id, -1);
  return kv;
}

}  // namespace

void write_checkpoint_gguf(const std::string& path, const Checkpoint& ckpt) {
  const ModelConfig& c = ckpt.config;
  std::map<std::string, Tensor> tensors;
  for (const auto& [name, tensor] : ckpt.tensors) {
    if (name == "lm_head.weight" && c.tie_word_embeddings) continue;  // llama.cpp reuses token_embd
    if (ends_with(name, "rotary_emb.inv_freq")) continue;             // recomputed from the config
    auto gguf_name = gguf_name_of(name);
    if (!gguf_name) fail("{}: tensor {} has no GGUF llama name", path, name);
    Tensor data = tensor.detach().to(at::kCPU, at::kFloat);
    const bool is_q = ends_with(name, ".self_attn.q_proj.weight"), is_k = ends_with(name, ".self_attn.k_proj.weight");
    if (is_q || is_k) {
      const int64_t heads = is_q ? c.num_heads : (c.num_kv_heads > 0 ? c.num_kv_heads : c.num_heads);
      if (data.dim() != 2 || heads <= 0 || data.size(0) % (2 * heads) != 0) {
        fail("{}: tensor {} of shape {} does not split into {} heads of row pairs", path, name,
             shape_string(data.sizes()), heads);
      }
      data = permute_rope_rows(data, heads, /*inverse=*/true);
    }
    tensors.emplace(std::move(*gguf_name), std::move(data));
  }
  write_gguf(path, kv_from_checkpoint(ckpt), tensors);
}

}  // namespace kick
