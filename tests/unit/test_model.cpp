// Tests of the decoder runtime: logits against independent implementations (a numpy twin of llama2.c
// for stories260K, llama.cpp for SmolLM2), KV cache and padding consistency, scoring, generation,
// chat templates, and identical logits after writing a model and reading it back through each loader.
#include <catch2/catch.hpp>
#include <nlohmann/json.hpp>

#include <cmath>
#include <fstream>
#include <limits>

#include "kick/model.hpp"
#include "test_helpers.hpp"

using namespace kick;

namespace {

nlohmann::json read_json(const std::filesystem::path& p) {
  std::ifstream in(p);
  REQUIRE(in.good());
  return nlohmann::json::parse(in);
}

Model load_stories(at::ScalarType dtype = at::kFloat) {
  ModelOptions options;
  options.dtype = dtype;
  return Model::load((test::stories260k_dir() / "model.bin").string(), options);
}

Tensor ids_tensor(const std::vector<int64_t>& ids) {
  return at::tensor(ids, at::TensorOptions().dtype(at::kLong)).view({1, -1});
}

}  // namespace

TEST_CASE("stories260K logits match the numpy llama2.c twin", "[model]") {
  auto fixture = read_json(test::fixture("model/stories260k_reference.json"));
  Model model = load_stories();
  for (const auto& seq : fixture["sequences"]) {
    auto tokens = seq["tokens"].get<std::vector<int64_t>>();
    auto expected = seq["logits"].get<std::vector<std::vector<float>>>();
    auto logits = model.forward(ids_tensor(tokens)).squeeze(0);
    REQUIRE(logits.size(0) == static_cast<int64_t>(expected.size()));
    auto reference = at::empty_like(logits);
    for (size_t i = 0; i < expected.size(); ++i) {
      reference[static_cast<int64_t>(i)].copy_(at::tensor(expected[i]));
    }
    double max_diff = (logits - reference).abs().max().item<double>();
    INFO("max |kick - twin| = " << max_diff);
    CHECK(max_diff < 1e-4);
  }
}

TEST_CASE("stories260K greedy decoding from BOS matches the twin", "[model]") {
  auto fixture = read_json(test::fixture("model/stories260k_reference.json"));
  auto expected = fixture["greedy_from_bos"].get<std::vector<int32_t>>();
  Model model = load_stories();
  SamplingOptions options;
  options.max_new_tokens = static_cast<int64_t>(expected.size()) - 1;
  options.stop_at_eos = false;
  auto out = generate(model, {{expected[0]}}, options);
  std::vector<int32_t> got = {expected[0]};
  got.insert(got.end(), out[0].tokens.begin(), out[0].tokens.end());
  CHECK(got == expected);
}

// The textbook form: repeat K/V per query head, full T x S scores, mask, softmax.
static at::Tensor naive_attention(const at::Tensor& q, const at::Tensor& k, const at::Tensor& v,
                                  const at::Tensor& additive_mask) {
  const int64_t group = q.size(1) / k.size(1), t = q.size(2), s = k.size(2);
  auto kr = k.repeat_interleave(group, 1), vr = v.repeat_interleave(group, 1);
  auto scores = at::matmul(q, kr.transpose(-1, -2)) / std::sqrt(static_cast<double>(q.size(3)));
  if (additive_mask.defined()) {
    scores = scores + additive_mask;
  } else {
    auto future = at::ones({t, s}, at::kBool).triu(s - t + 1);
    scores = scores.masked_fill(future, -std::numeric_limits<float>::infinity());
  }
  return at::matmul(at::softmax(scores, -1), vr);
}

TEST_CASE("blocked grouped-query attention equals the naive form", "[model]") {
  at::manual_seed(7);
  const int64_t b = 2, heads = 6, kv = 2, t = 37, past = 5, d = 16;
  auto q = at::randn({b, heads, t, d}), k = at::randn({b, kv, past + t, d}), v = at::randn({b, kv, past + t, d});
  auto expected = naive_attention(q, k, v, at::Tensor());
  for (int64_t block : {1, 8, 16, 37, 64}) {  // t = 37 goes tiled through grouped_causal_attention: both forms here
    auto got = grouped_causal_attention_batched(q, k, v, at::Tensor(), kv, block);
    CHECK((got - expected).abs().max().item<double>() < 1e-5);
    auto tiled = grouped_causal_attention_tiled(q, k, v, at::Tensor(), kv, block);
    CHECK((tiled - expected).abs().max().item<double>() < 1e-5);
  }
  CHECK((grouped_causal_attention(q, k, v, at::Tensor(), kv, 128) - expected).abs().max().item<double>() < 1e-5);
  // Left padding: row 1's first 3 keys are padding; every query still sees itself.
  auto allowed = at::ones({b, 1, t, past + t}, at::kBool).tril(past);
  allowed.select(0, 1).narrow(-1, 0, 3).fill_(false);
  allowed = allowed | at::eye(t, past + t, at::kBool).roll(past, 1).view({1, 1, t, past + t});
  auto mask = at::zeros({b, 1, t, past + t}).masked_fill(allowed.logical_not(), -std::numeric_limits<float>::infinity());
  auto masked_expected = naive_attention(q, k, v, mask);
  for (int64_t block : {3, 37}) {
    auto got = grouped_causal_attention_batched(q, k, v, mask, kv, block);
    CHECK((got - masked_expected).abs().max().item<double>() < 1e-5);
    auto tiled = grouped_causal_attention_tiled(q, k, v, mask, kv, block);
    CHECK((tiled - masked_expected).abs().max().item<double>() < 1e-5);
  }
  // bf16 keeps its scores and softmax in bf16 (fp32 accumulation inside the kernel): within bf16 rounding of the
  // fp32 naive form on the same rounded inputs, masked and causal.
  auto qb = q.to(at::kBFloat16), kb = k.to(at::kBFloat16), vb = v.to(at::kBFloat16);
  auto expected_b = naive_attention(qb.to(at::kFloat), kb.to(at::kFloat), vb.to(at::kFloat), at::Tensor());
  auto masked_expected_b = naive_attention(qb.to(at::kFloat), kb.to(at::kFloat), vb.to(at::kFloat), mask);
  for (int64_t block : {8, 37}) {
    auto got = grouped_causal_attention_batched(qb, kb, vb, at::Tensor(), kv, block);
    CHECK(got.scalar_type() == at::kBFloat16);
    CHECK((got.to(at::kFloat) - expected_b).abs().max().item<double>() < 0.05);
    auto got_masked = grouped_causal_attention_batched(qb, kb, vb, mask, kv, block);
    CHECK((got_masked.to(at::kFloat) - masked_expected_b).abs().max().item<double>() < 0.05);
    auto tiled = grouped_causal_attention_tiled(qb, kb, vb, mask, kv, block);
    CHECK((tiled.to(at::kFloat) - masked_expected_b).abs().max().item<double>() < 0.05);
  }
}

