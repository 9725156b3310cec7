// tests/unit/test_gguf.cpp: owns the GGUF tests: dequantization of every supported type against the
// PyPI gguf package (fixtures from tests/reference/make_gguf_fixtures.py), metadata of every value type,
// SmolLM2-135M-Instruct's config and tensors, the Checkpoint round trip, the RoPE row permutation, and
// one-line rejections of malformed files.
#include <catch2/catch.hpp>

#include <cmath>
#include <cstring>
#include <fstream>
#include <functional>

#include "kick/io.hpp"
#include "test_helpers.hpp"

namespace {

using Catch::Matchers::Contains;

// Builds GGUF bytes by hand, so each malformed file is wrong in exactly one way.
class GgufBytes {
 public:
  GgufBytes& magic(const char* four = "GGUF") { bytes_.append(four, 4); return *this; }
  GgufBytes& u32(uint32_t v) { return scalar(v); }
  GgufBytes& u64(uint64_t v) { return scalar(v); }
  GgufBytes& str(const std::string& s) { u64(s.size()); bytes_ += s; return *this; }
  GgufBytes& header(uint32_t version, uint64_t tensors, uint64_t kvs) {
    return magic().u32(version).u64(tensors).u64(kvs);
  }
  GgufBytes& kv_string(const std::string& key, const std::string& value) { return str(key).u32(8).str(value); }
  GgufBytes& kv_u32(const std::string& key, uint32_t value) { return str(key).u32(4).u32(value); }
  GgufBytes& tensor_info(const std::string& name, std::vector<uint64_t> ne, uint32_t type, uint64_t offset) {
    str(name).u32(static_cast<uint32_t>(ne.size()));
    for (auto d : ne) u64(d);
    return u32(type).u64(offset);
  }
  GgufBytes& pad(size_t alignment = 32) {
    bytes_.resize((bytes_.size() + alignment - 1) / alignment * alignment, '\0');
    return *this;
  }
  GgufBytes& zeros(size_t n) { bytes_.append(n, '\0'); return *this; }
  const std::string& bytes() const { return bytes_; }

 private:
  template <typename T>
  GgufBytes& scalar(T v) {
    bytes_.append(reinterpret_cast<const char*>(&v), sizeof(T));
    return *this;
  }
  std::string bytes_;
};

std::string write_file(const std::filesystem::path& dir, const std::string& name, const std::string& bytes) {
  const auto path = (dir / name).string();
  std::ofstream(path, std::ios::binary).write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
  return path;
}

// The kick::Error message of `action`; fails the test when it does not throw one.
std::string error_of(const std::function<void()>& action) {
  try {
    action();
  } catch (const kick::Error& e) {
    return e.what();
  }
  FAIL("expected a kick::Error");
  return {};
}

void check_one_line(const std::string& message) {
  INFO(message);
  CHECK(message.find('\n') == std::string::npos);
}

std::vector<float> read_floats(const std::filesystem::path& path) {
  const std::string bytes = kick::read_file(path);
  std::vector<float> values(bytes.size() / sizeof(float));
  std::memcpy(values.data(), bytes.data(), values.size() * sizeof(float));
  return values;
}

bool same_values(const at::Tensor& a, const at::Tensor& b) {
  return a.sizes() == b.sizes() && a.scalar_type() == b.scalar_type() && at::equal(a, b);
}

}  // namespace

