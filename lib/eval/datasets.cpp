// lib/eval/datasets.cpp: the data-set loaders of kick/eval.hpp (section "data"): MMLU CSV, FreebaseQA
// (v1.0 JSON and the 2017 pre-release text pairs), the NQ-open oracle .jsonl.gz, TriviaQA rc JSON with
// its evidence files, gunzipping, CNN/DailyMail .story files and the vicuna80 / MT-Bench instruction sets.
// Every example carries where it came from ("file:line" or "file:Field[i]"), and every rejection is a
// one-line kick::Error naming the file, the line or JSON field, and what was expected.
#include <zlib.h>

#include <algorithm>
#include <climits>
#include <cstring>
#include <nlohmann/json.hpp>
#include <unordered_map>
#include <unordered_set>

#include "kick/core.hpp"
#include "kick/eval.hpp"

namespace kick::eval {
namespace {

namespace fs = std::filesystem;
using nlohmann::json;

// A short, single-line rendering of offending input for error messages.
std::string snippet(std::string_view text, size_t max_chars = 60) {
  std::string out;
  for (size_t i = 0; i < text.size() && i < max_chars; ++i) {
    const char c = text[i];
    if (c == '\n')
      out += "\\n";
    else if (c == '\r')
      out += "\\r";
    else if (c == '\t')
      out += "\\t";
    else if (static_cast<unsigned char>(c) < 0x20)
      out += '?';
    else
      out += c;
  }
  if (text.size() > max_chars) out += "...";
  return out;
}

std::string read_data_file(const fs::path& path) {
  std::error_code ec;
  const auto status = fs::status(path, ec);
  if (!fs::exists(status)) fail("{}: file not found", path.string());
  if (fs::is_directory(status)) fail("{}: is a folder, expected a file", path.string());
  return kick::read_file(path);
}

void require_folder(const fs::path& folder, std::string_view expected) {
  std::error_code ec;
  if (!fs::is_directory(folder, ec)) fail("{}: folder not found, expected {}", folder.string(), expected);
}

// Regular files in `folder` whose names end with `suffix`, sorted by name.
std::vector<fs::path> files_with_suffix(const fs::path& folder, std::string_view suffix) {
  std::vector<fs::path> files;
  for (const auto& entry : fs::directory_iterator(folder)) {
    const std::string name = entry.path().filename().string();
    if (entry.is_regular_file() && name.size() > suffix.size() &&
        name.compare(name.size() - suffix.size(), suffix.size(), suffix) == 0)
      files.push_back(entry.path());
  }
  std::sort(files.begin(), files.end(),
            [](const fs::path& a, const fs::path& b) { return a.filename().string() < b.filename().string(); });
  return files;
}

bool is_blank(std::string_view text) {
  return std::all_of(text.begin(), text.end(),
                     [](char c) { return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\f' || c == '\v'; });
}

std::string rstrip(std::string_view text) {
  size_t end = text.size();
  while (end > 0 && (text[end - 1] == ' ' || text[end - 1] == '\t' || text[end - 1] == '\r' || text[end - 1] == '\n'))
    --end;
  return std::string(text.substr(0, end));
}

void append_unique(std::vector<std::string>& out, std::unordered_set<std::string>& seen, const std::string& value) {
  if (seen.insert(value).second) out.push_back(value);
}

// Lines as Python's text-mode readlines() splits them ("\n", "\r\n" or a lone "\r"), terminators removed;
// a final terminator does not start an extra empty line.
std::vector<std::string> split_universal_lines(std::string_view text) {
  std::vector<std::string> lines;
  size_t start = 0;
  for (size_t i = 0; i < text.size(); ++i) {
    if (text[i] != '\n' && text[i] != '\r') continue;
    lines.emplace_back(text.substr(start, i - start));
    if (text[i] == '\r' && i + 1 < text.size() && text[i + 1] == '\n') ++i;
    start = i + 1;
  }
  if (start < text.size()) lines.emplace_back(text.substr(start));
  return lines;
}

// ------------------------------------------------------------------------------------------- CSV

// An RFC-4180 reader: quoted fields may hold commas, doubled quotes and line breaks (kept verbatim, CRLF
// included, as Python's csv module keeps them); rows end with LF, CRLF or a lone CR; blank lines are
// skipped (as pandas does). A quote inside an unquoted field is literal, as both csv and pandas read it.
class CsvReader {
 public:
  CsvReader(std::string_view text, const std::string& file) : text_(text), file_(file) {}

  // The next row and the line it starts on; false at the end.
  bool next(std::vector<std::string>& fields, size_t& row_line) {
    const size_t n = text_.size();
    while (pos_ < n && (text_[pos_] == '\n' || text_[pos_] == '\r')) end_line();
    if (pos_ >= n) return false;
    row_line = line_;
    size_t count = 0;
    for (;;) {
      if (count == fields.size()) fields.emplace_back();
      std::string& field = fields[count++];
      field.clear();
      if (text_[pos_] == '"')
        read_quoted(field);
      else
        read_plain(field);
      if (pos_ >= n) break;
      if (text_[pos_] == ',') {
        ++pos_;
        if (pos_ >= n) {  // "a,b," at the end of the file: a last, empty field
          if (count == fields.size()) fields.emplace_back();
          fields[count++].clear();
          break;
        }
        continue;
      }
      end_line();
      break;
    }
    fields.resize(count);
    return true;
  }

 private:
  void end_line() {
    if (text_[pos_] == '\r' && pos_ + 1 < text_.size() && text_[pos_ + 1] == '\n') ++pos_;
    ++pos_;
    ++line_;
  }

  void read_plain(std::string& field) {
    const size_t start = pos_;
    while (pos_ < text_.size() && text_[pos_] != ',' && text_[pos_] != '\n' && text_[pos_] != '\r') ++pos_;
    field.assign(text_.data() + start, pos_ - start);
  }

  void read_quoted(std::string& field) {
    const size_t open_line = line_;
    ++pos_;
    for (;;) {
      const size_t quote = text_.find('"', pos_);
      if (quote == std::string_view::npos)
        fail("{}:{}: unterminated quoted field (the quote opened on this line never closes)", file_, open_line);
      const std::string_view chunk = text_.substr(pos_, quote - pos_);
      line_ += static_cast<size_t>(std::count(chunk.begin(), chunk.end(), '\n'));
      // A lone CR inside a quoted field also ends a physical line for line numbering.
      for (size_t i = 0; i < chunk.size(); ++i)
        if (chunk[i] == '\r' && (i + 1 >= chunk.size() || chunk[i + 1] != '\n')) ++line_;
      field.append(chunk);
      pos_ = quote + 1;
      if (pos_ < text_.size() && text_[pos_] == '"') {
        field += '"';
        ++pos_;
        continue;
      }
      break;
    }
    if (pos_ < text_.size() && text_[pos_] != ',' && text_[pos_] != '\n' && text_[pos_] != '\r')
      fail("{}:{}: expected ',' or the end of the line after a closing quote, got '{}'", file_, line_,
           snippet(text_.substr(pos_, 20)));
  }

  std::string_view text_;
  const std::string& file_;
  size_t pos_ = 0;
  size_t line_ = 1;
};

// ------------------------------------------------------------------------------------------- JSON

json parse_json(std::string_view text, const std::string& where) {
  try {
    return json::parse(text.begin(), text.end());
  } catch (const json::exception& e) {  // parse_error, and out_of_range for numbers past double (found by fuzzing)
    fail("{}: invalid JSON: {}", where, e.what());
  }
}

const json& field_of(const json& object, const char* key, const std::string& where) {
  if (!object.is_object()) fail("{}: expected a JSON object, got {}", where, object.type_name());
  const auto it = object.find(key);
  if (it == object.end()) fail("{}: missing field \"{}\"", where, key);
  return *it;
}

const json* optional_field(const json& object, const char* key, const std::string& where) {
  if (!object.is_object()) fail("{}: expected a JSON object, got {}", where, object.type_name());
  const auto it = object.find(key);
  return it == object.end() ? nullptr : &*it;
}

std::string string_field(const json& object, const char* key, const std::string& where) {
  const json& value = field_of(object, key, where);
  if (!value.is_string()) fail("{}: field \"{}\" must be a string, got {}", where, key, value.type_name());
  return value.get<std::string>();
}

const json& array_field(const json& object, const char* key, const std::string& where) {
  const json& value = field_of(object, key, where);
  if (!value.is_array()) fail("{}: field \"{}\" must be an array, got {}", where, key, value.type_name());
  return value;
}

std::vector<std::string> strings_of(const json& array, const char* key, const std::string& where) {
  if (!array.is_array()) fail("{}: field \"{}\" must be an array of strings, got {}", where, key, array.type_name());
  std::vector<std::string> out;
  out.reserve(array.size());
  for (size_t i = 0; i < array.size(); ++i) {
    if (!array[i].is_string())
      fail("{}: field \"{}\"[{}] must be a string, got {}", where, key, i, array[i].type_name());
    out.push_back(array[i].get<std::string>());
  }
  return out;
}

std::vector<std::string> string_array_field(const json& object, const char* key, const std::string& where) {
  return strings_of(field_of(object, key, where), key, where);
}

int64_t integer_field(const json& object, const char* key, const std::string& where) {
  const json& value = field_of(object, key, where);
  if (!value.is_number_integer()) fail("{}: field \"{}\" must be an integer, got {}", where, key, value.type_name());
  return value.get<int64_t>();
}

// Calls row(json, "file:line") for every non-blank line of a JSON-lines text; no rows is an error.
template <typename Fn>
void for_each_json_line(std::string_view text, const std::string& file, std::string_view expected, Fn&& row) {
  size_t line_number = 0, rows = 0, start = 0;
  while (start < text.size()) {
    size_t end = text.find('\n', start);
    if (end == std::string_view::npos) end = text.size();
    ++line_number;
    const std::string_view line = text.substr(start, end - start);
    start = end + 1;
    if (is_blank(line)) continue;
    const std::string where = fmt::format("{}:{}", file, line_number);
    row(parse_json(line, where), where);
    ++rows;
  }
  if (rows == 0) fail("{}: empty file, expected one JSON object per line ({})", file, expected);
}

// A file name without its data-set extensions ("nq-open-oracle.jsonl.gz" -> "nq-open-oracle").
std::string stem_of(const fs::path& path) {
  std::string name = path.filename().string();
  for (const char* ext : {".gz", ".jsonl", ".json", ".txt"}) {
    const size_t n = std::strlen(ext);
    if (name.size() > n && name.compare(name.size() - n, n, ext) == 0) name.resize(name.size() - n);
  }
  return name;
}

// "..." with doubled inner quotes, as a CSV writer quotes a field; anything else stays as it is (a question
// that merely starts with a quoted title, like "Dirty Harry" Callahan ..., is not a quoted field).
std::string unquote_csv_field(const std::string& text) {
  if (text.size() < 2 || text.front() != '"' || text.back() != '"') return text;
  std::string out;
  out.reserve(text.size());
  for (size_t i = 1; i + 1 < text.size(); ++i) {
    if (text[i] != '"') {
      out += text[i];
      continue;
    }
    if (i + 2 < text.size() && text[i + 1] == '"') {
      out += '"';
      ++i;
      continue;
    }
    return text;  // an unpaired inner quote: not one quoted field
  }
  return out;
}

}  // namespace

// ------------------------------------------------------------------------------------------- MMLU

std::vector<MmluExample> load_mmlu_csv(const std::filesystem::path& path, const std::string& subject) {
  const std::string file = path.string();
  const std::string text = read_data_file(path);
  if (is_blank(text)) fail("{}: empty file, expected rows of question,A,B,C,D,answer", file);
  std::vector<MmluExample> examples;
  examples.reserve(static_cast<size_t>(std::count(text.begin(), text.end(), '\n')) + 1);
  CsvReader reader(text, file);
  std::vector<std::string> fields;
  size_t line = 0;
  while (reader.next(fields, line)) {
    if (fields.size() != 6)
      fail("{}:{}: expected 6 fields (question,A,B,C,D,answer), got {}", file, line, fields.size());
    const std::string& answer = fields[5];
    if (answer.size() != 1 || answer[0] < 'A' || answer[0] > 'D')
      fail("{}:{}: expected the answer (field 6) to be one of A, B, C, D, got '{}'", file, line, snippet(answer));
    MmluExample& example = examples.emplace_back();
    example.subject = subject;
    example.question = std::move(fields[0]);
    for (size_t c = 0; c < 4; ++c) example.choices[c] = std::move(fields[c + 1]);
    example.answer = answer[0];
    example.source = fmt::format("{}:{}", file, line);
  }
  return examples;
}

size_t MmluData::test_count() const {
  size_t n = 0;
  for (const auto& [subject, examples] : test) n += examples.size();
  return n;
}

size_t MmluData::dev_count() const {
  size_t n = 0;
  for (const auto& [subject, examples] : dev) n += examples.size();
  return n;
}

MmluData load_mmlu(const std::filesystem::path& folder) {
  static constexpr std::string_view kTestSuffix = "_test.csv";
  require_folder(folder / "test", "test/<subject>_test.csv files");
  require_folder(folder / "dev", "dev/<subject>_dev.csv files");
  const auto test_files = files_with_suffix(folder / "test", kTestSuffix);
  if (test_files.empty()) fail("{}: no <subject>_test.csv files", (folder / "test").string());
  MmluData data;
  for (const auto& test_file : test_files) {
    std::string subject = test_file.filename().string();
    subject.resize(subject.size() - kTestSuffix.size());
    data.test[subject] = load_mmlu_csv(test_file, subject);
    data.dev[subject] = load_mmlu_csv(folder / "dev" / (subject + "_dev.csv"), subject);
    data.subjects.push_back(std::move(subject));
  }
  return data;
}

// ------------------------------------------------------------------------------------------- FreebaseQA

std::vector<QaExample> load_freebaseqa_json(const std::filesystem::path& path) {
  const std::string file = path.string();
  const std::string text = read_data_file(path);
  if (is_blank(text)) fail("{}: empty file, expected a FreebaseQA JSON object with \"Questions\"", file);
  const json root = parse_json(text, file);
  const json& questions = array_field(root, "Questions", file);
  if (questions.empty()) fail("{}: field \"Questions\" is empty, expected at least one question", file);
  std::vector<QaExample> examples;
  examples.reserve(questions.size());
  for (size_t i = 0; i < questions.size(); ++i) {
    const std::string where = fmt::format("{}:Questions[{}]", file, i);
    const json& question = questions[i];
    QaExample example;
    example.id = string_field(question, "Question-ID", where);
    example.question = string_field(question, "RawQuestion", where);
    const json& parses = array_field(question, "Parses", where);
    if (parses.empty()) fail("{}: field \"Parses\" is empty, expected at least one parse with an answer", where);
    std::unordered_set<std::string> seen;
    for (size_t p = 0; p < parses.size(); ++p) {
      const std::string parse_where = fmt::format("{}.Parses[{}]", where, p);
      const json& answers = array_field(parses[p], "Answers", parse_where);
      if (p == 0 && answers.empty())
        fail("{}: field \"Answers\" is empty, expected the answer LLM-KICK scores against", parse_where);
      for (size_t a = 0; a < answers.size(); ++a) {
        const std::string answer_where = fmt::format("{}.Answers[{}]", parse_where, a);
        auto names = string_array_field(answers[a], "AnswersName", answer_where);
        if (p == 0 && a == 0) {
          if (names.empty()) fail("{}: field \"AnswersName\" is empty, expected at least one name", answer_where);
          example.reference_answers = names;
        }
        for (const auto& name : names) append_unique(example.answers, seen, name);
      }
    }
    example.source = where;
    examples.push_back(std::move(example));
  }
  return examples;
}

std::vector<QaExample> load_freebaseqa_txt(const std::filesystem::path& path) {
  static constexpr std::string_view kSeparator = " | ";
  const std::string file = path.string();
  const std::string text = read_data_file(path);
  if (is_blank(text)) fail("{}: empty file, expected lines 'question | answer '", file);
  const std::string id_prefix = stem_of(path);
  std::vector<QaExample> examples;
  std::unordered_map<std::string, size_t> index_of_question;
  std::vector<std::unordered_set<std::string>> seen_answers;
  size_t line_number = 0, start = 0;
  while (start < text.size()) {
    size_t end = text.find('\n', start);
    if (end == std::string::npos) end = text.size();
    ++line_number;
    std::string_view line(text.data() + start, end - start);
    start = end + 1;
    if (!line.empty() && line.back() == '\r') line.remove_suffix(1);
    if (is_blank(line)) continue;
    const size_t separator = line.rfind(kSeparator);
    if (separator == std::string_view::npos)
      fail("{}:{}: expected 'question | answer ', got '{}'", file, line_number, snippet(line));
    std::string question = unquote_csv_field(std::string(line.substr(0, separator)));
    std::string answer = rstrip(line.substr(separator + kSeparator.size()));
    if (is_blank(question)) fail("{}:{}: empty question before ' | '", file, line_number);
    if (answer.empty()) fail("{}:{}: empty answer after ' | '", file, line_number);
    auto [it, inserted] = index_of_question.emplace(question, examples.size());
    if (inserted) {
      QaExample& example = examples.emplace_back();
      example.id = fmt::format("{}-{}", id_prefix, examples.size() - 1);
      example.question = std::move(question);
      example.source = fmt::format("{}:{}", file, line_number);
      seen_answers.emplace_back();
    }
    QaExample& example = examples[it->second];
    append_unique(example.answers, seen_answers[it->second], answer);
  }
  for (auto& example : examples) example.reference_answers = example.answers;
  return examples;
}

// ------------------------------------------------------------------------------------------- NQ-open, TriviaQA

namespace {
std::string gunzip(const std::string& compressed, const std::string& file);  // in the gzip section below
}  // namespace

std::vector<QaExample> load_nq_open(const std::filesystem::path& path) {
  const std::string file = path.string();
  // The distributed file is gzipped; a plain JSONL (a user's own subset) is read as it is. Decided by the gzip
  // magic bytes, not the file name.
  std::string text = read_data_file(path);
  if (text.size() >= 2 && static_cast<unsigned char>(text[0]) == 0x1f && static_cast<unsigned char>(text[1]) == 0x8b) {
    text = gunzip(text, file);
  }
  const std::string id_prefix = stem_of(path);
  std::vector<QaExample> examples;
  for_each_json_line(text, file, "{question, answers, ctxs}", [&](const json& row, const std::string& where) {
    QaExample& example = examples.emplace_back();
    example.id = fmt::format("{}-{}", id_prefix, examples.size() - 1);
    example.question = string_field(row, "question", where);
    std::unordered_set<std::string> seen;
    for (const auto& answer : string_array_field(row, "answers", where)) append_unique(example.answers, seen, answer);
    if (example.answers.empty()) fail("{}: field \"answers\" is empty, expected at least one gold answer", where);
    example.reference_answers = example.answers;
    const json& ctxs = array_field(row, "ctxs", where);
    for (size_t c = 0; c < ctxs.size(); ++c) {
      const std::string ctx_where = fmt::format("{}: ctxs[{}]", where, c);
      Passage& passage = example.passages.emplace_back();
      passage.title = string_field(ctxs[c], "title", ctx_where);
      passage.text = string_field(ctxs[c], "text", ctx_where);
      bool gold = false;
      if (const json* isgold = optional_field(ctxs[c], "isgold", ctx_where)) {
        if (!isgold->is_boolean())
          fail("{}: field \"isgold\" must be a boolean, got {}", ctx_where, isgold->type_name());
        gold = isgold->get<bool>();
      }
      passage.source = gold ? "gold" : "retrieved";
    }
    example.source = where;
  });
  return examples;
}

std::vector<QaExample> load_triviaqa_rc(const std::filesystem::path& path,
                                        const std::optional<std::filesystem::path>& evidence_dir) {
  const std::string file = path.string();
  const std::string text = read_data_file(path);
  if (is_blank(text)) fail("{}: empty file, expected a TriviaQA JSON object with \"Data\"", file);
  if (evidence_dir) {
    require_folder(*evidence_dir, "TriviaQA evidence (wikipedia/ and web/)");
  }
  const json root = parse_json(text, file);
  const json& data = array_field(root, "Data", file);
  if (data.empty()) fail("{}: field \"Data\" is empty, expected at least one question", file);

  // The first document of EntityPages / SearchResults as a passage (Hugging Face's trivia_qa strips it).
  auto first_document = [&](const json& item, const char* list, const std::string& where, const char* folder,
                            QaExample& example) {
    const json* documents = optional_field(item, list, where);
    if (!documents) return;
    if (!documents->is_array()) fail("{}: field \"{}\" must be an array, got {}", where, list, documents->type_name());
    if (documents->empty() || !evidence_dir) return;
    const std::string doc_where = fmt::format("{}.{}[0]", where, list);
    const std::string filename = string_field((*documents)[0], "Filename", doc_where);
    std::string title;
    if (const json* t = optional_field((*documents)[0], "Title", doc_where)) {
      if (!t->is_string()) fail("{}: field \"Title\" must be a string, got {}", doc_where, t->type_name());
      title = t->get<std::string>();
    }
    const fs::path relative = fs::path(filename).lexically_normal();
    if (filename.empty() || relative.is_absolute() || (!relative.empty() && *relative.begin() == "..")) {
      fail("{}: field \"Filename\" is \"{}\", expected a path inside the evidence folder", doc_where, filename);
    }
    const fs::path evidence = *evidence_dir / folder / relative;
    std::error_code ec;
    if (!fs::is_regular_file(evidence, ec))
      fail("{}: evidence file {} not found (field \"Filename\")", doc_where, evidence.string());
    example.passages.push_back(Passage{strip(title), strip(read_data_file(evidence)), folder});
  };

  std::vector<QaExample> examples;
  examples.reserve(data.size());
  for (size_t i = 0; i < data.size(); ++i) {
    const std::string where = fmt::format("{}:Data[{}]", file, i);
    const json& item = data[i];
    QaExample example;
    example.id = string_field(item, "QuestionId", where);
    example.question = strip(string_field(item, "Question", where));
    const json& answer = field_of(item, "Answer", where);
    const std::string answer_where = where + ".Answer";
    std::unordered_set<std::string> seen;
    for (const auto& alias : string_array_field(answer, "Aliases", answer_where))
      append_unique(example.answers, seen, strip(alias));
    for (const auto& alias : string_array_field(answer, "NormalizedAliases", answer_where))
      example.reference_answers.push_back(strip(alias));
    if (example.reference_answers.empty())
      fail("{}: field \"NormalizedAliases\" is empty, expected at least one answer", answer_where);
    first_document(item, "EntityPages", where, "wikipedia", example);
    first_document(item, "SearchResults", where, "web", example);
    example.source = where;
    examples.push_back(std::move(example));
  }
  return examples;
}

// ------------------------------------------------------------------------------------------- gzip

namespace {

// Inflates a whole gzip stream (concatenated members allowed) read from `file`.
std::string gunzip(const std::string& compressed, const std::string& file) {
  if (compressed.empty()) fail("{}: empty file, expected gzip data", file);
  if (compressed.size() > UINT_MAX) fail("{}: {} bytes, larger than zlib's 4 GiB input limit", file, compressed.size());

  z_stream stream{};
  if (inflateInit2(&stream, 16 + MAX_WBITS) != Z_OK) fail("{}: cannot start the zlib decoder", file);
  struct InflateGuard {
    z_stream* stream;
    ~InflateGuard() { inflateEnd(stream); }
  } guard{&stream};

  std::string out;
  // The last member's trailer holds its size mod 2^32: a hint for the common single-member file.
  if (compressed.size() >= 18) {
    const auto* tail = reinterpret_cast<const unsigned char*>(compressed.data() + compressed.size() - 4);
    const size_t hinted = static_cast<size_t>(tail[0]) | static_cast<size_t>(tail[1]) << 8 |
                          static_cast<size_t>(tail[2]) << 16 | static_cast<size_t>(tail[3]) << 24;
    out.resize(std::min(hinted + 1, compressed.size() * 64 + (size_t{1} << 20)));
  }
  if (out.size() < (size_t{1} << 16)) out.resize(size_t{1} << 16);
  size_t produced = 0;
  stream.next_in = reinterpret_cast<Bytef*>(const_cast<char*>(compressed.data()));
  stream.avail_in = static_cast<uInt>(compressed.size());
  for (;;) {
    if (out.size() - produced < (size_t{1} << 15)) out.resize(out.size() * 2);
    stream.next_out = reinterpret_cast<Bytef*>(out.data() + produced);
    stream.avail_out = static_cast<uInt>(std::min<size_t>(out.size() - produced, UINT_MAX));
    const int rc = inflate(&stream, Z_NO_FLUSH);
    produced = static_cast<size_t>(reinterpret_cast<char*>(stream.next_out) - out.data());
    const size_t offset = compressed.size() - stream.avail_in;
    if (rc == Z_STREAM_END) {
      // Another member may follow; zero padding after the last one is allowed (as gzip and Python allow).
      const char* rest = compressed.data() + offset;
      if (std::all_of(rest, compressed.data() + compressed.size(), [](char c) { return c == 0; })) break;
      if (inflateReset(&stream) != Z_OK) fail("{}: cannot restart the zlib decoder at byte {}", file, offset);
      continue;
    }
    if (rc == Z_OK || rc == Z_BUF_ERROR) {
      if (stream.avail_in == 0 && stream.avail_out > 0)
        fail("{}: truncated gzip data (the input ends at byte {} before the stream's end)", file, offset);
      continue;
    }
    fail("{}: corrupt gzip data near byte {} ({})", file, offset, stream.msg ? stream.msg : zError(rc));
  }
  out.resize(produced);
  return out;
}

}  // namespace

std::string read_gzip_file(const std::filesystem::path& path) { return gunzip(read_data_file(path), path.string()); }

// ------------------------------------------------------------------------------------------- CNN/DailyMail

Story load_story(const std::filesystem::path& path) {
  const std::string file = path.string();
  const std::string text = read_data_file(path);
  if (is_blank(text)) fail("{}: empty file, expected article paragraphs then @highlight sentences", file);
  Story story;
  story.id = path.stem().string();
  story.source = file;
  story.lines = split_universal_lines(text);
  // See et al.'s CNN/DM preprocessing: after the first @highlight every non-empty line is a highlight.
  bool in_highlights = false;
  size_t open_marker_line = 0;  // a @highlight still waiting for its sentence
  for (size_t i = 0; i < story.lines.size(); ++i) {
    std::string line = strip(story.lines[i]);
    if (line.empty()) continue;
    if (line.rfind("@highlight", 0) == 0) {
      if (open_marker_line) fail("{}:{}: @highlight with no sentence after it", file, open_marker_line);
      in_highlights = true;
      open_marker_line = i + 1;
      continue;
    }
    open_marker_line = 0;
    (in_highlights ? story.highlights : story.paragraphs).push_back(std::move(line));
  }
  if (open_marker_line) fail("{}:{}: @highlight with no sentence after it", file, open_marker_line);
  if (story.highlights.empty()) fail("{}: no @highlight, expected the reference summary after the article", file);
  if (story.paragraphs.empty()) fail("{}: no article text before the first @highlight", file);
  return story;
}

std::vector<Story> load_cnn_dailymail(const std::filesystem::path& folder, const std::vector<std::string>& buckets) {
  if (buckets.empty()) fail("{}: no buckets asked for (small, mid, large)", folder.string());
  std::vector<Story> stories;
  for (const auto& bucket : buckets) {
    const fs::path dir = folder / bucket;
    require_folder(dir, fmt::format("the .story files of bucket '{}'", bucket));
    const auto files = files_with_suffix(dir, ".story");
    if (files.empty()) fail("{}: no .story files in bucket '{}'", dir.string(), bucket);
    for (const auto& f : files) {
      Story story = load_story(f);
      story.bucket = bucket;
      stories.push_back(std::move(story));
    }
  }
  return stories;
}

// ------------------------------------------------------------------------------------------- instructions

std::vector<Instruction> load_vicuna80(const std::filesystem::path& path) {
  const std::string file = path.string();
  const std::string text = read_data_file(path);
  std::vector<Instruction> rows;
  for_each_json_line(text, file, "{question_id, text, category}", [&](const json& row, const std::string& where) {
    Instruction& instruction = rows.emplace_back();
    instruction.question_id = integer_field(row, "question_id", where);
    instruction.category = string_field(row, "category", where);
    instruction.turns.push_back(string_field(row, "text", where));
    instruction.source = where;
  });
  return rows;
}

std::vector<Instruction> load_mt_bench(const std::filesystem::path& path) {
  const std::string file = path.string();
  const std::string text = read_data_file(path);
  std::vector<Instruction> rows;
  for_each_json_line(text, file, "{question_id, category, turns, reference?}", [&](const json& row,
                                                                                   const std::string& where) {
    Instruction& instruction = rows.emplace_back();
    instruction.question_id = integer_field(row, "question_id", where);
    instruction.category = string_field(row, "category", where);
    instruction.turns = string_array_field(row, "turns", where);
    if (instruction.turns.empty()) fail("{}: field \"turns\" is empty, expected at least one turn", where);
    if (const json* reference = optional_field(row, "reference", where))
      instruction.reference = strings_of(*reference, "reference", where);
    instruction.source = where;
  });
  return rows;
}

}  // namespace kick::eval