TEST_CASE("KV-cached decoding gives the full forward's logits", "[model]") {
  Model model = load_stories();
  std::vector<int64_t> tokens = {1, 403, 407, 261, 378, 354, 265, 430, 300, 301};
  auto full = model.forward(ids_tensor(tokens)).squeeze(0);
  auto cache = model.make_cache(1, 32);
  // Prefill 4, then one token at a time.
  auto first = model.forward(ids_tensor({tokens.begin(), tokens.begin() + 4}), &cache).squeeze(0);
  CHECK((first - full.narrow(0, 0, 4)).abs().max().item<double>() < 1e-5);
  for (size_t i = 4; i < tokens.size(); ++i) {
    auto step = model.forward_last(ids_tensor({tokens[i]}), &cache).squeeze(0);
    // Single-row steps go through matrix-vector products, the full pass through GEMM: the two sum in
    // different orders, so fp32 logits of magnitude ~10 differ by a few ulps (seen: 1.1e-5).
    CHECK((step - full[static_cast<int64_t>(i)]).abs().max().item<double>() < 1e-4);
  }
  CHECK(cache.length() == static_cast<int64_t>(tokens.size()));
}

TEST_CASE("left-padded batches give each row's unpadded result", "[model]") {
  Model model = load_stories();
  std::vector<std::vector<int32_t>> prompts = {{1, 403, 407, 261, 378, 354}, {1, 280}, {1, 300, 320, 340}};
  SamplingOptions options;
  options.max_new_tokens = 12;
  options.stop_at_eos = false;
  auto batched = generate(model, prompts, options);
  for (size_t r = 0; r < prompts.size(); ++r) {
    auto single = generate(model, {prompts[r]}, options);
    CHECK(batched[r].tokens == single[0].tokens);
  }
  // Padded logits equal unpadded ones at the real positions.
  auto mask = at::tensor(std::vector<int64_t>{0, 0, 0, 1, 1, 1}, at::TensorOptions().dtype(at::kLong)).view({1, 6});
  auto padded = model.forward(ids_tensor({0, 0, 0, 1, 300, 320}), nullptr, mask).squeeze(0).narrow(0, 3, 3);
  auto plain = model.forward(ids_tensor({1, 300, 320})).squeeze(0);
  CHECK((padded - plain).abs().max().item<double>() < 1e-5);
}

TEST_CASE("sampling is seeded and top-p 1e-9 equals greedy", "[model]") {
  Model model = load_stories();
  SamplingOptions sampled;
  sampled.max_new_tokens = 20;
  sampled.temperature = 0.8;
  sampled.seed = 7;
  sampled.stop_at_eos = false;
  auto a = generate(model, {{1}}, sampled);
  auto b = generate(model, {{1}}, sampled);
  CHECK(a[0].tokens == b[0].tokens);
  sampled.top_p = 1e-9;
  SamplingOptions greedy;
  greedy.max_new_tokens = 20;
  greedy.stop_at_eos = false;
  CHECK(generate(model, {{1}}, sampled)[0].tokens == generate(model, {{1}}, greedy)[0].tokens);
  sampled.top_p = 1.0;
  sampled.top_k = 1;
  CHECK(generate(model, {{1}}, sampled)[0].tokens == generate(model, {{1}}, greedy)[0].tokens);
}

TEST_CASE("per-row seeds make a row's sample independent of its batch", "[model]") {
  Model model = load_stories();
  SamplingOptions options;
  options.max_new_tokens = 16;
  options.temperature = 1.0;
  options.top_k = 50;
  options.stop_at_eos = false;
  options.row_seeds = {11};
  auto alone = generate(model, {{1, 403}}, options)[0].tokens;
  options.row_seeds = {5, 11};
  auto batched = generate(model, {{1, 403, 407}, {1, 403}}, options);
  CHECK(batched[1].tokens == alone);
  options.row_seeds = {5};
  CHECK_THROWS_WITH(generate(model, {{1}, {1}}, options), Catch::Matchers::Contains("row seeds"));
}