TEST_CASE("GGUF dequantization of every type matches the gguf package", "[gguf]") {
  const auto contents = kick::read_gguf(kick::test::fixture("gguf/quant_types.gguf").string());
  const auto index = nlohmann::json::parse(kick::read_file(kick::test::fixture("gguf/quant_types.index.json")));
  const auto expected = read_floats(kick::test::fixture("gguf/quant_types.expected.f32"));
  CHECK(contents.version == 3);
  REQUIRE(contents.tensors.size() == index.size());
  std::set<std::string> types_seen;
  for (const auto& [name, entry] : index.items()) {
    INFO(name);
    REQUIRE(contents.tensors.count(name) == 1);
    const at::Tensor& got = contents.tensors.at(name);
    CHECK(contents.tensor_types.at(name) == entry["type"].get<std::string>());
    types_seen.insert(entry["type"].get<std::string>());
    CHECK(got.sizes().vec() == entry["shape"].get<std::vector<int64_t>>());
    REQUIRE(got.scalar_type() == at::kFloat);
    const auto offset = entry["offset"].get<size_t>(), count = entry["count"].get<size_t>();
    REQUIRE(offset + count <= expected.size());
    REQUIRE(got.numel() == static_cast<int64_t>(count));
    const at::Tensor flat = got.contiguous().reshape({-1});
    const float* values = flat.data_ptr<float>();
    size_t mismatches = 0;
    double worst = 0;
    for (size_t i = 0; i < count; ++i) {
      const double want = expected[offset + i];
      const double diff = std::abs(values[i] - want);
      worst = std::max(worst, diff);
      if (diff > 1e-6 * std::max(1.0, std::abs(want))) ++mismatches;
    }
    INFO("largest difference " << worst);
    CHECK(mismatches == 0);
  }
  CHECK(types_seen == std::set<std::string>{"F32", "F16", "BF16", "Q4_0", "Q4_1", "Q5_0", "Q5_1", "Q8_0", "Q2_K",
                                            "Q3_K", "Q4_K", "Q5_K", "Q6_K"});
}

TEST_CASE("GGUF metadata of every value type, nested arrays and a 64-byte alignment", "[gguf]") {
  const auto kv = kick::read_gguf(kick::test::fixture("gguf/quant_types.gguf").string()).kv;
  CHECK(kv["general.architecture"] == "test");
  CHECK(kv["general.alignment"] == 64);
  CHECK(kv["test.u8"] == 200);
  CHECK(kv["test.i8"] == -100);
  CHECK(kv["test.u16"] == 60000);
  CHECK(kv["test.i16"] == -30000);
  CHECK(kv["test.u32"].get<uint64_t>() == 4000000000u);
  CHECK(kv["test.i32"] == -2000000000);
  CHECK(kv["test.f32"].get<double>() == 0.1);  // the float's shortest decimal spelling
  CHECK(kv["test.u64"].get<uint64_t>() == (uint64_t(1) << 60));
  CHECK(kv["test.i64"].get<int64_t>() == -(int64_t(1) << 60));
  CHECK(kv["test.f64"].get<double>() == 3.141592653589793);
  CHECK(kv["test.bool"] == true);
  CHECK(kv["test.string"] == "h\xC3\xA9llo \xE2\x96\x81 world");
  CHECK(kv["test.strings"] == nlohmann::json::array({"a", "bc", ""}));
  CHECK(kv["test.nested"] == nlohmann::json::parse("[[1, 2], [3]]"));
}

