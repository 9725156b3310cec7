// [compress] tests: the algorithm cores of lib/compress against the plain-PyTorch twin
// (tests/reference/compress_twin.py, fixtures in tests/fixtures/compress), their invariants (exact
// sparsity, N:M groups, code ranges, error ordering, idempotence), Cholesky robustness and every
// configuration rejection.
#include <catch2/catch.hpp>

#include <ATen/Parallel.h>

#include <atomic>
#include <chrono>
#include <cmath>
#include <fstream>
#include <set>
#include <thread>

#include "../../lib/compress/internal.hpp"  // the OBS sweep kernel and selection, tested against their references
#include "kick/compress.hpp"
#include "test_helpers.hpp"

namespace kc = kick::compress;
using kick::Tensor;
using Catch::Matchers::Contains;

namespace {

const nlohmann::json& fixture_index() {
  static const nlohmann::json index =
      nlohmann::json::parse(kick::read_file(kick::test::fixture("compress/index.json")));
  return index;
}

Tensor load(const std::string& name) {
  const auto& shape_json = fixture_index().at("tensors").at(name);
  std::vector<int64_t> shape = shape_json.get<std::vector<int64_t>>();
  std::string bytes = kick::read_file(kick::test::fixture("compress/" + name + ".bin"));
  auto t = at::empty(shape, at::kFloat);
  REQUIRE(static_cast<size_t>(t.numel()) * 4 == bytes.size());
  std::memcpy(t.data_ptr<float>(), bytes.data(), bytes.size());
  return t;
}

double scalar(const std::string& name) { return fixture_index().at("scalars").at(name).get<double>(); }

double max_abs_diff(const Tensor& a, const Tensor& b) { return (a.to(at::kFloat) - b.to(at::kFloat)).abs().max().item<double>(); }

using kick::test::require_error;

kc::SparsityConfig ratio(double r) {
  kc::SparsityConfig c;
  c.ratio = r;
  return c;
}
kc::SparsityConfig n_of_m(int64_t n, int64_t m) {
  kc::SparsityConfig c;
  c.n = n;
  c.m = m;
  return c;
}

// Every group of m consecutive columns of every row holds exactly n pruned entries.
void require_n_of_m(const Tensor& mask, int64_t n, int64_t m) {
  auto per_group = mask.reshape({mask.size(0), -1, m}).sum(-1);
  CHECK((per_group == n).all().item<bool>());
}

}  // namespace

TEST_CASE("InputStatistics matches the twin's running averages and skips non-finite tokens", "[compress]") {
  auto X = load("X");
  kc::InputStatistics stats(X.size(1));
  // Batches of uneven size: the running average must not depend on them.
  stats.add(X.narrow(0, 0, 100));
  stats.add(X.narrow(0, 100, 156).reshape({2, 78, X.size(1)}));
  CHECK(stats.tokens() == 256);
  // Tolerance: accumulation order differs from the twin's batches of 64: 1e-5 relative to max |H|.
  auto H = load("H");
  CHECK(max_abs_diff(stats.hessian(), H) <= 1e-5 * H.abs().max().item<double>());
  auto scaler = load("scaler");
  CHECK(max_abs_diff(stats.squared_norms(), scaler) <= 1e-5 * scaler.max().item<double>());
  CHECK(max_abs_diff(stats.mean_abs(), X.abs().mean(0)) <= 1e-5 * X.abs().mean(0).max().item<double>());

  auto bad = X.narrow(0, 0, 4).clone();
  bad[1][5] = NAN;
  bad[3][0] = INFINITY;
  kc::InputStatistics with_bad(X.size(1));
  with_bad.add(bad);
  CHECK(with_bad.nonfinite() == 2);
  CHECK(with_bad.tokens() == 2);
  CHECK(at::isfinite(with_bad.hessian()).all().item<bool>());

  kc::InputStatistics no_hessian(X.size(1), false);
  no_hessian.add(X);
  require_error([&] { no_hessian.hessian(); }, {"hessian"});
  require_error([&] { stats.add(at::zeros({3, 7})); }, {"InputStatistics::add", "[3, 7]", "128"});
}

TEST_CASE("magnitude and Wanda masks equal the twin's and have exact sparsity", "[compress]") {
  auto W = load("W");
  auto scaler = load("scaler");
  // Scores have no ties on random data: exact equality of the pruned weights.
  auto magnitude = kc::magnitude_prune(W, ratio(0.5));
  CHECK(at::equal(magnitude.weight, load("magnitude_50")));
  CHECK(magnitude.mask.sum().item<int64_t>() == W.numel() / 2);  // one global threshold
  CHECK(magnitude.stats.sparsity == Approx(0.5));
  auto magnitude_nm = kc::magnitude_prune(W, n_of_m(2, 4));
  CHECK(at::equal(magnitude_nm.weight, load("magnitude_2of4")));
  require_n_of_m(magnitude_nm.mask, 2, 4);

  auto wanda = kc::wanda_prune(W, scaler, ratio(0.5));
  CHECK(at::equal(wanda.weight, load("wanda_50")));
  CHECK((wanda.mask.sum(1) == W.size(1) / 2).all().item<bool>());  // per row
  auto wanda_nm = kc::wanda_prune(W, scaler, n_of_m(2, 4));
  CHECK(at::equal(wanda_nm.weight, load("wanda_2of4")));
  require_n_of_m(wanda_nm.mask, 2, 4);

  auto per_row = kc::magnitude_prune(W, ratio(0.3), true);
  CHECK((per_row.mask.sum(1) == static_cast<int64_t>(W.size(1) * 0.3)).all().item<bool>());
  auto global = kc::prune_mask(W.abs(), ratio(0.3), false);
  CHECK(global.sum().item<int64_t>() == static_cast<int64_t>(W.numel() * 0.3));
  CHECK(kc::prune_mask(W.abs(), ratio(0), true).sum().item<int64_t>() == 0);
}

