// lib/eval/judge.cpp: the judge client (kick/judge.hpp): the OpenAI-compatible HTTP backend with retries,
// backoff and a concurrency limit, the in-process model backend, and LLM-KICK's judge prompt files.
#include "kick/judge.hpp"
#include "kick/yaml_text.hpp"

#include <httplib.h>
#include <nlohmann/json.hpp>
#include <yaml-cpp/yaml.h>

#include <algorithm>
#include <atomic>
#include <cctype>
#include <chrono>
#include <cmath>
#include <cstdlib>
#include <mutex>
#include <set>
#include <thread>

#include "kick/core.hpp"
#include "kick/model.hpp"
#include "kick/openai_server.hpp"

namespace kick::eval {

using nlohmann::json;

// ============================================================================================ batches

std::vector<JudgeReply> Judge::complete_all(const std::vector<JudgeRequest>& requests, size_t concurrency) {
  if (concurrency == 0) fail("judge {}: concurrency must be >= 1", describe());
  std::vector<JudgeReply> replies(requests.size());
  std::atomic<size_t> next{0};
  auto worker = [&] {
    for (size_t i = next++; i < requests.size(); i = next++) {
      const double start = monotonic_seconds();
      // A backend that throws fails only its own request; the batch goes on and the reason is kept.
      try {
        replies[i] = try_complete(requests[i]);
      } catch (const std::exception& e) {
        replies[i] = JudgeReply{false, "", e.what(), 1, monotonic_seconds() - start};
      } catch (...) {
        replies[i] = JudgeReply{false, "", "unknown exception", 1, monotonic_seconds() - start};
      }
    }
  };
  const size_t workers = std::min(concurrency, requests.size());
  std::vector<std::thread> threads;
  threads.reserve(workers);
  for (size_t w = 1; w < workers; ++w) threads.emplace_back(worker);
  worker();
  for (auto& t : threads) t.join();
  return replies;
}

std::string Judge::complete(const std::string& system, const std::string& user) {
  JudgeReply reply = try_complete({system, user});
  if (!reply.ok) fail("judge {}: {} (after {} attempt{})", describe(), reply.error, reply.attempts, reply.attempts == 1 ? "" : "s");
  return reply.text;
}

std::string JudgeTally::summary() const {
  return fmt::format("{} judged: {} parsed, {} unparseable, {} request{} failed ({} retried)", total, parsed, unparseable,
                     request_failed, request_failed == 1 ? "" : "s", retried);
}

// ============================================================================================ HTTP

namespace {

struct BaseUrl {
  std::string origin;  // "http://host:port"
  std::string path;    // "/v1" (no trailing slash; may be empty)
};

BaseUrl split_base_url(const std::string& url) {
  const bool http = url.rfind("http://", 0) == 0, https = url.rfind("https://", 0) == 0;
  if (!http && !https) fail("judge base URL '{}': expected http://HOST[:PORT][/PATH] or https://...", url);
  const size_t host_start = url.find("://") + 3;
  const size_t slash = url.find('/', host_start);
  BaseUrl out;
  out.origin = url.substr(0, slash);
  out.path = slash == std::string::npos ? "" : url.substr(slash);
  while (!out.path.empty() && out.path.back() == '/') out.path.pop_back();
  if (out.origin.size() == host_start) fail("judge base URL '{}': no host", url);
  if (url.find_first_of("?# ") != std::string::npos) fail("judge base URL '{}': no query, fragment or spaces allowed", url);
  return out;
}

// The server's own error message when it sent an OpenAI-shaped error, else the start of the body.
std::string server_message(const std::string& body) {
  try {
    auto j = json::parse(body);
    if (j.is_object() && j.contains("error")) {
      const auto& e = j["error"];
      if (e.is_object() && e.contains("message") && e["message"].is_string()) return e["message"].get<std::string>();
      if (e.is_string()) return e.get<std::string>();
    }
  } catch (const json::exception&) {
    // Not JSON (a proxy's HTML page, say): the raw start of the body says more than the parse error.
  }
  std::string text = body.substr(0, 200);
  std::replace(text.begin(), text.end(), '\n', ' ');
  return text.empty() ? "(empty body)" : text;
}

void set_timeout(double seconds, const std::function<void(time_t, time_t)>& setter) {
  const auto whole = static_cast<time_t>(seconds);
  setter(whole, static_cast<time_t>(std::lround((seconds - double(whole)) * 1e6)));
}

class HttpJudge final : public Judge {
 public:
  explicit HttpJudge(HttpJudgeOptions options) : options_(std::move(options)), url_(split_base_url(options_.base_url)) {
    if (options_.model.empty()) fail("judge {}: the model name is empty", options_.base_url);
    if (options_.max_attempts < 1) fail("judge {}: max attempts must be >= 1, got {}", options_.base_url, options_.max_attempts);
    if (!(options_.timeout_seconds > 0)) fail("judge {}: timeout must be > 0 s, got {}", options_.base_url, options_.timeout_seconds);
    if (options_.backoff_initial_seconds < 0 || options_.backoff_max_seconds < options_.backoff_initial_seconds) {
      fail("judge {}: backoff must satisfy 0 <= initial ({}) <= max ({})", options_.base_url, options_.backoff_initial_seconds,
           options_.backoff_max_seconds);
    }
    if (options_.max_tokens < 1) fail("judge {}: max tokens must be >= 1, got {}", options_.base_url, options_.max_tokens);
    if (!options_.api_key_env.empty()) {
      const char* key = std::getenv(options_.api_key_env.c_str());
      if (!key || !*key) fail("judge {}: environment variable {} (the API key) is not set or empty", options_.base_url, options_.api_key_env);
      api_key_ = key;
    }
    endpoint_ = url_.path + "/chat/completions";
  }

