// Tests of kick serve (the OpenAI-compatible server, in-process on 127.0.0.1 with stories260K) and of the
// judge client: both backends against that server, retries/backoff/failure recording/concurrency against
// small fake httplib servers on loopback, and LLM-KICK's judge prompts against Python's str.format.
#include <catch2/catch.hpp>
#include <httplib.h>
#include <nlohmann/json.hpp>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdlib>
#include <fstream>
#include <mutex>
#include <thread>

#include "kick/evaluate.hpp"
#include "kick/judge.hpp"
#include "kick/model.hpp"
#include "kick/openai_server.hpp"
#include "test_helpers.hpp"

using namespace kick;
using nlohmann::json;

namespace {

Model load_stories() { return Model::load((test::stories260k_dir() / "model.bin").string()); }

serve::ServerOptions loopback(const std::string& name) {
  serve::ServerOptions options;
  options.host = "127.0.0.1";
  options.port = 0;
  options.model_name = name;
  return options;
}

httplib::Client client_for(int port) {
  httplib::Client client("127.0.0.1", port);
  client.set_connection_timeout(10, 0);
  client.set_read_timeout(60, 0);
  return client;
}

json post(httplib::Client& client, const std::string& path, const std::string& body, int expected_status) {
  auto result = client.Post(path.c_str(), body, "application/json");
  REQUIRE(result);
  INFO(path << " " << body << " -> " << result->body);
  REQUIRE(result->status == expected_status);
  REQUIRE(result->get_header_value("Content-Type") == "application/json");
  return json::parse(result->body);
}

Generation greedy(const Model& model, const std::vector<int32_t>& ids, int64_t max_tokens,
                  std::vector<std::string> stops = {}) {
  SamplingOptions options;
  options.max_new_tokens = max_tokens;
  options.stop = std::move(stops);
  return generate(model, {ids}, options).at(0);
}

// An OpenAI-shaped chat completion whose message is `content`.
std::string chat_reply(const std::string& content) {
  return json{{"id", "fake"}, {"object", "chat.completion"},
              {"choices", {{{"index", 0}, {"message", {{"role", "assistant"}, {"content", content}}}, {"finish_reason", "stop"}}}}}
      .dump();
}

// A stand-in judge server on 127.0.0.1 (a free port) answering POST /v1/chat/completions with `handler`.
class FakeServer {
 public:
  explicit FakeServer(httplib::Server::Handler handler) {
    http_.Post("/v1/chat/completions", std::move(handler));
    port_ = http_.bind_to_any_port("127.0.0.1");
    REQUIRE(port_ > 0);
    thread_ = std::thread([this] { http_.listen_after_bind(); });
    for (int i = 0; i < 5000 && !http_.is_running(); ++i) std::this_thread::sleep_for(std::chrono::milliseconds(1));
    REQUIRE(http_.is_running());
  }
  ~FakeServer() {
    http_.stop();
    thread_.join();
  }
  std::string base_url() const { return "http://127.0.0.1:" + std::to_string(port_) + "/v1"; }
  int port() const { return port_; }

 private:
  httplib::Server http_;
  std::thread thread_;
  int port_ = 0;
};

eval::HttpJudgeOptions fast_retries(const std::string& base_url) {
  eval::HttpJudgeOptions options;
  options.base_url = base_url;
  options.model = "fake-judge";
  options.timeout_seconds = 10;
  options.max_attempts = 5;
  options.backoff_initial_seconds = 0.01;
  options.backoff_max_seconds = 0.05;
  return options;
}

}  // namespace