TEST_CASE("SparseGPT matches the twin, keeps exact per-block sparsity and beats Wanda and magnitude", "[compress]") {
  auto W = load("W");
  auto H = load("H");
  const double scale = W.abs().max().item<double>();
  struct Case {
    std::string name;
    kc::SparseGptConfig config;
  };
  std::vector<Case> cases(3);
  cases[0].name = "sparsegpt_50";
  cases[0].config.sparsity = ratio(0.5);
  cases[1].name = "sparsegpt_2of4";
  cases[1].config.sparsity = n_of_m(2, 4);
  cases[2].name = "sparsegpt_50_q4";
  cases[2].config.sparsity = ratio(0.5);
  cases[2].config.quantize = kc::QuantizerConfig{4, -1, false};
  for (auto& c : cases) {
    c.config.blocksize = 48;
    INFO(c.name);
    auto result = kc::sparsegpt_prune(W, H, c.config);
    auto expected = load(c.name);
    // Same operations in the same order as the twin: 1e-5 of max |W| absorbs threading differences in
    // the block matmuls; the pruned positions must be identical.
    CHECK(max_abs_diff(result.weight, expected) <= 1e-5 * scale);
    CHECK(at::equal(result.weight == 0, expected == 0));
    CHECK(result.stats.error == Approx(scalar(c.name + "_loss")).epsilon(1e-4));
    CHECK(result.stats.cholesky_retries == 0);
    CHECK(result.stats.damping == Approx(0.01));
    // Quantization may round small survivors to zero too, so only "pruned => zero" holds in general.
    CHECK(at::equal(result.mask, result.mask & (result.weight == 0)));
    if (!c.config.quantize) CHECK(at::equal(result.mask, result.weight == 0));
    if (c.config.sparsity.structured()) {
      require_n_of_m(result.mask, 2, 4);
    } else {
      for (int64_t i1 = 0; i1 < W.size(1); i1 += 48) {
        const int64_t width = std::min<int64_t>(48, W.size(1) - i1);
        CHECK(result.mask.narrow(1, i1, width).sum().item<int64_t>() == W.size(0) * width / 2);
      }
    }
  }

  // Outlier input channels: the second-order and activation-aware methods must do better.
  for (const auto& sparsity : {ratio(0.5), n_of_m(2, 4)}) {
    INFO(sparsity.describe());
    kc::SparseGptConfig config;
    config.sparsity = sparsity;
    const double sparsegpt = kc::output_error(W, kc::sparsegpt_prune(W, H, config).weight, H);
    const double wanda = kc::output_error(W, kc::wanda_prune(W, load("scaler"), sparsity).weight, H);
    const double magnitude = kc::output_error(W, kc::magnitude_prune(W, sparsity).weight, H);
    WARN("output error " << sparsity.describe() << ": sparsegpt " << sparsegpt << " wanda " << wanda
                         << " magnitude " << magnitude);
    CHECK(sparsegpt < wanda);
    CHECK(wanda < magnitude);
  }
}

TEST_CASE("RTN and GPTQ match the twin, codes stay in range and GPTQ beats RTN", "[compress]") {
  auto W = load("W");
  auto H = load("H");
  const double scale = W.abs().max().item<double>();
  for (bool symmetric : {false, true}) {
    for (int64_t group : {int64_t{-1}, int64_t{32}}) {
      kc::QuantizerConfig quant{4, group, symmetric};
      auto name = fmt::format("rtn_b4_g{}_{}", group, symmetric ? "sym" : "asym");
      INFO(name);
      auto rtn = kc::rtn_quantize(W, quant);
      CHECK(max_abs_diff(rtn.weight, load(name)) <= 1e-6 * scale);  // elementwise only: exact up to division rounding
      CHECK(at::equal(rtn.packed.dequantize(), rtn.weight));
    }
  }
  struct Case {
    bool symmetric;
    int64_t group;
    bool act_order, static_groups;
  };
  for (const auto& c : std::vector<Case>{{false, -1, false, false}, {true, -1, false, false}, {false, 32, false, false},
                                         {true, 32, false, false}, {false, 32, true, false}, {false, -1, true, false},
                                         {false, 32, false, true}, {true, 32, true, true}}) {
    auto name = fmt::format("gptq_b4_g{}_{}{}{}", c.group, c.symmetric ? "sym" : "asym", c.act_order ? "_act" : "",
                            c.static_groups ? "_static" : "");
    INFO(name);
    kc::GptqConfig config;
    config.quant = {4, c.group, c.symmetric};
    config.blocksize = 48;
    config.act_order = c.act_order;
    config.static_groups = c.static_groups;
    auto result = kc::gptq_quantize(W, H, config);
    auto expected = load(name);
    // Sequential error feedback: a rounding tie could flip one code; on these fixtures none does, and
    // 1e-5 of max |W| allows only accumulation-order noise.
    CHECK(max_abs_diff(result.weight, expected) <= 1e-5 * scale);
    CHECK(result.stats.error == Approx(scalar(name + "_loss")).epsilon(1e-4));
    const auto& packed = result.packed;
    CHECK(at::equal(packed.dequantize(), result.weight));
    CHECK(packed.codes.scalar_type() == at::kByte);
    CHECK(packed.codes.max().item<int64_t>() <= 15);
    const int64_t groups = c.group > 0 ? W.size(1) / c.group : 1;
    CHECK(packed.scales.sizes() == at::IntArrayRef({W.size(0), groups}));
    CHECK(packed.g_idx.bincount().eq(W.size(1) / groups).all().item<bool>());
    // At most 2^bits distinct values per (row, group).
    auto values = result.weight;
    auto g_idx = packed.g_idx.to(at::kLong);
    for (int64_t g = 0; g < groups; ++g) {
      auto columns = values.index_select(1, (g_idx == g).nonzero().flatten());
      for (int64_t r = 0; r < W.size(0); r += 13) CHECK(std::get<0>(at::_unique(columns[r])).numel() <= 16);
    }
    const double gptq_error = kc::output_error(W, result.weight, H);
    const double rtn_error = kc::output_error(W, kc::rtn_quantize(W, config.quant).weight, H);
    WARN(name << ": output error gptq " << gptq_error << " rtn " << rtn_error);
    CHECK(gptq_error <= rtn_error);
  }
}