  std::string describe() const override { return fmt::format("{} at {}", options_.model, options_.base_url); }

  JudgeReply try_complete(const JudgeRequest& request) override {
    const double start = monotonic_seconds();
    JudgeReply reply;
    json messages = json::array();
    if (!request.system.empty()) messages.push_back({{"role", "system"}, {"content", request.system}});
    messages.push_back({{"role", "user"}, {"content", request.user}});
    json body = {{"model", options_.model}, {"messages", messages}, {"max_tokens", options_.max_tokens},
                 {"temperature", options_.temperature}};
    if (options_.top_p) body["top_p"] = *options_.top_p;
    if (options_.seed) body["seed"] = *options_.seed;
    const std::string payload = body.dump(-1, ' ', false, json::error_handler_t::replace);
    httplib::Headers headers;
    if (!api_key_.empty()) headers.emplace("Authorization", "Bearer " + api_key_);

    for (int attempt = 1; attempt <= options_.max_attempts; ++attempt) {
      reply.attempts = attempt;
      double retry_after = 0;
      bool retry = false;
      httplib::Client client(url_.origin);
      client.set_keep_alive(false);
      set_timeout(options_.timeout_seconds, [&](time_t s, time_t us) { client.set_connection_timeout(s, us); });
      set_timeout(options_.timeout_seconds, [&](time_t s, time_t us) { client.set_read_timeout(s, us); });
      set_timeout(options_.timeout_seconds, [&](time_t s, time_t us) { client.set_write_timeout(s, us); });
      auto result = client.Post(endpoint_.c_str(), headers, payload, "application/json");
      if (!result) {
        reply.error = fmt::format("POST {}{}: {}", url_.origin, endpoint_, httplib::to_string(result.error()));
        retry = true;
      } else if (result->status == 200) {
        if (read_content(result->body, reply)) {
          reply.ok = true;
          reply.error.clear();
          break;
        }
        break;  // a malformed success is not transient
      } else {
        reply.error = fmt::format("POST {}{}: HTTP {}: {}", url_.origin, endpoint_, result->status, server_message(result->body));
        retry = result->status == 429 || result->status >= 500;
        if (retry && result->has_header("Retry-After")) {
          retry_after = std::atof(result->get_header_value("Retry-After").c_str());  // seconds form only
        }
      }
      if (!retry || attempt == options_.max_attempts) break;
      double delay = options_.backoff_initial_seconds * std::pow(2.0, attempt - 1);
      delay = std::min(std::max(delay, retry_after), options_.backoff_max_seconds);
      std::this_thread::sleep_for(std::chrono::duration<double>(delay));
    }
    reply.seconds = monotonic_seconds() - start;
    return reply;
  }

 private:
  // choices[0].message.content of an OpenAI chat completion; false with reply.error set otherwise.
  bool read_content(const std::string& body, JudgeReply& reply) const {
    const std::string where = fmt::format("POST {}{}", url_.origin, endpoint_);
    json j;
    try {
      j = json::parse(body);
    } catch (const json::exception& e) {
      reply.error = fmt::format("{}: the reply is not JSON ({})", where, e.what());
      return false;
    }
    if (!j.is_object() || !j.contains("choices") || !j["choices"].is_array() || j["choices"].empty() ||
        !j["choices"][0].is_object() || !j["choices"][0].contains("message") || !j["choices"][0]["message"].is_object()) {
      reply.error = fmt::format("{}: the reply has no choices[0].message: {}", where, server_message(body));
      return false;
    }
    const auto& content = j["choices"][0]["message"]["content"];
    if (!content.is_string()) {
      reply.error = fmt::format("{}: choices[0].message.content is not a string", where);
      return false;
    }
    reply.text = content.get<std::string>();
    return true;
  }