TEST_CASE("serve: /v1/models lists the model and /v1/completions equals generate()", "[serve]") {
  Model model = load_stories();
  serve::OpenAIServer server(model, loopback("stories260K"));
  const int port = server.start();
  REQUIRE(port > 0);
  REQUIRE(server.port() == port);
  REQUIRE(server.url() == "http://127.0.0.1:" + std::to_string(port));
  auto client = client_for(port);

  auto models = client.Get("/v1/models");
  REQUIRE(models);
  REQUIRE(models->status == 200);
  auto list = json::parse(models->body);
  REQUIRE(list["object"] == "list");
  REQUIRE(list["data"].size() == 1);
  REQUIRE(list["data"][0]["id"] == "stories260K");
  REQUIRE(list["data"][0]["object"] == "model");
  auto one = client.Get("/v1/models/stories260K");
  REQUIRE((one && one->status == 200));
  auto missing = client.Get("/v1/models/gpt-4");
  REQUIRE((missing && missing->status == 404));

  for (const std::string prompt : {"Once upon a time", "The cat sat on the", "Lily and Ben went to the park."}) {
    auto response = post(client, "/v1/completions",
                         json{{"model", "stories260K"}, {"prompt", prompt}, {"max_tokens", 40}, {"temperature", 0}}.dump(), 200);
    const auto ids = model.tokenizer().encode(prompt, model.tokenizer().add_bos_default());
    const Generation expected = greedy(model, ids, 40);
    REQUIRE(!expected.text.empty());
    CHECK(response["object"] == "text_completion");
    CHECK(response["model"] == "stories260K");
    CHECK(response["id"].get<std::string>().rfind("cmpl-", 0) == 0);
    CHECK(response["created"].is_number_integer());
    REQUIRE(response["choices"].size() == 1);
    CHECK(response["choices"][0]["index"] == 0);
    CHECK(response["choices"][0]["text"] == expected.text);
    CHECK(response["choices"][0]["finish_reason"] == serve::openai_finish_reason(expected.finish_reason));
    CHECK(response["usage"]["prompt_tokens"] == ids.size());
    CHECK(response["usage"]["completion_tokens"] == expected.tokens.size());
    CHECK(response["usage"]["total_tokens"] == ids.size() + expected.tokens.size());
  }

  // A budget shorter than the story ends with "length"; the same seed gives the same sample.
  auto short_reply = post(client, "/v1/completions", json{{"prompt", "Once upon a time"}, {"max_tokens", 3}}.dump(), 200);
  CHECK(short_reply["choices"][0]["finish_reason"] == "length");
  CHECK(short_reply["usage"]["completion_tokens"] == 3);
  const std::string sampled = json{{"prompt", "Once"}, {"max_tokens", 20}, {"temperature", 1.0}, {"seed", 7}}.dump();
  CHECK(post(client, "/v1/completions", sampled, 200)["choices"][0]["text"] ==
        post(client, "/v1/completions", sampled, 200)["choices"][0]["text"]);
  // top_k reaches the sampler: the served sample equals generate()'s with the same seed and top_k, and top_k = 1
  // is greedy whatever the temperature.
  SamplingOptions top_k_sampling;
  top_k_sampling.max_new_tokens = 20;
  top_k_sampling.temperature = 1.0;
  top_k_sampling.top_k = 5;
  top_k_sampling.seed = 11;
  const auto once_ids = model.tokenizer().encode("Once", model.tokenizer().add_bos_default());
  CHECK(post(client, "/v1/completions", json{{"prompt", "Once"}, {"max_tokens", 20}, {"temperature", 1.0}, {"top_k", 5}, {"seed", 11}}.dump(),
             200)["choices"][0]["text"] == generate(model, {once_ids}, top_k_sampling).at(0).text);
  CHECK(post(client, "/v1/completions", json{{"prompt", "Once"}, {"max_tokens", 20}, {"temperature", 1.5}, {"top_k", 1}, {"seed", 3}}.dump(),
             200)["choices"][0]["text"] == greedy(model, once_ids, 20).text);
  server.stop();
  REQUIRE_FALSE(server.running());
}

TEST_CASE("serve: chat completions use the chat template, stop strings cut the text", "[serve]") {
  Model model = load_stories();
  serve::OpenAIServer server(model, loopback("stories260K"));
  auto client = client_for(server.start());
  const std::vector<ChatMessage> messages = {{"system", "You tell short stories."}, {"user", "Tell me about a dog."}};
  json request = {{"messages", json::array({{{"role", "system"}, {"content", messages[0].content}},
                                            {{"role", "user"}, {"content", messages[1].content}}})},
                  {"max_tokens", 48}};
  auto response = post(client, "/v1/chat/completions", request.dump(), 200);
  const auto prompt = serve::encode_chat(model, messages, "");
  REQUIRE(prompt.text.find("USER: Tell me about a dog. ASSISTANT:") != std::string::npos);  // vicuna_v1.1
  const Generation expected = greedy(model, prompt.ids, 48, prompt.stops);
  REQUIRE(expected.text.size() > 8);
  CHECK(response["object"] == "chat.completion");
  CHECK(response["id"].get<std::string>().rfind("chatcmpl-", 0) == 0);
  CHECK(response["choices"][0]["message"]["role"] == "assistant");
  CHECK(response["choices"][0]["message"]["content"] == expected.text);
  CHECK(response["usage"]["prompt_tokens"] == prompt.ids.size());

  // Content as an array of text parts is the same message.
  json parts = request;
  parts["messages"][1]["content"] = json::array({{{"type", "text"}, {"text", "Tell me about "}}, {{"type", "text"}, {"text", "a dog."}}});
  CHECK(post(client, "/v1/chat/completions", parts.dump(), 200)["choices"][0]["message"]["content"] == expected.text);

  // A stop string taken from the middle of the greedy reply ends it there.
  const std::string content = expected.text;
  const size_t cut = content.find(' ', content.size() / 2);
  REQUIRE(cut != std::string::npos);
  const std::string stop = content.substr(cut, 3);
  json stopped = request;
  stopped["stop"] = stop;
  auto stopped_reply = post(client, "/v1/chat/completions", stopped.dump(), 200);
  CHECK(stopped_reply["choices"][0]["message"]["content"] == content.substr(0, content.find(stop)));
  CHECK(stopped_reply["choices"][0]["finish_reason"] == "stop");
}