TEST_CASE("quantize -> dequantize -> quantize is idempotent", "[compress]") {
  auto W = load("W");
  for (int bits : {2, 3, 4, 8}) {
    for (int64_t group : {int64_t{-1}, int64_t{16}}) {
      INFO("bits " << bits << " group " << group);
      kc::QuantizerConfig quant{bits, group, false};
      auto first = kc::rtn_quantize(W, quant);
      auto second = kc::rtn_quantize(first.weight, quant);
      CHECK(at::equal(first.packed.codes, second.packed.codes));
      CHECK(max_abs_diff(first.weight, second.weight) <= 1e-6 * W.abs().max().item<double>());
      CHECK(first.packed.codes.max().item<int64_t>() <= (1 << bits) - 1);
    }
  }
  // Symmetric: the grid (zero at (maxq + 1) / 2) is not closed under re-estimation, so requantize with the
  // same scales and zeros: the codes must come back unchanged.
  auto sym = kc::rtn_quantize(W, {4, 32, true});
  auto index = sym.packed.g_idx.to(at::kLong);
  auto s = sym.packed.scales.index_select(1, index), z = sym.packed.zeros.index_select(1, index);
  auto codes = at::clamp(at::round(sym.packed.dequantize() / s) + z, 0, 15);
  CHECK(at::equal(codes.to(at::kByte), sym.packed.codes));
}

TEST_CASE("AWQ scale and clip searches match the twin", "[compress]") {
  auto W = load("W"), W2 = load("W2"), X = load("X");
  kc::AwqConfig config;
  config.quant = {4, 32, false};
  auto scaled = kc::awq_search_scales({W, W2}, X, config);
  CHECK(scaled.best_alpha == Approx(scalar("awq_best_alpha")));
  // The twin uses pseudo_quantize_tensor; kick's grid agrees on zero-straddling groups: 1e-5 relative.
  CHECK(max_abs_diff(scaled.scales, load("awq_scales")) <= 1e-5 * load("awq_scales").max().item<double>());
  CHECK(scaled.error == Approx(scalar("awq_error")).epsilon(1e-4));
  CHECK(scaled.error_at_1 == Approx(scalar("awq_error_at_1")).epsilon(1e-4));
  CHECK(scaled.error <= scaled.error_at_1);
  WARN("awq output mse: best " << scaled.error << " (alpha " << scaled.best_alpha << ") unscaled " << scaled.error_at_1);

  config.clip_samples = 64;
  auto clip = kc::awq_search_clip(W, X, config);
  CHECK(max_abs_diff(clip, load("awq_clip")) <= 1e-6 * W.abs().max().item<double>());
  auto quantized = kc::awq_quantize(W, clip, config.quant);
  CHECK(max_abs_diff(quantized.weight, load("awq_quantized")) <= 1e-6 * W.abs().max().item<double>());
  CHECK(at::equal(quantized.packed.dequantize(), quantized.weight));
  // Clipping only ever helps the sampled output error relative to no clipping.
  auto plain = kc::awq_quantize(W, Tensor(), config.quant);
  auto out = at::matmul(X, W.t());
  auto mse = [&](const Tensor& q) { return (out - at::matmul(X, q.t())).pow(2).mean().item<double>(); };
  CHECK(mse(quantized.weight) <= mse(plain.weight) * 1.0001);
}

TEST_CASE("a singular or indefinite Hessian is survived with the retries recorded", "[compress]") {
  auto W = load("W");
  const int64_t in = W.size(1);
  kc::GptqConfig gptq;
  gptq.quant = {4, -1, false};
  gptq.percdamp = 0;
  kc::SparseGptConfig sparsegpt;
  sparsegpt.percdamp = 0;

  // Rank one and undamped: the first factorization fails.
  auto v = at::linspace(1, 2, in).reshape({-1, 1});
  auto rank_one = at::matmul(v, v.t());
  auto q = kc::gptq_quantize(W, rank_one, gptq);
  CHECK(q.stats.cholesky_retries >= 1);
  CHECK(q.stats.damping > 0);
  CHECK(at::isfinite(q.weight).all().item<bool>());
  auto p = kc::sparsegpt_prune(W, rank_one, sparsegpt);
  CHECK(p.stats.cholesky_retries >= 1);
  CHECK(at::isfinite(p.weight).all().item<bool>());

  // Indefinite beyond what the damping schedule (up to 100x) can repair: the diagonal fallback runs.
  auto indefinite = -1000 * at::eye(in);
  auto r = kc::gptq_quantize(W, indefinite, gptq);
  CHECK(r.stats.cholesky_retries == 5);
  CHECK(at::isfinite(r.weight).all().item<bool>());

  // Non-finite entries, and dead columns (zero diagonal) whose weights are zeroed.
  auto H = load("H").clone();
  H[0][1] = NAN;
  CHECK(at::isfinite(kc::sparsegpt_prune(W, H, sparsegpt).weight).all().item<bool>());
  auto dead = load("H").clone();
  dead.index_put_({5}, 0);
  dead.index_put_({at::indexing::Slice(), 5}, 0);
  auto d = kc::gptq_quantize(W, dead, kc::GptqConfig{});
  CHECK(d.stats.cholesky_retries == 0);
  CHECK((d.weight.select(1, 5) == 0).all().item<bool>());
}

TEST_CASE("bf16 weights are solved in fp32 and returned as bf16", "[compress]") {
  auto W = load("W").to(at::kBFloat16);
  auto H = load("H");
  kc::SparseGptConfig config;
  auto pruned = kc::sparsegpt_prune(W, H, config);
  CHECK(pruned.weight.scalar_type() == at::kBFloat16);
  CHECK(pruned.stats.sparsity >= 0.5);
  auto quantized = kc::gptq_quantize(W, H, kc::GptqConfig{});
  CHECK(quantized.weight.scalar_type() == at::kBFloat16);
  CHECK(quantized.packed.scales.scalar_type() == at::kFloat);
  CHECK(kc::wanda_prune(W, load("scaler"), ratio(0.5)).weight.scalar_type() == at::kBFloat16);
}

