// Tests of the calibration driver and `kick compress`'s library path on stories260K: every method runs
// layer by layer on real calibration text, exact sparsity and N:M patterns survive the whole model, the
// error ordering holds on real activations, AWQ's folding preserves the function, and saved models
// describe themselves.
#include <catch2/catch.hpp>

#include <ATen/Parallel.h>

#include <cmath>

#include "kick/compress.hpp"
#include "kick/io.hpp"
#include "kick/model.hpp"
#include "test_helpers.hpp"

using namespace kick;
using namespace kick::compress;

namespace {

Model stories() { return Model::load((test::stories260k_dir() / "model.bin").string()); }

CalibrationData small_calibration(const Model& model) {
  CalibrationConfig config;
  config.nsamples = 8;
  config.seqlen = 64;
  config.seed = 3;
  return load_calibration(model.tokenizer(), config);
}

CompressionPlan plan_for(const std::string& method) {
  CompressionPlan plan;
  plan.method = method;
  plan.quant.bits = 4;
  plan.quant.group_size = -1;
  plan.forward_batch = 4;
  return plan;
}

double mean_sample_error(const CompressionReport& report) {
  double sum = 0;
  int n = 0;
  for (const auto& layer : report.layers) {
    for (const auto& [name, stats] : layer["linears"].items()) {
      sum += stats["output_error_sample"].get<double>();
      ++n;
    }
  }
  return sum / n;
}

}  // namespace

TEST_CASE("calibration windows are seeded, in range and reproducible", "[calibration]") {
  Model model = stories();
  auto a = small_calibration(model), b = small_calibration(model);
  CHECK(at::equal(a.windows, b.windows));
  CHECK(a.windows.sizes() == at::IntArrayRef({8, 64}));
  CHECK(a.windows.min().item<int64_t>() >= 0);
  CHECK(a.windows.max().item<int64_t>() < model.config().vocab_size);
  CHECK(a.content_hash.size() == 16);
  CalibrationConfig other;
  other.nsamples = 8;
  other.seqlen = 64;
  other.seed = 4;
  CHECK_FALSE(at::equal(load_calibration(model.tokenizer(), other).windows, a.windows));
  other.source = "/nonexistent/calib.json";
  CHECK_THROWS_WITH(load_calibration(model.tokenizer(), other), Catch::Contains("/nonexistent/calib.json"));
}

TEST_CASE("windows saved by --save-calibration load back as they were, and bad ones are refused", "[calibration]") {
  Model model = stories();
  auto drawn = small_calibration(model);
  const auto dir = test::scratch_dir("saved_windows");
  const std::string path = (dir / "windows.safetensors").string();
  write_safetensors(path, {{"input_ids", drawn.windows}}, {{"seed", "3"}});
  CalibrationConfig config;
  config.source = path;
  config.nsamples = 8;
  config.seqlen = 64;
  auto loaded = load_calibration(model.tokenizer(), config);
  CHECK(at::equal(loaded.windows, drawn.windows));
  CHECK(loaded.seed == 3);
  CHECK(loaded.source == path);
  config.nsamples = 16;
  CHECK_THROWS_WITH(load_calibration(model.tokenizer(), config),
                    Catch::Contains("holds 8 windows of 64 tokens") && Catch::Contains("--nsamples 8 --seqlen 64"));
  config.nsamples = 8;
  write_safetensors(path, {{"input_ids", drawn.windows + model.config().vocab_size}});
  CHECK_THROWS_WITH(load_calibration(model.tokenizer(), config), Catch::Contains("outside this tokenizer's vocabulary"));
  write_safetensors(path, {{"input_ids", drawn.windows.to(at::kFloat)}});
  CHECK_THROWS_WITH(load_calibration(model.tokenizer(), config), Catch::Contains("expected int64 [nsamples, seqlen]"));
  write_safetensors(path, {{"tokens", drawn.windows}});
  CHECK_THROWS_WITH(load_calibration(model.tokenizer(), config), Catch::Contains("no tensor \"input_ids\""));
}

