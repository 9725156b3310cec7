// lib/eval/tasks.cpp: tasks as data. Owns the task-file format (data/tasks/<name>.yaml: base keys plus
// `protocols: {llm-kick, strict}` overrides), its validation (every error names the file, line and field),
// the loader registry (which data set a task reads, which templates, variables and options it accepts) and
// the metric registry (docs/tasks.md lists both).
#include <yaml-cpp/yaml.h>

#include <algorithm>
#include <cerrno>
#include <charconv>
#include <cstdlib>
#include <set>

#include "kick/core.hpp"
#include "kick/eval.hpp"
#include "kick/yaml_text.hpp"

namespace kick::eval {
namespace {

std::string join_names(const std::vector<std::string>& names) {
  std::string out;
  for (size_t i = 0; i < names.size(); ++i) out += (i ? ", " : "") + names[i];
  return out;
}

bool contains(const std::vector<std::string>& names, const std::string& name) {
  return std::find(names.begin(), names.end(), name) != names.end();
}

// ------------------------------------------------------------------------------------ loader registry

enum class OptionKind { flag, count, choice, text, list };
struct OptionInfo {
  std::string name;
  OptionKind kind;
  std::vector<std::string> choices;  // OptionKind::choice
};

struct LoaderInfo {
  std::string name;
  std::vector<std::string> required_paths, optional_paths;
  std::vector<std::string> required_templates, optional_templates;
  std::vector<std::string> variables;  // what templates may name
  std::vector<OptionInfo> options;
  std::function<TaskData(const TaskSpec&)> load;
};

std::vector<OptionInfo> qa_options() {
  return {{"references", OptionKind::choice, {"reference_answers", "answers"}},
          {"score_text", OptionKind::choice, {"generation", "first_line", "prompt_and_generation"}},
          {"context_chars", OptionKind::count, {}},
          {"passage_separator", OptionKind::text, {}},
          {"strip_prompt", OptionKind::flag, {}}};
}
std::vector<OptionInfo> chat_options() { return {{"chat_template", OptionKind::text, {}}}; }

std::vector<QaExample> load_freebaseqa_any(const TaskSpec& spec) {
  const auto path = spec.data_file("data");
  const auto ext = path.extension().string();
  if (ext == ".json") return load_freebaseqa_json(path);
  if (ext == ".txt") return load_freebaseqa_txt(path);
  fail("{}: paths.data: {} is neither FreebaseQA v1.0 JSON (.json) nor the 2017 text release (.txt)", spec.file,
       path.string());
}

const std::vector<LoaderInfo>& loaders() {
  static const std::vector<LoaderInfo> table = [] {
    std::vector<LoaderInfo> t;
    t.push_back({"freebaseqa",
                 {"data"},
                 {},
                 {"template"},
                 {},
                 {"question", "context"},
                 qa_options(),
                 [](const TaskSpec& s) -> TaskData { return load_freebaseqa_any(s); }});
    t.push_back({"nq_open",
                 {"data"},
                 {},
                 {"template"},
                 {},
                 {"question", "context"},
                 qa_options(),
                 [](const TaskSpec& s) -> TaskData { return load_nq_open(s.data_file("data")); }});
    t.push_back({"triviaqa_rc",
                 {"data"},
                 {"evidence"},
                 {"template"},
                 {},
                 {"question", "context"},
                 qa_options(),
                 [](const TaskSpec& s) -> TaskData {
                   std::optional<std::filesystem::path> evidence;
                   if (s.paths.count("evidence")) evidence = s.data_file("evidence");
                   return load_triviaqa_rc(s.data_file("data"), evidence);
                 }});
    t.push_back({"mmlu",
                 {"data"},
                 {},
                 {"header"},
                 {},
                 {"subject"},
                 {{"subject_leading_space", OptionKind::flag, {}},
                  {"scoring", OptionKind::choice, {"generate", "loglikelihood"}}},
                 [](const TaskSpec& s) -> TaskData { return load_mmlu(s.data_file("data")); }});
    auto story_options = chat_options();
    story_options.push_back({"buckets", OptionKind::list, {}});
    story_options.push_back({"story_text", OptionKind::choice, {"lines_concatenated", "paragraphs"}});
    t.push_back({"cnn_dailymail",
                 {"data"},
                 {},
                 {"template"},
                 {"template_small", "template_mid", "template_large"},
                 {"story"},
                 story_options,
                 [](const TaskSpec& s) -> TaskData {
                   auto it = s.options.find("buckets");
                   const std::vector<std::string> buckets =
                       it != s.options.end() ? it->second : std::vector<std::string>{"small", "mid", "large"};
                   return load_cnn_dailymail(s.data_file("data"), buckets);
                 }});
    t.push_back({"vicuna80",
                 {"data"},
                 {},
                 {"template"},
                 {},
                 {"instruction"},
                 chat_options(),
                 [](const TaskSpec& s) -> TaskData { return load_vicuna80(s.data_file("data")); }});
    t.push_back({"mt_bench",
                 {"data"},
                 {},
                 {"template"},
                 {},
                 {"instruction"},
                 chat_options(),
                 [](const TaskSpec& s) -> TaskData { return load_mt_bench(s.data_file("data")); }});
    // The file as it is; options.format says how the runner joins it before tokenizing ("wikitext": the
    // Hugging Face rows joined with "\n\n", the SparseGPT/GPTQ/Wanda protocol).
    t.push_back({"text",
                 {"data"},
                 {},
                 {},
                 {},
                 {},
                 {{"seqlen", OptionKind::count, {}}, {"format", OptionKind::choice, {"wikitext", "plain"}}},
                 [](const TaskSpec& s) -> TaskData { return read_file(s.data_file("data")); }});
    return t;
  }();
  return table;
}

const LoaderInfo& loader_info(const std::string& name) {
  for (const auto& l : loaders())
    if (l.name == name) return l;
  fail("unknown loader '{}' (known: {})", name, join_names(loader_names()));
}

// ------------------------------------------------------------------------------------ metric registry

double flag(bool b) { return b ? 1.0 : 0.0; }

char reference_letter(const std::string& metric_name, const std::vector<std::string>& references) {
  if (references.size() != 1 || references[0].size() != 1 || references[0][0] < 'A' || references[0][0] > 'D')
    fail("metric {}: expected one reference letter A-D, got {} reference(s)", metric_name, references.size());
  return references[0][0];
}

const std::vector<MetricInfo>& metrics_table() {
  static const std::vector<MetricInfo> table = [] {
    std::vector<MetricInfo> t;
    auto text = [&t](std::string name, std::string description, TextMetric fn) {
      t.push_back({std::move(name), "text", std::move(description), std::move(fn)});
    };
    auto other = [&t](std::string name, std::string kind, std::string description) {
      t.push_back({std::move(name), std::move(kind), std::move(description), nullptr});
    };
    text("factoid_match_llmkick",
         "LLM-KICK validate_response: some alias, lower-cased and space-stripped, is a substring of the decoded "
         "prompt+generation treated the same way",
         [](const std::string& p, const std::vector<std::string>& r) { return flag(factoid_match_llmkick(p, r)); });
    text("factoid_match",
         "some SQuAD-normalised alias occurs as a whole-token run in the SQuAD-normalised generation (empty aliases "
         "never match)",
         [](const std::string& p, const std::vector<std::string>& r) { return flag(factoid_match_strict(p, r)); });
    text("factoid_em", "SQuAD exact match, max over the aliases",
         [](const std::string& p, const std::vector<std::string>& r) { return exact_match_max(p, r); });
    text("factoid_f1", "SQuAD token F1, max over the aliases",
         [](const std::string& p, const std::vector<std::string>& r) { return token_f1_max(p, r); });
    text("retrieval_em_llmkick",
         "LLM-KICK main_icrqa.py exact_match_score: TriviaQA-normalised gold in prediction or prediction in gold "
         "(an empty prediction scores 1)",
         [](const std::string& p, const std::vector<std::string>& r) { return retrieval_em_llmkick_max(p, r); });
    text("retrieval_em", "TriviaQA-normalised equality, max over the aliases; never credits an empty answer",
         [](const std::string& p, const std::vector<std::string>& r) { return retrieval_em_strict_max(p, r); });
    text("retrieval_f1", "token F1 after TriviaQA normalisation, max over the aliases (as LLM-KICK's f1_score)",
         [](const std::string& p, const std::vector<std::string>& r) {
           return token_f1_max(p, r, Normalization::triviaqa);
         });
    text("rouge1", "ROUGE-1 F-measure (rouge-score, Porter stemming) against the reference summary",
         [](const std::string& p, const std::vector<std::string>& r) { return rouge_n_multi(p, r, 1).fmeasure; });
    text("rouge2", "ROUGE-2 F-measure (rouge-score, Porter stemming) against the reference summary",
         [](const std::string& p, const std::vector<std::string>& r) { return rouge_n_multi(p, r, 2).fmeasure; });
    text("rougeL", "ROUGE-L F-measure (rouge-score, Porter stemming) against the reference summary",
         [](const std::string& p, const std::vector<std::string>& r) { return rouge_l_multi(p, r).fmeasure; });
    text("mmlu_accuracy_llmkick",
         "LLM-KICK main_mmlu.py: the last character of the decoded one-token generation equals the answer letter",
         [](const std::string& p, const std::vector<std::string>& r) {
           const auto letter = mmlu_letter_llmkick(p);
           return flag(letter && *letter == reference_letter("mmlu_accuracy_llmkick", r));
         });
    text("mmlu_accuracy",
         "the generation's first non-space character, upper-cased, is the answer letter and stands alone",
         [](const std::string& p, const std::vector<std::string>& r) {
           const auto letter = mmlu_letter_strict(p);
           return flag(letter && *letter == reference_letter("mmlu_accuracy", r));
         });
    other("mmlu_choice_loglikelihood", "choice",
          "the letter whose continuation (\" A\", \" B\", \" C\", \" D\") has the highest log-likelihood after "
          "the prompt is the answer letter");
    other("perplexity", "perplexity",
          "exp(mean next-token NLL) over non-overlapping windows of options.seqlen tokens (SparseGPT protocol)");
    other("judge_summary_aspects", "judge",
          "a judge model scores coherence, consistency, fluency and relevance 1-10 (LLM-KICK's reviewer prompt; "
          "under llm-kick paired with a reference model's summary)");
    other("judge_pairwise_llmkick", "judge",
          "LLM-KICK mt_conversation/gpt4_judge.py: the judge scores a reference answer and the model's answer 1-10 "
          "each (first line \"a b\")");
    other("judge_rating", "judge", "FastChat single-answer grading: the judge rates the answer 1-10 (\"[[x]]\")");
    return t;
  }();
  return table;
}

// ------------------------------------------------------------------------------------ task-file parsing

const std::vector<std::string>& protocol_names() {
  static const std::vector<std::string> names = {kProtocolLlmKick, kProtocolStrict};
  return names;
}

const std::vector<std::string> kTopFields = {"name",   "version", "description", "loader",   "paths",   "options",
                                             "prompt", "chat",    "few_shot",    "decoding", "metrics", "protocols"};
const std::vector<std::string> kFewShotFields = {"k", "split", "max_prompt_tokens"};
const std::vector<std::string> kDecodingFields = {"mode",           "temperature",       "top_p", "top_k",
                                                  "max_new_tokens", "max_length_factor", "stop",  "seed"};

std::string node_kind(const YAML::Node& n) {
  switch (n.Type()) {
    case YAML::NodeType::Null:
      return "nothing";
    case YAML::NodeType::Scalar:
      return "'" + n.Scalar() + "'";
    case YAML::NodeType::Sequence:
      return "a list";
    case YAML::NodeType::Map:
      return "a mapping";
    default:
      return "an undefined node";
  }
}

// Reads one task file's nodes into a TaskSpec; every message starts "file:line: field:".
class SpecReader {
 public:
  SpecReader(TaskSpec& spec, std::string file) : spec_(spec), file_(std::move(file)) {}

