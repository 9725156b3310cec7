// Implements kick/core.hpp: mapped files, atomic writes, the data root, threads and version info.
#include "kick/core.hpp"

#include <ATen/Parallel.h>
#include <fmt/ranges.h>

#include <fcntl.h>
#include <malloc.h>
#include <pthread.h>
#include <sched.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <random>
#include <sstream>
#include <thread>
#include <vector>

namespace kick {

MappedFile::MappedFile(const std::string& path, FileAccess access) : path_(path) {
  int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) fail("{}: cannot open: {}", path, std::strerror(errno));
  struct stat st {};
  if (::fstat(fd, &st) != 0) {
    int err = errno;
    ::close(fd);
    fail("{}: cannot stat: {}", path, std::strerror(err));
  }
  if (S_ISDIR(st.st_mode)) {
    ::close(fd);
    fail("{}: is a directory, expected a file", path);
  }
  size_ = static_cast<uint64_t>(st.st_size);
  if (size_ > 0) {
    const bool read_in = access == FileAccess::private_memory;
    // MAP_PRIVATE + PROT_WRITE: copy-on-write, so in-place tensor edits never reach the file.
    void* p = read_in ? ::mmap(nullptr, size_, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0)
                      : ::mmap(nullptr, size_, PROT_READ | PROT_WRITE, MAP_PRIVATE, fd, 0);
    if (p == MAP_FAILED) {
      int err = errno;
      ::close(fd);
      fail("{}: cannot {} {} bytes: {}", path, read_in ? "allocate memory for" : "map", size_, std::strerror(err));
    }
    data_ = static_cast<uint8_t*>(p);
    if (read_in) {
      // No MADV_HUGEPAGE: where the kernel compacts memory for madvised huge pages on fault (THP defrag
      // "madvise", the kernel's default), reading SmolLM2's 538 MB took 0.12 to 1.44 s, against 0.27 to 0.39 s
      // in 4 KB pages (a preadv loop into an anonymous mapping, three runs each, 2026-11-25).
      uint64_t done = 0;
      while (done < size_) {
        const size_t chunk = static_cast<size_t>(std::min<uint64_t>(size_ - done, uint64_t{1} << 30));
        const ssize_t got = ::pread(fd, data_ + done, chunk, static_cast<off_t>(done));
        if (got < 0 && errno == EINTR) continue;
        if (got <= 0) {
          const int err = got < 0 ? errno : 0;
          ::munmap(p, size_);
          data_ = nullptr;
          ::close(fd);
          fail("{}: read failed after {} of {} bytes: {}", path, done, size_,
               err ? std::strerror(err) : "the file became shorter while being read");
        }
        done += static_cast<uint64_t>(got);
      }
    }
  }
  ::close(fd);
}

MappedFile::~MappedFile() {
  if (data_) ::munmap(data_, size_);
}

const uint8_t* MappedFile::span(uint64_t offset, uint64_t length, std::string_view what) const {
  if (offset > size_ || length > size_ - offset) {
    fail("{}: {} at bytes [{}, {}) runs past the end of the file ({} bytes)", path_, what, offset,
         offset + length, size_);
  }
  return data_ + offset;
}

Tensor tensor_from_mapping(const std::shared_ptr<MappedFile>& file, uint64_t offset,
                           at::IntArrayRef shape, at::ScalarType dtype, std::string_view what) {
  int64_t numel = 1;
  for (int64_t d : shape) {
    if (d < 0) fail("{}: {} has a negative dimension", file->path(), what);
    numel *= d;
  }
  uint64_t bytes = static_cast<uint64_t>(numel) * at::elementSize(dtype);
  const uint8_t* p = file->span(offset, bytes, what);
  auto keep_alive = file;
  return at::from_blob(const_cast<uint8_t*>(p), shape, [keep_alive](void*) {},
                       at::TensorOptions().dtype(dtype));
}

void write_file_atomically(const std::filesystem::path& path, std::string_view bytes) {
  namespace fs = std::filesystem;
  fs::path dir = path.has_parent_path() ? path.parent_path() : fs::path(".");
  std::random_device rd;
  fs::path tmp = dir / fmt::format(".{}.tmp-{:x}", path.filename().string(), rd());
  {
    std::ofstream out(tmp, std::ios::binary | std::ios::trunc);
    if (!out) fail("{}: cannot create temporary file {}", path.string(), tmp.string());
    out.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
    out.flush();
    if (!out) {
      out.close();
      std::error_code ec;
      fs::remove(tmp, ec);
      fail("{}: write failed (disk full?) after {} bytes", path.string(), bytes.size());
    }
  }
  int fd = ::open(tmp.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd >= 0) {
    ::fsync(fd);
    ::close(fd);
  }
  std::error_code ec;
  fs::rename(tmp, path, ec);
  if (ec) {
    fs::remove(tmp, ec);
    fail("{}: cannot rename temporary file into place: {}", path.string(), ec.message());
  }
}