TEST_CASE("pruning the whole model gives exact per-row sparsity and N:M patterns", "[calibration]") {
  for (const std::string method : {"magnitude", "wanda", "sparsegpt"}) {
    for (bool nm : {false, true}) {
      Model model = stories();
      auto calibration = small_calibration(model);
      auto plan = plan_for(method);
      plan.magnitude_per_row = true;
      if (nm) {
        plan.sparsity.n = 2;
        plan.sparsity.m = 4;
      } else {
        plan.sparsity.ratio = 0.5;
      }
      INFO(method << (nm ? " 2:4" : " 50%"));
      auto report = compress_model(model, plan, &calibration);
      // SparseGPT's unstructured mask is chosen per block of columns over all rows (the reference's
      // `tmp <= sorted[int(numel * p)]`, which keeps one extra zero per block): exact per block, not per row.
      const bool per_block = method == "sparsegpt" && !nm;
      CHECK(report.overall_sparsity == Approx(0.5).margin(per_block ? 0.01 : 1e-9));
      for (int64_t l = 0; l < model.num_layers(); ++l) {
        for (const char* name : kLinearNames) {
          auto w = model.layer(l).linear(name);
          if (nm) {
            auto zeros_per_group = (w.view({w.size(0), -1, 4}) == 0).sum(-1);
            CHECK((zeros_per_group == 2).all().item<bool>());
          } else if (!per_block) {
            auto zeros_per_row = (w == 0).sum(1);
            CHECK((zeros_per_row == w.size(1) / 2).all().item<bool>());
          }
        }
      }
    }
  }
}

TEST_CASE("on real activations SparseGPT beats Wanda beats magnitude", "[calibration]") {
  std::map<std::string, double> error;
  for (const std::string method : {"magnitude", "wanda", "sparsegpt"}) {
    Model model = stories();
    auto calibration = small_calibration(model);
    auto plan = plan_for(method);
    plan.sparsity.ratio = 0.5;
    error[method] = mean_sample_error(compress_model(model, plan, &calibration));
  }
  INFO("magnitude " << error["magnitude"] << ", wanda " << error["wanda"] << ", sparsegpt " << error["sparsegpt"]);
  CHECK(error["sparsegpt"] < error["wanda"]);
  CHECK(error["wanda"] < error["magnitude"]);
}

TEST_CASE("GPTQ's layer errors are below RTN's and codes fit the bit width", "[calibration]") {
  Model rtn_model = stories(), gptq_model = stories();
  auto calibration = small_calibration(rtn_model);
  auto rtn_plan = plan_for("rtn");
  rtn_plan.keep_packed = true;
  auto gptq_plan = plan_for("gptq");
  gptq_plan.keep_packed = true;
  // RTN needs no calibration but gets it here so that its error is measured on the same tokens.
  auto rtn = compress_model(rtn_model, rtn_plan, &calibration);
  auto gptq = compress_model(gptq_model, gptq_plan, &calibration);
  CHECK(mean_sample_error(gptq) < mean_sample_error(rtn));
  REQUIRE(gptq.packed.size() == 7u * static_cast<size_t>(gptq_model.num_layers()));
  for (const auto& [name, q] : gptq.packed) {
    CHECK(q.codes.max().item<int64_t>() <= 15);
    auto w = gptq_model.layer(std::stoll(name.substr(13))).linear(name.substr(name.find('.', 13) + 1));
    CHECK(at::allclose(q.dequantize(), w.to(at::kFloat), 1e-5, 1e-6));
  }
}

TEST_CASE("AWQ's folded scales leave the unquantized model's logits unchanged", "[calibration]") {
  Model model = stories();
  auto ids = at::tensor(std::vector<int64_t>{1, 403, 407, 261, 378, 354, 265, 430}, at::TensorOptions().dtype(at::kLong)).view({1, -1});
  auto before = model.forward(ids);
  auto calibration = small_calibration(model);
  auto plan = plan_for("awq");
  plan.awq_scale_only = true;
  auto report = compress_model(model, plan, &calibration);
  auto after = model.forward(ids);
  // fp32 rounding of w*s and x/s only: relative L2 difference well below 1e-5.
  double rel = ((after - before).norm() / before.norm()).item<double>();
  INFO("relative logit change " << rel);
  CHECK(rel < 1e-5);
  // Each Linear's reported error compares it with its folded, unquantized self: only rounding remains,
  // also for up_proj, whose rows carry down_proj's scales (before, that fold itself was reported).
  for (const auto& layer : report.layers)
    for (const auto& [name, stats] : layer["linears"].items()) {
      INFO("layer " << layer["layer"] << " " << name);
      CHECK(stats["output_error_sample"].get<double>() < 1e-9);
    }
  // and the scales really changed the weights (grouped-query attention skips only v->o)
  CHECK(report.layers[0]["awq_attn_in"]["folded"].get<bool>());
  CHECK_FALSE(report.layers[0]["awq_attn_out"]["folded"].get<bool>());
}

