// [io] tests: safetensors (against an independent numpy reader), config.json, llama2.c (stories260K),
// HF folders (save/load round trip, shards) and every rejection path naming its file and field.
#include <catch2/catch.hpp>

#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>

#include "kick/io.hpp"
#include "test_helpers.hpp"

namespace fs = std::filesystem;
using kick::Checkpoint;
using kick::Tensor;
using Catch::Matchers::Contains;

namespace {

std::string reference_script() {
  return (kick::test::fixture("..") / "reference" / "check_safetensors.py").string();
}

void write_bytes(const fs::path& path, const std::string& bytes) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
}

// A raw safetensors file from a header string and a data section.
std::string safetensors_bytes(const std::string& header, const std::string& data) {
  std::string out(8, '\0');
  uint64_t n = header.size();
  std::memcpy(out.data(), &n, 8);
  return out + header + data;
}

// Runs `fn` expecting a kick::Error whose single-line message contains every keyword.
template <typename Fn>
void require_error(Fn&& fn, std::vector<std::string> keywords) {
  try {
    fn();
  } catch (const kick::Error& e) {
    std::string message = e.what();
    INFO(message);
    CHECK(message.find('\n') == std::string::npos);
    for (const auto& k : keywords) CHECK_THAT(message, Contains(k));
    return;
  }
  FAIL("expected a kick::Error containing " << keywords.front());
}

std::string stories_model() { return (kick::test::stories260k_dir() / "model.bin").string(); }
std::string stories_tokenizer() { return (kick::test::stories260k_dir() / "tokenizer.bin").string(); }

float raw_float(const std::string& bytes, uint64_t float_index) {
  float v;
  std::memcpy(&v, bytes.data() + 28 + float_index * 4, 4);
  return v;
}

void require_same_tensors(const std::map<std::string, Tensor>& a, const std::map<std::string, Tensor>& b) {
  REQUIRE(a.size() == b.size());
  for (const auto& [name, t] : a) {
    INFO(name);
    REQUIRE(b.count(name) == 1);
    CHECK(t.scalar_type() == b.at(name).scalar_type());
    CHECK(at::equal(t, b.at(name)));
  }
}

void require_same_config(const kick::ModelConfig& a, const kick::ModelConfig& b) {
  CHECK(a.to_hf_json() == b.to_hf_json());
}

nlohmann::json small_config_json() {
  return {{"architectures", {"LlamaForCausalLM"}}, {"model_type", "llama"}, {"hidden_size", 8},
          {"intermediate_size", 12}, {"num_hidden_layers", 1}, {"num_attention_heads", 2},
          {"num_key_value_heads", 1}, {"vocab_size", 16}, {"rms_norm_eps", 1e-5},
          {"tie_word_embeddings", true}};
}

// Random tensors with the shapes small_config_json() implies.
std::map<std::string, Tensor> small_tensors() {
  at::manual_seed(7);
  std::map<std::string, Tensor> t;
  t["model.embed_tokens.weight"] = at::randn({16, 8});
  t["model.norm.weight"] = at::randn({8});
  t["model.layers.0.input_layernorm.weight"] = at::randn({8});
  t["model.layers.0.post_attention_layernorm.weight"] = at::randn({8});
  t["model.layers.0.self_attn.q_proj.weight"] = at::randn({8, 8});
  t["model.layers.0.self_attn.k_proj.weight"] = at::randn({4, 8});
  t["model.layers.0.self_attn.v_proj.weight"] = at::randn({4, 8});
  t["model.layers.0.self_attn.o_proj.weight"] = at::randn({8, 8});
  t["model.layers.0.mlp.gate_proj.weight"] = at::randn({12, 8});
  t["model.layers.0.mlp.up_proj.weight"] = at::randn({12, 8});
  t["model.layers.0.mlp.down_proj.weight"] = at::randn({8, 12});
  return t;
}

}  // namespace

// ---------------------------------------------------------------------------------------------
// safetensors