TEST_CASE("bad compression configs are rejected with one-line errors", "[compress]") {
  auto W = load("W");
  auto H = load("H");
  require_error([&] { kc::magnitude_prune(W, ratio(1.0)); }, {"ratio", "[0, 1)"});
  require_error([&] { kc::magnitude_prune(W, ratio(-0.1)); }, {"ratio", "[0, 1)"});
  require_error([&] { kc::wanda_prune(W, load("scaler"), n_of_m(4, 4)); }, {"n:m", "4:4", "n < m"});
  require_error([&] { kc::wanda_prune(W, load("scaler"), n_of_m(0, 4)); }, {"sparsity n", ">= 1"});
  require_error([&] { kc::magnitude_prune(W, n_of_m(2, 3)); }, {"m = 3", "divide", "128"});
  require_error([&] { kc::rtn_quantize(W, {1, -1, false}); }, {"bits", "2..8"});
  require_error([&] { kc::rtn_quantize(W, {9, -1, false}); }, {"bits", "2..8"});
  require_error([&] { kc::rtn_quantize(W, {4, 48, false}); }, {"group_size = 48", "divide", "128"});
  require_error([&] { kc::rtn_quantize(W, {4, 0, false}); }, {"group_size = 0"});
  require_error([&] { kc::gptq_quantize(W, H.narrow(0, 0, 64), kc::GptqConfig{}); }, {"gptq_quantize", "hessian", "[64, 128]", "[128, 128]"});
  require_error([&] { kc::sparsegpt_prune(W, at::zeros({3, 3}), kc::SparseGptConfig{}); }, {"sparsegpt_prune", "hessian"});
  kc::SparseGptConfig bad_block;
  bad_block.sparsity = n_of_m(2, 4);
  bad_block.blocksize = 30;
  require_error([&] { kc::sparsegpt_prune(W, H, bad_block); }, {"blocksize = 30", "m = 4"});
  kc::GptqConfig bad_damp;
  bad_damp.percdamp = -1;
  require_error([&] { kc::gptq_quantize(W, H, bad_damp); }, {"percdamp", ">= 0"});
  require_error([&] { kc::wanda_prune(W, at::ones({7}), ratio(0.5)); }, {"squared_norms", "[7]", "128"});
  require_error([&] { kc::magnitude_prune(at::ones({4}), ratio(0.5)); }, {"magnitude_prune", "2-D"});
  kc::AwqConfig awq;
  awq.quant = {4, 128, false};
  require_error([&] { kc::awq_search_scales({W}, at::ones({5, 64}), awq); }, {"x_sample", "[5, 64]", "128"});
  awq.max_shrink = 1.5;
  require_error([&] { kc::awq_search_clip(W, load("X"), awq); }, {"max_shrink", "[0, 1)"});
  require_error([&] { kc::awq_quantize(W, at::ones({3, 3}), {4, 32, false}); }, {"clip_max", "[64, 4]"});
  require_error([&] { kc::output_error(W, W.narrow(1, 0, 3), H); }, {"output_error", "[64, 3]"});
}

TEST_CASE("configs describe themselves and stats serialize", "[compress]") {
  CHECK(ratio(0.5).describe() == "50%");
  CHECK(ratio(0.625).describe() == "62.5%");
  CHECK(n_of_m(2, 4).describe() == "2:4");
  kc::LayerStats stats;
  stats.sparsity = 0.5;
  stats.cholesky_retries = 2;
  auto j = stats.to_json();
  CHECK(j.at("sparsity").get<double>() == 0.5);
  CHECK(j.at("cholesky_retries").get<int64_t>() == 2);
  CHECK(j.contains("damping"));
  auto W = load("W");
  CHECK(kc::output_error(W, W, load("H")) == 0);
}

namespace {

struct SweepCase {
  std::string name;
  bool unstructured_mask = false, nm = false, quantize = false, grouped = false;
};

}  // namespace

TEST_CASE("the inverse-Hessian factor is the references' upper Cholesky factor of (H + damp I)^-1, as close to fp64", "[compress]") {
  // The fixture's H (128 columns: four even panels), a random one of 301 (uneven panels) and one of 3.
  auto fixture = load("H");
  auto x = at::randn({900, 301}, at::TensorOptions().dtype(at::kFloat)) * at::linspace(0.1, 3, 301);
  auto small = at::tensor({4.0f, 1.0f, 0.5f, 1.0f, 3.0f, 0.2f, 0.5f, 0.2f, 2.0f}).reshape({3, 3});
  for (const auto& [name, H] : std::vector<std::pair<std::string, Tensor>>{
           {"fixture", fixture}, {"random 301", at::matmul(x.t(), x) / 900}, {"3 x 3", small}}) {
    INFO(name);
    const double percdamp = 0.01;
    auto factor = kc::detail::inverse_hessian_factor(H, percdamp);
    REQUIRE(factor.retries == 0);
    const auto& U = factor.upper;
    CHECK(at::equal(U, at::triu(U)));
    CHECK((at::diag(U) > 0).all().item<bool>());
    // The references' route in fp32 and the exact factor (fp64) of the same damped matrix.
    auto damped = H.clone();
    damped.diagonal().add_(percdamp * at::mean(at::diag(H)).item<double>());
    auto references = at::linalg_cholesky(at::cholesky_inverse(at::linalg_cholesky(damped)), /*upper=*/true);
    auto d64 = damped.to(at::kDouble);
    auto exact = at::linalg_cholesky(at::cholesky_inverse(at::linalg_cholesky(d64)), /*upper=*/true);
    const double ours_error = ((U.to(at::kDouble) - exact).norm() / exact.norm()).item<double>();
    const double references_error = ((references.to(at::kDouble) - exact).norm() / exact.norm()).item<double>();
    WARN(name << ": relative error against fp64 " << ours_error << ", the references' route " << references_error);
    CHECK(ours_error <= 1e-5);
    CHECK(ours_error <= 2 * references_error + 1e-7);
    // U^T U (H + damp I) = I.
    auto product = at::matmul(at::matmul(U.t().to(at::kDouble), U.to(at::kDouble)), d64);
    CHECK((product - at::eye(H.size(0), product.options())).abs().max().item<double>() <= 1e-3);
  }
}