uint64_t available_memory_bytes() {
  if (const char* env = std::getenv("KICK_MEMORY_LIMIT"); env && *env) return std::strtoull(env, nullptr, 10);
  uint64_t available = 0;
  {
    std::ifstream meminfo("/proc/meminfo");
    std::string key, unit;
    uint64_t kb = 0;
    while (meminfo >> key >> kb >> unit) {
      if (key == "MemAvailable:") {
        available = kb * 1024;
        break;
      }
    }
  }
  // cgroup v2: a container's limit can be far below the machine's free memory.
  std::ifstream max_file("/sys/fs/cgroup/memory.max"), current_file("/sys/fs/cgroup/memory.current");
  std::string max_text;
  uint64_t current = 0;
  if (max_file >> max_text && max_text != "max" && current_file >> current) {
    const uint64_t limit = std::strtoull(max_text.c_str(), nullptr, 10);
    const uint64_t room = limit > current ? limit - current : 0;
    available = available == 0 ? room : std::min(available, room);
  }
  return available;
}

void check_fits_in_memory(uint64_t bytes, const std::string& what) {
  const uint64_t available = available_memory_bytes();
  if (available == 0 || bytes <= available) return;
  fail("{}: needs at least {:.2f} GiB of memory, {:.2f} GiB available (MemAvailable / cgroup limit{})", what,
       double(bytes) / double(1ull << 30), double(available) / double(1ull << 30),
       std::getenv("KICK_MEMORY_LIMIT") ? ", KICK_MEMORY_LIMIT" : "");
}

std::string read_file(const std::filesystem::path& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) fail("{}: cannot open for reading", path.string());
  std::error_code ec;
  if (const auto size = std::filesystem::file_size(path, ec); !ec) check_fits_in_memory(size, path.string());
  std::ostringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

std::filesystem::path data_root() {
  namespace fs = std::filesystem;
  if (const char* env = std::getenv("KICK_DATA"); env && *env) {
    if (!fs::is_directory(env)) fail("KICK_DATA={}: not a directory", env);
    return fs::path(env);
  }
  const fs::path candidates[] = {fs::path("..") / "shared" / "data",
                                 fs::path(KICK_SOURCE_DIR) / ".." / "shared" / "data"};
  for (const auto& c : candidates) {
    if (fs::is_directory(c)) return fs::weakly_canonical(c);
  }
  fail("data root not found: set KICK_DATA (looked in ../shared/data and {})",
       candidates[1].string());
}

std::filesystem::path data_path(const std::filesystem::path& relative) {
  auto p = data_root() / relative;
  if (!std::filesystem::exists(p)) fail("{}: not found under the data root (KICK_DATA)", p.string());
  return p;
}

std::string shape_string(at::IntArrayRef shape) {
  return fmt::format("[{}]", fmt::join(shape.begin(), shape.end(), ", "));
}

namespace {
constexpr uint64_t kFnvOffset = 14695981039346656037ull;  // 0xcbf29ce484222325, the FNV-1a 64 basis
constexpr uint64_t kFnvPrime = 1099511628211ull;
uint64_t fnv1a64(uint64_t h, const uint8_t* p, uint64_t n) {
  for (uint64_t i = 0; i < n; ++i) {
    h ^= p[i];
    h *= kFnvPrime;
  }
  return h;
}
}  // namespace

std::string fnv1a64_hex(std::string_view bytes) {
  return fmt::format("{:016x}", fnv1a64(kFnvOffset, reinterpret_cast<const uint8_t*>(bytes.data()), bytes.size()));
}

std::string content_hash(const std::filesystem::path& path, const std::atomic<bool>* cancel) {
  namespace fs = std::filesystem;
  uint64_t h = kFnvOffset;
  std::vector<fs::path> files;
  if (fs::is_directory(path)) {
    for (const auto& entry : fs::directory_iterator(path)) {
      if (entry.is_regular_file()) files.push_back(entry.path());
    }
    std::sort(files.begin(), files.end());
  } else {
    files.push_back(path);
  }
  for (const auto& file : files) {
    const std::string name = file.filename().string();
    h = fnv1a64(h, reinterpret_cast<const uint8_t*>(name.data()), name.size());
    // Read through a small buffer rather than mapped: a mapping's pages count in the process's RSS, and
    // kick compress hashes the source while the loaded model (another mapping of the same file) is resident.
    std::FILE* f = std::fopen(file.string().c_str(), "rb");
    if (f == nullptr) fail("{}: cannot open for hashing: {}", file.string(), std::strerror(errno));
    std::vector<uint8_t> buffer(1 << 20);
    size_t got;
    while ((got = std::fread(buffer.data(), 1, buffer.size(), f)) > 0) {
      if (cancel != nullptr && cancel->load(std::memory_order_relaxed)) {
        std::fclose(f);
        fail("{}: hashing cancelled", file.string());
      }
      h = fnv1a64(h, buffer.data(), got);
    }
    const bool failed = std::ferror(f) != 0;
    std::fclose(f);
    if (failed) fail("{}: read error while hashing", file.string());
  }
  return fmt::format("{:016x}", h);
}