TEST_CASE("safetensors: reads the numpy-made fixture with exact values for every dtype", "[io]") {
  nlohmann::json metadata;
  auto t = kick::read_safetensors(kick::test::fixture("io/dtypes.safetensors").string(), &metadata);
  CHECK(metadata == nlohmann::json{{"source", "check_safetensors.py"}});
  REQUIRE(t.size() == 12);
  CHECK(at::equal(t.at("j_f64"), at::tensor({3.141592653589793, -2.5e-300}, at::kDouble)));
  CHECK(at::equal(t.at("a_f32"), at::tensor({0.5f, -1.25f, 3.0f, 1024.0f, -7.75f, 0.125f}).view({2, 3})));
  CHECK(t.at("b_f16").scalar_type() == at::kHalf);
  CHECK(at::equal(t.at("b_f16").to(at::kFloat), at::tensor({1.0f, -2.5f, 0.25f, 65504.0f})));
  CHECK(t.at("c_bf16").scalar_type() == at::kBFloat16);
  CHECK(at::equal(t.at("c_bf16").to(at::kFloat), at::tensor({1.0f, -3.0f, 0.5f, 256.0f}).view({2, 2})));
  CHECK(at::equal(t.at("d_i64"), at::tensor({int64_t(1), int64_t(-2), int64_t(1) << 40}, at::kLong)));
  CHECK(at::equal(t.at("e_i32"), at::tensor({-7, 2147483647}, at::kInt)));
  CHECK(at::equal(t.at("f_i16"), at::tensor({-32768, 0, 12345}, at::kInt).to(at::kShort)));
  CHECK(at::equal(t.at("g_i8"), at::tensor({-128, -1, 0, 127}, at::kInt).to(at::kChar)));
  CHECK(at::equal(t.at("h_u8"), at::tensor({0, 128, 255}, at::kInt).to(at::kByte)));
  CHECK(at::equal(t.at("i_bool"), at::tensor({1, 0, 1}, at::kInt).to(at::kBool)));
  CHECK(t.at("k_scalar").dim() == 0);
  CHECK(t.at("k_scalar").item<float>() == 42.0f);
  CHECK(t.at("l_empty").sizes() == at::IntArrayRef({0, 4}));
}

TEST_CASE("safetensors: kick's file reads back byte-identically and through the numpy reader", "[io]") {
  auto dir = kick::test::scratch_dir("io_safetensors_write");
  std::map<std::string, Tensor> tensors;
  tensors["z.f32"] = at::arange(12, at::kFloat).view({3, 4}).t();  // non-contiguous on purpose
  tensors["a.bf16"] = at::tensor({1.5f, -2.0f, 1024.0f}).to(at::kBFloat16);
  tensors["m.f16"] = at::tensor({0.25f, -65504.0f}).to(at::kHalf);
  tensors["b.i64"] = at::tensor({int64_t(-5), int64_t(1) << 50}, at::kLong);
  tensors["c.u8"] = at::tensor({3, 250}, at::kInt).to(at::kByte);
  tensors["d.bool"] = at::tensor({0, 1}, at::kInt).to(at::kBool);
  auto path = (dir / "out.safetensors").string();
  kick::write_safetensors(path, tensors, {{"format", "pt"}});

  nlohmann::json metadata;
  auto back = kick::read_safetensors(path, &metadata);
  CHECK(metadata == nlohmann::json{{"format", "pt"}});
  require_same_tensors(tensors, back);
  // No temporary file is left beside it.
  CHECK(std::distance(fs::directory_iterator(dir), fs::directory_iterator()) == 1);

  // Writing what was read gives the same bytes.
  auto again = (dir / "again.safetensors").string();
  kick::write_safetensors(again, back, {{"format", "pt"}});
  CHECK(kick::read_file(path) == kick::read_file(again));

  if (std::system("python3 -c 'import numpy' > /dev/null 2>&1") != 0) {
    WARN("python3 with numpy not available: skipping the independent reader");
    return;
  }
  auto dump_path = dir / "dump.json";
  std::string cmd = "python3 '" + reference_script() + "' dump-aligned '" + path + "' > '" +
                    dump_path.string() + "'";
  REQUIRE(std::system(cmd.c_str()) == 0);
  auto dump = nlohmann::json::parse(kick::read_file(dump_path));
  CHECK(dump["__metadata__"] == nlohmann::json{{"format", "pt"}});
  for (const auto& [name, t] : tensors) {
    INFO(name);
    REQUIRE(dump.contains(name));
    CHECK(dump[name]["shape"].get<std::vector<int64_t>>() == t.sizes().vec());
    auto values = dump[name]["values"];
    auto flat = t.contiguous().view({-1});
    REQUIRE(values.size() == size_t(flat.numel()));
    for (int64_t i = 0; i < flat.numel(); ++i) {
      if (t.is_floating_point()) {
        CHECK(values[size_t(i)].get<double>() == flat[i].item<double>());
      } else if (t.scalar_type() == at::kBool) {
        CHECK(values[size_t(i)].get<bool>() == flat[i].item<bool>());
      } else {
        CHECK(values[size_t(i)].get<int64_t>() == flat[i].item<int64_t>());
      }
    }
  }
  CHECK(dump["z.f32"]["dtype"] == "F32");
  CHECK(dump["a.bf16"]["dtype"] == "BF16");
}