TEST_CASE("mirroring an upper triangle gives the ATen reference's bits and the finiteness check sees every NaN", "[compress]") {
  using kick::compress::detail::all_finite;
  at::manual_seed(5);
  for (const int64_t n : {1, 63, 64, 65, 130}) {
    INFO(n);
    auto h = at::randn({n, n});  // the lower triangle is garbage to be ignored, as syrk leaves it
    auto mirrored = kick::compress::detail::symmetric_from_upper(h);
    CHECK(at::equal(mirrored, kick::compress::detail::symmetric_from_upper_reference(h)));
    CHECK(at::equal(mirrored, mirrored.t()));
    CHECK(at::equal(at::triu(mirrored), at::triu(h)));
    CHECK(all_finite(h));
    for (const float bad : {NAN, INFINITY, -INFINITY}) {
      auto spoiled = h.clone();
      spoiled[n - 1][n / 2] = bad;
      CHECK_FALSE(all_finite(spoiled));
    }
  }
  // Finite elements whose sum overflows: still finite.
  CHECK(all_finite(at::full({4, 4}, 3e38f)));
  CHECK_FALSE(all_finite(at::full({4, 4}, 3e38f).index_put_({0, 0}, NAN)));
}

TEST_CASE("the OBS sweep kernel gives the bits of its one-op-per-column reference", "[compress]") {
  // Real statistics from the fixtures: W [rows, 128] and the Cholesky factor of its damped H^-1.
  auto W = load("W");
  auto H = load("H");
  auto factor = kick::compress::detail::inverse_hessian_factor(H, 0.01);
  const int64_t i1 = 16, count = 48;  // a block that is not the first: its own diagonal block of Hinv
  auto hinv = factor.upper.narrow(0, i1, count).narrow(1, i1, count);
  // All rows (whole panels of 8 for the kernel), and 61 of them (the last panel part empty).
  for (const int64_t rows : {W.size(0), W.size(0) - 3}) {
    auto block = W.narrow(0, 0, rows).narrow(1, i1, count).contiguous();
    auto per_row = kick::compress::detail::find_grid_params(W.narrow(0, 0, rows), 4, false);
    std::vector<kick::compress::detail::GridParams> groups;
    for (int64_t c = 0; c < count; c += 16) groups.push_back(kick::compress::detail::find_grid_params(block.narrow(1, c, 16), 3, true));
    for (const auto& c : std::vector<SweepCase>{{"prune", true, false, false, false},
                                                {"2:4", false, true, false, false},
                                                {"quantize per row", false, false, true, false},
                                                {"quantize groups", false, false, true, true},
                                                {"prune + quantize", true, false, true, true},
                                                {"2:4 + quantize", false, true, true, false}}) {
      INFO(c.name << ", " << rows << " rows");
      auto make = [&] {
        kick::compress::detail::ObsSweep sweep;
        sweep.block = block.clone();
        sweep.hinv = hinv;
        if (c.unstructured_mask) sweep.mask = kick::compress::detail::lowest_k_per_row(block.abs().reshape({1, -1}), block.numel() / 2).reshape(block.sizes());
        if (c.nm) {
          sweep.mask = at::zeros(block.sizes(), at::kBool);
          sweep.nm_n = 2;
          sweep.nm_m = 4;
        }
        for (int64_t i = 0; c.quantize && i < count; ++i) sweep.grids.push_back(c.grouped ? &groups[i / 16] : &per_row);
        return sweep;
      };
      auto fast_in = make(), reference_in = make();
      auto fast = kick::compress::detail::obs_sweep_cpu(fast_in);
      auto reference = kick::compress::detail::obs_sweep_reference(reference_in);
      CHECK(at::equal(fast.values, reference.values));
      CHECK(at::equal(fast.errors, reference.errors));
      if (c.quantize) CHECK(at::equal(fast.codes, reference.codes));
      if (fast_in.mask.defined()) CHECK(at::equal(fast_in.mask, reference_in.mask));
      CHECK(at::allclose(fast.losses, reference.losses, 1e-5, 1e-9));
      if (c.nm) require_n_of_m(fast_in.mask, 2, 4);
      // The dispatcher picks the kernel for fp32 CPU blocks.
      auto dispatched_in = make();
      CHECK(at::equal(kick::compress::detail::obs_sweep(dispatched_in).values, fast.values));
    }
  }
  kick::compress::detail::ObsSweep bad;
  bad.block = W.narrow(1, i1, count).contiguous();
  bad.hinv = hinv.narrow(0, 0, 8);
  require_error([&] { kick::compress::detail::obs_sweep_cpu(bad); }, {"obs_sweep", "hinv", "[48, 48]"});
}

TEST_CASE("selecting the k lowest scores equals a stable sort's first k, ties and NaN included", "[compress]") {
  using kick::compress::detail::lowest_k_by_sort;
  using kick::compress::detail::lowest_k_per_row;
  at::manual_seed(7);
  // Small integers: most scores tie, so the tie-break by position decides.
  auto ties = at::randint(0, 5, {6, 40}, at::kFloat);
  auto distinct = at::rand({3, 1000});
  auto with_nan = distinct.clone();
  with_nan[0][3] = NAN;
  with_nan[1].fill_(NAN);
  auto signed_zero = at::zeros({2, 10});
  signed_zero[0][4] = -0.0;
  for (const auto& scores : {ties, distinct, with_nan, signed_zero}) {
    for (int64_t k : {int64_t{0}, int64_t{1}, scores.size(1) / 3, scores.size(1) / 2, scores.size(1) - 1, scores.size(1)}) {
      INFO("k " << k << " of " << scores.size(1));
      CHECK(at::equal(lowest_k_per_row(scores, k), lowest_k_by_sort(scores, k)));
    }
  }
  CHECK(lowest_k_per_row(ties, 13).sum(1).eq(13).all().item<bool>());
  // fp64 scores take at::kthvalue instead of the nth_element kernel: the same selection, NaN included.
  CHECK(at::equal(lowest_k_per_row(with_nan.to(at::kDouble), 500), lowest_k_by_sort(with_nan, 500)));
  CHECK(at::equal(lowest_k_per_row(ties.to(at::kDouble), 13), lowest_k_by_sort(ties, 13)));
  CHECK(at::equal(lowest_k_per_row(distinct.to(at::kDouble), 400), lowest_k_by_sort(distinct, 400)));
}

