// kick generate: greedy or sampled text from a prompt, raw or through a named chat template, streamed.
#include <cstdio>

#include "common.hpp"

namespace kick::app {

void register_generate(CLI::App& app) {
  auto* cmd = app.add_subcommand("generate", "generate text from a prompt or a chat message");
  struct Args {
    ModelArgs model;
    std::string prompt, system, chat_template;
    bool chat = false, no_bos = false;
    SamplingOptions sampling;
  };
  auto args = std::make_shared<Args>();
  args->sampling.max_new_tokens = 128;
  add_model_options(*cmd, args->model);
  cmd->add_option("-p,--prompt", args->prompt, "the prompt (with --chat: the user's message)")->required();
  cmd->add_flag("--chat", args->chat, "wrap the prompt in the model's chat template");
  cmd->add_option("--template", args->chat_template, "chat template: chatml, vicuna_v1.1, llama2, raw (default: the model's)");
  cmd->add_option("--system", args->system, "system message for --chat");
  cmd->add_option("-n,--max-tokens", args->sampling.max_new_tokens, "tokens to generate")->capture_default_str();
  cmd->add_option("--temperature", args->sampling.temperature, "0 = greedy")->capture_default_str();
  cmd->add_option("--top-p", args->sampling.top_p, "nucleus sampling mass")->capture_default_str();
  cmd->add_option("--seed", args->sampling.seed, "sampling seed")->capture_default_str();
  cmd->add_option("--stop", args->sampling.stop, "stop string (repeatable)");
  cmd->add_flag("--no-bos", args->no_bos, "do not add BOS even when the tokenizer asks for it");
  cmd->callback([args] {
    Model model = load_model(args->model);
    std::string text = args->prompt;
    auto sampling = args->sampling;
    if (args->chat) {
      std::string name = args->chat_template.empty() ? default_chat_template(model.vocab()) : args->chat_template;
      std::vector<ChatMessage> messages;
      if (!args->system.empty()) messages.push_back({"system", args->system});
      messages.push_back({"user", args->prompt});
      text = apply_chat_template(name, messages);
      for (auto& s : chat_template_stops(name)) sampling.stop.push_back(s);
    }
    const bool bos = model.tokenizer().add_bos_default() && !args->no_bos;
    auto ids = model.tokenizer().encode(text, bos);
    const double start = monotonic_seconds();
    auto result = generate(model, {ids}, sampling, [](size_t, const std::string& piece) {
      std::fwrite(piece.data(), 1, piece.size(), stdout);
      std::fflush(stdout);
      return true;
    });
    const double seconds = monotonic_seconds() - start;
    std::printf("\n");
    std::fflush(stdout);
    std::fprintf(stderr, "kick: %zu prompt tokens, %zu generated (%s) in %s, %.1f tokens/s\n", ids.size(),
                 result[0].tokens.size(), result[0].finish_reason.c_str(), format_duration(seconds).c_str(),
                 double(result[0].tokens.size()) / std::max(seconds, 1e-9));
  });
}

}  // namespace kick::app