TEST_CASE("safetensors: malformed files are rejected naming the file and the problem", "[io]") {
  auto dir = kick::test::scratch_dir("io_safetensors_bad");
  auto bad = [&](const std::string& name, const std::string& bytes) {
    auto p = (dir / name).string();
    write_bytes(p, bytes);
    return p;
  };
  const std::string data(16, '\0');
  auto past_end = bad("past_end.safetensors", std::string("\xff\xff\x00\x00\x00\x00\x00\x00{}", 10));
  require_error([&] { kick::read_safetensors(past_end); }, {past_end, "header length"});

  auto corrupt = bad("corrupt.safetensors", safetensors_bytes("{\"a\": {\"dtype\": ", data));
  require_error([&] { kick::read_safetensors(corrupt); }, {corrupt, "JSON"});

  auto offsets = bad("offsets.safetensors",
                     safetensors_bytes(R"({"a":{"dtype":"F32","shape":[8],"data_offsets":[0,32]}})", data));
  require_error([&] { kick::read_safetensors(offsets); }, {offsets, "tensor a", "past the data section"});

  auto size = bad("size.safetensors",
                  safetensors_bytes(R"({"a":{"dtype":"F32","shape":[3],"data_offsets":[0,16]}})", data));
  require_error([&] { kick::read_safetensors(size); }, {size, "tensor a", "shape x dtype"});

  auto dtype = bad("dtype.safetensors",
                   safetensors_bytes(R"({"a":{"dtype":"F8_E9","shape":[4],"data_offsets":[0,4]}})", data));
  require_error([&] { kick::read_safetensors(dtype); }, {dtype, "tensor a", "unknown dtype", "F8_E9"});

  auto overlap = bad("overlap.safetensors",
                     safetensors_bytes(R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},)"
                                       R"("b":{"dtype":"F32","shape":[2],"data_offsets":[4,12]}})",
                                       data));
  require_error([&] { kick::read_safetensors(overlap); }, {overlap, "overlap"});
}

// ---------------------------------------------------------------------------------------------
// config.json

TEST_CASE("config: HF json round trip, defaults and Mistral", "[io]") {
  auto j = small_config_json();
  j.erase("num_key_value_heads");
  j["eos_token_id"] = {7, 9};
  auto c = kick::ModelConfig::from_hf_json(j, "config.json");
  CHECK(c.num_kv_heads == 2);  // defaults to the attention heads
  CHECK(c.head_dim == 4);      // hidden / heads
  CHECK(c.eos_token_id == 7);  // first of a list
  CHECK(c.tie_word_embeddings);
  auto out = c.to_hf_json();
  CHECK(out["architectures"] == nlohmann::json{"LlamaForCausalLM"});
  CHECK(out["model_type"] == "llama");
  CHECK(out["hidden_act"] == "silu");
  CHECK(out["num_key_value_heads"] == 2);
  CHECK(kick::ModelConfig::from_hf_json(out, "again").to_hf_json() == out);

  auto mistral = small_config_json();
  mistral["architectures"] = {"MistralForCausalLM"};
  mistral["model_type"] = "mistral";
  mistral["head_dim"] = 6;
  CHECK(kick::ModelConfig::from_hf_json(mistral, "m.json").head_dim == 6);
}

TEST_CASE("config: missing, mistyped and unsupported fields are named", "[io]") {
  auto missing = small_config_json();
  missing.erase("hidden_size");
  require_error([&] { kick::ModelConfig::from_hf_json(missing, "/x/config.json"); },
                {"/x/config.json", "hidden_size", "missing"});
  auto wrong_type = small_config_json();
  wrong_type["num_hidden_layers"] = "5";
  require_error([&] { kick::ModelConfig::from_hf_json(wrong_type, "/x/config.json"); },
                {"/x/config.json", "num_hidden_layers", "integer"});
  auto arch = small_config_json();
  arch["architectures"] = {"GPT2LMHeadModel"};
  require_error([&] { kick::ModelConfig::from_hf_json(arch, "/x/config.json"); },
                {"/x/config.json", "architectures", "GPT2LMHeadModel"});
  auto model_type = small_config_json();
  model_type["model_type"] = "gpt2";
  require_error([&] { kick::ModelConfig::from_hf_json(model_type, "/x/config.json"); },
                {"/x/config.json", "model_type"});
  auto kv = small_config_json();
  kv["num_key_value_heads"] = 3;
  require_error([&] { kick::ModelConfig::from_hf_json(kv, "/x/config.json"); },
                {"/x/config.json", "num_key_value_heads"});
}

