// kick/judge.hpp: LLM judges for the free-form tasks (library kick_eval): one interface, `Judge`, with an
// OpenAI-compatible chat-completions backend (retries with exponential backoff, a concurrency limit) and
// an in-process backend that runs a model kick loads (greedy); LLM-KICK's judge prompts as data files
// (data/judges/*.yaml) and their rendering; and judging with the reply parsers of kick/eval.hpp, where a
// failed request or an unreadable reply is kept, counted and reported, never dropped.
#pragma once

#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "kick/eval.hpp"

namespace kick {
class Model;
}

namespace kick::eval {

// ============================================================================================ requests

struct JudgeRequest {
  std::string system;  // may be empty: then no system message is sent
  std::string user;
};

// What one request came to. A failed request keeps its error; `text` is the raw reply when ok.
struct JudgeReply {
  bool ok = false;
  std::string text;
  std::string error;  // why it failed (the last attempt's error), empty when ok
  int attempts = 0;   // HTTP requests sent (1 = no retry); 1 for the local backend
  double seconds = 0; // wall time including backoff
};

class Judge {
 public:
  virtual ~Judge() = default;
  // "gpt-4 at https://api.openai.com/v1" or "local stories260K": recorded beside results.
  virtual std::string describe() const = 0;
  // One request, never throwing for a request that failed: the failure is in the reply.
  virtual JudgeReply try_complete(const JudgeRequest& request) = 0;
  // Runs every request with at most `concurrency` in flight (>= 1); replies in request order. No
  // request's failure escapes: each is recorded in its reply.
  virtual std::vector<JudgeReply> complete_all(const std::vector<JudgeRequest>& requests, size_t concurrency);
  // The reply text; a request that failed after its retries throws kick::Error with the reason.
  std::string complete(const std::string& system, const std::string& user);
};

// ============================================================================================ backends

// An OpenAI-compatible POST {base_url}/chat/completions. Debian's cpp-httplib is built with OpenSSL, so
// https:// works with the system's CA store; http:// is for local servers (e.g. `kick serve`).
struct HttpJudgeOptions {
  std::string base_url;     // "https://api.openai.com/v1", "http://127.0.0.1:8080/v1"
  std::string model;        // sent as "model"
  std::string api_key_env;  // name of the environment variable holding the key; empty = no key sent
  double timeout_seconds = 120;        // connect, read and write, per attempt
  int max_attempts = 6;                // attempts per request (1 = never retry)
  double backoff_initial_seconds = 1;  // wait before the 2nd attempt; doubles each time ...
  double backoff_max_seconds = 60;     // ... up to this (a server's Retry-After is honoured up to it)
  int64_t max_tokens = 1024;
  double temperature = 0.0;
  std::optional<double> top_p;
  std::optional<int64_t> seed;
};

// Checks the options (URL shape, positive limits) and reads the key from api_key_env now; an unset or
// empty variable is an error naming the variable (never its value). The key is sent only as a Bearer
// token and never appears in errors or logs.
std::unique_ptr<Judge> make_http_judge(const HttpJudgeOptions& options);

struct LocalJudgeOptions {
  std::string chat_template;  // empty: the model's default_chat_template
  int64_t max_tokens = 1024;  // clamped to the context left after the prompt
  std::string name;           // for describe(); empty: the model's source path
};
// Greedy generation with the model's chat template, one request at a time (generation is serialized;
// `concurrency` is accepted and ignored). The model must outlive the judge. A prompt that does not fit
// the context fails that request only.
std::unique_ptr<Judge> make_local_judge(const Model& model, const LocalJudgeOptions& options = {});

// ============================================================================================ prompts

// A judge prompt file (data/judges/<name>.yaml): the system message, and a user template rendered like
// Python's str.format with {question}, {answer_1}, {answer_2} and the file's `defaults`.
struct JudgePrompt {
  std::string name;
  std::string description;
  std::string source;        // where the text comes from (repository, commit, file, entry)
  std::string derived_from;  // what the source itself adapted, if anything
  std::string reply;         // reply format: "llmkick_summary", "llmkick_pair" or "rating" ("[[x]]", 1-10)
  std::string system;
  std::string user_template;
  std::map<std::string, std::string> defaults;
  std::string reference_model;  // what the reference scripts sent
  double reference_temperature = 0;
  int64_t reference_max_tokens = 0;
  std::string file;
};

// $KICK_JUDGES, else data/judges in the source tree.
std::filesystem::path judges_dir();
std::vector<std::string> judge_prompt_names(const std::filesystem::path& dir = judges_dir());
// Unknown or missing keys, an unknown reply format or a template field that is neither a variable nor
// a default: kick::Error naming the file and key.
JudgePrompt parse_judge_prompt(const std::string& yaml_text, const std::string& file);
// By name; an unknown name lists the known ones.
JudgePrompt load_judge_prompt(const std::string& name, const std::filesystem::path& dir = judges_dir());

// Python str.format with named fields only: "{name}" becomes vars[name] (else defaults[name]), "{{" and
// "}}" are literal braces; substituted values are not scanned again. Anything else ("{0}", "{x!r}",
// a lone brace, an unknown name) is kick::Error naming `what`.
std::string format_named(std::string_view tmpl, const std::map<std::string, std::string>& vars,
                         const std::map<std::string, std::string>& defaults, std::string_view what);
// The variables a template may name. Their meaning follows the reply format: pairwise prompts (llmkick_*) take
// {question}, {answer_1} (the reference answer) and {answer_2} (the model under test); rating prompts take
// {question} and {answer}, or for a second turn {question_1}, {answer_1}, {question_2}, {answer_2} (all the
// model's own conversation).
const std::vector<std::string>& judge_prompt_variables();
// {system, user} with the given variables (a name outside judge_prompt_variables() is kick::Error); a
// variable the template names but `vars` lacks falls back to the file's defaults, else kick::Error.
JudgeRequest render_judge_prompt(const JudgePrompt& prompt, const std::map<std::string, std::string>& vars);
// {system, user} for question / answer_1 (the reference answer) / answer_2 (the model under test).
JudgeRequest render_judge_prompt(const JudgePrompt& prompt, const std::string& question,
                                 const std::string& answer_1, const std::string& answer_2);
// LLM-KICK's mt_conversation reviewer choice (FastChat's reviewer.jsonl): "coding" -> llmkick_mt_coding,
// "math" -> llmkick_mt_math, every other category -> llmkick_mt_general.
std::string llmkick_mt_judge_for_category(const std::string& category);

// ============================================================================================ judging

// One judged item: the request's reply (raw text, attempts, error) and the parsed value or why the text
// could not be read.
template <typename T>
struct Judgement {
  JudgeReply reply;
  Parsed<T> parsed;
  bool ok() const { return reply.ok && parsed.ok(); }
};

struct JudgeTally {
  size_t total = 0;
  size_t parsed = 0;          // replies that parsed
  size_t request_failed = 0;  // requests that failed after their retries (no reply to parse)
  size_t unparseable = 0;     // replies that came back but could not be read
  size_t retried = 0;         // requests that needed more than one attempt
  // "40 judged: 37 parsed, 2 unparseable, 1 request failed (3 retried)"
  std::string summary() const;
};

// Sends every request (at most `concurrency` in flight) and parses each reply with `parse`; a failed
// request gets parsed.error "request failed: <reason>".
template <typename T>
std::vector<Judgement<T>> judge_all(Judge& judge, const std::vector<JudgeRequest>& requests,
                                    const std::function<Parsed<T>(std::string_view)>& parse, size_t concurrency) {
  auto replies = judge.complete_all(requests, concurrency);
  std::vector<Judgement<T>> out;
  out.reserve(replies.size());
  for (auto& reply : replies) {
    Judgement<T> item;
    if (reply.ok) {
      item.parsed = parse(reply.text);
    } else {
      item.parsed.error = "request failed: " + reply.error;
    }
    item.reply = std::move(reply);
    out.push_back(std::move(item));
  }
  return out;
}

template <typename T>
JudgeTally tally(const std::vector<Judgement<T>>& judgements) {
  JudgeTally t;
  for (const auto& j : judgements) {
    ++t.total;
    if (j.reply.attempts > 1) ++t.retried;
    if (!j.reply.ok) {
      ++t.request_failed;
    } else if (j.parsed.ok()) {
      ++t.parsed;
    } else {
      ++t.unparseable;
    }
  }
  return t;
}

}  // namespace kick::eval