TEST_CASE("the one-pass per-row pruning kernel gives the ATen chain's weight and mask bits", "[compress]") {
  using kick::compress::detail::lowest_k_per_row;
  using kick::compress::detail::prune_lowest_per_row_cpu;
  at::manual_seed(11);
  // Signed weights over several octaves with exact zeros, negative zeros and heavy ties (small integers), and a
  // column scale with zero and tied entries, so that the tie-break by position decides often.
  auto spread = at::randn({24, 576}) * at::exp(at::randn({24, 576}));
  spread.narrow(1, 0, 40).fill_(0.0);
  spread.narrow(1, 40, 40).fill_(-0.0);
  auto ties = at::randint(-4, 5, {16, 96}, at::kFloat);
  auto scale_for = [](int64_t columns) {
    auto scale = at::sqrt(at::rand({columns}) * 3);
    scale.narrow(0, 0, columns / 8).fill_(0.0);
    scale.narrow(0, columns / 8, columns / 8).fill_(1.0);
    return scale;
  };
  for (const auto& weight : {spread, ties}) {
    const int64_t columns = weight.size(1);
    for (const bool scaled : {true, false}) {
      const auto scale = scaled ? scale_for(columns) : Tensor();
      const auto scores = scaled ? weight.abs() * scale.view({1, -1}) : weight.abs();
      for (int64_t k : {int64_t{0}, int64_t{1}, columns / 3, columns / 2, columns - 1, columns}) {
        INFO("k " << k << " of " << columns << (scaled ? ", scaled" : ", |w| only"));
        auto fused = prune_lowest_per_row_cpu(weight, scale, k);
        REQUIRE(fused.has_value());
        auto mask = lowest_k_per_row(scores, k);
        auto pruned = weight.masked_fill(mask, 0);
        CHECK(at::equal(fused->mask, mask));
        CHECK(at::equal(fused->weight, pruned));
        CHECK(at::equal(fused->weight.signbit(), pruned.signbit()));  // unpruned -0 stays -0, pruned entries are +0
        CHECK(fused->stats.sparsity == kick::compress::detail::fraction_zero(pruned));
        CHECK(fused->stats.error == Approx(kick::compress::detail::relative_weight_error(weight, pruned)).epsilon(1e-5).margin(1e-12));
      }
    }
  }
  // Through the public functions: wanda and per-row magnitude take the kernel and keep the twin's fixture bits
  // (checked in "magnitude and Wanda masks equal the twin's"); NaN scores and other dtypes are left to the reference.
  auto with_nan = spread.clone();
  with_nan[3][7] = NAN;
  CHECK_FALSE(prune_lowest_per_row_cpu(with_nan, Tensor(), 100).has_value());
  CHECK_FALSE(prune_lowest_per_row_cpu(spread.to(at::kBFloat16), Tensor(), 100).has_value());
  CHECK(at::equal(kc::wanda_prune(with_nan, at::ones({576}), ratio(0.5)).mask,
                  kick::compress::detail::lowest_k_by_sort(with_nan.abs(), 288)));
  require_error([&] { prune_lowest_per_row_cpu(spread, at::ones({5}), 10); }, {"column_scale", "[5]", "[576]"});
}

TEST_CASE("the radix select finds the k-th smallest as a sort does, and long rows select through it", "[compress]") {
  using kick::compress::detail::kth_smallest_radix;
  at::manual_seed(8);
  // Signed values over many octaves, infinities, signed zeros and heavy ties (one value fills a bucket).
  auto mixed = at::randn({40000}) * at::exp(at::randn({40000}) * 4);
  mixed.narrow(0, 0, 3000).fill_(0.0);
  mixed.narrow(0, 3000, 2000).fill_(-0.0);
  mixed[5000] = INFINITY;
  mixed[5001] = -INFINITY;
  mixed.narrow(0, 6000, 9000).fill_(1.5f);
  auto one_value = at::full({5000}, -2.25f);
  for (const auto& values : {mixed, one_value, at::rand({33000})}) {
    auto sorted = std::get<0>(at::sort(values));
    const int64_t n = values.numel();
    for (int64_t k : {int64_t{1}, int64_t{2}, n / 10, n / 2, n / 2 + 1, n - 1, n}) {
      INFO("k " << k << " of " << n);
      CHECK(kth_smallest_radix(values.data_ptr<float>(), n, k) == sorted[k - 1].item<float>());
    }
  }
  require_error([&] { kth_smallest_radix(mixed.data_ptr<float>(), 10, 11); }, {"kth_smallest_radix", "k = 11"});
  // Rows of 2^15 columns and more go through it inside lowest_k_per_row; ties still break by position.
  auto rows = at::stack({mixed.narrow(0, 0, 36000), at::randint(0, 3, {36000}, at::kFloat)});
  for (int64_t k : {int64_t{1}, int64_t{9000}, int64_t{18000}, int64_t{35999}})
    CHECK(at::equal(kick::compress::detail::lowest_k_per_row(rows, k), kick::compress::detail::lowest_k_by_sort(rows, k)));
}

TEST_CASE("the output-error norms through the Gram factor, the Gram matrix and the sample agree with fp64", "[compress]") {
  namespace kd = kick::compress::detail;
  at::manual_seed(13);
  // Columns over four orders of magnitude, as activations with outlier channels.
  auto x = at::randn({600, 150}) * at::exp(at::linspace(0, 9, 150)).view({1, -1});
  auto m = at::randn({40, 150});
  const double expected = at::matmul(x.to(at::kDouble), m.to(at::kDouble).t()).pow(2).sum().item<double>();
  auto by_factor = kd::sample_gram(x);
  REQUIRE(by_factor.lower.defined());
  REQUIRE(by_factor.lower.is_contiguous());  // what the strmm path takes; else the reference would run twice
  CHECK(at::equal(by_factor.lower, at::tril(by_factor.lower)));
  CHECK(kd::squared_output_norm(m, x, by_factor) == Approx(expected).epsilon(1e-4));
  CHECK(kd::squared_norm_times_lower(m, by_factor.lower) ==
        Approx(kd::squared_norm_times_lower_reference(m, by_factor.lower)).epsilon(1e-5));
  CHECK(kd::squared_output_norm(m, x, kd::gram(x)) == Approx(expected).epsilon(1e-4));
  CHECK(kd::squared_output_norm(m, x, Tensor()) == Approx(expected).epsilon(1e-4));
  // The caller's m is left as it was.
  auto before = m.clone();
  kd::squared_norm_times_lower(m, by_factor.lower);
  CHECK(at::equal(m, before));
  // A dead channel makes x^T x singular: no factor, the Gram matrix itself, the same norm.
  auto dead = x.clone();
  dead.select(1, 5).zero_();
  const double expected_dead = at::matmul(dead.to(at::kDouble), m.to(at::kDouble).t()).pow(2).sum().item<double>();
  auto singular = kd::sample_gram(dead);
  CHECK_FALSE(singular.lower.defined());
  REQUIRE(singular.full.defined());
  CHECK(kd::squared_output_norm(m, dead, singular) == Approx(expected_dead).epsilon(1e-4));
  // A bf16 sample goes through a bf16 GEMM, as the forward that produced it: close to the exact norm.
  auto x_bf16 = x.to(at::kBFloat16);
  const double expected_bf16 = at::matmul(x_bf16.to(at::kDouble), m.to(at::kDouble).t()).pow(2).sum().item<double>();
  CHECK(kd::squared_output_norm(m, x_bf16, Tensor()) == Approx(expected_bf16).epsilon(2e-3));
  require_error([&] { kd::squared_norm_times_lower(m, by_factor.lower.narrow(0, 0, 10)); },
                {"squared_norm_times_lower", "[10, 150]"});
}