TEST_CASE("serve: bad requests get 400 naming the field", "[serve]") {
  Model model = load_stories();
  serve::OpenAIServer server(model, loopback("stories260K"));
  auto client = client_for(server.start());
  const json user = json::array({{{"role", "user"}, {"content", "hi"}}});

  struct Case {
    const char* path;
    std::string body;
    const char* param;  // "" = null
    const char* message_part;
  };
  const std::vector<Case> cases = {
      {"/v1/chat/completions", "{\"messages\": [", "", "not valid JSON"},
      {"/v1/chat/completions", "[1, 2]", "", "JSON object"},
      {"/v1/chat/completions", "{}", "messages", "messages: required"},
      {"/v1/chat/completions", json{{"messages", "hi"}}.dump(), "messages", "messages: expected an array, got string"},
      {"/v1/chat/completions", json{{"messages", json::array()}}.dump(), "messages", "at least one"},
      {"/v1/chat/completions", json{{"messages", {{{"role", "robot"}, {"content", "x"}}}}}.dump(), "messages", "messages[0].role"},
      {"/v1/chat/completions", json{{"messages", {{{"role", "user"}, {"content", 5}}}}}.dump(), "messages", "messages[0].content"},
      {"/v1/chat/completions", json{{"messages", {{{"role", "user"}}}}}.dump(), "messages", "messages[0].content: required"},
      {"/v1/chat/completions", json{{"messages", user}, {"max_tokens", "ten"}}.dump(), "max_tokens", "max_tokens: expected an integer, got string"},
      {"/v1/chat/completions", json{{"messages", user}, {"max_tokens", 2.5}}.dump(), "max_tokens", "expected an integer"},
      {"/v1/chat/completions", json{{"messages", user}, {"max_tokens", 0}}.dump(), "max_tokens", ">= 1"},
      {"/v1/chat/completions", json{{"messages", user}, {"temperature", "hot"}}.dump(), "temperature", "temperature: expected a number"},
      {"/v1/chat/completions", json{{"messages", user}, {"temperature", 3}}.dump(), "temperature", "temperature: must be in"},
      {"/v1/chat/completions", json{{"messages", user}, {"top_p", 0}}.dump(), "top_p", "top_p: must be in (0"},
      {"/v1/chat/completions", json{{"messages", user}, {"seed", "x"}}.dump(), "seed", "seed: expected an integer"},
      {"/v1/chat/completions", json{{"messages", user}, {"top_k", -1}}.dump(), "top_k", "top_k: must be >= 0"},
      {"/v1/chat/completions", json{{"messages", user}, {"top_k", 0.5}}.dump(), "top_k", "top_k: expected an integer"},
      {"/v1/chat/completions", json{{"messages", user}, {"stop", 5}}.dump(), "stop", "stop: expected a string or an array"},
      {"/v1/chat/completions", json{{"messages", user}, {"stop", {"a", 1}}}.dump(), "stop", "stop[1]"},
      {"/v1/chat/completions", json{{"messages", user}, {"stream", true}}.dump(), "stream", "streaming is not supported"},
      {"/v1/chat/completions", json{{"messages", user}, {"n", 2}}.dump(), "n", "n = 1"},
      {"/v1/chat/completions", json{{"messages", user}, {"model", 3}}.dump(), "model", "model: expected a string"},
      {"/v1/completions", "{}", "prompt", "prompt: required"},
      {"/v1/completions", json{{"prompt", 5}}.dump(), "prompt", "prompt: expected a string"},
      {"/v1/completions", json{{"prompt", {"a", "b"}}}.dump(), "prompt", "prompt: expected a string"},
      {"/v1/completions", json{{"prompt", "hi"}, {"echo", true}}.dump(), "echo", "echo"},
  };
  for (const auto& c : cases) {
    auto error = post(client, c.path, c.body, 400)["error"];
    INFO(c.body << " -> " << error.dump());
    CHECK(error["type"] == "invalid_request_error");
    CHECK(error["message"].get<std::string>().find(c.message_part) != std::string::npos);
    if (*c.param) {
      CHECK(error["param"] == c.param);
    } else {
      CHECK(error["param"].is_null());
    }
  }

  // A prompt longer than the context (512 tokens for stories260K) is refused before generating.
  std::string long_prompt;
  for (int i = 0; i < 400; ++i) long_prompt += "the cat and ";
  auto too_long = post(client, "/v1/completions", json{{"prompt", long_prompt}}.dump(), 400)["error"];
  CHECK(too_long["param"] == "prompt");
  CHECK(too_long["code"] == "context_length_exceeded");

  auto unknown = client.Get("/v1/engines");
  REQUIRE(unknown);
  CHECK(unknown->status == 404);
  CHECK(json::parse(unknown->body)["error"]["message"].get<std::string>().find("unknown endpoint") != std::string::npos);
  auto wrong_method = client.Get("/v1/completions");
  REQUIRE(wrong_method);
  CHECK(wrong_method->status == 405);
  // The server still answers after all that.
  CHECK(post(client, "/v1/completions", json{{"prompt", "Once"}, {"max_tokens", 2}}.dump(), 200)["usage"]["completion_tokens"] == 2);
}