TEST_CASE("a compressed model saves with compression.json and loads back", "[calibration]") {
  Model model = stories();
  auto calibration = small_calibration(model);
  auto plan = plan_for("wanda");
  auto report = compress_model(model, plan, &calibration);
  auto dir = test::scratch_dir("compressed") / "wanda50";
  auto metadata = compression_metadata(model, {plan}, {report}, &calibration, "0123456789abcdef");
  save_compressed_model(dir.string(), model, metadata, {}, false);
  Model reloaded = Model::load(dir.string());
  REQUIRE(reloaded.metadata().contains("compression"));
  const auto& saved = reloaded.metadata()["compression"];
  CHECK(saved["method"] == "wanda");
  CHECK(saved["stages"][0]["sparsity"]["ratio"].get<double>() == 0.5);
  CHECK(saved["calibration"]["nsamples"].get<int64_t>() == 8);
  CHECK(saved["kick_version"].get<std::string>() == version_string());
  auto ids = at::tensor(std::vector<int64_t>{1, 403, 407}, at::TensorOptions().dtype(at::kLong)).view({1, -1});
  CHECK(at::equal(reloaded.forward(ids), model.forward(ids)));
  CHECK_THROWS_WITH(save_compressed_model(dir.string(), model, metadata, {}, false), Catch::Contains("exists"));
}

TEST_CASE("a NaN weight is reported as faults of its layer, not hidden", "[calibration]") {
  Model model = stories();
  auto calibration = small_calibration(model);
  for (auto dtype : {at::kFloat, at::kBFloat16}) {
    Model copy = stories();
    copy.layer(1).o_proj[0][0] = NAN;  // o_proj's output feeds the MLP's input and the layer's output
    auto plan = plan_for("wanda");
    plan.calibration_dtype = dtype;
    auto report = compress_model(copy, plan, &calibration);
    bool input_fault = false, output_fault = false;
    for (const auto& fault : report.faults) {
      INFO(fault.dump());
      if (fault["kind"] == "nonfinite_activations" && fault["layer"] == 1 && fault["input"] == "mlp_in") input_fault = true;
      if (fault["kind"] == "nonfinite_layer_output" && fault["layer"] == 1) output_fault = true;
      CHECK(fault["layer"].get<int64_t>() >= 1);  // nothing before the bad layer
    }
    CHECK(input_fault);
    CHECK(output_fault);
  }
}

TEST_CASE("bad compression parameters are refused before any work", "[calibration]") {
  Model model = stories();
  auto plan = plan_for("sparsegpt");
  CHECK_THROWS_WITH(compress_model(model, plan, nullptr), Catch::Contains("needs calibration"));
  plan.method = "prune-it";
  CHECK_THROWS_WITH(plan.validate(64, 172), Catch::Contains("unknown"));
  plan = plan_for("gptq");
  plan.quant.bits = 9;
  CHECK_THROWS_WITH(plan.validate(64, 172), Catch::Contains("bits"));
  plan = plan_for("rtn");
  plan.quant.group_size = 128;
  CHECK_THROWS_WITH(plan.validate(64, 172), Catch::Contains("group"));
  plan = plan_for("wanda");
  plan.sparsity.ratio = 1.0;
  CHECK_THROWS(plan.validate(64, 172));
  plan.sparsity.n = 4;
  plan.sparsity.m = 4;
  CHECK_THROWS(plan.validate(64, 172));
}

TEST_CASE("a bf16 calibration forward keeps fp32 weights and stays close to the fp32 one", "[calibration]") {
  Model fp32_model = stories(), bf16_model = stories();
  auto calibration = small_calibration(fp32_model);
  auto plan = plan_for("sparsegpt");
  plan.sparsity.ratio = 0.5;
  auto fp32_report = compress_model(fp32_model, plan, &calibration);
  plan.calibration_dtype = at::kBFloat16;
  CHECK(plan.to_json()["calibration_dtype"] == "bf16");
  auto bf16_report = compress_model(bf16_model, plan, &calibration);
  int64_t differing = 0, total = 0;
  for (int64_t l = 0; l < fp32_model.num_layers(); ++l) {
    for (const char* name : kLinearNames) {
      const auto& a = fp32_model.layer(l).linear(name);
      const auto& b = bf16_model.layer(l).linear(name);
      CHECK(b.scalar_type() == at::kFloat);
      differing += ((a == 0) != (b == 0)).sum().item<int64_t>();
      total += a.numel();
    }
  }
  // The statistics see activations rounded to bf16: a few near-tie mask positions flip, the layer
  // errors barely move (measured on this model: see docs/performance.md for SmolLM2).
  INFO("mask positions differing: " << differing << " of " << total);
  CHECK(differing > 0);  // the statistics did see bf16 activations
  CHECK(differing < total / 20);
  CHECK(mean_sample_error(bf16_report) == Approx(mean_sample_error(fp32_report)).epsilon(0.05));
  CHECK(bf16_report.overall_sparsity == Approx(fp32_report.overall_sparsity).margin(1e-9));
}

