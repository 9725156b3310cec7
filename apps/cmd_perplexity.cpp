// kick perplexity: WikiText-2 (or any text file) perplexity by the SparseGPT/GPTQ/Wanda protocol.
#include <cstdio>

#include "common.hpp"

namespace kick::app {

void register_perplexity(CLI::App& app) {
  auto* cmd = app.add_subcommand("perplexity", "perplexity on WikiText-2 raw test (non-overlapping windows)");
  struct Args {
    ModelArgs model;
    std::string data = "wikitext2/wiki.test.raw";
    std::string format = "wikitext";
    int64_t seqlen = 0;
    int64_t max_windows = 0;
    std::string json_out;
  };
  auto args = std::make_shared<Args>();
  add_model_options(*cmd, args->model);
  cmd->add_option("--data", args->data, "text file (relative paths are under KICK_DATA)")->capture_default_str();
  cmd->add_option("--format", args->format, "wikitext (rows joined with \\n\\n, as HF datasets) or plain")
      ->check(CLI::IsMember({"wikitext", "plain"}))->capture_default_str();
  cmd->add_option("--seqlen", args->seqlen, "window length (default: min(2048, model context))");
  cmd->add_option("--max-windows", args->max_windows, "score only the first N windows (0: all)")->capture_default_str();
  cmd->add_option("--json", args->json_out, "also write the result as JSON to this file");
  cmd->callback([args] {
    Model model = load_model(args->model);
    std::filesystem::path path = args->data;
    if (path.is_relative() && !std::filesystem::exists(path)) path = data_path(path);
    std::string text = read_file(path);
    if (args->format == "wikitext") text = wikitext_join(text);
    const int64_t seqlen = args->seqlen > 0 ? args->seqlen : std::min<int64_t>(2048, model.config().max_position);
    const double t0 = monotonic_seconds();
    auto ids = model.tokenizer().encode(text, model.tokenizer().add_bos_default());
    const double tokenize_s = monotonic_seconds() - t0;
    const int64_t all_windows = static_cast<int64_t>(ids.size()) / seqlen;
    Progress progress("perplexity", args->max_windows > 0 ? std::min(args->max_windows, all_windows) : all_windows, "windows");
    auto result = perplexity(model, ids, seqlen, args->max_windows, [&](int64_t done, int64_t) { progress.update(done); });
    const double seconds = progress.elapsed_seconds();
    std::printf("data          %s\n", path.string().c_str());
    std::printf("tokens        %lld (tokenized in %s)\n", (long long)result.total_tokens, format_duration(tokenize_s).c_str());
    std::printf("windows       %lld of %lld x %lld tokens (%lld predictions scored)\n", (long long)result.windows,
                (long long)all_windows, (long long)seqlen, (long long)result.scored_tokens);
    std::printf("mean NLL      %.6f\nperplexity    %.4f\ntime          %s (%.0f tokens/s)\n", result.mean_nll,
                result.perplexity, format_duration(seconds).c_str(),
                double(result.windows * seqlen) / std::max(seconds, 1e-9));
    if (!args->json_out.empty()) {
      nlohmann::json j = {{"model", model.source()},        {"data", path.string()},
                          {"seqlen", seqlen},               {"windows", result.windows},
                          {"all_windows", all_windows},     {"total_tokens", result.total_tokens},
                          {"scored_tokens", result.scored_tokens}, {"mean_nll", result.mean_nll},
                          {"perplexity", result.perplexity}, {"dtype", dtype_name(model.options().dtype)},
                          {"seconds", seconds},             {"kick_version", version_string()}};
      write_file_atomically(args->json_out, j.dump(2) + "\n");
    }
  });
}

}  // namespace kick::app