TEST_CASE("serve: a second server cannot take a port in use, and stop is idempotent", "[serve]") {
  Model model = load_stories();
  serve::OpenAIServer first(model, loopback("a"));
  const int port = first.start();
  auto options = loopback("b");
  options.port = port;
  serve::OpenAIServer second(model, options);
  REQUIRE_THROWS_WITH(second.start(), Catch::Contains("cannot listen on 127.0.0.1:" + std::to_string(port)));
  first.stop();
  first.stop();
  REQUIRE_FALSE(first.running());
  options.chat_template = "alpaca";
  REQUIRE_THROWS_WITH(serve::OpenAIServer(model, options), Catch::Contains("unknown chat template 'alpaca'"));
}

TEST_CASE("judge: the HTTP backend against kick serve returns what the local backend does", "[serve]") {
  Model model = load_stories();
  serve::OpenAIServer server(model, loopback("stories260K"));
  server.start();
  eval::HttpJudgeOptions options;
  options.base_url = server.url() + "/v1/";  // a trailing slash is fine
  options.model = "stories260K";
  options.max_tokens = 32;
  options.timeout_seconds = 60;
  auto http = eval::make_http_judge(options);
  eval::LocalJudgeOptions local_options;
  local_options.max_tokens = 32;
  auto local = eval::make_local_judge(model, local_options);
  CHECK(http->describe() == "stories260K at " + server.url() + "/v1/");

  const std::vector<eval::JudgeRequest> requests = {
      {"You are a judge.", "Rate this story: the cat sat."}, {"", "Once upon a time there was a frog."}, {"Be brief.", "Tom had a ball."}};
  auto http_replies = http->complete_all(requests, 2);
  auto local_replies = local->complete_all(requests, 2);
  REQUIRE(http_replies.size() == requests.size());
  for (size_t i = 0; i < requests.size(); ++i) {
    INFO("request " << i << ": " << http_replies[i].error);
    REQUIRE(http_replies[i].ok);
    REQUIRE(local_replies[i].ok);
    CHECK(http_replies[i].attempts == 1);
    CHECK(!local_replies[i].text.empty());
    CHECK(http_replies[i].text == local_replies[i].text);
  }
  CHECK(http->complete(requests[0].system, requests[0].user) == local_replies[0].text);

  // A judge prompt longer than the local model's context fails that request only, with the reason.
  std::string huge;
  for (int i = 0; i < 400; ++i) huge += "the cat and ";
  auto mixed = local->complete_all({{"", huge}, requests[1]}, 1);
  CHECK_FALSE(mixed[0].ok);
  CHECK(mixed[0].error.find("context is 512") != std::string::npos);
  CHECK(mixed[1].ok);
  auto refused = http->try_complete({"", huge});
  CHECK_FALSE(refused.ok);
  CHECK(refused.attempts == 1);  // a 400 is not retried
  CHECK(refused.error.find("HTTP 400") != std::string::npos);
  CHECK(refused.error.find("context") != std::string::npos);
}

TEST_CASE("judge: 503 twice then an answer succeeds on the third attempt, with the key as a Bearer token", "[serve]") {
  // Catch2's assertions are not thread-safe: the handler only records what it saw.
  std::atomic<int> calls{0};
  std::string authorization, last_body;
  std::mutex mutex;
  FakeServer fake([&](const httplib::Request& request, httplib::Response& response) {
    {
      std::lock_guard<std::mutex> lock(mutex);
      authorization = request.get_header_value("Authorization");
      last_body = request.body;
    }
    if (++calls <= 2) {
      response.status = 503;
      response.set_content(R"({"error": {"message": "overloaded", "type": "server_error"}})", "application/json");
      return;
    }
    response.set_content(chat_reply("8 9\nfine"), "application/json");
  });
  ::setenv("KICK_TEST_JUDGE_KEY", "sk-test-secret-123", 1);
  auto options = fast_retries(fake.base_url());
  options.api_key_env = "KICK_TEST_JUDGE_KEY";
  auto judge = eval::make_http_judge(options);
  auto reply = judge->try_complete({"judge", "rate it"});
  INFO(reply.error);
  REQUIRE(reply.ok);
  CHECK(reply.attempts == 3);
  CHECK(calls == 3);
  CHECK(reply.text == "8 9\nfine");
  CHECK(authorization == "Bearer sk-test-secret-123");
  const json body = json::parse(last_body);
  CHECK(body["model"] == "fake-judge");
  CHECK(body["messages"][0] == json{{"role", "system"}, {"content", "judge"}});
  CHECK(body["messages"][1] == json{{"role", "user"}, {"content", "rate it"}});
  CHECK(body["max_tokens"] == 1024);
  CHECK(body["temperature"] == 0.0);
  CHECK(judge->describe().find("sk-test") == std::string::npos);

  ::setenv("KICK_TEST_JUDGE_KEY", "", 1);
  REQUIRE_THROWS_WITH(eval::make_http_judge(options), Catch::Contains("KICK_TEST_JUDGE_KEY") && !Catch::Contains("sk-test"));
  ::unsetenv("KICK_TEST_JUDGE_KEY");
  options.api_key_env = "";
  options.base_url = "ftp://127.0.0.1/v1";
  REQUIRE_THROWS_WITH(eval::make_http_judge(options), Catch::Contains("expected http://"));
}