TEST_CASE("per-row token budgets, and finished rows leaving the batch, give each row's own generation", "[model]") {
  Model model = load_stories();
  SamplingOptions options;
  options.temperature = 0.9;
  options.stop_at_eos = false;
  const std::vector<std::vector<int32_t>> prompts = {{1, 403}, {1, 403, 407}, {1, 300}, {1, 261, 378, 354}, {1, 320}};
  const std::vector<int64_t> budgets = {1, 3, 0, 12, 7};
  options.row_seeds = {3, 4, 5, 6, 7};
  options.row_max_new_tokens = budgets;
  // Rows end at steps 1, 3, 7 and 12 (one never starts): the batch shrinks twice on the way.
  const auto batched = generate(model, prompts, options);
  for (size_t r = 0; r < prompts.size(); ++r) {
    INFO("row " << r);
    SamplingOptions alone_options = options;
    alone_options.row_seeds = {options.row_seeds[r]};
    alone_options.row_max_new_tokens.clear();
    alone_options.max_new_tokens = budgets[r];
    const auto alone = generate(model, {prompts[r]}, alone_options)[0];
    CHECK(batched[r].tokens.size() == static_cast<size_t>(budgets[r]));
    CHECK(batched[r].tokens == alone.tokens);
    CHECK(batched[r].text == alone.text);
    CHECK(batched[r].finish_reason == "length");
  }
  options.row_max_new_tokens = {1, 2};
  CHECK_THROWS_WITH(generate(model, prompts, options), Catch::Matchers::Contains("2 row budgets for 5 prompts"));
  options.row_max_new_tokens = {1, 2, -1, 4, 5};
  CHECK_THROWS_WITH(generate(model, prompts, options), Catch::Matchers::Contains("row 2: max_new_tokens must be >= 0"));
}

TEST_CASE("stop strings cut the output and end the row", "[model]") {
  Model model = load_stories();
  SamplingOptions options;
  options.max_new_tokens = 40;
  options.stop_at_eos = false;
  auto free_run = generate(model, {{1}}, options)[0];
  REQUIRE(free_run.text.size() > 10);
  std::string stop = free_run.text.substr(5, 3);
  options.stop = {stop};
  auto stopped = generate(model, {{1}}, options)[0];
  CHECK(stopped.finish_reason == "stop");
  CHECK(stopped.text == free_run.text.substr(0, free_run.text.find(stop)));
}

TEST_CASE("log-likelihood equals the sum of forward log-softmax", "[model]") {
  Model model = load_stories();
  std::vector<int32_t> context = {1, 403, 407, 261}, continuation = {378, 354, 265};
  auto results = loglikelihood(model, {{context, continuation}, {{1, 300}, {320}}}, 2);
  auto logits = model.forward(ids_tensor({1, 403, 407, 261, 378, 354})).squeeze(0);
  auto lsm = at::log_softmax(logits, -1);
  double expected = lsm[3][378].item<double>() + lsm[4][354].item<double>() + lsm[5][265].item<double>();
  CHECK(results[0].logprob == Approx(expected).epsilon(1e-5));
  CHECK(results[0].tokens == 3);
  bool greedy = logits[3].argmax().item<int64_t>() == 378 && logits[4].argmax().item<int64_t>() == 354 &&
                logits[5].argmax().item<int64_t>() == 265;
  CHECK(results[0].is_greedy == greedy);
}

TEST_CASE("perplexity follows the window protocol", "[model]") {
  Model model = load_stories();
  std::vector<int32_t> ids;
  for (int i = 0; i < 70; ++i) ids.push_back(static_cast<int32_t>(1 + (i * 37) % 500));
  auto result = perplexity(model, ids, 32);
  CHECK(result.windows == 2);
  CHECK(result.scored_tokens == 62);
  double nll = 0;
  for (int w = 0; w < 2; ++w) {
    std::vector<int64_t> window(ids.begin() + w * 32, ids.begin() + (w + 1) * 32);
    auto lsm = at::log_softmax(model.forward(ids_tensor(window)).squeeze(0), -1);
    double sum = 0;
    for (int i = 0; i < 31; ++i) sum -= lsm[i][window[static_cast<size_t>(i + 1)]].item<double>();
    nll += sum / 31;
  }
  CHECK(result.mean_nll == Approx(nll / 2).epsilon(1e-5));
  CHECK(result.perplexity == Approx(std::exp(nll / 2)).epsilon(1e-5));
  CHECK_THROWS_WITH(perplexity(model, ids, 1000), Catch::Contains("exceeds the model's context"));
}

TEST_CASE("bf16 logits stay close to fp32", "[model]") {
  Model fp32 = load_stories();
  Model bf16 = load_stories(at::kBFloat16);
  auto ids = ids_tensor({1, 403, 407, 261, 378, 354, 265, 430});
  auto a = fp32.forward(ids), b = bf16.forward(ids);
  CHECK(b.scalar_type() == at::kFloat);
  double rel = ((a - b).norm() / a.norm()).item<double>();
  INFO("relative L2 difference " << rel);
  CHECK(rel < 0.05);
  CHECK((a.argmax(-1) == b.argmax(-1)).to(at::kFloat).mean().item<double>() > 0.7);
}

