// lib/eval/prompts.cpp: turning a task's templates and one example into the exact prompt text: the
// {name} template language, MMLU's Hendrycks few-shot prompt with shot dropping under a token budget,
// the retrieval context cut, the summarization input (LLM-KICK's line concatenation or plain paragraphs),
// and the references each metric scores against. docs/tasks.md says which quirk belongs to which protocol.
#include <algorithm>
#include <charconv>

#include "kick/core.hpp"
#include "kick/eval.hpp"

namespace kick::eval {
namespace {

bool is_name_start(char c) { return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_'; }
bool is_name_char(char c) { return is_name_start(c) || (c >= '0' && c <= '9'); }

bool is_continuation(unsigned char c) { return (c & 0xC0) == 0x80; }

// The code point starting at text[i] (malformed bytes count as themselves) and its length in bytes.
std::pair<uint32_t, size_t> decode_at(std::string_view text, size_t i) {
  const auto c = static_cast<unsigned char>(text[i]);
  size_t len = c < 0x80 ? 1 : (c >> 5) == 0x6 ? 2 : (c >> 4) == 0xE ? 3 : (c >> 3) == 0x1E ? 4 : 1;
  if (i + len > text.size()) len = 1;
  for (size_t k = 1; k < len; ++k)
    if (!is_continuation(static_cast<unsigned char>(text[i + k]))) len = 1;
  if (len == 1) return {c, 1};
  uint32_t cp = c & (0xFF >> (len + 1));
  for (size_t k = 1; k < len; ++k) cp = (cp << 6) | (static_cast<unsigned char>(text[i + k]) & 0x3F);
  return {cp, len};
}

// Python's str.isspace() (what str.strip() removes).
bool is_python_space(uint32_t cp) {
  return (cp >= 0x09 && cp <= 0x0D) || (cp >= 0x1C && cp <= 0x20) || cp == 0x85 || cp == 0xA0 || cp == 0x1680 ||
         (cp >= 0x2000 && cp <= 0x200A) || cp == 0x2028 || cp == 0x2029 || cp == 0x202F || cp == 0x205F || cp == 0x3000;
}

// Python's str.strip() with no argument: Unicode whitespace, not only ASCII. LLM-KICK strips each story
// line and each retrieval prompt this way.
std::string python_strip(std::string_view text) {
  size_t begin = 0;
  while (begin < text.size()) {
    auto [cp, len] = decode_at(text, begin);
    if (!is_python_space(cp)) break;
    begin += len;
  }
  size_t end = text.size();
  while (end > begin) {
    size_t start = end - 1;
    while (start > begin && is_continuation(static_cast<unsigned char>(text[start]))) --start;
    auto [cp, len] = decode_at(text, start);
    if (start + len != end || !is_python_space(cp)) break;
    end = start;
  }
  return std::string(text.substr(begin, end - begin));
}

bool is_llmkick(const TaskSpec& spec) { return spec.protocol == kProtocolLlmKick; }

std::string where(const TaskSpec& spec, const std::string& key) { return spec.file + ": prompt." + key; }

}  // namespace

std::string render_template(std::string_view tmpl, const std::map<std::string, std::string>& vars,
                            std::string_view what) {
  std::string out;
  out.reserve(tmpl.size());
  size_t i = 0;
  while (i < tmpl.size()) {
    const char c = tmpl[i];
    if (c == '{' && i + 1 < tmpl.size() && tmpl[i + 1] == '{') {
      out += '{';
      i += 2;
    } else if (c == '}' && i + 1 < tmpl.size() && tmpl[i + 1] == '}') {
      out += '}';
      i += 2;
    } else if (c == '}') {
      fail("{}: a single '}}' at character {} (write '}}}}' for a literal brace)", what, i);
    } else if (c == '{') {
      const size_t close = tmpl.find('}', i + 1);
      if (close == std::string_view::npos)
        fail("{}: '{{' at character {} is never closed (write '{{{{' for a literal brace)", what, i);
      const std::string name(tmpl.substr(i + 1, close - i - 1));
      if (name.empty() || !is_name_start(name[0]) || !std::all_of(name.begin(), name.end(), is_name_char))
        fail("{}: '{{{}}}' at character {} is not a variable name", what, name, i);
      auto it = vars.find(name);
      if (it == vars.end()) {
        std::vector<std::string> known;
        for (const auto& kv : vars) known.push_back("{" + kv.first + "}");
        fail("{}: unknown variable {{{}}} (known: {})", what, name, known.empty() ? "none" : join(known, ", "));
      }
      out += it->second;
      i = close + 1;
    } else {
      out += c;
      ++i;
    }
  }
  return out;
}

std::string mmlu_format_example(const MmluExample& example, bool include_answer) {
  static constexpr char kLetters[4] = {'A', 'B', 'C', 'D'};
  std::string out = example.question;
  for (size_t j = 0; j < 4; ++j) {
    out += '\n';
    out += kLetters[j];
    out += ". ";
    out += example.choices[j];
  }
  out += "\nAnswer:";
  if (include_answer) {
    out += ' ';
    out += example.answer;
    out += "\n\n";
  }
  return out;
}

std::string mmlu_subject_text(const std::string& subject, bool llmkick_quirk) {
  std::string out;
  size_t start = 0;
  while (true) {
    const size_t underscore = subject.find('_', start);
    const std::string part =
        subject.substr(start, underscore == std::string::npos ? std::string::npos : underscore - start);
    if (llmkick_quirk || start > 0) out += ' ';
    out += part;
    if (underscore == std::string::npos) break;
    start = underscore + 1;
  }
  return out;
}

FewShotPrompt mmlu_prompt(const std::string& header_template, const std::string& subject_text,
                          const std::vector<MmluExample>& shots, const MmluExample& question, int k, int64_t max_tokens,
                          const TokenCounter& count_tokens) {
  if (max_tokens > 0 && !count_tokens)
    fail("MMLU prompt for {}: a token budget of {} needs a token counter", question.source, max_tokens);
  const std::string header = render_template(header_template, {{"subject", subject_text}}, "MMLU header");
  const std::string ending = mmlu_format_example(question, false);
  std::vector<std::string> formatted;
  const size_t available = std::min(static_cast<size_t>(std::max(k, 0)), shots.size());
  for (size_t i = 0; i < available; ++i) formatted.push_back(mmlu_format_example(shots[i], true));

  auto build = [&](size_t n) {
    std::string text = header;
    for (size_t i = 0; i < n; ++i) text += formatted[i];
    return text + ending;
  };
  FewShotPrompt result;
  size_t n = available;
  result.text = build(n);
  if (max_tokens > 0) {
    while (static_cast<int64_t>(count_tokens(result.text)) > max_tokens && n > 0) result.text = build(--n);
    result.fits = static_cast<int64_t>(count_tokens(result.text)) <= max_tokens;
  }
  result.shots = static_cast<int>(n);
  return result;
}

std::string utf8_prefix(std::string_view text, size_t code_points) {
  size_t seen = 0;
  for (size_t i = 0; i < text.size(); ++i) {
    if (is_continuation(static_cast<unsigned char>(text[i]))) continue;
    if (seen == code_points) return std::string(text.substr(0, i));
    ++seen;
  }
  return std::string(text);
}

std::string story_text(const Story& story, bool llmkick_quirk) {
  if (!llmkick_quirk) return join(story.paragraphs, "\n\n");
  std::string out;
  for (const auto& line : story.lines) out += python_strip(line);
  return out;
}

std::string render_qa_prompt(const TaskSpec& spec, const QaExample& example) {
  std::vector<std::string> texts;
  for (const auto& passage : example.passages) texts.push_back(passage.text);
  std::string context = join(texts, spec.option("passage_separator", ""));
  const std::string limit_text = spec.option("context_chars", "0");
  size_t limit = 0;
  auto [end, ec] = std::from_chars(limit_text.data(), limit_text.data() + limit_text.size(), limit);
  if (ec != std::errc() || end != limit_text.data() + limit_text.size())
    fail("{}: options.context_chars: expected an integer >= 0, got '{}'", spec.file, limit_text);
  if (limit > 0) context = utf8_prefix(context, limit);
  std::string prompt = render_template(spec.template_text("template"),
                                       {{"question", example.question}, {"context", context}}, where(spec, "template"));
  return spec.option_flag("strip_prompt", false) ? python_strip(prompt) : prompt;
}

std::string render_summary_prompt(const TaskSpec& spec, const Story& story) {
  const std::string bucket_key = "template_" + story.bucket;
  const std::string key = !story.bucket.empty() && spec.prompt.count(bucket_key) ? bucket_key : "template";
  const std::string how = spec.option("story_text", is_llmkick(spec) ? "lines_concatenated" : "paragraphs");
  const std::string text = story_text(story, how == "lines_concatenated");
  return render_template(spec.template_text(key), {{"story", text}}, where(spec, key));
}

std::string render_instruction_prompt(const TaskSpec& spec, const Instruction& instruction, size_t turn) {
  if (turn >= instruction.turns.size())
    fail("{}: turn {} asked for, but the question has {} turn(s)", instruction.source, turn + 1,
         instruction.turns.size());
  return render_template(spec.template_text("template"), {{"instruction", instruction.turns[turn]}},
                         where(spec, "template"));
}

FewShotPrompt render_mmlu_prompt(const TaskSpec& spec, const std::vector<MmluExample>& shots,
                                 const MmluExample& question, const TokenCounter& count_tokens) {
  const bool quirk = spec.option_flag("subject_leading_space", is_llmkick(spec));
  return mmlu_prompt(spec.template_text("header"), mmlu_subject_text(question.subject, quirk), shots, question,
                     spec.few_shot.k, spec.few_shot.max_prompt_tokens, count_tokens);
}

std::vector<std::string> references_for(const TaskSpec& spec, const QaExample& example) {
  const std::string which = spec.option("references", is_llmkick(spec) ? "reference_answers" : "answers");
  const auto& refs = which == "reference_answers" ? example.reference_answers : example.answers;
  if (refs.empty()) fail("{}: the example has no {} ({}: options.references)", example.source, which, spec.file);
  return refs;
}

std::vector<std::string> references_for(const TaskSpec& spec, const Story& story) {
  if (story.highlights.empty()) fail("{}: the story has no @highlight summary ({})", story.source, spec.file);
  return {join(story.highlights, "\n")};
}

std::vector<std::string> references_for(const TaskSpec& spec, const MmluExample& example) {
  if (example.answer < 'A' || example.answer > 'D')
    fail("{}: answer '{}' is not A-D ({})", example.source, example.answer, spec.file);
  return {std::string(1, example.answer)};
}

std::string join(const std::vector<std::string>& parts, std::string_view separator) {
  std::string out;
  for (size_t i = 0; i < parts.size(); ++i) {
    if (i) out += separator;
    out += parts[i];
  }
  return out;
}

}  // namespace kick::eval