  // "file:line: field", or "file: field" for a node with no place in the file (a missing one).
  std::string where(const YAML::Node& node, const std::string& field) const {
    const auto mark = node.Mark();
    return mark.is_null() ? fmt::format("{}: {}", file_, field) : fmt::format("{}:{}: {}", file_, mark.line + 1, field);
  }
  [[noreturn]] void error(const YAML::Node& node, const std::string& field, const std::string& message) const {
    fail("{}: {}", where(node, field), message);
  }

  // Applies the fields of one mapping (the base, or one protocol's overrides) over what is already read.
  void apply(const YAML::Node& map, const std::string& prefix, bool is_protocol) {
    const std::string where = prefix.empty() ? "task file" : prefix.substr(0, prefix.size() - 1);
    for_each_entry(map, where, [&](const std::string& key, const YAML::Node& value) {
      const std::string field = prefix + key;
      if (!contains(kTopFields, key))
        error(value, field, fmt::format("unknown field (known: {})", join_names(kTopFields)));
      if (is_protocol && (key == "name" || key == "version" || key == "protocols"))
        error(value, field, "cannot be overridden by a protocol");
      set_.insert(key);
      read_field(key, value, field);
    });
  }

  const YAML::Node& protocols() const { return protocols_; }
  bool has(const std::string& key) const { return set_.count(key) > 0; }

