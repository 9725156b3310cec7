// Tests of lib/core that stand alone: the content hash against the published FNV-1a 64 test vectors.
#include <catch2/catch.hpp>
#include <nlohmann/json.hpp>

#include "kick/core.hpp"

TEST_CASE("fnv1a64_hex gives the published FNV-1a 64 vectors", "[core]") {
  // From the FNV reference test suite (Fowler/Noll/Vo): "", "a", "foobar".
  CHECK(kick::fnv1a64_hex("") == "cbf29ce484222325");
  CHECK(kick::fnv1a64_hex("a") == "af63dc4c8601ec8c");
  CHECK(kick::fnv1a64_hex("foobar") == "85944171f73967e8");
}

TEST_CASE("find_invalid_utf8 accepts exactly the strict UTF-8 that nlohmann::json writes", "[core]") {
  CHECK_FALSE(kick::find_invalid_utf8("").has_value());
  CHECK_FALSE(kick::find_invalid_utf8("plain ASCII\n").has_value());
  CHECK_FALSE(kick::find_invalid_utf8("caf\xc3\xa9 \xe2\x82\xac \xf0\x9f\x98\x80 \xf4\x8f\xbf\xbf").has_value());  // é € 😀 U+10FFFF
  CHECK(kick::find_invalid_utf8("ab\xff") == 2u);              // never a lead byte
  CHECK(kick::find_invalid_utf8("a\x80") == 1u);               // a continuation byte alone
  CHECK(kick::find_invalid_utf8("\xc0\xaf") == 0u);           // overlong '/'
  CHECK(kick::find_invalid_utf8("x\xe0\x80\xaf") == 1u);      // overlong, 3 bytes
  CHECK(kick::find_invalid_utf8("\xed\xa0\x80") == 0u);       // a UTF-16 surrogate
  CHECK(kick::find_invalid_utf8("\xf4\x90\x80\x80") == 0u);   // past U+10FFFF
  CHECK(kick::find_invalid_utf8("ok\xe2\x82") == 2u);          // truncated at the end
  CHECK(kick::find_invalid_utf8("\xe2\x28\xa1") == 0u);       // a bad continuation
  // The same verdicts as the JSON writer, which is what results files go through.
  for (const std::string& text : {std::string("caf\xc3\xa9"), std::string("\xed\xa0\x80"), std::string("\xc0\xaf"), std::string("a\xf4\x90\x80\x80")}) {
    bool json_ok = true;
    try {
      (void)nlohmann::json(text).dump();
    } catch (const nlohmann::json::exception&) {
      json_ok = false;
    }
    CHECK(json_ok == !kick::find_invalid_utf8(text).has_value());
  }
}