TEST_CASE("GGUF reads SmolLM2-135M-Instruct Q4_1", "[gguf][smollm2]") {
  const auto model = kick::test::smollm2_gguf();
  if (!std::filesystem::exists(model)) {
    WARN("skipped: " << model << " is absent (data/fetch_models.sh fetches it)");
    return;
  }
  const auto reference = nlohmann::json::parse(kick::read_file(kick::test::fixture("gguf/smollm2_reference.json")));
  auto contents = kick::read_gguf(model.string());
  CHECK(contents.version == 3);
  CHECK(contents.tensors.size() == 272);

  // Dequantized values in GGUF layout against the gguf package.
  for (const auto& [name, entry] : reference["tensors"].items()) {
    INFO(name);
    REQUIRE(contents.tensors.count(name) == 1);
    const at::Tensor& t = contents.tensors.at(name);
    CHECK(contents.tensor_types.at(name) == reference["tensor_types"][name].get<std::string>());
    CHECK(t.sizes().vec() == entry["shape"].get<std::vector<int64_t>>());
    for (const auto& s : entry["samples"]) {
      const float got = s.size() == 3 ? t[s[0].get<int64_t>()][s[1].get<int64_t>()].item<float>()
                                      : t[s[0].get<int64_t>()].item<float>();
      CHECK(got == s.back().get<float>());
    }
    const at::Tensor wide = t.to(at::kDouble);
    CHECK(wide.sum().item<double>() == Approx(entry["sum"].get<double>()).epsilon(1e-9));
    CHECK(wide.abs().sum().item<double>() == Approx(entry["abs_sum"].get<double>()).epsilon(1e-9));
  }

  const auto ckpt = kick::checkpoint_from_gguf(contents, model.string());
  const auto& c = ckpt.config;
  CHECK(c.num_layers == 30);
  CHECK(c.hidden_size == 576);
  CHECK(c.intermediate_size == 1536);
  CHECK(c.num_heads == 9);
  CHECK(c.num_kv_heads == 3);
  CHECK(c.head_dim == 64);
  CHECK(c.rope_theta == 100000.0);
  CHECK(c.rms_norm_eps == 1e-5);
  CHECK(c.vocab_size == 49152);
  CHECK(c.max_position == 8192);
  CHECK(c.tie_word_embeddings);
  CHECK(c.bos_token_id == 1);
  CHECK(c.eos_token_id == 2);
  CHECK(ckpt.tensors.size() == 272);
  CHECK(ckpt.tensors.count("lm_head.weight") == 0);
  CHECK(ckpt.tensors.at("model.layers.29.mlp.down_proj.weight").sizes().vec() == std::vector<int64_t>{576, 1536});

  // q/k rows come back in HF rotate-half order: GGUF row (head, pair i, half p) is HF row (head, p, i).
  for (const auto& [name, hf_name] : {std::pair{"blk.0.attn_q.weight", "model.layers.0.self_attn.q_proj.weight"},
                                      std::pair{"blk.0.attn_k.weight", "model.layers.0.self_attn.k_proj.weight"}}) {
    const at::Tensor& hf = ckpt.tensors.at(hf_name);
    for (const auto& s : reference["tensors"][name]["samples"]) {
      const int64_t gguf_row = s[0].get<int64_t>(), head = gguf_row / 64, within = gguf_row % 64;
      const int64_t hf_row = head * 64 + (within % 2) * 32 + within / 2;
      INFO(name << " GGUF row " << gguf_row << " -> HF row " << hf_row);
      CHECK(hf[hf_row][s[1].get<int64_t>()].item<float>() == s[2].get<float>());
    }
  }

  const auto& v = ckpt.vocab;
  CHECK(v.model == "gpt2");
  CHECK(v.pre == "smollm");
  CHECK(v.tokens.size() == 49152);
  CHECK(v.token_types.size() == 49152);
  CHECK(v.merges.size() == 48900);
  CHECK(v.bos_id == 1);
  CHECK(v.eos_id == 2);
  CHECK(v.unk_id == 0);
  CHECK(v.pad_id == 2);
  CHECK_FALSE(v.add_bos);
  CHECK_FALSE(v.add_space_prefix);
  CHECK(v.chat_template.find("im_start") != std::string::npos);
  CHECK(ckpt.metadata["gguf"]["general.name"] == "Smollm2 135M 8k Lc100K Mix1 Ep2");
  CHECK_FALSE(ckpt.metadata["gguf"].contains("tokenizer.ggml.tokens"));
  CHECK_FALSE(ckpt.metadata["gguf"].contains("tokenizer.ggml.merges"));
  CHECK(ckpt.metadata["gguf_tensor_types"].contains("Q4_1"));
}