  // Cross-field checks once the base and the protocol's overrides are merged.
  void validate() {
    for (const char* required : {"name", "version", "description", "loader", "metrics"})
      if (!has(required)) error(YAML::Node(), required, "missing (every task file sets it)");
    if (spec_.metrics.empty()) error(metrics_node_, metrics_field_, "no metric named");
    if (!is_known_loader(spec_.loader))
      error(loader_node_, loader_field_,
            fmt::format("unknown loader '{}' (known: {})", spec_.loader, join_names(loader_names())));
    const LoaderInfo& loader = loader_info(spec_.loader);

    for (const auto& key : loader.required_paths)
      if (!spec_.paths.count(key))
        error(YAML::Node(), "paths." + key, fmt::format("missing (loader {} reads it)", loader.name));
    for (const auto& [key, value] : spec_.paths)
      if (!contains(loader.required_paths, key) && !contains(loader.optional_paths, key))
        error(path_nodes_.at(key).first, path_nodes_.at(key).second,
              fmt::format("unknown path for loader {}", loader.name));

    std::vector<std::string> templates = loader.required_templates;
    templates.insert(templates.end(), loader.optional_templates.begin(), loader.optional_templates.end());
    for (const auto& key : loader.required_templates)
      if (!spec_.prompt.count(key))
        error(YAML::Node(), "prompt." + key, fmt::format("missing (loader {} needs it)", loader.name));
    std::map<std::string, std::string> dummy;
    for (const auto& v : loader.variables) dummy[v] = "";
    for (const auto& [key, value] : spec_.prompt) {
      const auto& [node, field] = prompt_nodes_.at(key);
      if (!contains(templates, key))
        error(node, field,
              fmt::format("unknown template for loader {} (known: {})", loader.name,
                          templates.empty() ? std::string("none") : join_names(templates)));
      render_template(value, dummy, where(node, field));
    }

    for (const auto& [key, values] : spec_.options) {
      const auto& [node, field] = option_nodes_.at(key);
      const std::string& option_name = key;  // C++17 lambdas cannot capture structured bindings (clang refuses)
      auto info = std::find_if(loader.options.begin(), loader.options.end(),
                               [&](const OptionInfo& o) { return o.name == option_name; });
      if (info == loader.options.end()) {
        std::vector<std::string> known;
        for (const auto& o : loader.options) known.push_back(o.name);
        error(node, field,
              fmt::format("unknown option for loader {} (known: {})", loader.name,
                          known.empty() ? std::string("none") : join_names(known)));
      }
      check_option(*info, values, node, field);
    }

    for (size_t i = 0; i < spec_.metrics.size(); ++i)
      if (!is_known_metric(spec_.metrics[i]))
        error(metric_nodes_[i], fmt::format("{}[{}]", metrics_field_, i),
              fmt::format("unknown metric '{}' (known: {})", spec_.metrics[i], join_names(metric_names())));
    if (loader.name == "mmlu") {
      // The scorer either generates a letter or compares the four letters' log-likelihoods; the metrics
      // must read what it produces.
      const auto scoring = spec_.options.find("scoring");
      if (scoring == spec_.options.end()) error(YAML::Node(), "options.scoring", "missing (generate or loglikelihood)");
      const std::string wanted = scoring->second.front() == "generate" ? "text" : "choice";
      for (size_t i = 0; i < spec_.metrics.size(); ++i)
        if (metric(spec_.metrics[i]).kind != wanted)
          error(metric_nodes_[i], fmt::format("{}[{}]", metrics_field_, i),
                fmt::format("metric {} does not read what options.scoring {} produces", spec_.metrics[i],
                            scoring->second.front()));
    }

    const auto& d = spec_.decoding;
    if (d.mode == "sample" && !(d.temperature > 0))
      error(YAML::Node(), "decoding.temperature", "sampling needs a temperature above 0");
    if (d.max_new_tokens > 0 && d.max_length_factor > 0)
      error(YAML::Node(), "decoding", "set max_new_tokens or max_length_factor, not both");
    if (spec_.few_shot.k > 0 && spec_.few_shot.split.empty())
      error(YAML::Node(), "few_shot.split", "missing (few_shot.k > 0 needs the split the shots come from)");
  }

