// Tests of lib/core that stand alone: the content hash against the published FNV-1a 64 test vectors.
#include <catch2/catch.hpp>

#include "kick/core.hpp"

TEST_CASE("fnv1a64_hex gives the published FNV-1a 64 vectors", "[core]") {
  // From the FNV reference test suite (Fowler/Noll/Vo): "", "a", "foobar".
  CHECK(kick::fnv1a64_hex("") == "cbf29ce484222325");
  CHECK(kick::fnv1a64_hex("a") == "af63dc4c8601ec8c");
  CHECK(kick::fnv1a64_hex("foobar") == "85944171f73967e8");
}
