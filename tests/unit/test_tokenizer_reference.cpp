// Tokenizer ids against independent implementations (fixture: tests/reference/tokenizer_reference_ids.py):
// SmolLM2's byte-level BPE against llama.cpp and HF `tokenizers`, stories260K's score BPE against a port of
// llama2.c's encode and llama.cpp's SentencePiece tokenizer; decode round trips; tokenizer.json round trips.
#include <catch2/catch.hpp>
#include <nlohmann/json.hpp>

#include <fstream>

#include "kick/tokenizer.hpp"
#include "test_helpers.hpp"

using namespace kick;

namespace {

const nlohmann::json& reference() {
  static const nlohmann::json j = [] {
    std::ifstream in(test::fixture("tokenizer/reference_ids.json"));
    return nlohmann::json::parse(in);
  }();
  return j;
}

std::vector<std::string> texts() { return reference()["texts"].get<std::vector<std::string>>(); }

VocabSpec stories_vocab() {
  auto dir = test::stories260k_dir();
  return read_llama2c((dir / "model.bin").string(), (dir / "tokenizer.bin").string()).vocab;
}

// The same vocabulary as llama.cpp sees it: a GGUF `llama` vocab with spaces spelled U+2581.
VocabSpec stories_vocab_as_sentencepiece() {
  VocabSpec v = stories_vocab();
  v.model = "llama";
  v.add_space_prefix = true;
  for (auto& t : v.tokens) {
    std::string out;
    for (char c : t) out += c == ' ' ? std::string("\xE2\x96\x81") : std::string(1, c);
    t = out;
  }
  return v;
}

void check_ids(const Tokenizer& tok, const std::string& reference_name, const nlohmann::json& expected, bool special) {
  auto all = texts();
  for (size_t i = 0; i < all.size(); ++i) {
    INFO(tok.kind() << " vs " << reference_name << " on text " << i << ": '" << all[i] << "'");
    CHECK(tok.encode(all[i], false, special) == expected[i].get<std::vector<int32_t>>());
  }
}

}  // namespace

TEST_CASE("SmolLM2's tokenizer gives llama.cpp's and HF tokenizers' ids", "[tokenizer]") {
  if (!std::filesystem::exists(test::smollm2_gguf())) {
    WARN("skipped: " << test::smollm2_gguf() << " absent (run data/fetch_models.sh)");
    return;
  }
  auto vocab = checkpoint_from_gguf(read_gguf(test::smollm2_gguf().string()), test::smollm2_gguf().string()).vocab;
  auto tok = make_tokenizer(vocab);
  CHECK(tok->kind() == "gpt2/smollm");
  check_ids(*tok, "llama.cpp", reference()["smollm2"]["llama_cpp"], true);
  check_ids(*tok, "tokenizers", reference()["smollm2"]["tokenizers"], true);
  for (const auto& text : texts()) {
    INFO(text);
    CHECK(tok->decode(tok->encode(text, false, true), true) == text);
  }
  // Written as tokenizer.json and read back, the vocabulary tokenizes the same.
  auto dir = test::scratch_dir("tokenizer_json_smollm2");
  write_file_atomically(dir / "tokenizer.json", tokenizer_json_from_vocab(vocab).dump());
  auto reread = make_tokenizer(read_tokenizer_json((dir / "tokenizer.json").string()));
  check_ids(*reread, "llama.cpp (after tokenizer.json)", reference()["smollm2"]["llama_cpp"], true);
}

TEST_CASE("stories260K's tokenizer gives llama2.c's and llama.cpp's ids", "[tokenizer]") {
  auto tok = make_tokenizer(stories_vocab());
  CHECK(tok->kind() == "llama2c");
  check_ids(*tok, "llama2.c encode", reference()["stories260k"]["run_c"], false);
  auto spm = make_tokenizer(stories_vocab_as_sentencepiece());
  check_ids(*spm, "llama.cpp SentencePiece", reference()["stories260k"]["llama_cpp"], false);
  for (const auto& text : texts()) {
    INFO(text);
    CHECK(tok->decode(tok->encode(text, true)) == text);
    CHECK(spm->decode(spm->encode(text, true)) == text);
  }
  auto dir = test::scratch_dir("tokenizer_json_stories");
  write_file_atomically(dir / "tokenizer.json", tokenizer_json_from_vocab(stories_vocab()).dump());
  auto reread = make_tokenizer(read_tokenizer_json((dir / "tokenizer.json").string()));
  check_ids(*reread, "llama2.c encode (after tokenizer.json)", reference()["stories260k"]["run_c"], false);
}