 private:
  template <typename Fn>
  void for_each_entry(const YAML::Node& map, const std::string& field, Fn&& fn) {
    if (map.IsNull()) return;
    if (!map.IsMap()) error(map, field, "expected a mapping, got " + node_kind(map));
    std::set<std::string> seen;
    for (const auto& entry : map) {
      if (!entry.first.IsScalar()) error(entry.first, field, "keys must be plain names");
      const std::string key = entry.first.Scalar();
      if (!seen.insert(key).second) error(entry.first, field + "." + key, "appears twice");
      fn(key, entry.second);
    }
  }

  void read_field(const std::string& key, const YAML::Node& value, const std::string& field) {
    if (key == "name") {
      spec_.name = text(value, field);
    } else if (key == "version") {
      spec_.version = static_cast<int>(integer(value, field, 1));
    } else if (key == "description") {
      spec_.description = text(value, field);
    } else if (key == "loader") {
      spec_.loader = text(value, field);
      loader_node_ = value;
      loader_field_ = field;
    } else if (key == "paths") {
      read_string_map(value, field, spec_.paths, path_nodes_);
    } else if (key == "prompt") {
      read_string_map(value, field, spec_.prompt, prompt_nodes_);
    } else if (key == "options") {
      read_options(value, field);
    } else if (key == "chat") {
      spec_.chat = boolean(value, field);
    } else if (key == "few_shot") {
      read_few_shot(value, field);
    } else if (key == "decoding") {
      read_decoding(value, field);
    } else if (key == "metrics") {
      read_metrics(value, field);
    } else if (key == "protocols") {
      protocols_ = value;
    }
  }

