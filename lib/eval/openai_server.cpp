// lib/eval/openai_server.cpp: the OpenAI-compatible server (kick/openai_server.hpp): request validation
// that names the offending field, chat/completion handlers over kick::generate under one mutex, and the
// cpp-httplib layer (bind, background thread, stop).
#include "kick/openai_server.hpp"

#include <httplib.h>
#include <nlohmann/json.hpp>

#include <atomic>
#include <chrono>
#include <ctime>
#include <mutex>
#include <optional>
#include <random>
#include <thread>

#include "kick/core.hpp"

namespace kick::serve {

using nlohmann::json;

ChatPrompt encode_chat(const Model& model, const std::vector<ChatMessage>& messages, const std::string& template_name) {
  ChatPrompt prompt;
  const std::string name = template_name.empty() ? default_chat_template(model.vocab()) : template_name;
  prompt.text = apply_chat_template(name, messages);
  prompt.ids = model.tokenizer().encode(prompt.text, model.tokenizer().add_bos_default());
  prompt.stops = chat_template_stops(name);
  return prompt;
}

std::string openai_finish_reason(const std::string& kick_reason) {
  return kick_reason == "length" ? "length" : "stop";
}

namespace {

// A request the client got wrong: answered with `status` and an OpenAI-shaped error naming `param`.
struct BadRequest {
  std::string message;
  std::string param;  // empty: null
  int status = 400;
  std::string code;   // empty: null
};

[[noreturn]] void reject(std::string message, std::string param, std::string code = "") {
  throw BadRequest{std::move(message), std::move(param), 400, std::move(code)};
}

std::string dump(const json& value) { return value.dump(-1, ' ', false, json::error_handler_t::replace); }

HttpResponse error_response(int status, const std::string& message, const std::string& type,
                            const std::string& param, const std::string& code) {
  json error = {{"message", message}, {"type", type}, {"param", nullptr}, {"code", nullptr}};
  if (!param.empty()) error["param"] = param;
  if (!code.empty()) error["code"] = code;
  return {status, dump(json{{"error", error}})};
}

const char* type_name(const json& value) {
  if (value.is_null()) return "null";
  if (value.is_boolean()) return "boolean";
  if (value.is_number_integer()) return "integer";
  if (value.is_number()) return "number";
  if (value.is_string()) return "string";
  if (value.is_array()) return "array";
  return "object";
}

json parse_object(const std::string& body) {
  json request;
  try {
    request = json::parse(body);
  } catch (const json::exception& e) {  // parse_error, and out_of_range for numbers past double
    reject(fmt::format("request body is not valid JSON ({})", e.what()), "");
  }
  if (!request.is_object()) reject(fmt::format("request body must be a JSON object, got {}", type_name(request)), "");
  return request;
}

// A field that is absent or null yields nullopt.
const json* field(const json& request, const char* name) {
  auto it = request.find(name);
  if (it == request.end() || it->is_null()) return nullptr;
  return &*it;
}

std::optional<int64_t> optional_integer(const json& request, const char* name, int64_t minimum) {
  const json* value = field(request, name);
  if (!value) return std::nullopt;
  if (!value->is_number_integer()) reject(fmt::format("{}: expected an integer, got {}", name, type_name(*value)), name);
  if (value->is_number_unsigned()) {
    const auto u = value->get<uint64_t>();
    if (u > static_cast<uint64_t>(INT64_MAX)) reject(fmt::format("{}: {} is too large", name, u), name);
  }
  const auto v = value->get<int64_t>();
  if (v < minimum) reject(fmt::format("{}: must be >= {}, got {}", name, minimum, v), name);
  return v;
}

std::optional<double> optional_number(const json& request, const char* name, double low, double high,
                                      bool low_open) {
  const json* value = field(request, name);
  if (!value) return std::nullopt;
  if (!value->is_number()) reject(fmt::format("{}: expected a number, got {}", name, type_name(*value)), name);
  const double v = value->get<double>();
  if (v > high || v < low || (low_open && v == low)) {
    reject(fmt::format("{}: must be in {}{}, {}], got {}", name, low_open ? "(" : "[", low, high, v), name);
  }
  return v;
}

std::vector<std::string> stop_strings(const json& request) {
  const json* value = field(request, "stop");
  if (!value) return {};
  if (value->is_string()) return {value->get<std::string>()};
  if (!value->is_array()) reject(fmt::format("stop: expected a string or an array of strings, got {}", type_name(*value)), "stop");
  if (value->size() > 16) reject(fmt::format("stop: at most 16 stop strings, got {}", value->size()), "stop");
  std::vector<std::string> stops;
  for (size_t i = 0; i < value->size(); ++i) {
    const auto& s = (*value)[i];
    if (!s.is_string()) reject(fmt::format("stop[{}]: expected a string, got {}", i, type_name(s)), "stop");
    stops.push_back(s.get<std::string>());
  }
  return stops;
}

// Options this server does not implement are refused rather than silently ignored.
void refuse_unsupported(const json& request) {
  if (const json* n = field(request, "n")) {
    if (!n->is_number_integer() || n->get<int64_t>() != 1) reject("n: only n = 1 is supported", "n");
  }
  if (const json* stream = field(request, "stream")) {
    if (!stream->is_boolean()) reject(fmt::format("stream: expected a boolean, got {}", type_name(*stream)), "stream");
    if (stream->get<bool>()) reject("stream: streaming is not supported by kick serve", "stream");
  }
  if (const json* logprobs = field(request, "logprobs")) {
    if (!(logprobs->is_boolean() && !logprobs->get<bool>())) reject("logprobs: not supported by kick serve", "logprobs");
  }
  for (const char* name : {"suffix", "tools", "functions"}) {
    if (field(request, name)) reject(fmt::format("{}: not supported by kick serve", name), name);
  }
  if (const json* model = field(request, "model")) {
    if (!model->is_string()) reject(fmt::format("model: expected a string, got {}", type_name(*model)), "model");
  }
}

// OpenAI content: a string, or an array of {"type": "text", "text": ...} parts (concatenated).
std::string message_content(const json& message, size_t index) {
  const std::string where = fmt::format("messages[{}].content", index);
  auto it = message.find("content");
  if (it == message.end()) reject(where + ": required", "messages");
  if (it->is_string()) return it->get<std::string>();
  if (!it->is_array()) reject(fmt::format("{}: expected a string or an array of text parts, got {}", where, type_name(*it)), "messages");
  std::string text;
  for (size_t p = 0; p < it->size(); ++p) {
    const auto& part = (*it)[p];
    const auto type = part.is_object() ? part.find("type") : part.end();
    if (!part.is_object() || type == part.end() || *type != "text" || !part.contains("text") || !part["text"].is_string()) {
      reject(fmt::format("{}[{}]: expected {{\"type\": \"text\", \"text\": string}}", where, p), "messages");
    }
    text += part["text"].get<std::string>();
  }
  return text;
}

std::vector<ChatMessage> chat_messages(const json& request) {
  auto it = request.find("messages");
  if (it == request.end() || it->is_null()) reject("messages: required", "messages");
  if (!it->is_array()) reject(fmt::format("messages: expected an array, got {}", type_name(*it)), "messages");
  if (it->empty()) reject("messages: must hold at least one message", "messages");
  std::vector<ChatMessage> messages;
  for (size_t i = 0; i < it->size(); ++i) {
    const auto& m = (*it)[i];
    if (!m.is_object()) reject(fmt::format("messages[{}]: expected an object, got {}", i, type_name(m)), "messages");
    auto role = m.find("role");
    if (role == m.end() || !role->is_string()) reject(fmt::format("messages[{}].role: expected a string", i), "messages");
    std::string r = role->get<std::string>();
    if (r == "developer") r = "system";  // OpenAI's newer name for the system role
    if (r != "system" && r != "user" && r != "assistant") {
      reject(fmt::format("messages[{}].role: '{}' is not system, user or assistant", i, r), "messages");
    }
    messages.push_back({r, message_content(m, i)});
  }
  return messages;
}

}  // namespace

struct OpenAIServer::Impl {
  Impl(const Model& m, ServerOptions o) : model(m), options(std::move(o)) {}

