// Shared helpers for the unit tests: fixture paths, a scratch folder, the optional SmolLM2 model.
#pragma once

#include <catch2/catch.hpp>

#include <cstdlib>
#include <filesystem>
#include <string>
#include <vector>

#include "kick/core.hpp"

namespace kick::test {

inline std::filesystem::path fixture(const std::string& name) {
  return std::filesystem::path(KICK_TEST_FIXTURES) / name;
}

// A fresh, empty folder under the build tree for one test.
inline std::filesystem::path scratch_dir(const std::string& name) {
  auto dir = std::filesystem::path(KICK_TEST_TMP) / name;
  std::filesystem::remove_all(dir);
  std::filesystem::create_directories(dir);
  return dir;
}

// The cache folder for fetched models: $KICK_CACHE, else ~/.cache/kick.
inline std::filesystem::path model_cache() {
  if (const char* env = std::getenv("KICK_CACHE"); env && *env) return env;
  const char* home = std::getenv("HOME");
  return std::filesystem::path(home ? home : "/tmp") / ".cache" / "kick";
}

// SmolLM2-135M-Instruct as data/fetch_models.sh stores it.
inline std::filesystem::path smollm2_gguf() {
  return model_cache() / "models" / "SmolLM2-135M-Instruct.Q4_1.gguf";
}

inline std::filesystem::path stories260k_dir() { return data_root() / "models" / "stories260K"; }

// Runs `fn` expecting a kick::Error whose one-line message contains every keyword.
template <typename Fn>
void require_error(Fn&& fn, const std::vector<std::string>& keywords) {
  try {
    fn();
  } catch (const kick::Error& e) {
    const std::string message = e.what();
    INFO(message);
    CHECK(message.find('\n') == std::string::npos);
    for (const auto& k : keywords) CHECK_THAT(message, Catch::Matchers::Contains(k));
    return;
  }
  FAIL("no kick::Error thrown; expected one mentioning " << (keywords.empty() ? std::string() : keywords.front()));
}

}  // namespace kick::test
