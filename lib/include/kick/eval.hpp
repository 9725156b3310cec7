// kick/eval.hpp: the data and metric floor of evaluation (library kick_eval): answer normalisation and
// metrics (SQuAD/TriviaQA EM and F1, LLM-KICK's factoid and retrieval matches, ROUGE, MMLU letters and
// accuracy, judge-reply parsing), loaders for the LLM-KICK data sets, tasks as versioned YAML files with
// an `llm-kick` and a `strict` protocol, and prompt rendering. Torch-free: errors are kick::Error
// (kick/core.hpp), one line naming the file and the line, row or field.
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <functional>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <variant>
#include <vector>

namespace kick::eval {

// ============================================================================================ metrics

// SQuAD v1.1 normalize_answer: lower-case, drop ASCII punctuation (string.punctuation), drop the words
// a/an/the, collapse whitespace. Text is UTF-8 handled as Python 3.11 handles str (Unicode 14.0):
// str.lower() (so "ÉMILE" matches TriviaQA's lower-cased NormalizedAliases), re's Unicode \b for the
// articles (“the → “), str.split() whitespace (NBSP, U+2009, U+3000 ... split). One departure: a
// word-final capital sigma lowers to σ, not ς. Malformed UTF-8 bytes are kept and are neither word nor space.
// These rules hold for every function below unless it says otherwise.
std::string normalize_answer(std::string_view text);
// TriviaQA's variant (LLM-KICK incontext_qa/utils/triviaqa_evaluation.py): '_' -> ' ', then lower, then
// punctuation plus ‘ ’ ´ ` replaced by a SPACE (not deleted), articles -> ' ', collapse whitespace.
std::string normalize_answer_triviaqa(std::string_view text);

enum class Normalization { squad, triviaqa };
std::string normalize(std::string_view text, Normalization how);

// Normalised equality; token F1 over normalised whitespace tokens (0 when nothing is shared).
bool exact_match(std::string_view prediction, std::string_view gold, Normalization how = Normalization::squad);
double token_f1(std::string_view prediction, std::string_view gold, Normalization how = Normalization::squad);
// Max over the aliases (0 when there are none).
double exact_match_max(std::string_view prediction, const std::vector<std::string>& golds,
                       Normalization how = Normalization::squad);
double token_f1_max(std::string_view prediction, const std::vector<std::string>& golds,
                    Normalization how = Normalization::squad);

// LLM-KICK factoid_qa/main_freebase.py validate_response: s.strip().replace(" ", "").lower(), then any
// alias (normalised the same way) is a substring of the output. Quirks kept: only spaces are removed
// (tabs/newlines stay), an alias that normalises to "" matches everything, and the reference passes the
// decoded PROMPT + generation as the output (see factoid_output_llmkick).
std::string factoid_normalize_llmkick(std::string_view text);
bool factoid_match_llmkick(std::string_view output, const std::vector<std::string>& aliases);
// The reference's `output`: the decoded prompt followed by the generation (batch_decode of the whole
// sequence), so an alias that appears in the question counts as a hit.
std::string factoid_output_llmkick(std::string_view prompt, std::string_view generation);
// Strict: SQuAD-normalised alias found as a whole-token run in the SQuAD-normalised generation only;
// empty aliases never match.
bool factoid_match_strict(std::string_view generation, const std::vector<std::string>& aliases);

// LLM-KICK incontext_qa/main_icrqa.py exact_match_score: TriviaQA-normalised gold in prediction OR
// prediction in gold. Quirk kept: an empty prediction is contained in every gold, so it scores 1.
bool retrieval_em_llmkick(std::string_view prediction, std::string_view gold);
double retrieval_em_llmkick_max(std::string_view prediction, const std::vector<std::string>& golds);
// Strict: TriviaQA-normalised equality that never credits an empty prediction or gold.
bool retrieval_em_strict(std::string_view prediction, std::string_view gold);
double retrieval_em_strict_max(std::string_view prediction, const std::vector<std::string>& golds);
// The reference's answer extraction: the text after the prompt, stripped, up to its first '\n'.
std::string first_line_answer(std::string_view generation);

// ROUGE as Google's rouge-score computes it: lower-case, non-[a-z0-9] runs become spaces, split;
// with stemming, tokens longer than 3 characters go through the Porter stemmer. Python's lower() turns
// two non-ASCII characters into kept letters: U+0130 İ -> "i" (+ a dropped dot), U+212A KELVIN SIGN -> "k".
struct RougeScore {
  double precision = 0, recall = 0, fmeasure = 0;
};
std::vector<std::string> rouge_tokenize(std::string_view text, bool stem);
// The Porter stemmer as NLTK's PorterStemmer() runs it by default (mode NLTK_EXTENSIONS), which is what
// rouge-score calls: Porter (1980) plus NLTK's irregular-form pool and rule changes (docs/tasks.md).
// Lower-cases ASCII only (rouge-score only stems [a-z0-9] tokens).
std::string porter_stem(std::string_view word);
RougeScore rouge_n(std::string_view prediction, std::string_view reference, int n, bool stem = true);
RougeScore rouge_l(std::string_view prediction, std::string_view reference, bool stem = true);
// Several references: the score with the highest F-measure (rouge-score's score_multi).
RougeScore rouge_n_multi(std::string_view prediction, const std::vector<std::string>& references, int n,
                         bool stem = true);
RougeScore rouge_l_multi(std::string_view prediction, const std::vector<std::string>& references,
                         bool stem = true);

// MMLU letters. llm-kick (multiple_choice_qa/main_mmlu.py): one new token is generated, the whole
// sequence is decoded, and the prediction is its LAST character, compared case-sensitively with the
// label. Given the decoded generation, this returns that character when it is A-D; an empty generation
// (EOS, skipped as a special token) leaves the prompt's ':' last, which is never correct -> nullopt.
std::optional<char> mmlu_letter_llmkick(std::string_view generation);
// Strict: the first non-space character of the generation, upper-cased, when it is A-D and is not
// followed by another letter or digit, Unicode ones included ("B", " B.", "b)" count; "Because", "Aé" do not).
std::optional<char> mmlu_letter_strict(std::string_view generation);

// The standard Hendrycks subject -> subcategory -> category map (57 subjects, 4 categories:
// "STEM", "humanities", "social sciences", "other (business, health, misc.)").
const std::vector<std::string>& mmlu_subjects();  // sorted, as the reference lists the test folder
std::string mmlu_subcategory(const std::string& subject);
std::string mmlu_category(const std::string& subject);
const std::vector<std::string>& mmlu_categories();

struct AccuracyCell {
  int64_t correct = 0, total = 0;
  double accuracy() const { return total ? static_cast<double>(correct) / static_cast<double>(total) : 0.0; }
};
struct MmluAccuracy {
  std::map<std::string, AccuracyCell> per_subject, per_subcategory, per_category;
  AccuracyCell overall;         // micro: over questions (what LLM-KICK prints and the paper reports)
  double macro_subjects = 0.0;  // unweighted mean of the per-subject accuracies
};
// (subject, correct) per scored question; an unknown subject is an error.
MmluAccuracy aggregate_mmlu(const std::vector<std::pair<std::string, bool>>& results);

// Judge replies: a value, or the reason it could not be read (never a silent default).
template <typename T>
struct Parsed {
  std::optional<T> value;
  std::string error;
  bool ok() const { return value.has_value(); }
};
// FastChat single-answer grading: the first "[[x]]", else the first "[x]" (x = ASCII digits[.digits]; a
// leading zero as in "[[08]]" reads 8 where FastChat's ast.literal_eval raises).
Parsed<double> parse_judge_rating(std::string_view reply);
enum class Verdict { A, B, Tie };
// FastChat pairwise: "[[A]]" wins over "[[B]]" over "[[C]]" (tie), checked in that order.
Parsed<Verdict> parse_judge_verdict(std::string_view reply);
// LLM-KICK mt_conversation/gpt4_judge.py: first line, ',' -> ' ', split on ' ', exactly two floats.
// Numbers are read as Python's float() reads them ("inf", "nan", "1_0", NBSP around them), ASCII digits only.
Parsed<std::pair<double, double>> parse_judge_pair_llmkick(std::string_view reply);
// LLM-KICK in-context_summarization/gpt4_judge.py: lines 1-4 are "a b" score pairs (assistant 1,
// assistant 2) for coherence, consistent, fluency, relevance; only the first two ' '-separated fields
// of each line are read.
using AspectScores = std::map<std::string, std::pair<double, double>>;
Parsed<AspectScores> parse_judge_summary_llmkick(std::string_view reply);
const std::vector<std::string>& summary_aspects();  // coherence, consistent, fluency, relevance

// ============================================================================================ data

struct MmluExample {
  std::string subject;
  std::string question;
  std::array<std::string, 4> choices;
  char answer = 'A';   // 'A'..'D'
  std::string source;  // "file:line"
};
// One headerless RFC-4180 CSV (question,A,B,C,D,answer; quoted fields, doubled quotes, embedded
// newlines, LF or CRLF).
std::vector<MmluExample> load_mmlu_csv(const std::filesystem::path& path, const std::string& subject);
struct MmluData {
  std::vector<std::string> subjects;  // sorted
  std::map<std::string, std::vector<MmluExample>> dev, test;
  size_t test_count() const;
  size_t dev_count() const;
};
// A folder holding dev/<subject>_dev.csv and test/<subject>_test.csv.
MmluData load_mmlu(const std::filesystem::path& folder);

struct Passage {
  std::string title;
  std::string text;
  std::string source;  // "gold" or "retrieved" (NQ-open ctxs), "wikipedia" or "web" (TriviaQA evidence)
};
struct QaExample {
  std::string id;
  std::string question;
  std::vector<std::string> answers;             // every accepted alias (deduplicated, first-seen order)
  std::vector<std::string> reference_answers;   // the aliases LLM-KICK scores against (see loaders)
  std::vector<Passage> passages;                // evidence, in the order the reference concatenates it
  std::string source;                           // "file:line", "file:Questions[i]" or "file:Data[i]"
};
// FreebaseQA v1.0 JSON: Questions[].{Question-ID, RawQuestion, ProcessedQuestion, Parses[].Answers[].
// AnswersName[]}. answers = all names of all parses; reference_answers = Parses[0].Answers[0].AnswersName
// (all LLM-KICK's freebase_qa.py yields). question = RawQuestion.
std::vector<QaExample> load_freebaseqa_json(const std::filesystem::path& path);
// The 2017 pre-release "question | answer " text: lines with the same question merge into one example
// (aliases kept in order); CSV-style quoted questions are unquoted. id = "<file stem>-<index>" (the file
// has no ids; v1.0's look the same), reference_answers = answers.
std::vector<QaExample> load_freebaseqa_txt(const std::filesystem::path& path);
// NQ-open oracle .jsonl.gz: {question, answers[], ctxs[{title,text,...}]}; passages = ctxs.
// id = "<file stem>-<row index>", reference_answers = answers.
std::vector<QaExample> load_nq_open(const std::filesystem::path& path);
// TriviaQA rc JSON: Data[].{QuestionId, Question, Answer.{Aliases, NormalizedAliases},
// EntityPages[].Filename, SearchResults[].Filename}. answers = Aliases, reference_answers =
// NormalizedAliases (what LLM-KICK scores against). With evidence_dir set, passages = the first entity
// page (evidence_dir/wikipedia/<Filename>) then the first search result (evidence_dir/web/<Filename>),
// the order LLM-KICK concatenates them in; an evidence file that is missing is an error. Question, aliases,
// titles and evidence text are stripped, as Hugging Face's trivia_qa builder (LLM-KICK's loader) does.
std::vector<QaExample> load_triviaqa_rc(const std::filesystem::path& path,
                                        const std::optional<std::filesystem::path>& evidence_dir = std::nullopt);

// Gunzips a whole .gz file (concatenated members allowed); truncated or corrupt data is an error.
std::string read_gzip_file(const std::filesystem::path& path);

struct Story {
  std::string id;      // file name without .story
  std::string bucket;  // small / mid / large (empty when loaded alone)
  std::vector<std::string> paragraphs;  // article paragraphs, highlights excluded
  std::vector<std::string> highlights;  // the reference summary sentences
  std::vector<std::string> lines;       // every line of the file (LLM-KICK builds its input from these)
  std::string source;
};
Story load_story(const std::filesystem::path& path);
// folder/<bucket>/*.story for each bucket, files sorted by name within a bucket.
std::vector<Story> load_cnn_dailymail(const std::filesystem::path& folder,
                                      const std::vector<std::string>& buckets = {"small", "mid", "large"});

struct Instruction {
  int64_t question_id = 0;
  std::string category;
  std::vector<std::string> turns;      // vicuna80: one turn (its "text")
  std::vector<std::string> reference;  // MT-Bench reference answers, when present
  std::string source;
};
std::vector<Instruction> load_vicuna80(const std::filesystem::path& path);
std::vector<Instruction> load_mt_bench(const std::filesystem::path& path);

// ============================================================================================ tasks

inline constexpr const char* kProtocolLlmKick = "llm-kick";
inline constexpr const char* kProtocolStrict = "strict";

struct FewShotSpec {
  int k = 0;                      // shots per question
  std::string split;              // where the shots come from ("dev")
  int64_t max_prompt_tokens = 0;  // drop shots until the prompt fits; 0 = no budget
};
struct DecodingSpec {
  std::string mode = "greedy";  // "greedy" or "sample"
  double temperature = 0.0;
  double top_p = 1.0;
  int64_t max_new_tokens = 0;
  double max_length_factor = 0;  // > 0: total length = factor x prompt tokens (LLM-KICK FreebaseQA: 3)
  std::vector<std::string> stop;
  int64_t top_k = 0;  // sampling: keep the k most likely tokens; 0 = all (transformers' default is 50)
  uint64_t seed = 0;  // sampling seed
};
struct TaskSpec {
  std::string name;
  int version = 0;
  std::string protocol;
  std::string description;
  std::string loader;
  std::map<std::string, std::string> paths;  // relative to the data root
  std::map<std::string, std::vector<std::string>> options;
  std::map<std::string, std::string> prompt;  // named templates ("template", "header", ...)
  bool chat = false;                          // wrap the prompt in the model's chat template
  FewShotSpec few_shot;
  DecodingSpec decoding;
  std::vector<std::string> metrics;
  std::string file;  // where it was read from