  std::string text(const YAML::Node& n, const std::string& field) const {
    if (!n.IsScalar()) error(n, field, "expected a string, got " + node_kind(n));
    return n.Scalar();
  }
  int64_t integer(const YAML::Node& n, const std::string& field, int64_t minimum) const {
    const std::string s = text(n, field);
    int64_t v = 0;
    auto [end, ec] = std::from_chars(s.data(), s.data() + s.size(), v);
    if (ec != std::errc() || end != s.data() + s.size())
      error(n, field, fmt::format("expected an integer, got '{}'", s));
    if (v < minimum) error(n, field, fmt::format("expected an integer >= {}, got {}", minimum, v));
    return v;
  }
  double number(const YAML::Node& n, const std::string& field) const {
    const std::string s = text(n, field);
    char* end = nullptr;
    errno = 0;
    const double v = std::strtod(s.c_str(), &end);
    if (s.empty() || end != s.c_str() + s.size() || errno == ERANGE || v != v)
      error(n, field, fmt::format("expected a number, got '{}'", s));
    if (v < 0) error(n, field, fmt::format("expected a number >= 0, got {}", s));
    return v;
  }
  bool boolean(const YAML::Node& n, const std::string& field) const {
    const std::string s = text(n, field);
    if (s == "true" || s == "yes") return true;
    if (s == "false" || s == "no") return false;
    error(n, field, fmt::format("expected true or false, got '{}'", s));
  }
  std::vector<std::string> strings(const YAML::Node& n, const std::string& field,
                                   std::vector<YAML::Node>* nodes) const {
    if (!n.IsSequence()) error(n, field, "expected a list, got " + node_kind(n));
    std::vector<std::string> out;
    for (size_t i = 0; i < n.size(); ++i) {
      out.push_back(text(n[i], fmt::format("{}[{}]", field, i)));
      if (nodes) nodes->push_back(n[i]);
    }
    return out;
  }