namespace {

kick::Checkpoint random_checkpoint(bool tied) {
  kick::Checkpoint ckpt;
  auto& c = ckpt.config;
  c.vocab_size = 12;
  c.hidden_size = 32;
  c.intermediate_size = 48;
  c.num_layers = 2;
  c.num_heads = 4;
  c.num_kv_heads = 2;
  c.head_dim = 8;
  c.max_position = 256;
  c.rms_norm_eps = 1e-6;
  c.rope_theta = 500000.0;
  c.tie_word_embeddings = tied;
  c.bos_token_id = 1;
  c.eos_token_id = 2;
  at::manual_seed(7);
  auto add = [&](const std::string& name, std::vector<int64_t> shape) { ckpt.tensors[name] = at::randn(shape); };
  add("model.embed_tokens.weight", {12, 32});
  add("model.norm.weight", {32});
  if (!tied) add("lm_head.weight", {12, 32});
  for (int l = 0; l < 2; ++l) {
    const std::string p = "model.layers." + std::to_string(l) + ".";
    add(p + "input_layernorm.weight", {32});
    add(p + "post_attention_layernorm.weight", {32});
    add(p + "self_attn.q_proj.weight", {32, 32});
    add(p + "self_attn.k_proj.weight", {16, 32});
    add(p + "self_attn.v_proj.weight", {16, 32});
    add(p + "self_attn.o_proj.weight", {32, 32});
    add(p + "mlp.gate_proj.weight", {48, 32});
    add(p + "mlp.up_proj.weight", {48, 32});
    add(p + "mlp.down_proj.weight", {32, 48});
  }
  auto& v = ckpt.vocab;
  v.model = "llama";
  v.tokens = {"<unk>", "<s>", "</s>", "\xE2\x96\x81" "a", "b", "<0x0A>", "\xE2\x96\x81the", "c", "d", "e", "f", "g"};
  v.scores = {0.f, 0.f, 0.f, -1.5f, -2.25f, 0.f, -0.125f, -3.f, -4.f, -5.f, -6.f, -7.f};
  v.token_types = {2, 3, 3, 1, 1, 6, 1, 1, 1, 1, 1, 1};
  v.bos_id = 1;
  v.eos_id = 2;
  v.unk_id = 0;
  v.pad_id = -1;
  v.add_bos = true;
  v.add_eos = false;
  v.add_space_prefix = true;
  v.chat_template = "{{ messages }}";
  return ckpt;
}

void check_same_checkpoint(const kick::Checkpoint& a, const kick::Checkpoint& b) {
  CHECK(a.config.to_hf_json() == b.config.to_hf_json());
  CHECK(a.config.head_dim == b.config.head_dim);
  CHECK(a.config.rms_norm_eps == b.config.rms_norm_eps);
  CHECK(a.config.rope_theta == b.config.rope_theta);
  CHECK(a.config.tie_word_embeddings == b.config.tie_word_embeddings);
  REQUIRE(a.tensors.size() == b.tensors.size());
  for (const auto& [name, t] : a.tensors) {
    INFO(name);
    REQUIRE(b.tensors.count(name) == 1);
    CHECK(same_values(t, b.tensors.at(name)));
  }
  const auto &va = a.vocab, &vb = b.vocab;
  CHECK(va.model == vb.model);
  CHECK(va.pre == vb.pre);
  CHECK(va.tokens == vb.tokens);
  CHECK(va.scores == vb.scores);
  CHECK(va.token_types == vb.token_types);
  CHECK(va.merges == vb.merges);
  CHECK(va.bos_id == vb.bos_id);
  CHECK(va.eos_id == vb.eos_id);
  CHECK(va.unk_id == vb.unk_id);
  CHECK(va.pad_id == vb.pad_id);
  CHECK(va.add_bos == vb.add_bos);
  CHECK(va.add_eos == vb.add_eos);
  CHECK(va.add_space_prefix == vb.add_space_prefix);
  CHECK(va.chat_template == vb.chat_template);
}

}  // namespace

TEST_CASE("GGUF Checkpoint round trip keeps tensors, config and vocabulary", "[gguf]") {
  const auto dir = kick::test::scratch_dir("gguf_round_trip");
  for (bool tied : {false, true}) {
    INFO("tied " << tied);
    const auto original = random_checkpoint(tied);
    const auto path = (dir / (tied ? "tied.gguf" : "untied.gguf")).string();
    kick::write_checkpoint_gguf(path, original);
    const auto contents = kick::read_gguf(path);
    // The file holds llama.cpp's layout: q rows interleaved, metadata typed as llama.cpp reads it.
    CHECK(same_values(contents.tensors.at("blk.1.attn_q.weight"),
                      kick::permute_rope_rows(original.tensors.at("model.layers.1.self_attn.q_proj.weight"), 4, true)));
    CHECK(contents.kv["llama.block_count"] == 2);
    CHECK(contents.tensor_types.at("token_embd.weight") == "F32");
    CHECK(contents.tensors.count("output.weight") == (tied ? 0u : 1u));
    const auto back = kick::checkpoint_from_gguf(contents, path);
    check_same_checkpoint(original, back);
    CHECK(back.format == "gguf");
    CHECK(back.source == path);
  }
}