  const Model& model;
  ServerOptions options;
  std::string name, template_name;
  std::mutex generation_mutex;
  std::atomic<uint64_t> request_counter{0};
  int64_t created = 0;
  std::string id_prefix;

  httplib::Server http;
  std::thread thread;
  std::atomic<bool> listen_returned{false};
  int bound_port = 0;

  struct Completion {
    Generation generation;
    int64_t prompt_tokens = 0;
  };

  SamplingOptions sampling(const json& request, std::vector<std::string> extra_stops) const {
    SamplingOptions s;
    s.max_new_tokens = optional_integer(request, "max_tokens", 1)
                           .value_or(optional_integer(request, "max_completion_tokens", 1).value_or(options.default_max_tokens));
    s.temperature = optional_number(request, "temperature", 0.0, 2.0, false).value_or(0.0);
    s.top_p = optional_number(request, "top_p", 0.0, 1.0, true).value_or(1.0);
    // top_k is not OpenAI's, but vLLM's and llama.cpp's servers take it, and LLM-KICK's sampling (transformers'
    // default top_k = 50) needs it to be reproduced through a server. 0 or absent: off.
    s.top_k = optional_integer(request, "top_k", 0).value_or(0);
    if (auto seed = field(request, "seed")) {
      if (!seed->is_number_integer()) reject(fmt::format("seed: expected an integer, got {}", type_name(*seed)), "seed");
      s.seed = seed->is_number_unsigned() ? seed->get<uint64_t>() : static_cast<uint64_t>(seed->get<int64_t>());
    } else {
      s.seed = std::random_device{}();  // OpenAI: without a seed, samples differ from call to call
    }
    s.stop = stop_strings(request);
    for (auto& stop : extra_stops) s.stop.push_back(std::move(stop));
    return s;
  }