BackgroundHash::BackgroundHash(const std::filesystem::path& path) {
  result_ = std::async(std::launch::async, [this, path] {
#ifdef SCHED_IDLE
    sched_param param{};
    pthread_setschedparam(pthread_self(), SCHED_IDLE, &param);  // advice: where refused, it runs as any thread
#endif
    return content_hash(path, &cancel_);
  });
}

BackgroundHash::~BackgroundHash() {
  cancel_ = true;
  if (result_.valid()) result_.wait();  // within one 1 MB read; a cancelled hash's exception is dropped
}

std::string BackgroundHash::get() { return result_.get(); }

namespace {
// True when the process has loaded a BLAS that runs its own thread pool beside OpenMP's (Debian's
// OpenBLAS pthread build); MKL and OpenBLAS's OpenMP build share the OpenMP threads.
bool blas_has_own_threads() {
  std::ifstream maps("/proc/self/maps");
  std::string line;
  while (std::getline(maps, line)) {
    if (line.find("openblas-pthread") != std::string::npos) return true;
  }
  return false;
}
}  // namespace

void ensure_passive_openmp_wait(char** argv) {
  if (std::getenv("OMP_WAIT_POLICY") != nullptr || !blas_has_own_threads()) return;
  ::setenv("OMP_WAIT_POLICY", "passive", 1);
  ::execv("/proc/self/exe", argv);
  // execv only returns on failure: run on with the active policy, slower but correct.
}

void configure_allocator() {
#if defined(__GLIBC__)
  mallopt(M_MMAP_THRESHOLD, 1 << 30);
  mallopt(M_TRIM_THRESHOLD, 1 << 30);
  mallopt(M_TOP_PAD, 64 << 20);
#endif
}

void release_free_heap(size_t keep_bytes) {
#if defined(__GLIBC__) && (__GLIBC__ > 2 || (__GLIBC__ == 2 && __GLIBC_MINOR__ >= 33))
  if (mallinfo2().fordblks > keep_bytes) malloc_trim(0);
#elif defined(__GLIBC__)
  (void)keep_bytes;  // no mallinfo2 before glibc 2.33 (mallinfo's int fields overflow past 2 GB): always trim
  malloc_trim(0);
#else
  (void)keep_bytes;
#endif
}

void configure_threads(int n) {
  if (n <= 0) n = static_cast<int>(std::max(1u, std::thread::hardware_concurrency()));
  at::set_num_threads(n);
}

// git_revision() is defined in the generated git_revision.cpp (cmake/git_revision.cmake).
std::string version_string() { return fmt::format("{} (git {})", KICK_VERSION, git_revision()); }

at::Device parse_device(const std::string& name) {
  if (name == "cpu") return at::Device(at::kCPU);
  if (name.rfind("cuda", 0) == 0) {
    at::Device d(at::kCPU);
    try {
      d = at::Device(name);
    } catch (const std::exception&) {
      fail("--device {}: expected cpu, cuda or cuda:N", name);
    }
    if (!at::hasCUDA()) fail("--device {}: this LibTorch build has no CUDA device available", name);
    return d;
  }
  fail("--device {}: expected cpu, cuda or cuda:N", name);
}

at::ScalarType parse_dtype(const std::string& name, const char* option) {
  if (name == "fp32" || name == "float32" || name == "f32") return at::kFloat;
  if (name == "bf16" || name == "bfloat16") return at::kBFloat16;
  if (name == "fp16" || name == "float16" || name == "f16") return at::kHalf;
  fail("{} {}: expected fp32, bf16 or fp16", option, name);
}

std::string dtype_name(at::ScalarType dtype) {
  switch (dtype) {
    case at::kFloat: return "fp32";
    case at::kBFloat16: return "bf16";
    case at::kHalf: return "fp16";
    default: return std::string(at::toString(dtype));
  }
}

}  // namespace kick

namespace kick {

std::optional<size_t> find_invalid_utf8(std::string_view text) {
  const auto* bytes = reinterpret_cast<const unsigned char*>(text.data());
  const size_t n = text.size();
  size_t i = 0;
  while (i < n) {
    const unsigned char lead = bytes[i];
    if (lead < 0x80) {
      ++i;
      continue;
    }
    size_t length = 0;
    unsigned char low = 0x80, high = 0xBF;  // the allowed range of the second byte
    if (lead >= 0xC2 && lead <= 0xDF) {
      length = 2;
    } else if (lead >= 0xE0 && lead <= 0xEF) {
      length = 3;
      if (lead == 0xE0) low = 0xA0;   // overlong
      if (lead == 0xED) high = 0x9F;  // surrogates
    } else if (lead >= 0xF0 && lead <= 0xF4) {
      length = 4;
      if (lead == 0xF0) low = 0x90;   // overlong
      if (lead == 0xF4) high = 0x8F;  // past U+10FFFF
    } else {
      return i;
    }
    if (i + length > n) return i;
    if (bytes[i + 1] < low || bytes[i + 1] > high) return i;
    for (size_t k = 2; k < length; ++k) {
      if (bytes[i + k] < 0x80 || bytes[i + k] > 0xBF) return i;
    }
    i += length;
  }
  return std::nullopt;
}

}  // namespace kick