// ---------------------------------------------------------------------------------------------
// llama2.c

TEST_CASE("llama2c: stories260K loads with the header's config and the file's floats", "[io]") {
  auto ck = kick::read_llama2c(stories_model(), stories_tokenizer());
  const auto& c = ck.config;
  CHECK(c.hidden_size == 64);
  CHECK(c.intermediate_size == 172);
  CHECK(c.num_layers == 5);
  CHECK(c.num_heads == 8);
  CHECK(c.num_kv_heads == 4);
  CHECK(c.vocab_size == 512);
  CHECK(c.max_position == 512);
  CHECK(c.head_dim == 8);
  CHECK(c.tie_word_embeddings);
  CHECK(c.rms_norm_eps == 1e-5);
  CHECK(ck.format == "llama2c");
  CHECK(ck.tensors.count("lm_head.weight") == 0);
  CHECK(ck.tensors.size() == 2 + 5 * 9);

  const std::string raw = kick::read_file(stories_model());
  const uint64_t D = 64, Hd = 172, L = 5, V = 512, kv = 32, hd = 8;
  const uint64_t embed = 0, rms_att = V * D, wq = rms_att + L * D, wk = wq + L * D * D,
                 wv = wk + L * kv * D, wo = wv + L * kv * D, rms_ffn = wo + L * D * D,
                 w1 = rms_ffn + L * D, w2 = w1 + L * Hd * D, w3 = w2 + L * D * Hd,
                 rms_final = w3 + L * Hd * D;
  auto at2 = [&](const char* name, int64_t r, int64_t col) {
    return ck.tensors.at(name)[r][col].item<float>();
  };
  CHECK(at2("model.embed_tokens.weight", 300, 17) == raw_float(raw, embed + 300 * D + 17));
  CHECK(ck.tensors.at("model.norm.weight")[63].item<float>() == raw_float(raw, rms_final + 63));
  CHECK(ck.tensors.at("model.layers.3.input_layernorm.weight")[5].item<float>() ==
        raw_float(raw, rms_att + 3 * D + 5));
  CHECK(ck.tensors.at("model.layers.4.post_attention_layernorm.weight")[9].item<float>() ==
        raw_float(raw, rms_ffn + 4 * D + 9));
  CHECK(at2("model.layers.2.self_attn.v_proj.weight", 10, 3) == raw_float(raw, wv + 2 * kv * D + 10 * D + 3));
  CHECK(at2("model.layers.1.self_attn.o_proj.weight", 60, 33) == raw_float(raw, wo + 1 * D * D + 60 * D + 33));
  CHECK(at2("model.layers.0.mlp.gate_proj.weight", 171, 2) == raw_float(raw, w1 + 171 * D + 2));
  CHECK(at2("model.layers.4.mlp.down_proj.weight", 63, 171) == raw_float(raw, w2 + 4 * D * Hd + 63 * Hd + 171));
  CHECK(at2("model.layers.3.mlp.up_proj.weight", 100, 50) == raw_float(raw, w3 + 3 * Hd * D + 100 * D + 50));
  // q/k: llama2.c interleaves each head's rotary pairs (rows 2j, 2j+1); HF puts pair j at rows
  // j and j + hd/2 of the head.
  for (uint64_t j = 0; j < hd / 2; ++j) {
    const uint64_t head = 5, kv_head = 3, col = 11, layer = 2;
    CHECK(at2("model.layers.2.self_attn.q_proj.weight", head * hd + j, col) ==
          raw_float(raw, wq + layer * D * D + (head * hd + 2 * j) * D + col));
    CHECK(at2("model.layers.2.self_attn.q_proj.weight", head * hd + hd / 2 + j, col) ==
          raw_float(raw, wq + layer * D * D + (head * hd + 2 * j + 1) * D + col));
    CHECK(at2("model.layers.2.self_attn.k_proj.weight", kv_head * hd + hd / 2 + j, col) ==
          raw_float(raw, wk + layer * kv * D + (kv_head * hd + 2 * j + 1) * D + col));
  }

  const auto& v = ck.vocab;
  CHECK(v.model == "llama2c");
  REQUIRE(v.tokens.size() == 512);
  CHECK(v.scores.size() == 512);
  CHECK(v.bos_id == 1);
  CHECK(v.eos_id == 2);
  CHECK(v.unk_id == 0);
  CHECK(v.add_bos);
  CHECK(v.token_types[0] == 2);
  CHECK(v.token_types[1] == 3);
  CHECK(v.token_types[2] == 3);
  CHECK(v.tokens[3] == "<0x00>");
  CHECK(v.token_types[3] == 6);
  CHECK(v.token_types[258] == 6);
  CHECK(v.token_types[300] == 1);
}

