// Owns the safetensors format: read_safetensors (mapped, validated) and write_safetensors (streamed,
// atomic). Layout: u64 LE header length N, N bytes of JSON header, then the data section.
#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <cstring>
#include <fstream>
#include <random>

#include "kick/io.hpp"

namespace kick {
namespace {

struct DtypeName {
  const char* name;
  at::ScalarType type;
};

constexpr DtypeName kDtypeNames[] = {
    {"F64", at::kDouble}, {"F32", at::kFloat},  {"F16", at::kHalf}, {"BF16", at::kBFloat16},
    {"I64", at::kLong},   {"I32", at::kInt},    {"I16", at::kShort}, {"I8", at::kChar},
    {"U8", at::kByte},    {"BOOL", at::kBool},
};

bool dtype_from_name(const std::string& name, at::ScalarType* out) {
  for (const auto& d : kDtypeNames) {
    if (name == d.name) {
      *out = d.type;
      return true;
    }
  }
  return false;
}

std::string name_from_dtype(at::ScalarType type, const std::string& path, const std::string& tensor) {
  for (const auto& d : kDtypeNames) {
    if (type == d.type) return d.name;
  }
  fail("{}: tensor {} has dtype {} which safetensors cannot hold", path, tensor,
       at::toString(type));
}

uint64_t read_u64_le(const uint8_t* p) {
  uint64_t v = 0;
  for (int i = 7; i >= 0; --i) v = (v << 8) | p[i];
  return v;
}

void append_u64_le(std::string& out, uint64_t v) {
  for (int i = 0; i < 8; ++i) out.push_back(static_cast<char>((v >> (8 * i)) & 0xff));
}

struct TensorEntry {
  std::string name;
  at::ScalarType dtype;
  std::vector<int64_t> shape;
  uint64_t begin, end;  // relative to the data section
};

TensorEntry parse_entry(const std::string& path, const std::string& name, const nlohmann::json& info) {
  if (!info.is_object()) fail("{}: header entry {} is not an object", path, name);
  TensorEntry e;
  e.name = name;
  auto dtype_it = info.find("dtype");
  if (dtype_it == info.end() || !dtype_it->is_string()) {
    fail("{}: tensor {} has no \"dtype\" string", path, name);
  }
  if (!dtype_from_name(dtype_it->get<std::string>(), &e.dtype)) {
    fail("{}: tensor {} has unknown dtype \"{}\" (expected F64/F32/F16/BF16/I64/I32/I16/I8/U8/BOOL)",
         path, name, dtype_it->get<std::string>());
  }
  auto shape_it = info.find("shape");
  if (shape_it == info.end() || !shape_it->is_array()) {
    fail("{}: tensor {} has no \"shape\" array", path, name);
  }
  for (const auto& d : *shape_it) {
    if (!d.is_number_unsigned()) fail("{}: tensor {} shape has a non-integer or negative dimension", path, name);
    e.shape.push_back(d.get<int64_t>());
  }
  auto offsets_it = info.find("data_offsets");
  if (offsets_it == info.end() || !offsets_it->is_array() || offsets_it->size() != 2 ||
      !(*offsets_it)[0].is_number_unsigned() || !(*offsets_it)[1].is_number_unsigned()) {
    fail("{}: tensor {} needs \"data_offsets\" [begin, end] of non-negative integers", path, name);
  }
  e.begin = (*offsets_it)[0].get<uint64_t>();
  e.end = (*offsets_it)[1].get<uint64_t>();
  if (e.end < e.begin) fail("{}: tensor {} data_offsets end {} < begin {}", path, name, e.end, e.begin);
  uint64_t numel = 1;
  for (int64_t d : e.shape) {
    if (d != 0 && numel > UINT64_MAX / static_cast<uint64_t>(d)) {
      fail("{}: tensor {} shape overflows", path, name);
    }
    numel *= static_cast<uint64_t>(d);
  }
  uint64_t expected = numel * at::elementSize(e.dtype);
  if (e.end - e.begin != expected) {
    fail("{}: tensor {} data_offsets span {} bytes but shape x dtype size is {} bytes", path, name,
         e.end - e.begin, expected);
  }
  return e;
}

}  // namespace

bool looks_like_safetensors(std::string_view head, uint64_t file_size) {
  if (head.size() < 9 || file_size < 9 || head[8] != '{') return false;
  return read_u64_le(reinterpret_cast<const uint8_t*>(head.data())) <= file_size - 8;
}

std::map<std::string, Tensor> read_safetensors(const std::string& path, nlohmann::json* metadata, FileAccess access) {
  auto file = std::make_shared<MappedFile>(path, access);
  if (file->size() < 8) fail("{}: too small for a safetensors header ({} bytes)", path, file->size());
  uint64_t header_len = read_u64_le(file->data());
  if (header_len > file->size() - 8) {
    fail("{}: header length {} runs past the end of the file ({} bytes)", path, header_len,
         file->size());
  }
  const char* header_text = reinterpret_cast<const char*>(file->data() + 8);
  nlohmann::json header;
  try {
    header = nlohmann::json::parse(header_text, header_text + header_len);
  } catch (const nlohmann::json::exception& e) {
    fail("{}: header is not valid JSON ({})", path, std::string(e.what()).substr(0, 120));
  }
  if (!header.is_object()) fail("{}: header is not a JSON object", path);

  const uint64_t data_start = 8 + header_len;
  const uint64_t data_size = file->size() - data_start;
  std::vector<TensorEntry> entries;
  for (auto it = header.begin(); it != header.end(); ++it) {
    if (it.key() == "__metadata__") continue;
    entries.push_back(parse_entry(path, it.key(), it.value()));
  }
  if (metadata) {
    auto meta = header.find("__metadata__");
    *metadata = meta != header.end() ? *meta : nlohmann::json::object();
  }

  std::sort(entries.begin(), entries.end(),
            [](const TensorEntry& a, const TensorEntry& b) { return a.begin < b.begin; });
  for (size_t i = 0; i < entries.size(); ++i) {
    const auto& e = entries[i];
    if (e.end > data_size) {
      fail("{}: tensor {} data_offsets [{}, {}) run past the data section ({} bytes)", path, e.name,
           e.begin, e.end, data_size);
    }
    if (i > 0 && e.begin < entries[i - 1].end && e.end > e.begin) {
      fail("{}: tensor {} data_offsets [{}, {}) overlap tensor {}", path, e.name, e.begin, e.end,
           entries[i - 1].name);
    }
  }

  std::map<std::string, Tensor> tensors;
  for (const auto& e : entries) {
    uint64_t offset = data_start + e.begin;
    Tensor t = tensor_from_mapping(file, offset, e.shape, e.dtype, "tensor " + e.name);
    // Kernels may assume element alignment; an oddly padded header breaks it, so copy those.
    if (offset % at::elementSize(e.dtype) != 0) t = t.clone();
    tensors.emplace(e.name, std::move(t));
  }
  return tensors;
}

void write_safetensors(const std::string& path, const std::map<std::string, Tensor>& tensors,
                       const std::map<std::string, std::string>& metadata) {
  namespace fs = std::filesystem;
  // Header first: names in sorted order (std::map), offsets packed back to back.
  nlohmann::json header = nlohmann::json::object();
  if (!metadata.empty()) {
    nlohmann::json meta = nlohmann::json::object();
    for (const auto& [k, v] : metadata) meta[k] = v;
    header["__metadata__"] = meta;
  }
  std::vector<Tensor> contiguous;
  contiguous.reserve(tensors.size());
  uint64_t offset = 0;
  for (const auto& [name, tensor] : tensors) {
    if (!tensor.defined()) fail("{}: tensor {} is undefined", path, name);
    std::string dtype = name_from_dtype(tensor.scalar_type(), path, name);
    Tensor c = tensor.detach().to(at::kCPU).contiguous();
    uint64_t bytes = static_cast<uint64_t>(c.numel()) * c.element_size();
    header[name] = {{"dtype", dtype}, {"shape", c.sizes().vec()}, {"data_offsets", {offset, offset + bytes}}};
    offset += bytes;
    contiguous.push_back(std::move(c));
  }
  std::string header_text = header.dump();
  // Pad with spaces so the data section starts 8-byte aligned (8 + header is a multiple of 8).
  header_text.append((8 - header_text.size() % 8) % 8, ' ');

  std::string prefix;
  append_u64_le(prefix, header_text.size());
  prefix += header_text;

  fs::path target(path);
  fs::path dir = target.has_parent_path() ? target.parent_path() : fs::path(".");
  std::random_device rd;
  fs::path tmp = dir / fmt::format(".{}.tmp-{:x}", target.filename().string(), rd());
  auto cleanup_fail = [&](const std::string& why) {
    std::error_code ec;
    fs::remove(tmp, ec);
    fail("{}: {}", path, why);
  };
  {
    std::ofstream out(tmp, std::ios::binary | std::ios::trunc);
    if (!out) fail("{}: cannot create temporary file {}", path, tmp.string());
    out.write(prefix.data(), static_cast<std::streamsize>(prefix.size()));
    // Stream each tensor's bytes straight from its storage: no whole-file buffer.
    for (const auto& c : contiguous) {
      out.write(static_cast<const char*>(c.data_ptr()),
                static_cast<std::streamsize>(c.numel() * c.element_size()));
    }
    out.flush();
    if (!out) {
      out.close();
      cleanup_fail(fmt::format("write failed (disk full?) writing {} bytes", prefix.size() + offset));
    }
  }
  int fd = ::open(tmp.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd >= 0) {
    ::fsync(fd);
    ::close(fd);
  }
  std::error_code ec;
  fs::rename(tmp, target, ec);
  if (ec) cleanup_fail("cannot rename temporary file into place: " + ec.message());
}

}  // namespace kick