TEST_CASE("linear_bf16_fp32 equals the fp32 product of the same bf16 weights, unrounded", "[model]") {
  at::manual_seed(3);
  for (int64_t k : {576, 37}) {
    auto w = at::randn({300, k}).to(at::kBFloat16);
    for (auto x : {at::randn({5, k}), at::randn({2, 3, k}).to(at::kBFloat16), at::randn({k})}) {
      REQUIRE(linear_bf16_fp32_applies(x, w));
      auto got = linear_bf16_fp32(x, w);
      auto expected = at::linear(x.to(at::kFloat), w.to(at::kFloat));
      CHECK(got.scalar_type() == at::kFloat);
      CHECK(got.sizes() == expected.sizes());
      CHECK((got - expected).abs().max().item<double>() < 1e-4 * std::sqrt(double(k)));
      // Not rounded to bf16: some logits fall between bf16 values.
      CHECK_FALSE(at::equal(got, got.to(at::kBFloat16).to(at::kFloat)));
    }
  }
  CHECK_FALSE(linear_bf16_fp32_applies(at::randn({2, 8}), at::randn({4, 8})));  // fp32 weights go elsewhere
  CHECK_THROWS_AS(linear_bf16_fp32(at::randn({2, 7}), at::randn({4, 8}).to(at::kBFloat16)), kick::Error);
}

TEST_CASE("gemv_bf16 equals the fp32 product of the same bf16 values, rounded once", "[model]") {
  at::manual_seed(3);
  // K below, at and off the 16-lane width; N from one row to more rows than a parallel grain.
  for (auto [n, k] : std::vector<std::pair<int64_t, int64_t>>{{1, 5}, {7, 16}, {33, 40}, {576, 576}, {1536, 576}, {200, 1536}}) {
    auto w = at::randn({n, k}).to(at::kBFloat16), x = at::randn({k}).to(at::kBFloat16);
    REQUIRE(gemv_bf16_applies(w, x));
    auto got = gemv_bf16(w, x);
    REQUIRE(got.scalar_type() == at::kBFloat16);
    REQUIRE(got.sizes() == at::IntArrayRef({n}));
    auto exact = at::mv(w.to(at::kDouble), x.to(at::kDouble));
    // fp32 accumulation in another order than the reference, then one rounding to bf16 (2^-8 relative).
    auto allowed = exact.abs() * (1.0 / 128) + 1e-4 * std::sqrt(static_cast<double>(k));
    INFO("n=" << n << " k=" << k);
    CHECK(((got.to(at::kDouble) - exact).abs() <= allowed).all().item<bool>());
    // The naive reference: LibTorch's fp32 GEMV on the same values, rounded to bf16. (LibTorch's own bf16 GEMV
    // is not: it misses this bound already at k = 5, its sums being rounded to bf16 along the way.)
    auto reference = at::mv(w.to(at::kFloat), x.to(at::kFloat)).to(at::kBFloat16);
    CHECK(((got.to(at::kDouble) - reference.to(at::kDouble)).abs() <= allowed * 2).all().item<bool>());
  }
  CHECK_FALSE(gemv_bf16_applies(at::randn({4, 8}), at::randn({8})));  // fp32 goes elsewhere
  CHECK_FALSE(gemv_bf16_applies(at::randn({8, 4}).to(at::kBFloat16).t(), at::randn({8}).to(at::kBFloat16)));
  CHECK_THROWS_AS(gemv_bf16(at::randn({4, 8}), at::randn({8})), kick::Error);
}

TEST_CASE("bf16 KV-cached decoding follows the bf16 full forward", "[model]") {
  Model model = load_stories(at::kBFloat16);
  std::vector<int64_t> tokens = {1, 403, 407, 261, 378, 354, 265, 430, 300, 301};
  auto full = model.forward(ids_tensor(tokens)).squeeze(0);
  auto fp32 = load_stories().forward(ids_tensor(tokens)).squeeze(0);
  int clear_leads = 0;
  auto cache = model.make_cache(1, 32);
  model.forward(ids_tensor({tokens.begin(), tokens.begin() + 4}), &cache);
  for (size_t i = 4; i < tokens.size(); ++i) {  // one token per step: every Linear through gemv_bf16
    auto step = model.forward(ids_tensor({tokens[i]}), &cache).view({-1});
    auto expected = full[static_cast<int64_t>(i)];
    double rel = ((step - expected).norm() / expected.norm()).item<double>();
    INFO("position " << i << " relative L2 difference " << rel);
    CHECK(rel < 0.03);
    // The two bf16 paths round differently (decoding step through gemv_bf16, prompt through GEMMs): their logits
    // stay within 0.5 of fp32's here (measured up to 0.30), and where fp32's top token leads by more than twice
    // that, both paths pick it. Closer races may go either way (position 7: fp32 leads by 0.22).
    const auto reference = fp32[static_cast<int64_t>(i)];
    CHECK((step - reference).abs().max().item<double>() < 0.5);
    CHECK((expected - reference).abs().max().item<double>() < 0.5);
    auto top2 = std::get<0>(reference.topk(2));
    if ((top2[0] - top2[1]).item<double>() > 1.0) {
      ++clear_leads;
      CHECK(step.argmax().item<int64_t>() == reference.argmax().item<int64_t>());
      CHECK(expected.argmax().item<int64_t>() == reference.argmax().item<int64_t>());
    }
  }
  CHECK(clear_leads >= 3);  // positions 4, 5 and 9 (fp32 leads by 1.9, 2.3 and 1.0 there)
}