TEST_CASE("malformed tokenizer.json files are refused with the file and field", "[tokenizer]") {
  auto dir = test::scratch_dir("tokenizer_json_bad");
  auto write = [&](const std::string& name, const std::string& body) {
    write_file_atomically(dir / name, body);
    return (dir / name).string();
  };
  CHECK_THROWS_WITH(read_tokenizer_json(write("a.json", "{\"version\": \"1.0\"}")), Catch::Contains("a.json") && Catch::Contains("'model'"));
  CHECK_THROWS_WITH(read_tokenizer_json(write("b.json", "{\"model\": {\"type\": \"WordPiece\", \"vocab\": {}}}")),
                    Catch::Contains("b.json") && Catch::Contains("WordPiece"));
  CHECK_THROWS_WITH(read_tokenizer_json(write("c.json", "{\"model\": {\"type\": \"BPE\", \"vocab\": {\"a\": 0}, \"merges\": [\"a zz\"]},"
                                                        " \"pre_tokenizer\": {\"type\": \"ByteLevel\"}}")),
                    Catch::Contains("c.json") && Catch::Contains("merges[0]"));
  CHECK_THROWS_WITH(read_tokenizer_json(write("d.json", "{\"model\": {\"type\": \"BPE\", \"vocab\": {\"a\": \"x\"}}}")),
                    Catch::Contains("d.json") && Catch::Contains("model.vocab['a']"));
  CHECK_THROWS_WITH(read_tokenizer_json(write("e.json", "{not json")), Catch::Contains("e.json"));
  // Found by fuzzing: ids index a dense table, so an id far past the entries would allocate gigabytes.
  CHECK_THROWS_WITH(read_tokenizer_json(write("f.json", "{\"model\": {\"type\": \"BPE\", \"vocab\": {\"a\": 900000000}}}")),
                    Catch::Contains("f.json") && Catch::Contains("model.vocab['a'] has id 900000000"));
  CHECK_THROWS_WITH(read_tokenizer_json(write("g.json", "{\"model\": {\"type\": \"BPE\", \"vocab\": {\"a\": 0}},"
                                                        " \"added_tokens\": [{\"id\": -3, \"content\": \"x\"}]}")),
                    Catch::Contains("g.json") && Catch::Contains("added_tokens id -3"));
  // Found by fuzzing: optional fields of the wrong type escaped as nlohmann type_errors.
  CHECK_THROWS_WITH(read_tokenizer_json(write("h.json", "{\"model\": {\"type\": \"BPE\", \"vocab\": {\"a\": 0}},"
                                                        " \"added_tokens\": [{\"id\": 0, \"content\": \"a\", \"special\": 9}]}")),
                    Catch::Contains("h.json") && Catch::Contains("added_tokens[].special is number (expected a boolean)"));
  CHECK_THROWS_WITH(read_tokenizer_json(write("i.json", "{\"model\": {\"type\": 7, \"vocab\": {\"a\": 0}}}")),
                    Catch::Contains("i.json") && Catch::Contains("model.type is number (expected a string)"));
  CHECK_THROWS_WITH(read_tokenizer_json(write("j.json", "{\"model\": {\"type\": \"BPE\", \"vocab\": {\"a\": 0}, \"byte_fallback\": true},"
                                                        " \"post_processor\": {\"type\": \"TemplateProcessing\", \"single\": [{\"SpecialToken\": {\"id\": 5}}]}}")),
                    Catch::Contains("j.json") && Catch::Contains("TemplateProcessing.single[0].SpecialToken.id is number"));
  CHECK_THROWS_WITH(make_tokenizer(VocabSpec{}), Catch::Contains("not supported"));
}