TEST_CASE("the fused channel sums equal the ATen reference, non-finite rows left out, any thread count", "[compress]") {
  using kick::compress::detail::channel_sums_cpu;
  using kick::compress::detail::channel_sums_reference;
  at::manual_seed(12);
  auto x = at::randn({700, 150}) * at::exp(at::randn({1, 150}));  // 700 rows: 5 full chunks and a partial one
  x[3][7] = NAN;
  x[400][0] = INFINITY;
  x[699][149] = -INFINITY;
  for (auto dtype : {at::kFloat, at::kBFloat16}) {
    auto input = x.to(dtype);
    auto expected = channel_sums_reference(input);
    CHECK(expected.finite_rows == 697);
    INFO(kick::dtype_name(dtype));
    const int threads = at::get_num_threads();
    at::set_num_threads(1);
    auto one_thread = channel_sums_cpu(input);
    at::set_num_threads(2);
    auto got = channel_sums_cpu(input);
    at::set_num_threads(threads);
    CHECK(got.finite_rows == expected.finite_rows);
    CHECK(at::allclose(got.squares, expected.squares, 1e-5, 1e-5));
    CHECK(at::allclose(got.absolutes, expected.absolutes, 1e-5, 1e-5));
    CHECK(at::equal(got.squares, one_thread.squares));
    CHECK(at::equal(got.absolutes, one_thread.absolutes));
  }
  // InputStatistics takes the kernel for moments alone and the ATen path beside a Hessian: the same moments.
  kc::InputStatistics fused(150, false, at::kCPU), beside_hessian(150, true, at::kCPU);
  for (int64_t start : {int64_t{0}, int64_t{250}}) {
    fused.add(x.narrow(0, start, 450 - start / 2 * 2).to(at::kBFloat16));
    beside_hessian.add(x.narrow(0, start, 450 - start / 2 * 2).to(at::kBFloat16));
  }
  CHECK(fused.nonfinite() == beside_hessian.nonfinite());
  CHECK(at::allclose(fused.squared_norms(), beside_hessian.squared_norms(), 1e-5, 1e-6));
  CHECK(at::allclose(fused.mean_abs(), beside_hessian.mean_abs(), 1e-5, 1e-6));
  require_error([&] { channel_sums_cpu(x.t()); }, {"channel_sums_cpu", "contiguous", "[150, 700]"});
}

TEST_CASE("statistics without channel moments refuse to give them and the upper-triangle Hessian is the full one", "[compress]") {
  at::manual_seed(11);
  auto X = at::randn({300, 150});  // 150 columns: the reference's blocks of 128 and 22
  kc::InputStatistics stats(150, true, at::kCPU, /*channel_moments=*/false);
  stats.add(X.narrow(0, 0, 120));
  stats.add(X.narrow(0, 120, 180));
  auto full = at::matmul(X.t(), X) * (2.0 / 300);
  auto h = stats.hessian();
  CHECK(max_abs_diff(h, full) <= 1e-5 * full.abs().max().item<double>());
  CHECK(at::equal(h, h.t()));  // mirrored exactly
  h.zero_();  // a copy: changing it leaves the accumulator alone
  CHECK(max_abs_diff(stats.hessian(), full) <= 1e-5 * full.abs().max().item<double>());
  require_error([&] { stats.squared_norms(); }, {"squared_norms", "channel moments"});
  require_error([&] { stats.mean_abs(); }, {"mean_abs", "channel moments"});
}

TEST_CASE("the fused RTN kernel gives the bits of its ATen reference", "[compress]") {
  auto W = load("W").clone();
  W[3].zero_();           // an all-zero row: the grid falls back to [-1, 1]
  W[5] = W[5].abs();      // all positive: the range is widened to include 0
  W[7].fill_(-0.25);      // constant negative
  for (int bits : {2, 3, 4, 8}) {
    for (int64_t group : {int64_t{-1}, int64_t{16}}) {
      for (bool symmetric : {false, true}) {
        INFO("bits " << bits << " group " << group << (symmetric ? " sym" : " asym"));
        kc::QuantizerConfig config{bits, group, symmetric};
        kc::QuantizedWeight fast_packed, reference_packed;
        auto fast = kick::compress::detail::rtn_groups_cpu(W, config, &fast_packed);
        auto reference = kick::compress::detail::rtn_groups_reference(W, config, &reference_packed);
        CHECK(at::equal(fast, reference));
        CHECK(at::equal(fast_packed.codes, reference_packed.codes));
        CHECK(at::equal(fast_packed.scales, reference_packed.scales.contiguous()));
        CHECK(at::equal(fast_packed.zeros, reference_packed.zeros.contiguous()));
        CHECK(at::equal(fast_packed.g_idx, reference_packed.g_idx));
      }
    }
  }
}

TEST_CASE("round_half_even rounds as torch.round over the whole float range", "[compress]") {
  std::vector<float> values = {0.5f, 1.5f, 2.5f, -0.5f, -1.5f, -2.5f, 0.49999997f, 3.7f, -3.7f, 4194303.5f,
                               4194304.5f, -4194304.5f, 6291457.5f, 8388609.0f, 1e20f, -1e20f, 0.0f, -0.0f};
  auto t = at::tensor(values);
  auto expected = at::round(t);
  for (size_t i = 0; i < values.size(); ++i) {
    INFO(values[i]);
    const float got = kick::compress::detail::round_half_even(values[i]);
    CHECK(got == expected[i].item<float>());
    CHECK(std::signbit(got) == std::signbit(expected[i].item<float>()));
  }
  CHECK(std::isnan(kick::compress::detail::round_half_even(NAN)));
}