  Completion run(const std::vector<int32_t>& ids, const SamplingOptions& sampling_options, const char* prompt_field) {
    const int64_t context = model.config().max_position;
    const auto prompt_tokens = static_cast<int64_t>(ids.size());
    if (prompt_tokens == 0) reject(fmt::format("{}: encodes to no tokens", prompt_field), prompt_field);
    if (prompt_tokens >= context) {
      reject(fmt::format("{}: the prompt has {} tokens, and the model's context is {}", prompt_field, prompt_tokens, context),
             prompt_field, "context_length_exceeded");
    }
    std::lock_guard<std::mutex> lock(generation_mutex);
    auto generations = generate(model, {ids}, sampling_options);
    return {std::move(generations.at(0)), prompt_tokens};
  }

  json envelope(const char* object, const char* prefix, const Completion& c) {
    const auto completion_tokens = static_cast<int64_t>(c.generation.tokens.size());
    return json{{"id", fmt::format("{}-{}{}", prefix, id_prefix, ++request_counter)},
                {"object", object},
                {"created", static_cast<int64_t>(std::time(nullptr))},
                {"model", name},
                {"usage", {{"prompt_tokens", c.prompt_tokens},
                           {"completion_tokens", completion_tokens},
                           {"total_tokens", c.prompt_tokens + completion_tokens}}}};
  }