TEST_CASE("a model written and read back through each loader gives identical logits", "[model][io]") {
  Model original = load_stories();
  auto ids = ids_tensor({1, 403, 407, 261, 378, 354, 265, 430});
  auto expected = original.forward(ids);
  auto dir = test::scratch_dir("roundtrip_model");

  save_hf_checkpoint((dir / "hf").string(), original.to_checkpoint());
  write_checkpoint_gguf((dir / "model.gguf").string(), original.to_checkpoint());
  write_llama2c((dir / "model.bin").string(), (dir / "tokenizer.bin").string(), original.to_checkpoint());

  for (const auto& path : {dir / "hf", dir / "model.gguf", dir / "model.bin"}) {
    INFO("reloaded from " << path);
    Model reloaded = Model::load(path.string());
    CHECK(at::equal(reloaded.forward(ids), expected));
    CHECK(reloaded.tokenizer().encode("Once upon a time", true) == original.tokenizer().encode("Once upon a time", true));
  }
}

TEST_CASE("chat templates render the reference strings", "[model]") {
  std::vector<ChatMessage> messages = {{"user", "Hi there"}};
  CHECK(apply_chat_template("vicuna_v1.1", messages) ==
        "A chat between a curious user and an artificial intelligence assistant. The assistant gives "
        "helpful, detailed, and polite answers to the user's questions. USER: Hi there ASSISTANT:");
  CHECK(apply_chat_template("chatml", messages) ==
        "<|im_start|>system\nYou are a helpful AI assistant named SmolLM, trained by Hugging Face<|im_end|>\n"
        "<|im_start|>user\nHi there<|im_end|>\n<|im_start|>assistant\n");
  std::vector<ChatMessage> two_turns = {{"system", "S"}, {"user", "a"}, {"assistant", "b"}, {"user", "c"}};
  CHECK(apply_chat_template("vicuna_v1.1", two_turns) == "S USER: a ASSISTANT: b</s>USER: c ASSISTANT:");
  CHECK(apply_chat_template("chatml", two_turns) ==
        "<|im_start|>system\nS<|im_end|>\n<|im_start|>user\na<|im_end|>\n<|im_start|>assistant\nb<|im_end|>\n"
        "<|im_start|>user\nc<|im_end|>\n<|im_start|>assistant\n");
  CHECK_THROWS_WITH(apply_chat_template("alpaca", messages), Catch::Contains("unknown chat template 'alpaca'"));
  CHECK_THROWS_WITH(apply_chat_template("chatml", {{"robot", "x"}}), Catch::Contains("unknown role 'robot'"));
}

TEST_CASE("wikitext rows are joined as the Hugging Face loader does", "[model]") {
  CHECK(wikitext_join(" \n = Title = \n \n Body text .\n") == "\n\n = Title = \n\n\n\n\n Body text .\n");
}

namespace {

// Compares kick's logits with a fixture's per-position top ids/logits and probe logits: the largest and
// the mean absolute difference, and the share of positions whose argmax agrees.
void compare_with_logit_fixture(const Model& model, const nlohmann::json& fixture, double max_tolerance,
                                double mean_tolerance, double min_argmax_agreement) {
  auto probe = fixture["probe_ids"].get<std::vector<int64_t>>();
  auto probe_index = at::tensor(probe, at::TensorOptions().dtype(at::kLong));
  for (const auto& prompt : fixture["prompts"]) {
    auto tokens = prompt["tokens"].get<std::vector<int64_t>>();
    auto logits = model.forward(ids_tensor(tokens)).squeeze(0);
    double worst = 0, sum = 0;
    int64_t compared = 0, argmax_agree = 0;
    for (size_t pos = 0; pos < tokens.size(); ++pos) {
      auto row = logits[static_cast<int64_t>(pos)];
      auto top_ids = prompt["top_ids"][pos].get<std::vector<int64_t>>();
      auto top_logits = prompt["top_logits"][pos].get<std::vector<double>>();
      auto probe_logits = prompt["probe_logits"][pos].get<std::vector<double>>();
      auto add = [&](double ours, double theirs) {
        worst = std::max(worst, std::abs(ours - theirs));
        sum += std::abs(ours - theirs);
        ++compared;
      };
      for (size_t k = 0; k < top_ids.size(); ++k) add(row[top_ids[k]].item<double>(), top_logits[k]);
      auto ours = row.index_select(0, probe_index);
      for (size_t k = 0; k < probe.size(); ++k) add(ours[static_cast<int64_t>(k)].item<double>(), probe_logits[k]);
      argmax_agree += row.argmax().item<int64_t>() == top_ids[0];
    }
    const double mean = sum / double(compared);
    INFO("max |logit difference| " << worst << ", mean " << mean << ", argmax agreement " << argmax_agree << "/"
                                   << tokens.size());
    CHECK(worst < max_tolerance);
    CHECK(mean < mean_tolerance);
    CHECK(double(argmax_agree) >= min_argmax_agreement * double(tokens.size()));
  }
}

}  // namespace