TEST_CASE("llama2c: write_llama2c round-trips stories260K", "[io]") {
  auto dir = kick::test::scratch_dir("io_llama2c_roundtrip");
  auto ck = kick::read_llama2c(stories_model(), stories_tokenizer());
  auto model = (dir / "model.bin").string(), tokenizer = (dir / "tokenizer.bin").string();
  kick::write_llama2c(model, tokenizer, ck);
  auto back = kick::read_llama2c(model, tokenizer);
  require_same_tensors(ck.tensors, back.tensors);
  require_same_config(ck.config, back.config);
  CHECK(back.vocab.tokens == ck.vocab.tokens);
  CHECK(back.vocab.scores == ck.vocab.scores);
  CHECK(back.vocab.token_types == ck.vocab.token_types);
  CHECK(kick::read_file(tokenizer) == kick::read_file(stories_tokenizer()));

  // Byte-identical to the original except the recomputed freq_cis tables (which agree closely).
  const std::string original = kick::read_file(stories_model()), written = kick::read_file(model);
  REQUIRE(written.size() == original.size());
  const uint64_t freq_floats = 2 * 512 * 4, freq_begin = original.size() - freq_floats * 4;
  CHECK(written.compare(0, freq_begin, original, 0, freq_begin) == 0);
  float max_diff = 0;
  for (uint64_t i = 0; i < freq_floats; ++i) {
    uint64_t index = (freq_begin - 28) / 4 + i;
    max_diff = std::max(max_diff, std::abs(raw_float(written, index) - raw_float(original, index)));
  }
  CHECK(max_diff < 1e-4f);
}

TEST_CASE("llama2c: the versioned (ak42 v1) export reads the same weights", "[io]") {
  auto dir = kick::test::scratch_dir("io_llama2c_v1");
  const std::string raw = kick::read_file(stories_model());
  const uint64_t D = 64, Hd = 172, L = 5, V = 512, kv = 32;
  auto block = [&](uint64_t begin_float, uint64_t count) { return raw.substr(28 + begin_float * 4, count * 4); };
  const uint64_t rms_att = V * D, wq = rms_att + L * D, rms_ffn = wq + L * D * D + 2 * L * kv * D + L * D * D,
                 w1 = rms_ffn + L * D, rms_final = w1 + 3 * L * Hd * D;
  std::string v1(256, '\0');
  const int32_t head[9] = {0x616b3432, 1, 64, 172, 5, 8, 4, 512, 512};
  std::memcpy(v1.data(), head, sizeof head);
  v1[36] = 1;  // shared classifier
  v1 += block(rms_att, L * D) + block(rms_ffn, L * D) + block(rms_final, D) + block(0, V * D) +
        block(wq, rms_ffn - wq) + block(w1, rms_final - w1);
  auto path = (dir / "v1.bin").string();
  write_bytes(path, v1);
  auto legacy = kick::read_llama2c(stories_model(), stories_tokenizer());
  auto versioned = kick::read_llama2c(path, stories_tokenizer());
  require_same_tensors(legacy.tensors, versioned.tensors);
  require_same_config(legacy.config, versioned.config);

  write_bytes(path, v1.substr(0, v1.size() - 4));
  require_error([&] { kick::read_llama2c(path, stories_tokenizer()); }, {path, "size mismatch"});
}