  HttpResponse chat_completions(const std::string& body) {
    const json request = parse_object(body);
    refuse_unsupported(request);
    auto messages = chat_messages(request);
    ChatPrompt prompt;
    try {
      prompt = encode_chat(model, messages, template_name);
    } catch (const Error& e) {  // e.g. a system message after the first under vicuna_v1.1
      reject(fmt::format("messages: {}", e.what()), "messages");
    }
    auto c = run(prompt.ids, sampling(request, prompt.stops), "messages");
    json response = envelope("chat.completion", "chatcmpl", c);
    response["choices"] = json::array({json{{"index", 0},
                                            {"message", {{"role", "assistant"}, {"content", c.generation.text}}},
                                            {"logprobs", nullptr},
                                            {"finish_reason", openai_finish_reason(c.generation.finish_reason)}}});
    return {200, dump(response)};
  }

  HttpResponse completions(const std::string& body) {
    const json request = parse_object(body);
    refuse_unsupported(request);
    if (const json* echo = field(request, "echo"); echo && !(echo->is_boolean() && !echo->get<bool>())) {
      reject("echo: not supported by kick serve", "echo");
    }
    const json* prompt = field(request, "prompt");
    if (!prompt) reject("prompt: required", "prompt");
    std::string text;
    if (prompt->is_string()) {
      text = prompt->get<std::string>();
    } else if (prompt->is_array() && prompt->size() == 1 && (*prompt)[0].is_string()) {
      text = (*prompt)[0].get<std::string>();
    } else {
      reject(fmt::format("prompt: expected a string (or an array of one string), got {}", type_name(*prompt)), "prompt");
    }
    auto ids = model.tokenizer().encode(text, model.tokenizer().add_bos_default());
    auto c = run(ids, sampling(request, {}), "prompt");
    json response = envelope("text_completion", "cmpl", c);
    response["choices"] = json::array({json{{"index", 0},
                                            {"text", c.generation.text},
                                            {"logprobs", nullptr},
                                            {"finish_reason", openai_finish_reason(c.generation.finish_reason)}}});
    return {200, dump(response)};
  }

  json model_entry() const {
    return json{{"id", name}, {"object", "model"}, {"created", created}, {"owned_by", "kick"}};
  }

