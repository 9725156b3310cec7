// Named chat templates: vicuna_v1.1 (FastChat's, which LLM-KICK's prompts use), chatml (SmolLM2 and
// other <|im_start|> models) and llama2 ([INST] blocks). Rendered in C++, not by a Jinja engine.
#include "kick/model.hpp"

namespace kick {

namespace {

constexpr const char* kVicunaSystem =
    "A chat between a curious user and an artificial intelligence assistant. The assistant gives "
    "helpful, detailed, and polite answers to the user's questions.";
constexpr const char* kSmolSystem = "You are a helpful AI assistant named SmolLM, trained by Hugging Face";

void check_role(const ChatMessage& m, const std::string& template_name) {
  if (m.role != "system" && m.role != "user" && m.role != "assistant") {
    fail("chat template {}: unknown role '{}' (expected system, user or assistant)", template_name, m.role);
  }
}

// FastChat vicuna_v1.1: "{system} USER: {u} ASSISTANT: {a}</s>USER: ..." with sep " " and sep2 "</s>".
std::string render_vicuna(const std::vector<ChatMessage>& messages, bool open_assistant) {
  std::string system = kVicunaSystem;
  std::string out;
  size_t i = 0;
  if (!messages.empty() && messages[0].role == "system") {
    system = messages[0].content;
    i = 1;
  }
  out = system + " ";
  for (; i < messages.size(); ++i) {
    const auto& m = messages[i];
    if (m.role == "user") {
      out += "USER: " + m.content + " ";
    } else if (m.role == "assistant") {
      out += "ASSISTANT: " + m.content + "</s>";
    } else {
      fail("chat template vicuna_v1.1: a system message may only come first");
    }
  }
  if (open_assistant) out += "ASSISTANT:";
  return out;
}

std::string render_chatml(const std::vector<ChatMessage>& messages, bool open_assistant) {
  std::string out;
  if (messages.empty() || messages[0].role != "system") {
    out += std::string("<|im_start|>system\n") + kSmolSystem + "<|im_end|>\n";
  }
  for (const auto& m : messages) out += "<|im_start|>" + m.role + "\n" + m.content + "<|im_end|>\n";
  if (open_assistant) out += "<|im_start|>assistant\n";
  return out;
}

std::string render_llama2(const std::vector<ChatMessage>& messages, bool open_assistant) {
  std::string out;
  std::string system;
  size_t i = 0;
  if (!messages.empty() && messages[0].role == "system") {
    system = "<<SYS>>\n" + messages[0].content + "\n<</SYS>>\n\n";
    i = 1;
  }
  for (; i < messages.size(); ++i) {
    const auto& m = messages[i];
    if (m.role == "user") {
      out += "[INST] " + system + m.content + " [/INST]";
      system.clear();
    } else if (m.role == "assistant") {
      out += " " + m.content + " </s><s>";
    } else {
      fail("chat template llama2: a system message may only come first");
    }
  }
  (void)open_assistant;  // the [/INST] already opens the assistant's turn
  return out;
}

}  // namespace

std::vector<std::string> chat_template_names() { return {"chatml", "llama2", "raw", "vicuna_v1.1"}; }

std::string apply_chat_template(const std::string& name, const std::vector<ChatMessage>& messages,
                                bool add_generation_prompt) {
  for (const auto& m : messages) check_role(m, name);
  if (name == "vicuna_v1.1") return render_vicuna(messages, add_generation_prompt);
  if (name == "chatml") return render_chatml(messages, add_generation_prompt);
  if (name == "llama2") return render_llama2(messages, add_generation_prompt);
  if (name == "raw") {
    std::string out;
    for (const auto& m : messages) out += m.content;
    return out;
  }
  fail("unknown chat template '{}' (known: chatml, llama2, raw, vicuna_v1.1)", name);
}

std::string default_chat_template(const VocabSpec& vocab) {
  for (const auto& t : vocab.tokens) {
    if (t == "<|im_start|>") return "chatml";
  }
  return "vicuna_v1.1";
}

std::vector<std::string> chat_template_stops(const std::string& name) {
  if (name == "chatml") return {"<|im_end|>", "<|im_start|>"};
  if (name == "vicuna_v1.1") return {"</s>", "USER:"};
  if (name == "llama2") return {"</s>", "[INST]"};
  return {};
}

}  // namespace kick