TEST_CASE("judge: a server that always fails ends each request failed with the error, no exception", "[serve]") {
  std::atomic<int> calls{0};
  FakeServer fake([&](const httplib::Request&, httplib::Response& response) {
    ++calls;
    response.status = 500;
    response.set_content(R"({"error": {"message": "boom"}})", "application/json");
  });
  auto options = fast_retries(fake.base_url());
  options.max_attempts = 3;
  options.api_key_env = "KICK_TEST_JUDGE_KEY_2";
  ::setenv("KICK_TEST_JUDGE_KEY_2", "sk-never-shown", 1);
  auto judge = eval::make_http_judge(options);
  ::unsetenv("KICK_TEST_JUDGE_KEY_2");
  std::vector<eval::JudgeReply> replies;
  REQUIRE_NOTHROW(replies = judge->complete_all(std::vector<eval::JudgeRequest>(4, {"s", "u"}), 2));
  REQUIRE(replies.size() == 4);
  for (const auto& r : replies) {
    CHECK_FALSE(r.ok);
    CHECK(r.attempts == 3);
    CHECK(r.error.find("HTTP 500") != std::string::npos);
    CHECK(r.error.find("boom") != std::string::npos);
    CHECK(r.error.find("sk-never-shown") == std::string::npos);
  }
  CHECK(calls == 12);
  REQUIRE_THROWS_WITH(judge->complete("s", "u"), Catch::Contains("HTTP 500") && Catch::Contains("after 3 attempts"));

  // Nothing listening: connection errors are retried, then recorded.
  int closed_port = 0;
  {
    FakeServer gone([](const httplib::Request&, httplib::Response&) {});
    closed_port = gone.port();
  }
  options.api_key_env = "";
  options.base_url = "http://127.0.0.1:" + std::to_string(closed_port) + "/v1";
  auto unreachable = eval::make_http_judge(options)->complete_all({{"s", "u"}}, 1);
  CHECK_FALSE(unreachable[0].ok);
  CHECK(unreachable[0].attempts == 3);
  CHECK(unreachable[0].error.find("127.0.0.1:" + std::to_string(closed_port)) != std::string::npos);
}

TEST_CASE("judge: parsing failures and failed requests are counted, with the raw reply kept", "[serve]") {
  FakeServer fake([&](const httplib::Request& request, httplib::Response& response) {
    const std::string user = json::parse(request.body)["messages"].back()["content"];
    if (user == "fail") {
      response.status = 401;
      response.set_content(R"({"error": {"message": "bad key"}})", "application/json");
    } else if (user == "garbled") {
      response.set_content("<html>not json</html>", "text/html");
    } else {
      response.set_content(chat_reply(user == "good" ? "7 9\nAssistant 2 is better." : "Both are fine."), "application/json");
    }
  });
  auto judge = eval::make_http_judge(fast_retries(fake.base_url()));
  const std::vector<eval::JudgeRequest> requests = {{"", "good"}, {"", "bad"}, {"", "fail"}, {"", "good"}, {"", "garbled"}};
  auto judged = eval::judge_all<std::pair<double, double>>(*judge, requests, eval::parse_judge_pair_llmkick, 3);
  REQUIRE(judged.size() == 5);
  CHECK(judged[0].ok());
  CHECK(judged[0].parsed.value == std::make_pair(7.0, 9.0));
  CHECK_FALSE(judged[1].ok());
  CHECK(judged[1].reply.ok);
  CHECK(judged[1].reply.text == "Both are fine.");
  CHECK(judged[1].parsed.error.find("two") != std::string::npos);
  CHECK_FALSE(judged[2].reply.ok);
  CHECK(judged[2].reply.attempts == 1);  // 401 is not retried
  CHECK(judged[2].parsed.error.find("request failed") != std::string::npos);
  CHECK(judged[2].parsed.error.find("bad key") != std::string::npos);
  CHECK_FALSE(judged[4].reply.ok);
  CHECK(judged[4].reply.error.find("not JSON") != std::string::npos);
  auto t = eval::tally(judged);
  CHECK(t.total == 5);
  CHECK(t.parsed == 2);
  CHECK(t.unparseable == 1);
  CHECK(t.request_failed == 2);
  CHECK(t.summary() == "5 judged: 2 parsed, 1 unparseable, 2 requests failed (0 retried)");
}

