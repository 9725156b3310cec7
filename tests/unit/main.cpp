// The Catch2 entry point for kick_tests; fixes LibTorch's thread count so results are repeatable.
#define CATCH_CONFIG_RUNNER
#include <catch2/catch.hpp>

#include "kick/core.hpp"

int main(int argc, char* argv[]) {
  kick::ensure_passive_openmp_wait(argv);
  kick::configure_allocator();
  kick::configure_threads(2);
  return Catch::Session().run(argc, argv);
}