TEST_CASE("llama2c: the ak42 v2 (Q8_0) export dequantizes to its v1 equivalent", "[io]") {
  auto dir = kick::test::scratch_dir("io_llama2c_v2");
  // A small model (dim 8, hidden 12, 1 layer, 2 heads, 1 kv head, vocab 512 for stories' tokenizer).
  const int64_t D = 8, Hd = 12, V = 512, kv = 4, group = 4;
  const int64_t norms = 2 * D + D, matrices = V * D + D * D + 2 * kv * D + D * D + 3 * Hd * D;
  at::manual_seed(3);
  Tensor norm_values = at::randn({norms});
  Tensor q = at::randint(-127, 128, {matrices / group, group}, at::kLong).to(at::kChar);
  Tensor scales = at::rand({matrices / group, 1}) + 0.5;
  Tensor dequantized = (q.to(at::kFloat) * scales).reshape({-1}).contiguous();
  auto bytes_of = [](const Tensor& t) {
    return std::string(static_cast<const char*>(t.data_ptr()), size_t(t.numel() * t.element_size()));
  };
  auto header = [&](int32_t version) {
    std::string h(256, '\0');
    const int32_t fields[9] = {0x616b3432, version, int32_t(D), int32_t(Hd), 1, 2, 1, int32_t(V), 16};
    std::memcpy(h.data(), fields, sizeof fields);
    h[36] = 1;
    const int32_t group_size = group;
    std::memcpy(h.data() + 37, &group_size, 4);
    return h;
  };
  auto v1 = (dir / "v1.bin").string(), v2 = (dir / "v2.bin").string();
  write_bytes(v1, header(1) + bytes_of(norm_values) + bytes_of(dequantized));
  write_bytes(v2, header(2) + bytes_of(norm_values) + bytes_of(q) + bytes_of(scales.contiguous()));
  auto a = kick::read_llama2c(v1, stories_tokenizer());
  auto b = kick::read_llama2c(v2, stories_tokenizer());
  require_same_tensors(a.tensors, b.tensors);
  CHECK(b.config.hidden_size == 8);
  CHECK(b.config.num_kv_heads == 1);
  CHECK(at::equal(b.tensors.at("model.layers.0.self_attn.v_proj.weight").reshape({-1}),
                  dequantized.narrow(0, V * D + D * D + kv * D, kv * D)));
}

TEST_CASE("llama2c: truncated, absurd and mis-sized files are rejected", "[io]") {
  auto dir = kick::test::scratch_dir("io_llama2c_bad");
  const std::string raw = kick::read_file(stories_model());
  auto with = [&](const std::string& name, std::string bytes) {
    auto p = (dir / name).string();
    write_bytes(p, bytes);
    return p;
  };
  auto set_i32 = [](std::string bytes, int field, int32_t v) {
    std::memcpy(bytes.data() + 4 * field, &v, 4);
    return bytes;
  };
  auto truncated = with("truncated.bin", raw.substr(0, raw.size() - 100));
  require_error([&] { kick::read_llama2c(truncated, stories_tokenizer()); },
                {truncated, "1056540", std::to_string(raw.size() - 100)});
  auto tiny = with("tiny.bin", raw.substr(0, 10));
  require_error([&] { kick::read_llama2c(tiny, stories_tokenizer()); }, {tiny, "truncated"});
  auto negative = with("negative.bin", set_i32(raw, 0, -64));
  require_error([&] { kick::read_llama2c(negative, stories_tokenizer()); }, {negative, "dim", "-64"});
  auto heads = with("heads.bin", set_i32(raw, 3, 7));
  require_error([&] { kick::read_llama2c(heads, stories_tokenizer()); }, {heads, "n_heads", "divide"});
  auto longer = with("longer.bin", raw + std::string(8, '\0'));
  require_error([&] { kick::read_llama2c(longer, stories_tokenizer()); },
                {longer, "size mismatch", "1056540", "1056548"});
  auto bad_tokenizer = with("tokenizer.bin", kick::read_file(stories_tokenizer()).substr(0, 3000));
  require_error([&] { kick::read_llama2c(stories_model(), bad_tokenizer); }, {bad_tokenizer, "token"});
}

// ---------------------------------------------------------------------------------------------
// load_checkpoint and HF folders

TEST_CASE("load_checkpoint: llama2.c by content, pickles refused", "[io]") {
  auto ck = kick::load_checkpoint(stories_model());
  CHECK(ck.format == "llama2c");
  CHECK(ck.config.hidden_size == 64);

  auto dir = kick::test::scratch_dir("io_pickle");
  auto pickle = (dir / "model.pt").string();
  write_bytes(pickle, std::string("\x80\x02}q\x00.", 6));
  require_error([&] { kick::load_checkpoint(pickle); }, {pickle, "pickle", "arbitrary code"});
  auto zip = (dir / "model.pth").string();
  write_bytes(zip, std::string("PK\x03\x04rest", 8));
  require_error([&] { kick::load_checkpoint(zip); }, {zip, "pickle"});
}