TEST_CASE("judge: complete_all keeps at most `concurrency` requests in flight", "[serve]") {
  std::atomic<int> in_flight{0}, most{0}, calls{0};
  FakeServer fake([&](const httplib::Request& request, httplib::Response& response) {
    const int now = ++in_flight;
    for (int seen = most.load(); now > seen && !most.compare_exchange_weak(seen, now);) {
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(60));
    ++calls;
    --in_flight;
    response.set_content(chat_reply(json::parse(request.body)["messages"].back()["content"].get<std::string>() + "!"), "application/json");
  });
  auto judge = eval::make_http_judge(fast_retries(fake.base_url()));
  std::vector<eval::JudgeRequest> requests;
  for (int i = 0; i < 12; ++i) requests.push_back({"", "q" + std::to_string(i)});
  auto replies = judge->complete_all(requests, 3);
  CHECK(calls == 12);
  CHECK(most <= 3);
  CHECK(most >= 2);  // the limit is a limit, not serial execution
  for (int i = 0; i < 12; ++i) CHECK(replies[size_t(i)].text == "q" + std::to_string(i) + "!");  // in request order
  most = 0;
  judge->complete_all(std::vector<eval::JudgeRequest>(4, {"", "x"}), 1);
  CHECK(most == 1);
  REQUIRE_THROWS_WITH(judge->complete_all(requests, 0), Catch::Contains("concurrency"));
}

TEST_CASE("judge prompts: LLM-KICK's tables rendered exactly as Python's str.format does", "[serve]") {
  std::ifstream in(test::fixture("judges/rendered.json"));
  REQUIRE(in.good());
  const json fixture = json::parse(in);
  const auto& vars = fixture["vars"];
  REQUIRE(fixture["cases"].size() == 8);
  for (const auto& c : fixture["cases"]) {
    INFO(c["judge"] << " " << c["category"]);
    auto prompt = eval::load_judge_prompt(c["judge"].get<std::string>());
    if (c.contains("vars")) {  // FastChat's single-answer graders
      auto request = eval::render_judge_prompt(prompt, c["vars"].get<std::map<std::string, std::string>>());
      CHECK(request.system == c["system"].get<std::string>());
      CHECK(request.user == c["user"].get<std::string>());
      CHECK(prompt.reply == "rating");
      CHECK(prompt.source.find("lm-sys/FastChat") != std::string::npos);
      continue;
    }
    auto request = eval::render_judge_prompt(prompt, vars["question"], vars["answer_1"], vars["answer_2"]);
    CHECK(request.system == c["system"].get<std::string>());
    CHECK(request.user == c["user"].get<std::string>());
    CHECK(prompt.source.find("VITA-Group/llm-kick") != std::string::npos);
    CHECK(prompt.reference_max_tokens == 1024);
  }
  REQUIRE_THROWS_WITH(eval::render_judge_prompt(eval::load_judge_prompt("fastchat_single"), {{"answr", "x"}}),
                      Catch::Contains("'answr' is not a judge prompt variable"));
  CHECK(eval::load_judge_prompt("llmkick_summary").reply == "llmkick_summary");
  CHECK(eval::load_judge_prompt("llmkick_summary").reference_temperature == 0.1);
  CHECK(eval::load_judge_prompt("llmkick_mt_math").reply == "llmkick_pair");
  const auto names = eval::judge_prompt_names();
  for (const char* name : {"llmkick_summary", "llmkick_mt_general", "llmkick_mt_coding", "llmkick_mt_math"}) {
    CHECK(std::find(names.begin(), names.end(), name) != names.end());
  }
  CHECK(eval::llmkick_mt_judge_for_category("coding") == "llmkick_mt_coding");
  CHECK(eval::llmkick_mt_judge_for_category("math") == "llmkick_mt_math");
  CHECK(eval::llmkick_mt_judge_for_category("fermi") == "llmkick_mt_general");
  REQUIRE_THROWS_WITH(eval::load_judge_prompt("gpt5_judge"), Catch::Contains("known: ") && Catch::Contains("llmkick_summary"));
}