  HttpJudgeOptions options_;
  BaseUrl url_;
  std::string endpoint_;
  std::string api_key_;
};

// ============================================================================================ local

class LocalJudge final : public Judge {
 public:
  LocalJudge(const Model& model, LocalJudgeOptions options) : model_(model), options_(std::move(options)) {
    if (options_.max_tokens < 1) fail("local judge: max tokens must be >= 1, got {}", options_.max_tokens);
    if (options_.chat_template.empty()) options_.chat_template = default_chat_template(model.vocab());
    apply_chat_template(options_.chat_template, {{"user", "x"}});  // unknown names fail now
    if (options_.name.empty()) options_.name = model.source();
  }

  std::string describe() const override { return fmt::format("local {} ({}, greedy)", options_.name, options_.chat_template); }

  JudgeReply try_complete(const JudgeRequest& request) override {
    const double start = monotonic_seconds();
    JudgeReply reply;
    reply.attempts = 1;
    std::vector<ChatMessage> messages;
    if (!request.system.empty()) messages.push_back({"system", request.system});
    messages.push_back({"user", request.user});
    auto prompt = serve::encode_chat(model_, messages, options_.chat_template);
    const int64_t context = model_.config().max_position;
    if (static_cast<int64_t>(prompt.ids.size()) >= context) {
      reply.error = fmt::format("local judge {}: the prompt has {} tokens, and the context is {}", options_.name, prompt.ids.size(), context);
    } else {
      SamplingOptions sampling;
      sampling.max_new_tokens = options_.max_tokens;
      sampling.temperature = 0.0;
      sampling.stop = prompt.stops;
      std::lock_guard<std::mutex> lock(mutex_);
      try {
        reply.text = generate(model_, {prompt.ids}, sampling).at(0).text;
        reply.ok = true;
      } catch (const Error& e) {  // recorded in the reply: one request fails, not the batch
        reply.error = fmt::format("local judge {}: {}", options_.name, e.what());
      }
    }
    reply.seconds = monotonic_seconds() - start;
    return reply;
  }