  // data_root() / paths.at(key), naming the task file when the key is absent.
  std::filesystem::path data_file(const std::string& key) const;
  const std::string& template_text(const std::string& key) const;
  std::string option(const std::string& key, const std::string& fallback) const;
  bool option_flag(const std::string& key, bool fallback) const;
};

// Parses and validates one task file for one protocol (base keys, then protocols.<protocol> merged over
// them). Unknown keys, missing fields, unknown loaders or metrics: kick::Error naming file and field.
TaskSpec parse_task_spec(const std::string& yaml_text, const std::string& file, const std::string& protocol);
TaskSpec load_task_file(const std::filesystem::path& path, const std::string& protocol);
// The folder of shipped task files: $KICK_TASKS, else data/tasks in the source tree.
std::filesystem::path tasks_dir();
std::vector<std::string> task_names(const std::filesystem::path& dir = tasks_dir());
// By name; an unknown name lists the known ones.
TaskSpec load_task(const std::string& name, const std::string& protocol,
                   const std::filesystem::path& dir = tasks_dir());

// Registry: loader and metric names the task files may use.
std::vector<std::string> loader_names();
bool is_known_loader(const std::string& name);
using TaskData = std::variant<MmluData, std::vector<QaExample>, std::vector<Story>, std::vector<Instruction>,
                              std::string /* raw text for perplexity */>;
TaskData load_task_data(const TaskSpec& spec);

// A per-example text metric: (generated text, references) -> score in [0, 1].
using TextMetric = std::function<double(const std::string& prediction, const std::vector<std::string>& references)>;
struct MetricInfo {
  std::string name;
  // "text" (has fn), "choice" (the letter whose " A".." D" continuation is the most likely),
  // "perplexity", "judge"
  std::string kind;
  std::string description;
  TextMetric fn;
};
std::vector<std::string> metric_names();
bool is_known_metric(const std::string& name);
const MetricInfo& metric(const std::string& name);

// ============================================================================================ prompts

// Replaces {name} with vars[name]; "{{" and "}}" are literal braces. An unknown name is an error
// naming `what` (e.g. "mmlu.yaml: prompt.template").
std::string render_template(std::string_view tmpl, const std::map<std::string, std::string>& vars,
                            std::string_view what = "template");

// MMLU (Hendrycks / LLM-KICK): "<question>\nA. ..\nB. ..\nC. ..\nD. ..\nAnswer:" plus " X\n\n" for shots.
std::string mmlu_format_example(const MmluExample& example, bool include_answer);
// LLM-KICK's format_subject(" abstract algebra", with a leading space, so the header reads
// "about  abstract algebra." with two spaces); strict gives "abstract algebra".
std::string mmlu_subject_text(const std::string& subject, bool llmkick_quirk);
using TokenCounter = std::function<size_t(const std::string&)>;
struct FewShotPrompt {
  std::string text;
  int shots = 0;     // shots kept
  bool fits = true;  // false when even zero shots exceed the budget
};
// header (with {subject}) + the first k shots + the question; while count_tokens(prompt) > max_tokens
// (> 0) drop the last shot.
FewShotPrompt mmlu_prompt(const std::string& header_template, const std::string& subject_text,
                          const std::vector<MmluExample>& shots, const MmluExample& question, int k,
                          int64_t max_tokens = 0, const TokenCounter& count_tokens = nullptr);

// parts[0] + separator + parts[1] + ... (Python's separator.join(parts)).
std::string join(const std::vector<std::string>& parts, std::string_view separator);
// Code-point prefix of UTF-8 text (Python's s[:n]).
std::string utf8_prefix(std::string_view text, size_t code_points);
// Python's str.strip() for ASCII whitespace.
std::string strip(std::string_view text);

// The summarization input. llm-kick (in-context_summarization/generate_question.py): every line of the
// .story file stripped and concatenated with NO separator, "@highlight" lines and highlights included.
// strict: the article paragraphs joined by "\n\n", highlights excluded.
std::string story_text(const Story& story, bool llmkick_quirk);

// The prompt for one example of a task (the task's templates and protocol); few-shot tasks take their
// shots. The runner applies the chat template when spec.chat.
std::string render_qa_prompt(const TaskSpec& spec, const QaExample& example);
std::string render_summary_prompt(const TaskSpec& spec, const Story& story);
std::string render_instruction_prompt(const TaskSpec& spec, const Instruction& instruction, size_t turn = 0);
FewShotPrompt render_mmlu_prompt(const TaskSpec& spec, const std::vector<MmluExample>& shots,
                                 const MmluExample& question, const TokenCounter& count_tokens = nullptr);
// The references a task's metric scores against for one example: reference_answers under llm-kick,
// answers under strict (FreebaseQA, retrieval); highlights for stories; the letter for MMLU.
std::vector<std::string> references_for(const TaskSpec& spec, const QaExample& example);
// A story has one reference summary: its highlights joined by "\n".
std::vector<std::string> references_for(const TaskSpec& spec, const Story& story);
std::vector<std::string> references_for(const TaskSpec& spec, const MmluExample& example);  // {"B"}

}  // namespace kick::eval
