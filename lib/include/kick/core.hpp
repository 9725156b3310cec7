// kick/core.hpp: the bottom floor every module uses: the error type, memory-mapped files,
// atomic file output, the data root (KICK_DATA), thread setup and the tool's version stamp.
#pragma once

#include <ATen/ATen.h>
#include <fmt/format.h>

#include <cstdint>
#include <atomic>
#include <filesystem>
#include <future>
#include <memory>
#include <optional>
#include <stdexcept>
#include <string>
#include <string_view>

namespace kick {

using Tensor = at::Tensor;

// Every library error is a kick::Error whose message is one line naming the file, field or tensor
// and what was expected. Libraries throw; only main() and the bindings catch.
class Error : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

template <typename... Args>
[[noreturn]] void fail(fmt::format_string<Args...> format, Args&&... args) {
  throw Error(fmt::format(format, std::forward<Args>(args)...));
}

// How a MappedFile holds its bytes. Both let tensors built on them be modified in place without ever
// touching the file.
enum class FileAccess {
  // Mapped copy-on-write: nothing is read until touched, pages are shared with the page cache.
  copy_on_write,
  // Read into private anonymous memory. For callers that rewrite most
  // tensors in place, as compression does: each copy-on-write fault on a mapping costs a page copy and, in
  // a multi-threaded process, a TLB shootdown on every core (measured: RTN on SmolLM2 spent 0.8 of 1.1 s there).
  private_memory,
};

// A whole file's bytes, mapped or read (FileAccess), with bounds-checked access.
class MappedFile {
 public:
  explicit MappedFile(const std::string& path, FileAccess access = FileAccess::copy_on_write);
  ~MappedFile();
  MappedFile(const MappedFile&) = delete;
  MappedFile& operator=(const MappedFile&) = delete;

  const std::string& path() const { return path_; }
  uint64_t size() const { return size_; }
  const uint8_t* data() const { return data_; }
  // Pointer to [offset, offset + length); throws naming the file and `what` when it runs past the end.
  const uint8_t* span(uint64_t offset, uint64_t length, std::string_view what) const;

 private:
  std::string path_;
  uint8_t* data_ = nullptr;
  uint64_t size_ = 0;
};

// A tensor that aliases [offset, offset + bytes) of a mapped file and keeps the mapping alive.
Tensor tensor_from_mapping(const std::shared_ptr<MappedFile>& file, uint64_t offset,
                           at::IntArrayRef shape, at::ScalarType dtype, std::string_view what);

// Writes `bytes` to `path` through a temporary file in the same folder and a rename, so readers
// see either the old file or the complete new one.
void write_file_atomically(const std::filesystem::path& path, std::string_view bytes);

// Reads a whole text or binary file; throws naming the path when it cannot.
std::string read_file(const std::filesystem::path& path);

// The data root: $KICK_DATA, else ../shared/data from the working directory, else ../shared/data
// beside the source tree. Throws with the places it looked when none exists.
std::filesystem::path data_root();
// data_root() / relative, checked to exist.
std::filesystem::path data_path(const std::filesystem::path& relative);

// "[2, 3, 4]": shapes in error messages.
std::string shape_string(at::IntArrayRef shape);

// FNV-1a 64-bit hash (hex) of bytes, and of a file's contents or a folder's regular files (sorted by name,
// names included): the content identity stamped into saved models and results.
// Memory this process may still take: the smaller of /proc/meminfo's MemAvailable and the cgroup (v2) limit
// minus its usage; KICK_MEMORY_LIMIT (bytes) overrides both (tests). 0 when unknown.
uint64_t available_memory_bytes();
// Throws kick::Error "WHAT: needs at least N GiB, M GiB available ..." when `bytes` cannot fit, so that a file
// larger than memory is refused with a message instead of an out-of-memory kill. No check when unknown.
void check_fits_in_memory(uint64_t bytes, const std::string& what);
std::string fnv1a64_hex(std::string_view bytes);
// `cancel`, when given and set, stops the hash within one 1 MB read (it then throws).
std::string content_hash(const std::filesystem::path& path, const std::atomic<bool>* cancel = nullptr);
// content_hash on a thread of its own at idle scheduling priority (Linux SCHED_IDLE): it takes only cores
// the caller leaves idle (serial phases, waits on the disk) instead of adding ~1 s per GB to the critical path.
// Destroyed before get(), as when the caller fails, it cancels the hash instead of waiting for it. Read errors
// surface at get().
class BackgroundHash {
 public:
  explicit BackgroundHash(const std::filesystem::path& path);
  ~BackgroundHash();
  BackgroundHash(const BackgroundHash&) = delete;
  BackgroundHash& operator=(const BackgroundHash&) = delete;
  std::string get();