TEST_CASE("GGUF writer keeps F16 tensors and types metadata", "[gguf]") {
  const auto dir = kick::test::scratch_dir("gguf_writer");
  const auto path = (dir / "w.gguf").string();
  at::manual_seed(3);
  const std::map<std::string, at::Tensor> tensors = {{"a", at::randn({3, 5}).to(at::kHalf)},
                                                     {"b", at::randn({2, 3, 4})},
                                                     {"c", at::randn({7}, at::kDouble)}};
  const nlohmann::json kv = {{"general.architecture", "test"},
                             {"test.count", 7},
                             {"test.negative", -3},
                             {"test.big", 10000000000LL},
                             {"test.ratio", 0.25},
                             {"test.flag", false},
                             {"test.name", "x"},
                             {"test.list", nlohmann::json::array({1, -2, 3})},
                             {"test.nested", nlohmann::json::array({nlohmann::json::array({"a"}),
                                                                    nlohmann::json::array({"b", "c"})})},
                             {"test.rope.freq_base", 10000}};
  kick::write_gguf(path, kv, tensors);
  const auto back = kick::read_gguf(path);
  CHECK(back.kv == kv);
  CHECK(back.tensor_types.at("a") == "F16");
  CHECK(back.tensor_types.at("b") == "F32");
  CHECK(same_values(back.tensors.at("a"), tensors.at("a").to(at::kFloat)));
  CHECK(same_values(back.tensors.at("b"), tensors.at("b")));
  CHECK(same_values(back.tensors.at("c"), tensors.at("c").to(at::kFloat)));

  // A key llama.cpp reads as uint32 refuses a negative value.
  const auto message = error_of([&] { kick::write_gguf(path, {{"llama.block_count", -1}}, {}); });
  CHECK_THAT(message, Contains(path) && Contains("llama.block_count"));
}

TEST_CASE("permute_rope_rows converts interleaved pairs to rotate-half halves and back", "[gguf]") {
  at::manual_seed(11);
  const at::Tensor hf = at::randn({24, 5});
  const int64_t heads = 3;
  // llama.cpp's converter: HF -> GGUF is reshape(n_head, 2, rows/n_head/2, cols).swapaxes(1, 2).
  const at::Tensor gguf = hf.reshape({heads, 2, 4, 5}).transpose(1, 2).reshape({24, 5});
  CHECK(at::equal(kick::permute_rope_rows(hf, heads, /*inverse=*/true), gguf));
  CHECK(at::equal(kick::permute_rope_rows(gguf, heads), hf));
  // Row 1 of a GGUF head is the first row of its second half in HF order.
  CHECK(at::equal(gguf[1], hf[4]));
  CHECK_THAT(error_of([&] { kick::permute_rope_rows(hf, 5); }), Contains("5 heads"));
}

