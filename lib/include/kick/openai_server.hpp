// kick/openai_server.hpp: an OpenAI-compatible HTTP server for one model kick loads (library kick_eval):
// POST /v1/chat/completions (the model's chat template), POST /v1/completions, GET /v1/models. One model,
// so generation is serialized by a mutex; requests are validated field by field and a bad one gets
// HTTP 400 with {"error": {"message", "type": "invalid_request_error", "param"}} naming the field.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "kick/model.hpp"

namespace kick::serve {

// A chat rendered for generation: the template's text, its token ids and the stop strings that end the
// assistant's turn. Shared by the server and the local judge so both generate from the same tokens.
struct ChatPrompt {
  std::string text;
  std::vector<int32_t> ids;
  std::vector<std::string> stops;
};
// template_name empty: default_chat_template(model.vocab()). BOS follows the tokenizer's own flag.
ChatPrompt encode_chat(const Model& model, const std::vector<ChatMessage>& messages, const std::string& template_name);

// OpenAI's finish_reason for kick's ("eos" and "stop" -> "stop", "length" -> "length").
std::string openai_finish_reason(const std::string& kick_reason);

struct ServerOptions {
  std::string host = "127.0.0.1";
  int port = 0;                    // 0: the system picks a free port (see OpenAIServer::port())
  std::string model_name;          // the id /v1/models lists and responses carry; empty: the model's source
  std::string chat_template;       // empty: default_chat_template(model.vocab())
  int64_t default_max_tokens = 256;  // when a request gives no max_tokens
  size_t max_body_bytes = 32u << 20;
  // Called with one line per finished request (method, path, status, tokens, seconds); none when unset.
  std::function<void(const std::string&)> log;
};

// What a request answers, with or without sockets.
struct HttpResponse {
  int status = 200;
  std::string body;  // JSON
};

class OpenAIServer {
 public:
  // The model must outlive the server.
  OpenAIServer(const Model& model, ServerOptions options);
  ~OpenAIServer();  // stops and joins
  OpenAIServer(const OpenAIServer&) = delete;
  OpenAIServer& operator=(const OpenAIServer&) = delete;

  // Binds host:port and serves on a background thread; returns the bound port. Throws kick::Error
  // naming host and port when it cannot bind. Connections are accepted from when it returns.
  int start();
  // Stops accepting, lets the request in progress finish, joins the thread. Idempotent; not for signal
  // handlers (see apps/cmd_serve.cpp).
  void stop();
  bool running() const;
  int port() const;
  std::string url() const;  // "http://HOST:PORT"
  const std::string& model_name() const;

  // The routing and handlers without the network (what the HTTP layer calls).
  HttpResponse handle(const std::string& method, const std::string& path, const std::string& body);

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace kick::serve