TEST_CASE("SmolLM2-135M-Instruct logits match the numpy GGUF twin", "[model][smollm2]") {
  if (!std::filesystem::exists(test::smollm2_gguf())) {
    WARN("skipped: " << test::smollm2_gguf() << " absent (run data/fetch_models.sh)");
    return;
  }
  Model model = Model::load(test::smollm2_gguf().string());
  // Same dequantized weights on both sides; the twin runs in float64, kick in fp32.
  compare_with_logit_fixture(model, read_json(test::fixture("model/smollm2_twin_logits.json")), 2e-3, 5e-4, 1.0);
}

TEST_CASE("SmolLM2-135M-Instruct logits and greedy answer match llama.cpp", "[model][smollm2]") {
  if (!std::filesystem::exists(test::smollm2_gguf())) {
    WARN("skipped: " << test::smollm2_gguf() << " absent (run data/fetch_models.sh)");
    return;
  }
  Model model = Model::load(test::smollm2_gguf().string());
  auto fixture = read_json(test::fixture("model/smollm2_llamacpp_logits.json"));
  // llama.cpp multiplies Q4_1 weights by Q8_1-quantized activations; kick (and the numpy twin, which
  // agrees with kick to 2e-3) dequantize the weights and keep activations in fp32. Measured on these
  // prompts: kick vs llama.cpp max 1.21, mean ~0.25; the twin vs llama.cpp max 1.90, mean 0.23, with
  // logits of standard deviation ~8. So the bound is that rounding's size, plus exact greedy text.
  compare_with_logit_fixture(model, fixture, 2.5, 0.4, 0.85);
  auto prompt = fixture["prompts"][0]["tokens"].get<std::vector<int32_t>>();
  auto expected = fixture["greedy_continuation_of_prompt0"].get<std::vector<int32_t>>();
  SamplingOptions greedy;
  greedy.max_new_tokens = 24;
  auto out = generate(model, {prompt}, greedy)[0];
  CHECK(out.tokens == expected);
  CHECK(out.finish_reason == "eos");
  CHECK(out.text == "The capital of France is Paris.");
}

TEST_CASE("fused element-wise kernels equal their ATen references", "[model][fused]") {
  at::manual_seed(11);
  for (auto dtype : {at::kFloat, at::kBFloat16}) {
    INFO("dtype " << c10::toString(dtype));
    const double tolerance = dtype == at::kFloat ? 2e-6 : 1e-2;
    {  // rms_norm (plain blocks: Catch2 v2 runs a SECTION inside a loop once only)
      for (int64_t h : {576, 37, 16}) {
        auto x = (at::randn({3, 5, h}) * 3).to(dtype);
        for (auto wdtype : {at::kFloat, at::kBFloat16}) {
          auto w = at::randn({h}).to(wdtype);
          auto got = rms_norm(x, w, 1e-5), expected = rms_norm_reference(x, w, 1e-5);
          REQUIRE(got.scalar_type() == dtype);
          CHECK(at::allclose(got.to(at::kFloat), expected.to(at::kFloat), tolerance, tolerance));
        }
      }
    }
    {  // rotary is bitwise equal (plain blocks: Catch2 v2 runs a SECTION inside a loop once only)
      const int64_t b = 2, t = 7, heads = 3, d = 64;
      auto x = at::randn({b, t, heads, d}).to(dtype);
      auto angles = at::rand({b, t, d / 2}) * 50;
      auto emb = at::cat({angles, angles}, -1);
      auto cos = emb.cos(), sin = emb.sin();
      auto expected = apply_rotary_reference(x.transpose(1, 2), cos, sin).transpose(1, 2);
      auto got = x.clone();
      apply_rotary_(got, cos, sin);
      CHECK(at::equal(got, expected));
    }
    {  // silu_mul (plain blocks: Catch2 v2 runs a SECTION inside a loop once only)
      auto gate = (at::randn({4, 1000}) * 6).to(dtype), up = at::randn({4, 1000}).to(dtype);
      gate[0][0] = -200.0;  // exp overflows: silu is -0
      gate[0][1] = 200.0;
      auto got = silu_mul(gate, up), expected = silu_mul_reference(gate, up);
      CHECK(at::allclose(got.to(at::kFloat), expected.to(at::kFloat), tolerance, tolerance));
    }
    {  // softmax, plain and causal (plain blocks: Catch2 v2 runs a SECTION inside a loop once only)
      for (int64_t n : {1, 15, 16, 100, 1500}) {
        auto scores = (at::randn({2, 3, 8, n}) * 4).to(dtype);
        auto expected = at::softmax(scores.to(at::kFloat), -1);
        auto got = scores.clone();
        softmax_cpu_(got, 0);
        CHECK((got.to(at::kFloat) - expected).abs().max().item<double>() < (dtype == at::kFloat ? 1e-6 : 4e-3));
        const int64_t m = std::min<int64_t>(n, 4);
        auto future = at::ones({m, m}, at::kBool).triu(1);
        auto masked = scores.to(at::kFloat).view({2, 3, 8 / m, m, n}).clone();
        masked.narrow(4, n - m, m).masked_fill_(future, -std::numeric_limits<float>::infinity());
        auto expected_causal = at::softmax(masked, -1).view({2, 3, 8, n});
        auto got_causal = scores.clone();
        softmax_cpu_(got_causal, m);
        CHECK((got_causal.to(at::kFloat) - expected_causal).abs().max().item<double>() < (dtype == at::kFloat ? 1e-6 : 4e-3));
        CHECK(at::equal(got_causal.to(at::kFloat) == 0, expected_causal == 0));
      }
      // A NaN poisons its own row only, as in ATen; -inf scores (an additive mask) give exactly 0.
      auto special = at::randn({3, 40}).to(dtype);
      special[0][5] = std::numeric_limits<float>::quiet_NaN();
      special[1].narrow(0, 0, 20).fill_(-std::numeric_limits<float>::infinity());
      auto expected_special = at::softmax(special.to(at::kFloat), -1);
      softmax_cpu_(special, 0);
      auto got_special = special.to(at::kFloat);
      CHECK(at::isnan(got_special[0]).all().item<bool>());
      CHECK(at::isnan(expected_special[0]).all().item<bool>());
      CHECK((got_special[1].narrow(0, 0, 20) == 0).all().item<bool>());
      CHECK((got_special.narrow(0, 1, 2) - expected_special.narrow(0, 1, 2)).abs().max().item<double>() < 4e-3);
    }
  }
}