  void read_string_map(const YAML::Node& map, const std::string& field, std::map<std::string, std::string>& out,
                       std::map<std::string, std::pair<YAML::Node, std::string>>& nodes) {
    for_each_entry(map, field, [&](const std::string& key, const YAML::Node& value) {
      out[key] = text(value, field + "." + key);
      nodes[key] = {value, field + "." + key};
    });
  }
  void read_options(const YAML::Node& map, const std::string& field) {
    for_each_entry(map, field, [&](const std::string& key, const YAML::Node& value) {
      const std::string f = field + "." + key;
      spec_.options[key] = value.IsSequence() ? strings(value, f, nullptr) : std::vector<std::string>{text(value, f)};
      option_nodes_[key] = {value, f};
    });
  }
  void read_few_shot(const YAML::Node& map, const std::string& field) {
    for_each_entry(map, field, [&](const std::string& key, const YAML::Node& value) {
      const std::string f = field + "." + key;
      if (key == "k")
        spec_.few_shot.k = static_cast<int>(integer(value, f, 0));
      else if (key == "split")
        spec_.few_shot.split = text(value, f);
      else if (key == "max_prompt_tokens")
        spec_.few_shot.max_prompt_tokens = integer(value, f, 0);
      else
        error(value, f, fmt::format("unknown field (known: {})", join_names(kFewShotFields)));
    });
  }
  void read_decoding(const YAML::Node& map, const std::string& field) {
    auto& d = spec_.decoding;
    for_each_entry(map, field, [&](const std::string& key, const YAML::Node& value) {
      const std::string f = field + "." + key;
      if (key == "mode") {
        d.mode = text(value, f);
        if (d.mode != "greedy" && d.mode != "sample")
          error(value, f, fmt::format("expected greedy or sample, got '{}'", d.mode));
      } else if (key == "temperature")
        d.temperature = number(value, f);
      else if (key == "top_p") {
        d.top_p = number(value, f);
        if (!(d.top_p > 0 && d.top_p <= 1))
          error(value, f, fmt::format("expected a number in (0, 1], got {}", d.top_p));
      } else if (key == "top_k")
        d.top_k = integer(value, f, 0);
      else if (key == "max_new_tokens")
        d.max_new_tokens = integer(value, f, 0);
      else if (key == "max_length_factor")
        d.max_length_factor = number(value, f);
      else if (key == "stop")
        d.stop = strings(value, f, nullptr);
      else if (key == "seed")
        d.seed = static_cast<uint64_t>(integer(value, f, 0));
      else
        error(value, f, fmt::format("unknown field (known: {})", join_names(kDecodingFields)));
    });
  }
  void read_metrics(const YAML::Node& value, const std::string& field) {
    metric_nodes_.clear();
    spec_.metrics = strings(value, field, &metric_nodes_);
    metrics_node_ = value;
    metrics_field_ = field;
  }