TEST_CASE("the BLAS symmetric rank-k update agrees with its ATen reference and with fp64", "[compress]") {
  at::manual_seed(12);
  for (int64_t in : {1, 5, 150, 300}) {
    auto x = at::randn({257, in});
    auto start = at::randn({in, in});
    start = start + start.t();
    auto blas = start.clone(), reference = start.clone();
    kc::detail::syrk_upper(blas, x, 0.25, 0.5);
    kc::detail::syrk_upper_reference(reference, x, 0.25, 0.5);
    auto exact = (start.to(at::kDouble) * 0.5 + at::matmul(x.t().to(at::kDouble), x.to(at::kDouble)) * 0.25).triu();
    const double scale = exact.abs().max().item<double>();
    INFO("in = " << in << ", BLAS ssyrk used: " << kc::detail::syrk_uses_blas());
    CHECK(max_abs_diff(blas.triu(), exact) <= 1e-5 * scale);
    CHECK(max_abs_diff(reference.triu(), exact) <= 1e-5 * scale);
  }
  // A transposed (non-contiguous) input and a first batch (beta = 0 on a zero accumulator).
  auto x = at::randn({64, 40}).t();
  auto h = at::zeros({64, 64}), expected = at::zeros({64, 64});
  kc::detail::syrk_upper(h, x, 1.0, 0.0);
  kc::detail::syrk_upper_reference(expected, x, 1.0, 0.0);
  CHECK(max_abs_diff(h.triu(), expected.triu()) <= 1e-5 * expected.abs().max().item<double>());
  CHECK(at::equal(kc::detail::gram(x), kc::detail::gram(x).t()));
  require_error([&] { kc::detail::syrk_upper(h, at::zeros({8, 63}), 1.0, 0.0); }, {"syrk_upper", "[8, 63]", "[64, 64]"});
}

TEST_CASE("the layer task list keeps every task's predecessor first and stops at the first failure", "[compress]") {
  for (bool side_by_side : {false, true}) {
    INFO("side by side: " << side_by_side);
    // Predecessors that take longer than their followers: a follower must still start after them.
    std::vector<std::atomic<int>> done(6);
    std::vector<int> seen(6, -1);
    std::vector<kc::detail::ListedTask> tasks;
    for (int i = 0; i < 6; ++i) {
      const int64_t after = i < 2 ? -1 : i - 2;
      tasks.push_back({after, [&, i, after] {
        if (i < 2) std::this_thread::sleep_for(std::chrono::milliseconds(20));
        seen[i] = after < 0 ? 1 : done[after].load();
        done[i].store(1);
      }});
    }
    kc::detail::run_task_list(tasks, side_by_side);
    for (int i = 0; i < 6; ++i) CHECK(seen[i] == 1);
    // A failing task: its follower never runs and the error comes back.
    std::atomic<int> followers{0};
    std::vector<kc::detail::ListedTask> failing = {
        {-1, [] { kick::fail("task 0 failed on purpose"); }},
        {0, [&] { ++followers; }},
        {-1, [] {}}};
    require_error([&] { kc::detail::run_task_list(failing, side_by_side); }, {"task 0 failed on purpose"});
    CHECK(followers.load() == 0);
  }
  std::vector<kc::detail::ListedTask> backwards = {{1, [] {}}, {-1, [] {}}};
  require_error([&] { kc::detail::run_task_list(backwards, false); }, {"run_task_list", "task 0 waits for task 1"});
}

TEST_CASE("a prepared Hessian shared by several Linears gives the bits of each solving alone", "[compress]") {
  auto W = load("W"), H = load("H");
  const int64_t in = W.size(1);
  auto dead = H.clone();
  dead.index_put_({at::indexing::Slice(), 3}, 0);
  dead.index_put_({3, at::indexing::Slice()}, 0);  // a column that never saw input
  auto second = W.flip(0).contiguous() * 0.5;     // another Linear reading the same input
  for (const auto& hessian : {H, dead}) {
    kc::SparseGptConfig sparsegpt;
    sparsegpt.sparsity = ratio(0.5);
    const auto shared = kc::prepare_hessian(hessian, sparsegpt.percdamp);
    for (const auto& weight : {W, second}) {
      CHECK(at::equal(kc::sparsegpt_prune(weight, shared, sparsegpt).weight, kc::sparsegpt_prune(weight, hessian, sparsegpt).weight));
    }
    for (bool act_order : {false, true}) {
      kc::GptqConfig gptq;
      gptq.quant.group_size = 16;
      gptq.act_order = act_order;
      const auto prepared = kc::prepare_hessian(hessian, gptq.percdamp, act_order);
      CHECK(prepared.any_dead == (hessian.data_ptr() == dead.data_ptr()));
      for (const auto& weight : {W, second}) {
        auto a = kc::gptq_quantize(weight, prepared, gptq), b = kc::gptq_quantize(weight, hessian, gptq);
        CHECK(at::equal(a.weight, b.weight));
        CHECK(at::equal(a.packed.codes, b.packed.codes));
        CHECK(at::equal(a.packed.g_idx, b.packed.g_idx));
      }
    }
  }
  const auto prepared = kc::prepare_hessian(H, 0.01);
  kc::GptqConfig act;
  act.act_order = true;
  require_error([&] { kc::gptq_quantize(W, prepared, act); }, {"gptq_quantize", "act_order = false"});
  kc::SparseGptConfig damped;
  damped.percdamp = 0.1;
  require_error([&] { kc::sparsegpt_prune(W, prepared, damped); }, {"sparsegpt_prune", "percdamp = 0.01", "0.1"});
  require_error([&] { kc::sparsegpt_prune(W.narrow(1, 0, in - 1), prepared, kc::SparseGptConfig{}); },
                {"sparsegpt_prune", std::to_string(in) + " input columns", std::to_string(in - 1)});
  require_error([&] { kc::prepare_hessian(H.narrow(0, 0, 3), 0.01); }, {"prepare_hessian", "square"});
}
