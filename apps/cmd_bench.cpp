// kick bench runtime: prefill and decode tokens/s of a model next to this machine's GEMM throughput,
// measured in the same run, reported as a fraction of the GEMM-bound limit.
// kick bench mmlu: kick's few-shot MMLU scorer (shared prefix cache, batches) against LLM-KICK's way (each
// whole prompt alone through generate()), on the same questions in the same run, as a ratio; with --full, the
// same run first times kick's scorer over the whole test set (issue 4's 30-minute target).
#include <cstdio>
#include <sstream>

#include "common.hpp"
#include "kick/evaluate.hpp"

#include <functional>

#include <ATen/Parallel.h>

namespace kick::app {

namespace {

// Best-of-N GEMM throughput in GFLOP/s for an [n x n] x [n x n] product in `dtype`, by the route the model's products
// take (bf16 through fp32 on a CPU without a native bf16 GEMM, conversions included).
double measure_gemm_gflops(int64_t n, at::ScalarType dtype, const at::Device& device, int repeats) {
  at::NoGradGuard no_grad;
  auto opts = at::TensorOptions().dtype(dtype).device(device);
  auto a = at::randn({n, n}, opts), b = at::randn({n, n}, opts), c = at::empty({n, n}, opts);
  const bool through_fp32 = bf16_gemm_through_fp32(a);
  auto product = [&] {
    if (through_fp32) c.copy_(matmul_through_fp32(a, b));
    else at::mm_out(c, a, b);
  };
  product();  // warm-up
  double best = 1e30;
  for (int i = 0; i < repeats; ++i) {
    const double t0 = monotonic_seconds();
    product();
    if (device.is_cuda()) c.cpu();
    best = std::min(best, monotonic_seconds() - t0);
  }
  return 2.0 * double(n) * double(n) * double(n) / best / 1e9;
}

// FLOPs per token at a mean attention context (2 x the parameters of each Linear, QK^T and PV over `context` keys
// in every layer): the layers' Linears and attention for every token, the head for
// head_share of the tokens (1 when decoding; 1 / prompt length for a prefill, which computes the logits of the
// last position only, in kick and in llama.cpp alike).
double flops_per_token(const ModelConfig& c, double context, double head_share) {
  const double linear = double(c.hidden_size) * double(c.num_heads * c.head_dim) * 2 +
                        double(c.hidden_size) * double(c.num_kv_heads * c.head_dim) * 2 +
                        double(c.hidden_size) * double(c.intermediate_size) * 3;
  const double head = double(c.hidden_size) * double(c.vocab_size);
  const double attention = 4.0 * double(c.num_heads * c.head_dim) * context;
  return 2.0 * (linear * double(c.num_layers) + head * head_share) + attention * double(c.num_layers);
}

void register_bench_mmlu(CLI::App& bench) {
  auto* cmd = bench.add_subcommand("mmlu", "few-shot MMLU: kick's prefix-cached batches vs per-question generate (LLM-KICK)");
  struct Args {
    ModelArgs model;
    std::string protocol = eval::kProtocolLlmKick;
    std::string subjects = "abstract_algebra,high_school_geography,astronomy";
    int64_t limit = 40;
    int64_t batch_size = 8;
    bool full = false;
    std::string json_out;
  };
  auto args = std::make_shared<Args>();
  add_model_options(*cmd, args->model);
  cmd->add_option("--protocol", args->protocol, "llm-kick or strict")->capture_default_str();
  cmd->add_option("--subjects", args->subjects, "comma-separated MMLU subjects")->capture_default_str();
  cmd->add_option("--limit", args->limit, "first N test questions per subject (0: all)")->capture_default_str();
  cmd->add_option("--batch-size", args->batch_size, "kick's rows per batch")->capture_default_str();
  cmd->add_flag("--full", args->full, "first time kick's scorer on every test question of every subject");
  cmd->add_option("--json", args->json_out, "write the figures as JSON");
  cmd->callback([args] {
    const eval::TaskSpec spec = eval::load_task("mmlu", args->protocol);
    const eval::MmluData data = eval::load_mmlu(spec.data_file("data"));
    std::vector<std::string> subjects;
    std::stringstream list(args->subjects);
    for (std::string s; std::getline(list, s, ',');) {
      if (!data.test.count(s)) fail("--subjects: no MMLU subject '{}' in {}", s, spec.data_file("data").string());
      subjects.push_back(s);
    }
    if (subjects.empty()) fail("--subjects: none given");
    if (args->batch_size < 1) fail("--batch-size: expected >= 1, got {}", args->batch_size);
    Model model = load_model(args->model);
    struct Method {
      const char* name;
      std::function<std::vector<eval::MmluPrediction>(const std::vector<eval::MmluExample>&,
                                                       const std::vector<eval::MmluExample>&)>
          run;
      double seconds = 0;
      int64_t correct = 0;
      std::vector<char> predicted;
    };
    std::vector<Method> methods = {
        {"kick (prefix cache, batched)",
         [&](const auto& shots, const auto& qs) { return eval::score_mmlu_subject(model, spec, shots, qs, args->batch_size, true); },
         0, 0, {}},
        {"kick without prefix cache",
         [&](const auto& shots, const auto& qs) { return eval::score_mmlu_subject(model, spec, shots, qs, args->batch_size, false); },
         0, 0, {}},
        {"per-question (LLM-KICK's way)",
         [&](const auto& shots, const auto& qs) { return eval::score_mmlu_subject_per_question(model, spec, shots, qs); },
         0, 0, {}},
    };
    nlohmann::json full_report = nullptr;
    if (args->full) {
      // The whole test set through kick's scorer alone, timed end to end: prompt building and tokenizing included.
      Progress progress("bench mmlu --full", static_cast<int64_t>(data.test_count()), "questions");
      int64_t total = 0, correct = 0;
      const double t0 = monotonic_seconds();
      for (const auto& subject : data.subjects) {
        const auto& qs = data.test.at(subject);
        const auto predictions = eval::score_mmlu_subject(model, spec, eval::mmlu_subject_shots(spec, data, subject), qs, args->batch_size, true);
        for (size_t i = 0; i < qs.size(); ++i) correct += predictions[i].predicted == qs[i].answer;
        total += static_cast<int64_t>(qs.size());
        progress.update(total);
      }
      const double seconds = monotonic_seconds() - t0;
      progress.finish();
      full_report = {{"questions", total}, {"subjects", data.subjects.size()}, {"seconds", seconds},
                     {"accuracy", double(correct) / double(total)}};
      std::printf("full test set, kick (prefix cache, batched): %lld questions of %zu subjects in %.1f s (%s), accuracy %.4f\n",
                  (long long)total, data.subjects.size(), seconds, format_duration(seconds).c_str(), double(correct) / double(total));
    }
    int64_t questions = 0;
    for (const auto& subject : subjects) {
      const auto& test = data.test.at(subject);
      const auto n = args->limit > 0 ? std::min<size_t>(test.size(), static_cast<size_t>(args->limit)) : test.size();
      const std::vector<eval::MmluExample> qs(test.begin(), test.begin() + static_cast<long>(n));
      const std::vector<eval::MmluExample> shots = eval::mmlu_subject_shots(spec, data, subject);
      questions += static_cast<int64_t>(n);
      for (auto& m : methods) {
        const double t0 = monotonic_seconds();
        const auto predictions = m.run(shots, qs);
        m.seconds += monotonic_seconds() - t0;
        for (size_t i = 0; i < n; ++i) {
          m.predicted.push_back(predictions[i].predicted);
          m.correct += predictions[i].predicted == qs[i].answer;
        }
      }
      std::fprintf(stderr, "bench mmlu: %s (%zu questions) done\n", subject.c_str(), n);
    }
    const Method& reference = methods.back();
    nlohmann::json report = {{"model", args->model.model}, {"protocol", args->protocol}, {"subjects", subjects},
                             {"questions", questions}, {"threads", at::get_num_threads()}, {"dtype", args->model.dtype},
                             {"batch_size", args->batch_size}, {"methods", nlohmann::json::array()}, {"full_test_set", full_report}};
    std::printf("%-32s %9s %10s %9s %12s %10s\n", "method", "seconds", "questions/s", "accuracy", "same letter", "speed-up");
    for (const auto& m : methods) {
      int64_t same = 0;
      for (size_t i = 0; i < m.predicted.size(); ++i) same += m.predicted[i] == reference.predicted[i];
      const double speedup = reference.seconds / m.seconds;
      std::printf("%-32s %9.1f %10.2f %9.4f %6lld/%-5lld %9.2fx\n", m.name, m.seconds, double(questions) / m.seconds,
                  double(m.correct) / double(questions), (long long)same, (long long)questions, speedup);
      report["methods"].push_back({{"method", m.name}, {"seconds", m.seconds}, {"questions_per_s", double(questions) / m.seconds},
                                   {"accuracy", double(m.correct) / double(questions)}, {"same_letter_as_reference", same},
                                   {"speedup_over_reference", speedup}});
    }
    std::printf("speed-up = per-question seconds / method seconds, same questions, same run\n");
    if (args->full) {
      const double per_question_seconds = reference.seconds / double(questions);
      const double full_seconds = full_report["seconds"].get<double>();
      const double projected = per_question_seconds * double(full_report["questions"].get<int64_t>());
      full_report["per_question_projected_seconds"] = projected;
      report["full_test_set"] = full_report;
      // A lower bound: the sample's subjects are shorter than the test set's average (professional_law, the
      // histories), and per-question generation pays for every prompt token.
      std::printf("per-question (LLM-KICK's way) at its sample rate over the full test set: at least %s projected, %.1fx "
                  "kick's measured %s\n",
                  format_duration(projected).c_str(), projected / full_seconds, format_duration(full_seconds).c_str());
    }
    if (!args->json_out.empty()) write_file_atomically(args->json_out, report.dump(2) + "\n");
  });
}

}  // namespace

void register_bench(CLI::App& app) {
  auto* bench = app.add_subcommand("bench", "benchmarks measured against this machine's limits");
  bench->require_subcommand(1);
  auto* cmd = bench->add_subcommand("runtime", "prefill/decode tokens/s vs the GEMM-bound limit");
  struct Args {
    ModelArgs model;
    std::string dtypes = "fp32,bf16";
    int64_t prompt_tokens = 256;
    int64_t decode_tokens = 32;
    int64_t gemm_size = 2048;
    int repeats = 3;
    std::string json_out;
  };
  auto args = std::make_shared<Args>();
  add_model_options(*cmd, args->model);
  cmd->add_option("--dtypes", args->dtypes, "comma-separated dtypes to measure")->capture_default_str();
  cmd->add_option("--prompt-tokens", args->prompt_tokens, "prefill length")->capture_default_str();
  cmd->add_option("--decode-tokens", args->decode_tokens, "decoded tokens after the prompt")->capture_default_str();
  cmd->add_option("--gemm-size", args->gemm_size, "square GEMM size for the throughput probe")->capture_default_str();
  cmd->add_option("--repeats", args->repeats, "best of N")->capture_default_str();
  cmd->add_option("--json", args->json_out, "write the figures as JSON");
  cmd->callback([args] {
    nlohmann::json report = {{"model", args->model.model}, {"threads", 0}, {"runs", nlohmann::json::array()}};
    std::stringstream list(args->dtypes);
    std::string dtype;
    std::printf("%-5s %14s %12s %12s %10s %12s %10s\n", "dtype", "GEMM GFLOP/s", "prefill t/s", "limit t/s",
                "fraction", "decode t/s", "fraction");
    while (std::getline(list, dtype, ',')) {
      ModelArgs margs = args->model;
      margs.dtype = dtype;
      Model model = load_model(margs);
      report["threads"] = at::get_num_threads();
      const auto device = model.options().device;
      const double gflops = measure_gemm_gflops(args->gemm_size, model.options().dtype, device, args->repeats);
      auto ids = at::randint(3, model.config().vocab_size, {1, args->prompt_tokens}, at::TensorOptions().dtype(at::kLong));
      const int64_t capacity = args->prompt_tokens + args->decode_tokens + 1;
      double prefill_best = 1e30, decode_best = 1e30;
      for (int r = 0; r < args->repeats + 1; ++r) {  // the first round warms up
        auto cache = model.make_cache(1, capacity);
        double t0 = monotonic_seconds();
        auto logits = model.forward_last(ids.to(device), &cache);
        logits.cpu();
        double prefill = monotonic_seconds() - t0;
        auto next = logits.argmax(-1).view({1, 1});
        t0 = monotonic_seconds();
        for (int64_t i = 0; i < args->decode_tokens; ++i) {
          logits = model.forward_last(next, &cache);
          next = logits.argmax(-1).view({1, 1});
        }
        next.cpu();
        double decode = monotonic_seconds() - t0;
        if (r > 0) {
          prefill_best = std::min(prefill_best, prefill);
          decode_best = std::min(decode_best, decode);
        }
      }
      const auto& c = model.config();
      const double prefill_tps = double(args->prompt_tokens) / prefill_best;
      const double decode_tps = double(args->decode_tokens) / decode_best;
      const double prefill_flops = flops_per_token(c, double(args->prompt_tokens + 1) / 2.0, 1.0 / double(args->prompt_tokens));
      const double decode_flops = flops_per_token(c, double(args->prompt_tokens) + double(args->decode_tokens) / 2.0, 1.0);
      const double prefill_limit = gflops * 1e9 / prefill_flops;
      const double decode_limit = gflops * 1e9 / decode_flops;
      std::printf("%-5s %14.1f %12.1f %12.1f %10.3f %12.1f %10.3f\n", dtype.c_str(), gflops, prefill_tps,
                  prefill_limit, prefill_tps / prefill_limit, decode_tps, decode_tps / decode_limit);
      report["runs"].push_back({{"dtype", dtype},
                                {"gemm_route", bf16_gemm_through_fp32(model.options().dtype, device) ? "fp32" : "native"},
                                {"gemm_gflops", gflops},
                                {"gemm_size", args->gemm_size},
                                {"prompt_tokens", args->prompt_tokens},
                                {"decode_tokens", args->decode_tokens},
                                {"prefill_tokens_per_s", prefill_tps},
                                {"prefill_limit_tokens_per_s", prefill_limit},
                                {"prefill_fraction_of_limit", prefill_tps / prefill_limit},
                                {"decode_tokens_per_s", decode_tps},
                                {"decode_limit_tokens_per_s", decode_limit},
                                {"decode_fraction_of_limit", decode_tps / decode_limit},
                                {"flops_per_token_prefill", prefill_flops},
                                {"flops_per_token_decode", decode_flops}});
    }
    std::printf("limit = GEMM GFLOP/s / FLOPs per token (2 x linear params + attention at the measured context; the head once per\n"
                "prompt in prefill, once per token in decode)\n");
    if (!args->json_out.empty()) write_file_atomically(args->json_out, report.dump(2) + "\n");
  });
  register_bench_mmlu(*bench);
}

}  // namespace kick::app