  void check_option(const OptionInfo& info, const std::vector<std::string>& values, const YAML::Node& node,
                    const std::string& field) const {
    if (info.kind != OptionKind::list && values.size() != 1)
      error(node, field, fmt::format("expected one value, got {}", values.size()));
    if (info.kind == OptionKind::list && values.empty()) error(node, field, "expected at least one value");
    const std::string& v = values.front();
    switch (info.kind) {
      case OptionKind::flag:
        if (v != "true" && v != "false" && v != "yes" && v != "no")
          error(node, field, fmt::format("expected true or false, got '{}'", v));
        break;
      case OptionKind::count: {
        int64_t n = 0;
        auto [end, ec] = std::from_chars(v.data(), v.data() + v.size(), n);
        if (ec != std::errc() || end != v.data() + v.size() || n < 0)
          error(node, field, fmt::format("expected an integer >= 0, got '{}'", v));
        break;
      }
      case OptionKind::choice:
        if (!contains(info.choices, v))
          error(node, field, fmt::format("expected one of {}, got '{}'", join_names(info.choices), v));
        break;
      case OptionKind::text:
      case OptionKind::list:
        break;
    }
  }

  TaskSpec& spec_;
  std::string file_;
  std::set<std::string> set_;
  YAML::Node protocols_, loader_node_, metrics_node_;
  std::string loader_field_ = "loader", metrics_field_ = "metrics";
  std::vector<YAML::Node> metric_nodes_;
  std::map<std::string, std::pair<YAML::Node, std::string>> path_nodes_, prompt_nodes_, option_nodes_;
};

}  // namespace

// ------------------------------------------------------------------------------------ TaskSpec

std::filesystem::path TaskSpec::data_file(const std::string& key) const {
  auto it = paths.find(key);
  if (it == paths.end()) fail("{}: paths.{} is not set", file, key);
  // An absolute path stands on its own (operator/ keeps it); a relative one is under the data root.
  auto path =
      std::filesystem::path(it->second).is_absolute() ? std::filesystem::path(it->second) : data_root() / it->second;
  if (!std::filesystem::exists(path)) fail("{}: paths.{}: {} does not exist", file, key, path.string());
  return path;
}

const std::string& TaskSpec::template_text(const std::string& key) const {
  auto it = prompt.find(key);
  if (it == prompt.end()) fail("{}: prompt.{} is not set", file, key);
  return it->second;
}

std::string TaskSpec::option(const std::string& key, const std::string& fallback) const {
  auto it = options.find(key);
  if (it == options.end()) return fallback;
  if (it->second.size() != 1) fail("{}: options.{}: expected one value, got {}", file, key, it->second.size());
  return it->second.front();
}

bool TaskSpec::option_flag(const std::string& key, bool fallback) const {
  auto it = options.find(key);
  if (it == options.end()) return fallback;
  const std::string v = option(key, "");
  if (v == "true" || v == "yes") return true;
  if (v == "false" || v == "no") return false;
  fail("{}: options.{}: expected true or false, got '{}'", file, key, v);
}

// ------------------------------------------------------------------------------------ task files

namespace {

// One protocol's view of a parsed file: the base fields, then protocols.<protocol> over them, validated.
TaskSpec spec_for_protocol(const YAML::Node& root, const std::string& file, const std::string& protocol) {
  TaskSpec spec;
  spec.file = file;
  spec.protocol = protocol;
  SpecReader reader(spec, file);
  if (!root.IsMap()) reader.error(root, "task file", "expected a mapping of fields, got " + node_kind(root));
  reader.apply(root, "", false);

  const YAML::Node protocols = reader.protocols();
  if (!reader.has("protocols"))
    reader.error(YAML::Node(), "protocols", "missing (every task file has llm-kick and strict sections)");
  if (!protocols.IsMap()) reader.error(protocols, "protocols", "expected a mapping, got " + node_kind(protocols));
  std::set<std::string> seen;
  for (const auto& entry : protocols) {
    const std::string name = entry.first.Scalar();
    if (!contains(protocol_names(), name))
      reader.error(entry.first, "protocols." + name,
                   fmt::format("unknown protocol (known: {})", join_names(protocol_names())));
    if (!seen.insert(name).second) reader.error(entry.first, "protocols." + name, "appears twice");
  }
  for (const auto& name : protocol_names())
    if (!seen.count(name))
      reader.error(protocols, "protocols." + name, fmt::format("missing (write '{}: {{}}' if nothing changes)", name));
  reader.apply(protocols[protocol], "protocols." + protocol + ".", true);
  reader.validate();
  return spec;
}

}  // namespace

TaskSpec parse_task_spec(const std::string& yaml_text, const std::string& file, const std::string& protocol) {
  if (!contains(protocol_names(), protocol))
    fail("{}: unknown protocol '{}' (known: {})", file, protocol, join_names(protocol_names()));
  const YAML::Node root = parse_yaml_text(yaml_text, file);
  TaskSpec spec = spec_for_protocol(root, file, protocol);
  // The other protocol is validated too, so a mistake in its section cannot wait for the day it is used.
  for (const auto& other : protocol_names())
    if (other != protocol) spec_for_protocol(root, file, other);
  return spec;
}

TaskSpec load_task_file(const std::filesystem::path& path, const std::string& protocol) {
  if (!std::filesystem::is_regular_file(path)) fail("task file {} does not exist", path.string());
  TaskSpec spec = parse_task_spec(read_file(path), path.string(), protocol);
  if (spec.name != path.stem().string())
    fail("{}: name: '{}' differs from the file's name '{}'", path.string(), spec.name, path.stem().string());
  return spec;
}

std::filesystem::path tasks_dir() {
  if (const char* env = std::getenv("KICK_TASKS"); env && *env) return env;
  return std::filesystem::path(KICK_SOURCE_DIR) / "data" / "tasks";
}

std::vector<std::string> task_names(const std::filesystem::path& dir) {
  if (!std::filesystem::is_directory(dir)) fail("task folder {} does not exist (set KICK_TASKS)", dir.string());
  std::vector<std::string> names;
  for (const auto& entry : std::filesystem::directory_iterator(dir))
    if (entry.is_regular_file() && entry.path().extension() == ".yaml") names.push_back(entry.path().stem().string());
  std::sort(names.begin(), names.end());
  return names;
}

TaskSpec load_task(const std::string& name, const std::string& protocol, const std::filesystem::path& dir) {
  const auto names = task_names(dir);
  if (!contains(names, name))
    fail("unknown task '{}' (known: {}; task files are read from {})", name, join_names(names), dir.string());
  return load_task_file(dir / (name + ".yaml"), protocol);
}

// ------------------------------------------------------------------------------------ registries

std::vector<std::string> loader_names() {
  std::vector<std::string> names;
  for (const auto& l : loaders()) names.push_back(l.name);
  return names;
}

bool is_known_loader(const std::string& name) {
  return std::any_of(loaders().begin(), loaders().end(), [&](const LoaderInfo& l) { return l.name == name; });
}

TaskData load_task_data(const TaskSpec& spec) {
  if (!is_known_loader(spec.loader))
    fail("{}: loader: unknown loader '{}' (known: {})", spec.file, spec.loader, join_names(loader_names()));
  return loader_info(spec.loader).load(spec);
}

std::vector<std::string> metric_names() {
  std::vector<std::string> names;
  for (const auto& m : metrics_table()) names.push_back(m.name);
  return names;
}

bool is_known_metric(const std::string& name) {
  return std::any_of(metrics_table().begin(), metrics_table().end(),
                     [&](const MetricInfo& m) { return m.name == name; });
}

const MetricInfo& metric(const std::string& name) {
  for (const auto& m : metrics_table())
    if (m.name == name) return m;
  fail("unknown metric '{}' (known: {})", name, join_names(metric_names()));
}

}  // namespace kick::eval
