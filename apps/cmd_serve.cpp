// kick serve: an OpenAI-compatible HTTP server for one model (the server itself is kick::serve::OpenAIServer
// in lib/eval); this file parses options, prints the address and stops gracefully on SIGINT/SIGTERM.
#include <fcntl.h>
#include <poll.h>
#include <unistd.h>

#include <csignal>
#include <cstdio>

#include "common.hpp"
#include "kick/openai_server.hpp"

namespace kick::app {

namespace {

// The signal handler only writes the signal number to a pipe (async-signal-safe); the main thread waits
// on the pipe and stops the server outside the handler.
int g_signal_pipe[2] = {-1, -1};

extern "C" void on_stop_signal(int signal_number) {
  const unsigned char byte = static_cast<unsigned char>(signal_number);
  [[maybe_unused]] ssize_t written = write(g_signal_pipe[1], &byte, 1);
}

void install_stop_handlers() {
  if (pipe(g_signal_pipe) != 0) fail("kick serve: cannot create the signal pipe");
  fcntl(g_signal_pipe[1], F_SETFL, O_NONBLOCK);
  struct sigaction action {};
  action.sa_handler = on_stop_signal;
  sigemptyset(&action.sa_mask);
  action.sa_flags = SA_RESTART;
  sigaction(SIGINT, &action, nullptr);
  sigaction(SIGTERM, &action, nullptr);
}

// Blocks until SIGINT/SIGTERM arrives (returns its number) or the server stops by itself (returns 0).
int wait_for_stop_signal(const serve::OpenAIServer& server) {
  pollfd fd{g_signal_pipe[0], POLLIN, 0};
  while (server.running()) {
    if (poll(&fd, 1, 500) > 0 && (fd.revents & POLLIN)) {
      unsigned char byte = 0;
      if (read(g_signal_pipe[0], &byte, 1) == 1) return byte;
    }
  }
  return 0;
}

}  // namespace

void register_serve(CLI::App& app) {
  auto* cmd = app.add_subcommand("serve", "serve a model over an OpenAI-compatible HTTP API (/v1/chat/completions, /v1/completions, /v1/models)");
  struct Args {
    ModelArgs model;
    serve::ServerOptions server;
    bool quiet = false;
  };
  auto args = std::make_shared<Args>();
  add_model_options(*cmd, args->model);
  cmd->add_option("--host", args->server.host, "address to listen on")->capture_default_str();
  cmd->add_option("--port", args->server.port, "port (0: pick a free one and print it)")->capture_default_str();
  cmd->add_option("--name", args->server.model_name, "model id in /v1/models and responses (default: the --model argument)");
  cmd->add_option("--template", args->server.chat_template, "chat template: chatml, vicuna_v1.1, llama2, raw (default: the model's)");
  cmd->add_option("--max-tokens", args->server.default_max_tokens, "tokens to generate when a request gives no max_tokens")
      ->capture_default_str();
  cmd->add_flag("-q,--quiet", args->quiet, "no line per request on stderr");
  cmd->callback([args] {
    install_stop_handlers();
    Model model = load_model(args->model);
    serve::ServerOptions options = args->server;
    if (options.model_name.empty()) options.model_name = args->model.model;
    if (!args->quiet) options.log = [](const std::string& line) { std::fprintf(stderr, "kick: %s\n", line.c_str()); };
    serve::OpenAIServer server(model, options);
    server.start();
    std::fprintf(stderr, "kick: serving %s on %s\n", server.model_name().c_str(), server.url().c_str());
    std::fflush(stderr);
    const int signal_number = wait_for_stop_signal(server);
    if (signal_number) std::fprintf(stderr, "kick: %s received, stopping\n", signal_number == SIGINT ? "SIGINT" : "SIGTERM");
    server.stop();
    std::fprintf(stderr, "kick: stopped\n");
  });
}

}  // namespace kick::app