 private:
  std::atomic<bool> cancel_{false};
  std::future<std::string> result_;
};

// Keeps large freed blocks in the process instead of returning them to the kernel (glibc mallopt).
// LibTorch allocates activations of hundreds of MB per layer; by default glibc maps and unmaps each,
// and the page faults cost as much CPU as the arithmetic (measured: 165 -> 293 tokens/s prefill).
void configure_allocator();
// Hands the heap's free pages back to the kernel once more than keep_bytes lie free (glibc malloc_trim; a
// no-op elsewhere). For the end of a phase whose temporaries configure_allocator kept: they would otherwise
// stay resident, fragmented; below keep_bytes they stay for reuse without new page faults.
void release_free_heap(size_t keep_bytes);

// LibTorch's elementwise ops run on OpenMP threads. Debian's OpenBLAS pthread build runs fp32 GEMMs on
// its own threads, and libgomp's default spin-wait then takes the cores from it (measured: SmolLM2 prefill
// 298 -> 883 tokens/s with a passive wait; OpenBLAS's OpenMP build, which scripts/setup.sh selects, gives
// 1018 with the default wait). libgomp reads OMP_WAIT_POLICY only when it loads, so when the pthread BLAS
// is loaded and the variable is unset this sets it to passive and re-executes the program (once); it
// returns at once otherwise. Call first thing in main().
void ensure_passive_openmp_wait(char** argv);

// Sets LibTorch's intra-op threads: n <= 0 means one per hardware core.
void configure_threads(int n);

// "0.1.0 (git abc123)": stamped into saved models and results.
std::string version_string();
std::string git_revision();

// Parses "cpu", "cuda", "cuda:1"; throws on anything else or when CUDA is asked for but absent.
at::Device parse_device(const std::string& name);
// Parses "fp32"/"float32", "bf16"/"bfloat16", "fp16"/"float16".
at::ScalarType parse_dtype(const std::string& name, const char* option = "--dtype");
std::string dtype_name(at::ScalarType dtype);

}  // namespace kick

namespace kick {

// Progress for long runs on stderr: "label done/total (pct) elapsed ETA". Redraws in place on a
// terminal; elsewhere prints a line at most every few seconds and at the end.
class Progress {
 public:
  Progress(std::string label, int64_t total, std::string unit = "");
  void update(int64_t done);
  void finish();
  double elapsed_seconds() const;

 private:
  std::string label_, unit_;
  int64_t total_;
  int64_t done_ = 0;
  double start_;
  double last_print_ = -1e9;
  bool tty_;
  bool finished_ = false;
};

// Seconds on a monotonic clock.
double monotonic_seconds();
// "1h02m", "3m05s", "12.3s".
std::string format_duration(double seconds);

// The offset of the first byte that breaks strict UTF-8 (overlong forms, surrogates and code points past
// U+10FFFF are invalid, as for nlohmann::json's writer), or nullopt when the whole text is valid.
std::optional<size_t> find_invalid_utf8(std::string_view text);

// The folder for fetched models: $KICK_CACHE, else ~/.cache/kick.
std::filesystem::path cache_root();

}  // namespace kick