TEST_CASE("judge prompts: str.format rules and prompt-file errors", "[serve]") {
  const std::map<std::string, std::string> vars = {{"a", "{b}"}}, defaults = {{"b", "B"}, {"a", "default"}};
  CHECK(eval::format_named("{{{a}}} {b} }}{{", vars, defaults, "t") == "{{b}} B }{");
  REQUIRE_THROWS_WITH(eval::format_named("{0}", vars, defaults, "t.yaml"), Catch::Contains("t.yaml") && Catch::Contains("{0}"));
  REQUIRE_THROWS_WITH(eval::format_named("{a!r}", vars, defaults, "t"), Catch::Contains("not a plain name"));
  REQUIRE_THROWS_WITH(eval::format_named("x } y", vars, defaults, "t"), Catch::Contains("single '}'"));
  REQUIRE_THROWS_WITH(eval::format_named("{a", vars, defaults, "t"), Catch::Contains("never closed"));
  REQUIRE_THROWS_WITH(eval::format_named("{c}", vars, defaults, "t"), Catch::Contains("unknown field '{c}'"));

  const std::string good = "name: x\nsource: s\nreply: llmkick_pair\nsystem: sys\ntemplate: \"{question} {prompt}\"\ndefaults:\n  prompt: p\n";
  auto p = eval::parse_judge_prompt(good, "x.yaml");
  CHECK(eval::render_judge_prompt(p, "Q", "", "").user == "Q p");
  REQUIRE_THROWS_WITH(eval::parse_judge_prompt(good + "colour: red\n", "x.yaml"), Catch::Contains("x.yaml: unknown key 'colour'"));
  REQUIRE_THROWS_WITH(eval::parse_judge_prompt("name: x\nsource: s\nreply: llmkick_pair\nsystem: s\n", "y.yaml"),
                      Catch::Contains("y.yaml: template: required"));
  REQUIRE_THROWS_WITH(eval::parse_judge_prompt("name: x\nsource: s\nreply: stars\nsystem: s\ntemplate: t\n", "z.yaml"),
                      Catch::Contains("z.yaml: reply: 'stars'"));
  REQUIRE_THROWS_WITH(eval::parse_judge_prompt("name: x\nsource: s\nreply: llmkick_pair\nsystem: s\ntemplate: \"{answer_3}\"\n", "w.yaml"),
                      Catch::Contains("w.yaml: template") && Catch::Contains("answer_3"));
  REQUIRE_THROWS_WITH(eval::parse_judge_prompt("name: [unclosed\n", "v.yaml"), Catch::Contains("v.yaml:"));
  // A list or a mapping as a key (found by fuzz_judge: yaml-cpp's bad conversion escaped as a bare exception).
  REQUIRE_THROWS_WITH(eval::parse_judge_prompt("# c\n[q, r]: o\n", "u.yaml"), Catch::Contains("u.yaml:2: expected key names, found a list used as a key"));
  REQUIRE_THROWS_WITH(eval::parse_judge_prompt(good + "? {a: 1}\n: x\n", "t.yaml"), Catch::Contains("t.yaml:") && Catch::Contains("found a mapping used as a key"));
}

namespace {

// Answers like a judge that grades every first turn 7, every second turn 4, and cannot read one example.
class ScriptedRatingJudge : public eval::Judge {
 public:
  explicit ScriptedRatingJudge(std::string unreadable_marker) : unreadable_(std::move(unreadable_marker)) {}
  std::string describe() const override { return "scripted rating judge"; }
  eval::JudgeReply try_complete(const eval::JudgeRequest& request) override {
    eval::JudgeReply reply;
    reply.ok = true;
    reply.attempts = 1;
    std::lock_guard<std::mutex> lock(mutex_);
    requests.push_back(request);
    if (!unreadable_.empty() && request.user.find(unreadable_) != std::string::npos) {
      reply.text = "I cannot decide.";
    } else {
      reply.text = request.user.find("### User:") != std::string::npos ? "Weak follow-up. Rating: [[4]]" : "Fine. Rating: [[7]]";
    }
    return reply;
  }
  std::vector<eval::JudgeRequest> requests;

 private:
  std::string unreadable_;
  std::mutex mutex_;
};

}  // namespace

TEST_CASE("judge_rating: MT-Bench answers graded per turn with FastChat's prompts, no reference run needed", "[serve]") {
  Model model = load_stories();
  auto spec = eval::load_task("mt_bench", "strict");
  spec.decoding.max_new_tokens = 8;
  const auto dir = test::scratch_dir("judge_rating");
  eval::RunOptions options;
  options.limit = 3;
  options.out_dir = dir;
  options.batch_size = 3;
  // The third MT-Bench question (id 83) is the one the judge cannot read.
  ScriptedRatingJudge judge("Imagine you are writing a blog post comparing two popular smartphone models");
  options.judge = &judge;
  options.judge_concurrency = 2;
  const auto summary = eval::evaluate_task(model, spec, options, json::object());
  REQUIRE(judge.requests.size() == 6);  // two turns for each of three questions
  for (const auto& r : judge.requests) {
    const bool second_turn = r.user.find("### User:") != std::string::npos;
    CHECK(r.system == (second_turn ? eval::load_judge_prompt("fastchat_single_multi_turn").system : "You are a helpful assistant."));
  }
  std::ifstream in(dir / "mt_bench.strict" / "seed0.judge.jsonl");
  REQUIRE(in.good());
  int failed = 0, graded = 0;
  for (std::string line; std::getline(in, line);) {
    const auto record = json::parse(line);
    if (record["failed"].get<bool>()) {
      ++failed;
      CHECK(record["error"].get<std::string>().find("no [[rating]]") != std::string::npos);
      CHECK(!record["scores"].contains("judge_rating"));
      continue;
    }
    ++graded;
    CHECK(record["scores"]["judge_rating_turn1"] == 7.0);
    CHECK(record["scores"]["judge_rating_turn2"] == 4.0);
    CHECK(record["scores"]["judge_rating"] == 5.5);
  }
  CHECK(failed == 1);
  CHECK(graded == 2);
  CHECK(summary.failed == 1);
  REQUIRE(summary.metrics.count("judge_rating"));
  CHECK(summary.metrics.at("judge_rating").mean == 5.5);
  const auto& tally = summary.details.at("judge_tally");
  CHECK(tally.at("judged") == 3);
  CHECK(tally.at("parsed") == 2);
  CHECK(tally.at("unparseable") == 1);
  CHECK(tally.at("request_failed") == 0);
  CHECK(eval::summaries_markdown({summary}).find("mt_bench (strict) judge: 3 examples judged, 2 parsed, 1 unparseable, 0 without a reply") !=
        std::string::npos);
}