  HttpResponse route(const std::string& method, const std::string& path, const std::string& body) {
    static const std::string kModelPrefix = "/v1/models/";
    if (path == "/v1/chat/completions" || path == "/v1/completions") {
      if (method != "POST") return error_response(405, fmt::format("{} takes POST, not {}", path, method), "invalid_request_error", "", "");
      return path == "/v1/completions" ? completions(body) : chat_completions(body);
    }
    if (path == "/v1/models" || path.rfind(kModelPrefix, 0) == 0) {
      if (method != "GET") return error_response(405, fmt::format("{} takes GET, not {}", path, method), "invalid_request_error", "", "");
      if (path == "/v1/models") return {200, dump(json{{"object", "list"}, {"data", json::array({model_entry()})}})};
      const std::string id = path.substr(kModelPrefix.size());
      if (id != name) return error_response(404, fmt::format("model '{}' is not served here (this server serves '{}')", id, name),
                                            "invalid_request_error", "model", "model_not_found");
      return {200, dump(model_entry())};
    }
    return error_response(404, fmt::format("unknown endpoint {} {} (kick serve has POST /v1/chat/completions, "
                                           "POST /v1/completions, GET /v1/models)", method, path),
                          "invalid_request_error", "", "");
  }
};

OpenAIServer::OpenAIServer(const Model& model, ServerOptions options)
    : impl_(std::make_unique<Impl>(model, std::move(options))) {
  auto& d = *impl_;
  d.name = d.options.model_name.empty() ? model.source() : d.options.model_name;
  d.template_name = d.options.chat_template.empty() ? default_chat_template(model.vocab()) : d.options.chat_template;
  apply_chat_template(d.template_name, {{"user", "x"}});  // an unknown template name fails here, not per request
  if (d.options.default_max_tokens < 1) fail("kick serve: default max tokens must be >= 1, got {}", d.options.default_max_tokens);
  d.created = static_cast<int64_t>(std::time(nullptr));
  d.id_prefix = fmt::format("{:x}-", static_cast<uint64_t>(d.created));

  d.http.set_payload_max_length(d.options.max_body_bytes);
  // httplib's default also sets SO_REUSEPORT, which lets a second server bind the same port and take half
  // the connections; SO_REUSEADDR alone still allows a restart while old connections sit in TIME_WAIT.
  d.http.set_socket_options([](socket_t sock) {
    int yes = 1;
    setsockopt(sock, SOL_SOCKET, SO_REUSEADDR, &yes, sizeof(yes));
  });
  auto serve = [this](const httplib::Request& request, httplib::Response& response) {
    const double start = monotonic_seconds();
    HttpResponse r = handle(request.method, request.path, request.body);
    response.status = r.status;
    response.set_content(r.body, "application/json");
    if (impl_->options.log) {
      impl_->options.log(fmt::format("{} {} {} {:.2f}s", request.method, request.path, r.status, monotonic_seconds() - start));
    }
  };
  d.http.Get(".*", serve);
  d.http.Post(".*", serve);
  // Errors httplib answers itself (other methods, oversized bodies) get an OpenAI-shaped body too.
  d.http.set_error_handler([](const httplib::Request& request, httplib::Response& response) {
    if (!response.body.empty()) return;
    response.set_content(error_response(response.status, fmt::format("HTTP {} for {} {}", response.status, request.method, request.path),
                                        "invalid_request_error", "", "").body,
                         "application/json");
  });
}

OpenAIServer::~OpenAIServer() { stop(); }

HttpResponse OpenAIServer::handle(const std::string& method, const std::string& path, const std::string& body) {
  // The HTTP boundary: every failure becomes an answer to the client (and a log line), none escapes.
  try {
    return impl_->route(method, path, body);
  } catch (const BadRequest& e) {
    return error_response(e.status, e.message, "invalid_request_error", e.param, e.code);
  } catch (const std::exception& e) {
    if (impl_->options.log) impl_->options.log(fmt::format("{} {} failed: {}", method, path, e.what()));
    return error_response(500, e.what(), "server_error", "", "");
  }
}

int OpenAIServer::start() {
  auto& d = *impl_;
  if (d.thread.joinable()) fail("kick serve: the server is already started on port {}", d.bound_port);
  int port = d.options.port;
  if (port < 0 || port > 65535) fail("kick serve: --port must be in [0, 65535], got {}", port);
  if (port == 0) {
    port = d.http.bind_to_any_port(d.options.host);
  } else if (!d.http.bind_to_port(d.options.host, port)) {
    port = -1;
  }
  if (port <= 0) fail("kick serve: cannot listen on {}:{} (address in use, or not an address of this machine)", d.options.host, d.options.port);
  d.bound_port = port;
  d.listen_returned = false;
  d.thread = std::thread([&d] {
    d.http.listen_after_bind();
    d.listen_returned = true;
  });
  // stop() is a no-op until the accept loop runs, so wait for it (bounded: 10 s).
  for (int i = 0; i < 10000 && !d.http.is_running() && !d.listen_returned; ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
  }
  if (!d.http.is_running()) {
    d.http.stop();
    if (d.thread.joinable()) d.thread.join();
    fail("kick serve: the server on {}:{} did not start", d.options.host, port);
  }
  return port;
}

void OpenAIServer::stop() {
  auto& d = *impl_;
  d.http.stop();
  if (d.thread.joinable()) d.thread.join();
}

bool OpenAIServer::running() const { return impl_->http.is_running(); }
int OpenAIServer::port() const { return impl_->bound_port; }
std::string OpenAIServer::url() const {
  const std::string& host = impl_->options.host;
  return fmt::format(host.find(':') == std::string::npos ? "http://{}:{}" : "http://[{}]:{}", host, impl_->bound_port);
}
const std::string& OpenAIServer::model_name() const { return impl_->name; }

}  // namespace kick::serve