TEST_CASE("the capture pass feeds the hook the inputs a full forward would", "[calibration]") {
  Model model = stories();
  auto calibration = small_calibration(model);
  auto hidden = model.embed(calibration.windows.narrow(0, 0, 2));
  auto attention = model.attention_inputs(2, hidden.size(1), 0);
  std::map<std::string, Tensor> from_forward, from_capture;
  const auto& layer = model.layer(1);
  layer.forward(hidden, attention, nullptr, [&](int64_t, const std::string& name, const Tensor& x) { from_forward[name] = x.clone(); });
  layer.feed_linear_inputs(hidden, attention, [&](int64_t, const std::string& name, const Tensor& x) { from_capture[name] = x.clone(); });
  REQUIRE(from_capture.size() == 7);
  for (const auto& [name, x] : from_forward) CHECK(at::equal(x, from_capture.at(name)));
  auto bf16 = layer.to(at::kBFloat16);
  CHECK(bf16.gate_proj.scalar_type() == at::kBFloat16);
  CHECK(layer.gate_proj.scalar_type() == at::kFloat);
}

namespace {

// Whether this machine's fp32 GEMM gives the same bits on one thread as on two. OpenBLAS's AVX-512 kernels do
// (the thread split never cuts a dot product); its AVX2 kernels on AMD Zen 3 do not (1 ulp apart at M >= 128).
bool gemm_bits_independent_of_threads() {
  const int threads = at::get_num_threads();
  at::manual_seed(0);
  auto a = at::randn({512, 64}), b = at::randn({64, 64});
  at::set_num_threads(1);
  auto one = at::mm(a, b);
  at::set_num_threads(2);
  auto two = at::mm(a, b);
  at::set_num_threads(threads);
  return at::equal(one, two);
}

}  // namespace

TEST_CASE("solving a layer's Linears side by side gives the bits of solving them one after another", "[calibration]") {
  // With one thread the driver solves the Linears (and prepares the shared Hessians) in order; with two,
  // as parallel tasks. The weights, and each Linear's reported output error, solver error, sparsity,
  // damping and Cholesky retries, must match, and two runs on two threads must give the same bits. The forward
  // passes between layers run on all threads: where the BLAS's bits depend on the thread count, one thread and
  // two can only agree within rounding, and the same schedule run twice is what proves the tasks race-free.
  const int threads = at::get_num_threads();
  const bool bits_across_threads = gemm_bits_independent_of_threads();
  INFO("fp32 GEMM bits independent of the thread count: " << bits_across_threads);
  for (const std::string method : {"sparsegpt", "gptq", "wanda", "rtn"}) {
    INFO(method);
    std::vector<Model> models;
    std::vector<CompressionReport> reports;
    for (int t : {1, 2, 2}) {
      at::set_num_threads(t);
      models.push_back(stories());
      auto calibration = small_calibration(models.back());
      auto plan = plan_for(method);
      plan.keep_packed = method == "gptq";
      plan.act_order = method == "gptq";
      reports.push_back(compress_model(models.back(), plan, &calibration));
    }
    at::set_num_threads(threads);
    auto same_bits = [&](size_t x, size_t y) {
      for (int64_t l = 0; l < models[x].num_layers(); ++l)
        for (const char* name : kLinearNames) CHECK(at::equal(models[x].layer(l).linear(name), models[y].layer(l).linear(name)));
      for (size_t l = 0; l < reports[x].layers.size(); ++l) {
        for (auto& [name, stats] : reports[x].layers[l]["linears"].items()) {
          auto other = reports[y].layers[l]["linears"][name];
          CHECK(stats["output_error_sample"] == other["output_error_sample"]);
          CHECK(stats["sparsity"] == other["sparsity"]);
          CHECK(stats["damping"] == other["damping"]);
          CHECK(stats["error"] == other["error"]);
          CHECK(stats["cholesky_retries"] == other["cholesky_retries"]);
        }
      }
      CHECK(reports[x].overall_sparsity == reports[y].overall_sparsity);
    };
    same_bits(1, 2);
    if (bits_across_threads) {
      same_bits(0, 1);
    } else {
      for (int64_t l = 0; l < models[0].num_layers(); ++l) {
        for (const char* name : kLinearNames) {
          const auto& one = models[0].layer(l).linear(name);
          const auto& two = models[1].layer(l).linear(name);
          const double relative = ((one - two).norm() / one.norm()).item<double>();
          INFO("layer " << l << " " << name << ": relative difference " << relative);
          // Seen here: at most 2.2e-6. The bound leaves room for a flipped near-tie in a 64-wide row (one weight
          // of 64, about 1/8 of a row's norm spread over the matrix) but not for a task that read a half-written
          // Hessian or sample, which gives differences of order one.
          CHECK(relative < 0.05);
        }
      }
      CHECK(reports[0].overall_sparsity == reports[1].overall_sparsity);
    }
  }
}