TEST_CASE("dtypes the fused kernels do not take go to their ATen references", "[model][fused]") {
  // fp16 on CPU here (LibTorch 1.13 has no CPU Half matmul or SiLU, so only the norm and rotary can run); CUDA
  // tensors take the same branch. Mixed dtypes go to the reference too.
  at::manual_seed(13);
  auto x = at::randn({2, 5, 3, 64}).to(at::kHalf), w = at::randn({64}).to(at::kHalf);
  CHECK(at::equal(rms_norm(x, w, 1e-5), rms_norm_reference(x, w, 1e-5)));
  auto gate = at::randn({4, 32}).to(at::kBFloat16), up = at::randn({4, 32});
  CHECK(at::equal(silu_mul(gate, up), silu_mul_reference(gate, up)));
  auto angles = at::rand({2, 5, 32});
  auto emb = at::cat({angles, angles}, -1);
  auto rotated = x.clone();
  apply_rotary_(rotated, emb.cos(), emb.sin());
  CHECK(at::equal(rotated, apply_rotary_reference(x.transpose(1, 2), emb.cos(), emb.sin()).transpose(1, 2)));
  CHECK_FALSE(softmax_cpu_applies(at::randn({2, 8}).to(at::kHalf)));
  CHECK_FALSE(tiled_attention_applies(at::randn({1, 3, 20, 8}).to(at::kHalf), at::randn({1, 1, 20, 8}).to(at::kHalf),
                                      at::randn({1, 1, 20, 8}).to(at::kHalf)));
}

TEST_CASE("tiled attention equals the batched form, with a past and with a padding mask", "[model][fused]") {
  at::manual_seed(5);
  const int64_t b = 3, heads = 6, kv = 2, t = 45, past = 20, d = 16;
  auto q = at::randn({b, heads, t, d}), k = at::randn({b, kv, past + t, d}), v = at::randn({b, kv, past + t, d});
  auto allowed = at::ones({b, 1, t, past + t}, at::kBool).tril(past);
  allowed.select(0, 2).narrow(-1, 0, 7).fill_(false);
  allowed = allowed | at::eye(t, past + t, at::kBool).roll(past, 1).view({1, 1, t, past + t});
  auto mask = at::zeros({b, 1, t, past + t}).masked_fill(allowed.logical_not(), -std::numeric_limits<float>::infinity());
  for (auto dtype : {at::kFloat, at::kBFloat16}) {
    auto qd = q.to(dtype), kd = k.to(dtype), vd = v.to(dtype);
    REQUIRE(tiled_attention_applies(qd, kd, vd));
    CHECK_FALSE(tiled_attention_applies(qd.narrow(2, 0, 4), kd, vd));  // a decoding-sized step goes batched
    const double tolerance = dtype == at::kFloat ? 1e-5 : 0.02;
    for (const auto& m : {at::Tensor(), mask}) {
      auto batched = grouped_causal_attention_batched(qd, kd, vd, m, kv, 16);
      for (int64_t tile_rows : {0, 7, 16, 45}) {  // 0: one tile here; 7: a short last tile
        auto tiled = grouped_causal_attention_tiled(qd, kd, vd, m, kv, tile_rows);
        CHECK(tiled.scalar_type() == dtype);
        CHECK((tiled.to(at::kFloat) - batched.to(at::kFloat)).abs().max().item<double>() < tolerance);
      }
    }
  }
}

namespace {

// Sets which bf16 GEMM route the CPU takes for one scope, and puts the detected one back after.
struct Bf16RouteScope {
  explicit Bf16RouteScope(bool native) : before(set_cpu_bf16_gemm_native(native)) {}
  ~Bf16RouteScope() { set_cpu_bf16_gemm_native(before); }
  bool before;
};

// Every element of got within one bf16 rounding (2^-8 relative) plus an fp32 accumulation allowance of exact.
bool within_one_bf16_rounding(const Tensor& got, const Tensor& exact, int64_t k) {
  auto allowed = exact.abs() * (1.0 / 128) + 1e-4 * std::sqrt(static_cast<double>(k));
  return ((got.to(at::kDouble) - exact).abs() <= allowed).all().item<bool>();
}

}  // namespace