TEST_CASE("GGUF rejects malformed files with one-line errors naming the file", "[gguf]") {
  const auto dir = kick::test::scratch_dir("gguf_bad");
  auto read_error = [&](const std::string& name, const GgufBytes& bytes) {
    const auto path = write_file(dir, name, bytes.bytes());
    const auto message = error_of([&] { kick::read_gguf(path); });
    check_one_line(message);
    CHECK_THAT(message, Contains(path));
    return message;
  };
  // A well-formed one-tensor file, the base every broken case departs from.
  auto good = [](uint32_t type, uint64_t ne0, size_t data_bytes) {
    GgufBytes b;
    b.header(3, 1, 1).kv_string("general.architecture", "llama").tensor_info("w", {ne0, 2}, type, 0).pad();
    return b.zeros(data_bytes);
  };

  SECTION("the well-formed base reads") {
    const auto path = write_file(dir, "good.gguf", good(0, 4, 32).bytes());
    CHECK(kick::read_gguf(path).tensors.at("w").sizes().vec() == std::vector<int64_t>{2, 4});
  }
  SECTION("bad magic") {
    GgufBytes b;
    b.magic("GGML").u32(3).u64(0).u64(0);
    CHECK_THAT(read_error("magic.gguf", b), Contains("magic"));
  }
  SECTION("unsupported version") {
    GgufBytes b;
    b.header(1, 0, 0);
    CHECK_THAT(read_error("version.gguf", b), Contains("version 1"));
  }
  SECTION("metadata past the end of the file") {
    GgufBytes b;
    b.header(3, 0, 3).kv_string("general.architecture", "llama").str("general.name").u32(8).u64(50).zeros(10);
    const auto message = read_error("kv_truncated.gguf", b);
    CHECK_THAT(message, Contains("general.name"));
    GgufBytes c;
    c.header(3, 0, 3).kv_string("general.architecture", "llama").kv_u32("a", 1).zeros(4);
    CHECK_THAT(read_error("kv_missing.gguf", c), Contains("header runs past the end"));
  }
  SECTION("tensor info past the end of the file") {
    GgufBytes b;
    b.header(3, 2, 0).tensor_info("first", {4}, 0, 0).str("second").u32(2).u64(4);
    CHECK_THAT(read_error("info_truncated.gguf", b), Contains("tensor info of second") && Contains("past the end"));
  }
  SECTION("tensor data past the end of the file") {
    CHECK_THAT(read_error("data_truncated.gguf", good(0, 4, 31)),
               Contains("tensor w data") && Contains("past the end"));
  }
  SECTION("unknown quantization type id") {
    CHECK_THAT(read_error("type16.gguf", good(16, 256, 1024)), Contains("tensor w") && Contains("type id 16") &&
                                                                 Contains("IQ2_XXS"));
    CHECK_THAT(read_error("type99.gguf", good(99, 32, 64)), Contains("tensor w") && Contains("type id 99"));
  }
  SECTION("dimensions inconsistent with the block size") {
    CHECK_THAT(read_error("q4_48.gguf", good(2, 48, 64)), Contains("tensor w") && Contains("block size 32"));
  }
  SECTION("absurd string length") {
    GgufBytes b;
    b.header(3, 0, 1).u64(uint64_t(1) << 62).zeros(16);
    CHECK_THAT(read_error("string.gguf", b), Contains("string of 4611686018427387904 bytes"));
  }
  SECTION("absurd array length") {
    GgufBytes b;
    b.header(3, 0, 1).str("tokenizer.ggml.tokens").u32(9).u32(8).u64(uint64_t(1) << 40).zeros(16);
    CHECK_THAT(read_error("array.gguf", b), Contains("tokenizer.ggml.tokens") && Contains("array elements"));
  }
  SECTION("absurd metadata count") {
    GgufBytes b;
    b.header(3, 0, uint64_t(1) << 50).zeros(8);
    CHECK_THAT(read_error("count.gguf", b), Contains("metadata pairs"));
  }
  SECTION("non-llama architecture") {
    const auto path = kick::test::fixture("gguf/quant_types.gguf").string();
    const auto message = error_of([&] { kick::checkpoint_from_gguf(kick::read_gguf(path), path); });
    check_one_line(message);
    CHECK_THAT(message, Contains(path) && Contains("architecture 'test'"));
  }
  SECTION("missing required key") {
    const auto path = write_file(dir, "no_blocks.gguf", good(0, 4, 32).bytes());
    const auto message = error_of([&] { kick::checkpoint_from_gguf(kick::read_gguf(path), path); });
    check_one_line(message);
    CHECK_THAT(message, Contains(path) && Contains("missing required GGUF key llama.block_count"));
  }
}