TEST_CASE("a judge phase stopped midway resumes from its last written chunk, never judging an example twice", "[serve]") {
  Model model = load_stories();
  auto spec = eval::load_task("mt_bench", "strict");
  spec.decoding.max_new_tokens = 4;
  // Stops the run (as a kill would) at its second batch of requests; the first batch's records must be on disk.
  class StoppingJudge : public ScriptedRatingJudge {
   public:
    StoppingJudge() : ScriptedRatingJudge("") {}
    std::vector<eval::JudgeReply> complete_all(const std::vector<eval::JudgeRequest>& batch, size_t concurrency) override {
      if (++batches == 2) throw Error("judge process gone");
      return ScriptedRatingJudge::complete_all(batch, concurrency);
    }
    int batches = 0;
  };
  const auto dir = test::scratch_dir("judge_resume");
  eval::RunOptions options;
  options.limit = 10;  // 10 questions x 2 turns = 20 requests, sent in chunks of 8 requests (4 examples) at concurrency 1
  options.out_dir = dir / "interrupted";
  options.batch_size = 5;
  options.judge_concurrency = 1;
  StoppingJudge stopping;
  options.judge = &stopping;
  REQUIRE_THROWS_WITH(eval::evaluate_task(model, spec, options, json::object()), Catch::Contains("judge process gone"));
  const auto judged_path = dir / "interrupted" / "mt_bench.strict" / "seed0.judge.jsonl";
  auto count_lines = [](const std::filesystem::path& path) {
    std::ifstream in(path);
    int n = 0;
    for (std::string line; std::getline(in, line);) n += !line.empty();
    return n;
  };
  CHECK(count_lines(judged_path) == 4);  // the first chunk: 8 requests, 4 examples (two turns each)
  ScriptedRatingJudge resumed("");
  options.judge = &resumed;
  const auto summary = eval::evaluate_task(model, spec, options, json::object());
  CHECK(resumed.requests.size() == 12);  // only the 6 examples not judged yet
  CHECK(count_lines(judged_path) == 10);
  ScriptedRatingJudge whole("");
  options.judge = &whole;
  options.out_dir = dir / "uninterrupted";
  const auto expected = eval::evaluate_task(model, spec, options, json::object());
  REQUIRE(summary.metrics.count("judge_rating"));
  CHECK(summary.metrics.at("judge_rating").mean == expected.metrics.at("judge_rating").mean);
  CHECK(summary.examples == expected.examples);
}

TEST_CASE("judge against the data set's references: CNN/DM highlights are answer 1 of LLM-KICK's summary judge", "[serve]") {
  Model model = load_stories();
  const auto dir = test::scratch_dir("judge_against_references");
  std::filesystem::create_directories(dir / "stories" / "small");
  {
    std::ofstream story(dir / "stories" / "small" / "a.story");
    story << "Tom had a red ball.\n\nHe played with it in the park.\n\n@highlight\n\nTom played\n\n@highlight\n\nThe ball was red\n";
  }
  auto spec = eval::load_task("summarization", "strict");
  spec.paths["data"] = (dir / "stories").string();
  spec.options["buckets"] = {"small"};
  spec.decoding.max_new_tokens = 8;

  class ScriptedSummaryJudge : public eval::Judge {
   public:
    std::string describe() const override { return "scripted summary judge"; }
    eval::JudgeReply try_complete(const eval::JudgeRequest& request) override {
      users.push_back(request.user);
      return {true, "9 3\n8 4\n7 5\n6 6\nThe second summary is short.", "", 1, 0};
    }
    std::vector<std::string> users;
  } judge;
  eval::RunOptions options;
  options.out_dir = dir / "out";
  options.judge = &judge;
  options.judge_against_references = true;
  const auto summary = eval::evaluate_task(model, spec, options, json::object());
  REQUIRE(judge.users.size() == 1);
  CHECK(judge.users[0].find("[The Start of Assistant 1's Summary]\nTom played\nThe ball was red\n") != std::string::npos);
  CHECK(summary.failed == 0);
  CHECK(summary.metrics.at("judge_coherence").mean == 3);
  CHECK(summary.metrics.at("judge_coherence_reference").mean == 9);
  CHECK(summary.metrics.at("judge_relevance").mean == 6);
}