TEST_CASE("bf16 products through fp32 equal the exact product of the same values, rounded once", "[model]") {
  at::manual_seed(11);
  for (int64_t k : {576, 37}) {
    auto w = at::randn({300, k}).to(at::kBFloat16);
    // 1, 5 and 16 rows read W in place (linear_bf16_fp32); 17 and 2 x 40 widen it for the fp32 GEMM.
    for (auto x : {at::randn({1, k}), at::randn({5, k}), at::randn({16, k}), at::randn({17, k}), at::randn({2, 40, k})}) {
      x = x.to(at::kBFloat16);
      INFO("k=" << k << " rows=" << x.numel() / k);
      auto got = linear_through_fp32(x, w);
      CHECK(got.scalar_type() == at::kBFloat16);
      auto exact = at::linear(x.to(at::kDouble), w.to(at::kDouble));
      REQUIRE(got.sizes() == exact.sizes());
      CHECK(within_one_bf16_rounding(got, exact, k));
    }
  }
  // Batched and transposed operands, as the attention passes them.
  auto a = at::randn({2, 3, 24, 64}).to(at::kBFloat16), b = at::randn({2, 3, 50, 64}).to(at::kBFloat16);
  auto scores = matmul_through_fp32(a, b.transpose(-1, -2));
  CHECK(scores.scalar_type() == at::kBFloat16);
  CHECK(within_one_bf16_rounding(scores, at::matmul(a.to(at::kDouble), b.to(at::kDouble).transpose(-1, -2)), 64));
}

TEST_CASE("the bf16 GEMM route follows the CPU switch and leaves other dtypes alone", "[model]") {
  at::manual_seed(12);
  auto x = at::randn({40, 96}).to(at::kBFloat16), w = at::randn({72, 96}).to(at::kBFloat16);
  {
    Bf16RouteScope scope(false);
    CHECK(bf16_gemm_through_fp32(w));
    CHECK_FALSE(bf16_gemm_through_fp32(w.to(at::kFloat)));
    CHECK(at::equal(linear_routed(x, w), linear_through_fp32(x, w)));
    CHECK(at::equal(matmul_routed(x, w.t()), matmul_through_fp32(x, w.t())));
    auto xf = x.to(at::kFloat), wf = w.to(at::kFloat);
    CHECK(at::equal(linear_routed(xf, wf), at::linear(xf, wf)));
  }
  {
    Bf16RouteScope scope(true);
    CHECK_FALSE(bf16_gemm_through_fp32(w));
    CHECK(at::equal(linear_routed(x, w), at::linear(x, w)));
    CHECK(at::equal(matmul_routed(x, w.t()), at::matmul(x, w.t())));
  }
}

TEST_CASE("bf16 attention and logits agree between the native and the fp32 GEMM route", "[model]") {
  at::manual_seed(13);
  const int64_t b = 2, heads = 6, kv = 2, t = 40, past = 9, d = 16;
  auto q = at::randn({b, heads, t, d}).to(at::kBFloat16), k = at::randn({b, kv, past + t, d}).to(at::kBFloat16),
       v = at::randn({b, kv, past + t, d}).to(at::kBFloat16);
  auto expected = naive_attention(q.to(at::kFloat), k.to(at::kFloat), v.to(at::kFloat), at::Tensor());
  for (bool native : {true, false}) {
    Bf16RouteScope scope(native);
    INFO("native route " << native);
    auto tiled = grouped_causal_attention_tiled(q, k, v, at::Tensor(), kv, 8);
    auto batched = grouped_causal_attention_batched(q, k, v, at::Tensor(), kv, 16);
    auto step = grouped_causal_attention_batched(q.narrow(2, t - 1, 1), k, v, at::Tensor(), kv, 16);  // a decoding step
    CHECK(tiled.scalar_type() == at::kBFloat16);
    CHECK((tiled.to(at::kFloat) - expected).abs().max().item<double>() < 0.05);
    CHECK((batched.to(at::kFloat) - expected).abs().max().item<double>() < 0.05);
    CHECK((step.to(at::kFloat) - expected.narrow(2, t - 1, 1)).abs().max().item<double>() < 0.05);
  }
  // The whole model: both routes round at the same points, so their logits differ by summation order only.
  auto ids = ids_tensor({1, 403, 407, 261, 378, 354, 265, 430, 300, 301, 302, 303, 304, 305, 306, 307, 308, 309});
  Model model = load_stories(at::kBFloat16);
  Tensor native_logits, routed_logits;
  {
    Bf16RouteScope scope(true);
    native_logits = model.forward(ids);
  }
  {
    Bf16RouteScope scope(false);
    routed_logits = model.forward(ids);
  }
  const auto fp32_logits = load_stories().forward(ids);
  const double between = ((native_logits - routed_logits).norm() / native_logits.norm()).item<double>();
  const double routed_vs_fp32 = ((routed_logits - fp32_logits).norm() / fp32_logits.norm()).item<double>();
  INFO("native vs fp32 route " << between << ", fp32 route vs the fp32 model " << routed_vs_fp32);
  CHECK(between < 0.02);
  CHECK(routed_vs_fp32 < 0.05);
}