TEST_CASE("load_checkpoint: HF folder, shards, and tensors checked against the config", "[io]") {
  auto dir = kick::test::scratch_dir("io_folder");
  auto tensors = small_tensors();
  kick::write_file_atomically(dir / "config.json", small_config_json().dump());
  kick::write_safetensors((dir / "model.safetensors").string(), tensors);
  kick::write_file_atomically(dir / "compression.json", R"({"method": "none"})");
  auto ck = kick::load_checkpoint(dir.string());
  CHECK(ck.format == "safetensors");
  CHECK(ck.config.hidden_size == 8);
  CHECK(ck.metadata["compression"]["method"] == "none");
  require_same_tensors(tensors, ck.tensors);
  // A safetensors file path means its folder.
  CHECK(kick::load_checkpoint((dir / "model.safetensors").string()).tensors.size() == tensors.size());

  SECTION("sharded") {
    std::map<std::string, Tensor> first, second;
    nlohmann::json weight_map = nlohmann::json::object();
    for (const auto& [name, t] : tensors) {
      bool in_first = name.find("mlp") == std::string::npos;
      (in_first ? first : second)[name] = t;
      weight_map[name] = in_first ? "model-00001-of-00002.safetensors" : "model-00002-of-00002.safetensors";
    }
    fs::remove(dir / "model.safetensors");
    kick::write_safetensors((dir / "model-00001-of-00002.safetensors").string(), first);
    kick::write_safetensors((dir / "model-00002-of-00002.safetensors").string(), second);
    kick::write_file_atomically(dir / "model.safetensors.index.json",
                                nlohmann::json{{"weight_map", weight_map}}.dump());
    require_same_tensors(tensors, kick::load_checkpoint(dir.string()).tensors);

    fs::remove(dir / "model-00002-of-00002.safetensors");
    require_error([&] { kick::load_checkpoint(dir.string()); },
                  {"model.safetensors.index.json", "model-00002-of-00002.safetensors", "does not exist"});
  }
  SECTION("wrong shape") {
    tensors["model.layers.0.self_attn.k_proj.weight"] = at::randn({8, 8});
    kick::write_safetensors((dir / "model.safetensors").string(), tensors);
    require_error([&] { kick::load_checkpoint(dir.string()); },
                  {dir.string(), "model.layers.0.self_attn.k_proj.weight", "[8, 8]", "[4, 8]"});
  }
  SECTION("missing tensor") {
    tensors.erase("model.norm.weight");
    kick::write_safetensors((dir / "model.safetensors").string(), tensors);
    require_error([&] { kick::load_checkpoint(dir.string()); }, {dir.string(), "model.norm.weight", "missing"});
  }
  SECTION("bad config") {
    auto j = small_config_json();
    j["num_attention_heads"] = 2.5;
    kick::write_file_atomically(dir / "config.json", j.dump());
    require_error([&] { kick::load_checkpoint(dir.string()); },
                  {(dir / "config.json").string(), "num_attention_heads"});
  }
}

TEST_CASE("load_checkpoint: weights read into private memory equal the mapped ones and never reach the file", "[io]") {
  auto dir = kick::test::scratch_dir("io_private_memory");
  auto tensors = small_tensors();
  kick::write_file_atomically(dir / "config.json", small_config_json().dump());
  kick::write_safetensors((dir / "model.safetensors").string(), tensors);
  const std::string file_before = kick::read_file(dir / "model.safetensors");
  kick::LoadOptions in_memory;
  in_memory.weights = kick::FileAccess::private_memory;
  auto mapped = kick::load_checkpoint(dir.string());
  auto read = kick::load_checkpoint(dir.string(), in_memory);
  require_same_tensors(mapped.tensors, read.tensors);
  // The two hold separate bytes: an in-place edit of one is not seen by the other (nor by the file).
  auto& edited = read.tensors.begin()->second;
  edited.fill_(7.0);
  CHECK_FALSE(at::equal(edited, mapped.tensors.at(read.tensors.begin()->first)));
  CHECK(kick::read_file(dir / "model.safetensors") == file_before);
  // The format readers take either access; load_checkpoint maps GGUF and llama2.c files whatever it is asked.
  const std::string tokenizer = (fs::path(stories_model()).parent_path() / "tokenizer.bin").string();
  require_same_tensors(kick::read_llama2c(stories_model(), tokenizer).tensors,
                       kick::read_llama2c(stories_model(), tokenizer, kick::FileAccess::private_memory).tensors);
  require_same_tensors(kick::load_checkpoint(stories_model()).tensors, kick::load_checkpoint(stories_model(), in_memory).tensors);

  // A missing file fails naming it, as when mapped.
  require_error([&] { kick::MappedFile((dir / "absent.safetensors").string(), kick::FileAccess::private_memory); },
                {"absent.safetensors", "cannot open"});
  // The background hash is the foreground one.
  CHECK(kick::BackgroundHash(dir).get() == kick::content_hash(dir));
  // Dropped unread, it cancels (the destructor waits for at most one 1 MB read).
  { kick::BackgroundHash dropped(dir); }
  std::atomic<bool> cancelled{true};
  require_error([&] { kick::content_hash(dir, &cancelled); }, {"hashing cancelled"});
}