 private:
  const Model& model_;
  LocalJudgeOptions options_;
  std::mutex mutex_;
};

}  // namespace

std::unique_ptr<Judge> make_http_judge(const HttpJudgeOptions& options) { return std::make_unique<HttpJudge>(options); }

std::unique_ptr<Judge> make_local_judge(const Model& model, const LocalJudgeOptions& options) {
  return std::make_unique<LocalJudge>(model, options);
}

// ============================================================================================ prompts

std::filesystem::path judges_dir() {
  if (const char* env = std::getenv("KICK_JUDGES"); env && *env) return env;
  return std::filesystem::path(KICK_SOURCE_DIR) / "data" / "judges";
}

std::vector<std::string> judge_prompt_names(const std::filesystem::path& dir) {
  if (!std::filesystem::is_directory(dir)) fail("judge prompts folder {} does not exist (set KICK_JUDGES)", dir.string());
  std::vector<std::string> names;
  for (const auto& entry : std::filesystem::directory_iterator(dir)) {
    if (entry.is_regular_file() && entry.path().extension() == ".yaml") names.push_back(entry.path().stem().string());
  }
  std::sort(names.begin(), names.end());
  return names;
}

std::string format_named(std::string_view tmpl, const std::map<std::string, std::string>& vars,
                         const std::map<std::string, std::string>& defaults, std::string_view what) {
  std::string out;
  out.reserve(tmpl.size());
  for (size_t i = 0; i < tmpl.size(); ++i) {
    const char c = tmpl[i];
    if (c == '}') {
      if (i + 1 < tmpl.size() && tmpl[i + 1] == '}') {
        out += '}';
        ++i;
        continue;
      }
      fail("{}: single '}}' at offset {} (write '}}}}' for a literal brace)", what, i);
    }
    if (c != '{') {
      out += c;
      continue;
    }
    if (i + 1 < tmpl.size() && tmpl[i + 1] == '{') {
      out += '{';
      ++i;
      continue;
    }
    const size_t close = tmpl.find('}', i + 1);
    if (close == std::string_view::npos) fail("{}: '{{' at offset {} is never closed", what, i);
    const std::string name(tmpl.substr(i + 1, close - i - 1));
    const bool identifier = !name.empty() && !std::isdigit(static_cast<unsigned char>(name[0])) &&
                            std::all_of(name.begin(), name.end(), [](char ch) { return std::isalnum(static_cast<unsigned char>(ch)) || ch == '_'; });
    if (!identifier) fail("{}: field '{{{}}}' at offset {} is not a plain name", what, name, i);
    if (auto it = vars.find(name); it != vars.end()) {
      out += it->second;
    } else if (auto d = defaults.find(name); d != defaults.end()) {
      out += d->second;
    } else {
      fail("{}: unknown field '{{{}}}' at offset {}", what, name, i);
    }
    i = close;
  }
  return out;
}

namespace {

const std::set<std::string>& reply_formats() {
  static const std::set<std::string> formats = {"llmkick_summary", "llmkick_pair", "rating"};
  return formats;
}

std::string scalar(const YAML::Node& node, const std::string& key, const std::string& file) {
  if (!node.IsScalar()) fail("{}: {}: expected a string", file, key);
  return node.as<std::string>();
}

}  // namespace

JudgePrompt parse_judge_prompt(const std::string& yaml_text, const std::string& file) {
  const YAML::Node root = parse_yaml_text(yaml_text, file);
  if (!root.IsMap()) fail("{}: expected a mapping of keys", file);
  static const std::set<std::string> known = {"name", "description", "source", "derived_from", "reply",
                                              "reference", "system", "template", "defaults"};
  JudgePrompt p;
  p.file = file;
  for (const auto& kv : root) {
    const std::string key = kv.first.as<std::string>();
    if (!known.count(key)) fail("{}: unknown key '{}'", file, key);
  }
  for (const char* key : {"name", "source", "reply", "system", "template"}) {
    if (!root[key]) fail("{}: {}: required", file, key);
  }
  try {
    p.name = scalar(root["name"], "name", file);
    p.source = scalar(root["source"], "source", file);
    p.reply = scalar(root["reply"], "reply", file);
    p.system = scalar(root["system"], "system", file);
    p.user_template = scalar(root["template"], "template", file);
    if (root["description"]) p.description = scalar(root["description"], "description", file);
    if (root["derived_from"]) p.derived_from = scalar(root["derived_from"], "derived_from", file);
    if (const auto defaults = root["defaults"]) {
      if (!defaults.IsMap()) fail("{}: defaults: expected a mapping", file);
      for (const auto& kv : defaults) {
        const std::string key = kv.first.as<std::string>();
        p.defaults[key] = scalar(kv.second, "defaults." + key, file);
      }
    }
    if (const auto reference = root["reference"]) {
      if (!reference.IsMap()) fail("{}: reference: expected a mapping", file);
      for (const auto& kv : reference) {
        const std::string key = kv.first.as<std::string>();
        if (key == "model") {
          p.reference_model = scalar(kv.second, "reference.model", file);
        } else if (key == "temperature") {
          p.reference_temperature = kv.second.as<double>();
        } else if (key == "max_tokens") {
          p.reference_max_tokens = kv.second.as<int64_t>();
        } else {
          fail("{}: reference: unknown key '{}'", file, key);
        }
      }
    }
  } catch (const YAML::Exception& e) {
    fail("{}:{}: {}", file, e.mark.line + 1, e.msg);
  }
  if (!reply_formats().count(p.reply)) fail("{}: reply: '{}' is not llmkick_summary, llmkick_pair or rating", file, p.reply);
  // Every field in the template must be a variable or a default: checked once, here.
  std::map<std::string, std::string> variables;
  for (const auto& name : judge_prompt_variables()) variables[name] = "";
  format_named(p.user_template, variables, p.defaults, file + ": template");
  return p;
}

JudgePrompt load_judge_prompt(const std::string& name, const std::filesystem::path& dir) {
  const auto path = dir / (name + ".yaml");
  if (!std::filesystem::exists(path)) {
    std::string known;
    for (const auto& n : judge_prompt_names(dir)) known += (known.empty() ? "" : ", ") + n;
    fail("unknown judge prompt '{}' in {} (known: {})", name, dir.string(), known);
  }
  JudgePrompt p = parse_judge_prompt(read_file(path), path.string());
  if (p.name != name) fail("{}: name: '{}' differs from the file name '{}'", path.string(), p.name, name);
  return p;
}

const std::vector<std::string>& judge_prompt_variables() {
  static const std::vector<std::string> names = {"question", "answer", "answer_1", "answer_2", "question_1", "question_2"};
  return names;
}

JudgeRequest render_judge_prompt(const JudgePrompt& prompt, const std::map<std::string, std::string>& vars) {
  for (const auto& [name, value] : vars) {
    const auto& known = judge_prompt_variables();
    if (std::find(known.begin(), known.end(), name) == known.end()) fail("{}: '{}' is not a judge prompt variable", prompt.file, name);
  }
  return {prompt.system, format_named(prompt.user_template, vars, prompt.defaults, prompt.file + ": template")};
}

JudgeRequest render_judge_prompt(const JudgePrompt& prompt, const std::string& question, const std::string& answer_1,
                                 const std::string& answer_2) {
  return render_judge_prompt(prompt, {{"question", question}, {"answer_1", answer_1}, {"answer_2", answer_2}});
}

std::string llmkick_mt_judge_for_category(const std::string& category) {
  if (category == "coding") return "llmkick_mt_coding";
  if (category == "math") return "llmkick_mt_math";
  return "llmkick_mt_general";
}

}  // namespace kick::eval
