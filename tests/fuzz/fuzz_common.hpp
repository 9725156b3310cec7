// tests/fuzz/fuzz_common.hpp: what every libFuzzer target shares. Readers take paths, so the input is written to
// a per-process temporary file first. The contract under test (docs/robustness.md): any input either loads or
// throws kick::Error naming the file and what was expected. Any other exception escaping a reader is a finding,
// as are crashes, leaks and undefined behaviour (the targets are built with ASan and UBSan).
#pragma once

#include <unistd.h>

#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <exception>
#include <filesystem>
#include <fstream>
#include <string>

#include "kick/core.hpp"

namespace kick::fuzz {

// A file under the fuzzer's own temporary folder (one per process, so parallel fuzz jobs do not collide).
inline std::filesystem::path scratch_file(const std::string& name) {
  static const std::filesystem::path dir = [] {
    auto d = std::filesystem::temp_directory_path() / ("kick-fuzz-" + std::to_string(::getpid()));
    std::filesystem::create_directories(d);
    return d;
  }();
  return dir / name;
}

inline std::filesystem::path write_scratch(const std::string& name, const uint8_t* data, size_t size) {
  const auto path = scratch_file(name);
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out.write(reinterpret_cast<const char*>(data), static_cast<std::streamsize>(size));
  return path;
}

// Runs one input: kick::Error is the expected way to refuse it; anything else aborts so libFuzzer keeps it.
template <class Body>
int run_one(const char* target, Body&& body) {
  try {
    body();
  } catch (const kick::Error& e) {
    // KICK_FUZZ_VERBOSE=1 shows why an input was refused (to check that the seeds get past the first checks).
    static const bool verbose = std::getenv("KICK_FUZZ_VERBOSE") != nullptr;
    if (verbose) std::fprintf(stderr, "%s: refused: %s\n", target, e.what());
  } catch (const std::exception& e) {
    std::fprintf(stderr, "%s: an exception other than kick::Error escaped: %s\n", target, e.what());
    std::abort();
  }
  return 0;
}

}  // namespace kick::fuzz