TEST_CASE("save_hf_checkpoint: refuses an existing folder and leaves it untouched", "[io]") {
  auto dir = kick::test::scratch_dir("io_save_refuse");
  auto target = dir / "model";
  fs::create_directories(target);
  kick::write_file_atomically(target / "keep.txt", "precious");
  Checkpoint ck;
  ck.config = kick::ModelConfig::from_hf_json(small_config_json(), "small");
  ck.tensors = small_tensors();
  require_error([&] { kick::save_hf_checkpoint(target.string(), ck); }, {target.string(), "exists"});
  CHECK(kick::read_file(target / "keep.txt") == "precious");
  CHECK(std::distance(fs::directory_iterator(dir), fs::directory_iterator()) == 1);
  CHECK(std::distance(fs::directory_iterator(target), fs::directory_iterator()) == 1);

  // With overwrite the old folder is replaced completely.
  kick::save_hf_checkpoint(target.string(), ck, {{"compression.json", "{}"}}, true);
  CHECK_FALSE(fs::exists(target / "keep.txt"));
  CHECK(fs::exists(target / "compression.json"));
  CHECK(std::distance(fs::directory_iterator(dir), fs::directory_iterator()) == 1);
  require_same_tensors(ck.tensors, kick::read_safetensors((target / "model.safetensors").string()));
}

TEST_CASE("save_hf_checkpoint: stories260K round-trips through an HF folder", "[io]") {
  auto dir = kick::test::scratch_dir("io_hf_roundtrip") / "stories";
  auto ck = kick::load_checkpoint(stories_model());
  ck.vocab.chat_template = "{{ messages }}";
  kick::save_hf_checkpoint(dir.string(), ck, {{"compression.json", R"({"bits": 4})"}});

  // The files themselves, without kick's folder loader.
  nlohmann::json metadata;
  auto tensors = kick::read_safetensors((dir / "model.safetensors").string(), &metadata);
  CHECK(metadata == nlohmann::json{{"format", "pt"}});
  CHECK(tensors.count("lm_head.weight") == 0);  // tied
  require_same_tensors(ck.tensors, tensors);
  auto config = nlohmann::json::parse(kick::read_file(dir / "config.json"));
  CHECK(config["architectures"] == nlohmann::json{"LlamaForCausalLM"});
  CHECK(config["torch_dtype"] == "float32");
  require_same_config(ck.config, kick::ModelConfig::from_hf_json(config, "config.json"));
  auto tokenizer_config = nlohmann::json::parse(kick::read_file(dir / "tokenizer_config.json"));
  CHECK(tokenizer_config["tokenizer_class"] == "PreTrainedTokenizerFast");
  CHECK(tokenizer_config["chat_template"] == "{{ messages }}");
  CHECK(fs::exists(dir / "generation_config.json"));
  CHECK(fs::exists(dir / "tokenizer.json"));

  // And the whole folder through load_checkpoint.
  auto back = kick::load_checkpoint(dir.string());
  require_same_tensors(ck.tensors, back.tensors);
  require_same_config(ck.config, back.config);
  // tokenizer.json may spell llama2.c's spaces as SentencePiece's U+2581; the vocabulary is the same.
  REQUIRE(back.vocab.tokens.size() == ck.vocab.tokens.size());
  for (size_t i = 0; i < ck.vocab.tokens.size(); ++i) {
    std::string token = back.vocab.tokens[i];
    for (size_t pos = token.find("\u2581"); pos != std::string::npos; pos = token.find("\u2581")) {
      token.replace(pos, 3, " ");
    }
    INFO("token " << i);
    CHECK(token == ck.vocab.tokens[i]);
  }
  CHECK(back.vocab.bos_id == 1);
  CHECK(back.vocab.eos_id == 2);
  CHECK(back.vocab.chat_template == "{{ messages }}");
  CHECK(back.metadata["compression"]["bits"] == 4);
}
