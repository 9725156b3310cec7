// [eval-data] tests: the data-set loaders of kick/eval.hpp on the real data in ../shared/data, checked
// against tests/fixtures/eval/data_reference.json (made by tests/reference/eval_data_reference.py with
// Python's csv, gzip and json modules), plus hand-made fixtures for every quirk and every rejection path.
#include <catch2/catch.hpp>

#include <chrono>
#include <cstdint>
#include <fstream>
#include <nlohmann/json.hpp>
#include <set>

#include "kick/eval.hpp"
#include "test_helpers.hpp"

namespace fs = std::filesystem;
namespace ke = kick::eval;
using Catch::Matchers::Contains;
using nlohmann::json;

namespace {

// The digest serialisation of eval_data_reference.py: fields end with 0x1f, list items with 0x1d,
// records with 0x1e; FNV-1a 64 over the bytes.
class Digest {
 public:
  Digest& field(std::string_view text) {
    bytes_ += text;
    bytes_ += '\x1f';
    return *this;
  }
  Digest& list(const std::vector<std::string>& items) {
    for (const auto& item : items) {
      bytes_ += item;
      bytes_ += '\x1d';
    }
    bytes_ += '\x1f';
    return *this;
  }
  void end() { bytes_ += '\x1e'; }
  // Standard FNV-1a 64 (offset basis 0xcbf29ce484222325), computed here so the check stands on its own.
  std::string hex() const {
    uint64_t h = 0xcbf29ce484222325ull;
    for (unsigned char c : bytes_) {
      h ^= c;
      h *= 0x100000001b3ull;
    }
    return fmt::format("{:016x}", h);
  }

 private:
  std::string bytes_;
};

const json& reference() {
  static const json ref = json::parse(kick::read_file(kick::test::fixture("eval/data_reference.json")));
  return ref;
}

fs::path eval_fixture(const std::string& name) { return kick::test::fixture("eval/" + name); }

std::string read_bytes(const fs::path& path) { return kick::read_file(path); }

void write_bytes(const fs::path& path, const std::string& bytes) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
}

bool ends_with(const std::string& text, const std::string& suffix) {
  return text.size() >= suffix.size() && text.compare(text.size() - suffix.size(), suffix.size(), suffix) == 0;
}

std::string qa_digest(const std::vector<ke::QaExample>& examples, bool with_passages) {
  Digest d;
  for (const auto& e : examples) {
    d.field(e.question).list(e.answers);
    if (with_passages) {
      std::vector<std::string> ctx;
      for (const auto& p : e.passages) ctx.insert(ctx.end(), {p.title, p.text, p.source});
      d.list(ctx);
    }
    d.end();
  }
  return d.hex();
}

std::string instruction_digest(const std::vector<ke::Instruction>& rows) {
  Digest d;
  for (const auto& r : rows) {
    d.field(std::to_string(r.question_id)).field(r.category).list(r.turns).list(r.reference);
    d.end();
  }
  return d.hex();
}

}  // namespace

// ------------------------------------------------------------------------------------------- MMLU

TEST_CASE("MMLU: the real data loads fast and matches Python's csv module file by file", "[eval-data]") {
  const auto start = std::chrono::steady_clock::now();
  const ke::MmluData data = ke::load_mmlu(kick::data_path("mmlu"));
  const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  INFO("load_mmlu took " << seconds << " s");
  CHECK(seconds < 1.0);  // 6.4 MB, 14,327 rows; measured ~0.05 s

  const json& totals = reference().at("mmlu_totals");
  REQUIRE(data.subjects.size() == 57);
  CHECK(data.subjects == ke::mmlu_subjects());
  CHECK(data.dev_count() == 285);
  CHECK(data.test_count() == 14042);
  CHECK(data.test_count() == totals.at("test").get<size_t>());
  CHECK(data.dev_count() == totals.at("dev").get<size_t>());

  std::map<char, int64_t> test_answers;
  for (const auto& [subject, examples] : data.test)
    for (const auto& e : examples) ++test_answers[e.answer];
  CHECK(test_answers['A'] == 3222);
  CHECK(test_answers['B'] == 3462);
  CHECK(test_answers['C'] == 3582);
  CHECK(test_answers['D'] == 3776);

  size_t files_checked = 0;
  for (const std::string& split : std::vector<std::string>{"dev", "test"}) {
    const auto& by_subject = split == "dev" ? data.dev : data.test;
    for (const auto& subject : data.subjects) {
      const std::string key = split + "/" + subject + "_" + split + ".csv";
      INFO(key);
      const json& ref = reference().at("mmlu").at(key);
      const auto& examples = by_subject.at(subject);
      REQUIRE(examples.size() == ref.at("rows").get<size_t>());
      Digest d;
      std::map<std::string, int64_t> answers;
      size_t multiline = 0, bytes = 0;
      for (const auto& e : examples) {
        CHECK(e.subject == subject);
        d.field(e.question);
        for (const auto& c : e.choices) d.field(c);
        d.field(std::string(1, e.answer));
        d.end();
        ++answers[std::string(1, e.answer)];
        bool has_newline = e.question.find('\n') != std::string::npos;
        bytes += e.question.size() + 1;
        for (const auto& c : e.choices) {
          has_newline = has_newline || c.find('\n') != std::string::npos;
          bytes += c.size();
        }
        multiline += has_newline;
        CHECK_THAT(e.source, Contains(subject + "_" + split + ".csv:"));
      }
      CHECK(examples.front().question == ref.at("first_question").get<std::string>());
      CHECK(examples.back().question == ref.at("last_question").get<std::string>());
      CHECK(multiline == ref.at("multiline_rows").get<size_t>());
      CHECK(bytes == ref.at("bytes").get<size_t>());
      for (const std::string& letter : std::vector<std::string>{"A", "B", "C", "D"})
        CHECK(answers[letter] == ref.at("answers").at(letter).get<int64_t>());
      CHECK(d.hex() == ref.at("digest").get<std::string>());
      ++files_checked;
    }
  }
  CHECK(files_checked == 114);
}

TEST_CASE("MMLU: rows with embedded newlines inside CRLF files parse exactly", "[eval-data]") {
  const ke::MmluData data = ke::load_mmlu(kick::data_path("mmlu"));

  // high_school_physics_test.csv ends rows with CRLF; row 35 holds LF-only line breaks inside its quotes.
  const auto& physics = data.test.at("high_school_physics");
  REQUIRE(physics.size() == 151);
  const ke::MmluExample& whiffle = physics[34];
  CHECK(ends_with(whiffle.source, "high_school_physics_test.csv:35"));
  CHECK(whiffle.question ==
        "A whiffle ball is tossed straight up, reaches a highest point, and falls back down. Air resistance is not "
        "negligible. Which of the following statements are true?\nI. The ball\u2019s speed is zero at the highest "
        "point.\nII. The ball\u2019s acceleration is zero at the highest point.\nIII. The ball takes a longer time "
        "to travel up to the highest point than to fall back down.");
  CHECK(whiffle.choices == std::array<std::string, 4>{"I only", "II only", "I & II only", "I & III only"});
  CHECK(whiffle.answer == 'C');
  CHECK(ends_with(physics[35].source, ":39"));  // the row after it starts four lines later
  CHECK(ends_with(physics.back().source, ":154"));
  for (const auto& e : physics) CHECK(e.choices[3].find('\r') == std::string::npos);

  // college_mathematics_dev.csv keeps CRLF line breaks inside a quoted question (as Python's csv does).
  const auto& college_math = data.dev.at("college_mathematics");
  REQUIRE(college_math.size() == 5);
  CHECK(ends_with(college_math[2].source, "college_mathematics_dev.csv:3"));
  CHECK(college_math[2].question ==
        "Let A be a real 2x2 matrix. Which of the following statements must be true?\r\nI. All of the entries of "
        "A^2 are nonnegative.\r\nII. The determinant of A^2 is nonnegative.\r\nIII. If A has two distinct "
        "eigenvalues, then A^2 has two distinct eigenvalues.");
  CHECK(college_math[2].answer == 'B');
  CHECK(ends_with(college_math[3].source, ":7"));

  // Every nutrition question ends with a newline inside its quotes.
  const auto& nutrition = data.test.at("nutrition");
  CHECK(nutrition[0].question == "Which foods tend to be consumed in lower quantities in Wales and Scotland (as of 2020)?\n");
  CHECK(nutrition[0].answer == 'C');
  CHECK(ends_with(nutrition[1].source, "nutrition_test.csv:3"));
}

TEST_CASE("MMLU: a hand-made folder with every CSV quirk", "[eval-data]") {
  const ke::MmluData data = ke::load_mmlu(eval_fixture("data_mmlu_mini"));
  CHECK(data.subjects == std::vector<std::string>{"alpha", "beta"});
  CHECK(data.test_count() == 6);
  CHECK(data.dev_count() == 2);
  const auto& alpha = data.test.at("alpha");
  REQUIRE(alpha.size() == 4);
  CHECK(alpha[0].question == "What is 2+2?");
  CHECK(alpha[0].choices == std::array<std::string, 4>{"3", "4", "5", "6"});
  CHECK(alpha[0].answer == 'B');
  CHECK(ends_with(alpha[0].source, "alpha_test.csv:1"));
  CHECK(alpha[1].question == "Which, of these, is \"quoted\"?");
  CHECK(alpha[1].choices == std::array<std::string, 4>{"a, b", "c", "multi\nline", "d"});
  CHECK(alpha[1].answer == 'C');
  CHECK(ends_with(alpha[1].source, ":2"));
  CHECK(alpha[2].question == "crlf\r\ninside");
  CHECK(alpha[2].answer == 'D');
  CHECK(ends_with(alpha[2].source, ":4"));
  CHECK(alpha[3].question == "last row");  // after a blank line, without a final newline
  CHECK(alpha[3].choices[3].empty());
  CHECK(alpha[3].answer == 'A');
  CHECK(ends_with(alpha[3].source, ":7"));
  CHECK(data.dev.at("beta").at(0).answer == 'B');
  CHECK(data.dev.at("beta").at(0).choices[3] == "d");  // CRLF row end not in the field
  CHECK(data.test.at("beta").at(1).subject == "beta");
}

TEST_CASE("MMLU: bad rows and files are one-line errors naming the file and line", "[eval-data]") {
  kick::test::require_error([] { ke::load_mmlu_csv(eval_fixture("data_mmlu_bad_fields.csv"), "x"); },
                {"data_mmlu_bad_fields.csv:3", "expected 6 fields", "got 5"});
  kick::test::require_error([] { ke::load_mmlu_csv(eval_fixture("data_mmlu_bad_answer.csv"), "x"); },
                {"data_mmlu_bad_answer.csv:2", "one of A, B, C, D", "'E'"});
  kick::test::require_error([] { ke::load_mmlu_csv(eval_fixture("data_mmlu_unterminated.csv"), "x"); },
                {"data_mmlu_unterminated.csv:2", "unterminated quoted field"});
  kick::test::require_error([] { ke::load_mmlu_csv(eval_fixture("data_mmlu_stray_quote.csv"), "x"); },
                {"data_mmlu_stray_quote.csv:1", "after a closing quote"});
  kick::test::require_error([] { ke::load_mmlu_csv(eval_fixture("data_mmlu_empty.csv"), "x"); },
                {"data_mmlu_empty.csv", "empty file"});
  kick::test::require_error([] { ke::load_mmlu_csv(eval_fixture("no_such_file.csv"), "x"); },
                {"no_such_file.csv", "file not found"});
  kick::test::require_error([] { ke::load_mmlu(eval_fixture("no_such_mmlu")); }, {"no_such_mmlu", "folder not found"});

  // A subject whose dev file is missing.
  const fs::path dir = kick::test::scratch_dir("eval_data_mmlu_missing_dev");
  fs::create_directories(dir / "test");
  fs::create_directories(dir / "dev");
  fs::copy_file(eval_fixture("data_mmlu_mini/test/alpha_test.csv"), dir / "test" / "alpha_test.csv");
  kick::test::require_error([&] { ke::load_mmlu(dir); }, {"alpha_dev.csv", "file not found"});
}

// ------------------------------------------------------------------------------------------- FreebaseQA

TEST_CASE("FreebaseQA: the 2017 text files merge repeated questions and unquote CSV-quoted ones", "[eval-data]") {
  for (const std::string& name : std::vector<std::string>{"FreebaseQA-eval.txt", "FreebaseQA-dev.txt"}) {
    INFO(name);
    const json& ref = reference().at("freebaseqa").at(name);
    const auto examples = ke::load_freebaseqa_txt(kick::data_path("freebaseqa/" + name));
    REQUIRE(examples.size() == ref.at("questions").get<size_t>());
    size_t aliases = 0;
    for (const auto& e : examples) {
      aliases += e.answers.size();
      CHECK(e.reference_answers == e.answers);
      CHECK_FALSE(e.answers.empty());
    }
    CHECK(aliases == ref.at("aliases").get<size_t>());
    CHECK(examples.front().question == ref.at("first_question").get<std::string>());
    CHECK(examples.back().question == ref.at("last_question").get<std::string>());
    CHECK(qa_digest(examples, false) == ref.at("digest").get<std::string>());
  }
  const auto eval = ke::load_freebaseqa_txt(kick::data_path("freebaseqa/FreebaseQA-eval.txt"));
  CHECK(eval.size() == 3999);
  size_t pairs = 0;
  for (const auto& e : eval) pairs += e.answers.size();
  CHECK(pairs == 4023);  // no question repeats an answer, so every pair survives as an alias
  CHECK(eval[4].question ==
        "A 1986 film starring Richard E. Grant and Paul McGann, described as \"one of Britain's biggest cult films\", "
        "is what \" ... and I\"?");
  CHECK(eval[4].answers == std::vector<std::string>{"withnail and i"});
  CHECK(ends_with(eval[4].source, "FreebaseQA-eval.txt:5"));
  CHECK(eval[4].id == "FreebaseQA-eval-4");
  const auto hunchback = std::find_if(eval.begin(), eval.end(), [](const ke::QaExample& e) {
    return e.question == "Captain Phoebus, Clopin and Esmeralda are all characters from which 1996 Disney film?";
  });
  REQUIRE(hunchback != eval.end());
  CHECK(hunchback->answers == std::vector<std::string>{"the hunchback of notre dame", "the hunchback of notre-dame"});
  CHECK(ends_with(hunchback->source, ":209"));
}

TEST_CASE("FreebaseQA: a hand-made text file and its errors", "[eval-data]") {
  const auto examples = ke::load_freebaseqa_txt(eval_fixture("data_freebaseqa_mini.txt"));
  REQUIRE(examples.size() == 4);
  CHECK(examples[0].question == "Which planet is known as the red planet?");
  CHECK(examples[0].answers == std::vector<std::string>{"mars"});
  CHECK(examples[0].id == "data_freebaseqa_mini-0");
  CHECK(examples[1].question == "A 1986 film described as \"one of Britain's biggest cult films\", is what?");
  CHECK(examples[2].answers == std::vector<std::string>{"leonardo da vinci", "leonardo"});
  CHECK(ends_with(examples[2].source, "data_freebaseqa_mini.txt:3"));
  // Starts with a quoted title but is not one quoted field: kept as written.
  CHECK(examples[3].question == "\"Dirty Harry\" Callahan is a cop in what city?");
  CHECK(ends_with(examples[3].source, ":6"));
  kick::test::require_error([] { ke::load_freebaseqa_txt(eval_fixture("data_freebaseqa_bad.txt")); },
                {"data_freebaseqa_bad.txt:3", "expected 'question | answer '", "no separator here"});
  kick::test::require_error([] { ke::load_freebaseqa_txt(eval_fixture("data_mmlu_empty.csv")); }, {"empty file"});
}

TEST_CASE("FreebaseQA: v1.0 JSON (hand-made in the released schema)", "[eval-data]") {
  const auto examples = ke::load_freebaseqa_json(eval_fixture("data_freebaseqa_v1.json"));
  REQUIRE(examples.size() == 2);
  CHECK(examples[0].id == "FreebaseQA-eval-0");
  CHECK(examples[0].question == "Who directed the 1997 film 'Titanic'?");
  CHECK(examples[0].answers == std::vector<std::string>{"james cameron", "jim cameron"});
  CHECK(examples[0].reference_answers == std::vector<std::string>{"james cameron"});
  CHECK(ends_with(examples[0].source, "data_freebaseqa_v1.json:Questions[0]"));
  CHECK(examples[1].answers == std::vector<std::string>{"nile", "river nile"});
  CHECK(examples[1].reference_answers == std::vector<std::string>{"nile", "river nile"});
  CHECK(examples[1].passages.empty());

  kick::test::require_error([] { ke::load_freebaseqa_json(eval_fixture("data_freebaseqa_missing_field.json")); },
                {"data_freebaseqa_missing_field.json:Questions[1]", "missing field \"RawQuestion\""});
  kick::test::require_error([] { ke::load_freebaseqa_json(eval_fixture("data_freebaseqa_wrong_type.json")); },
                {"data_freebaseqa_wrong_type.json:Questions[1].Parses[0].Answers[0]", "\"AnswersName\"",
                 "must be an array of strings", "got string"});
  const fs::path dir = kick::test::scratch_dir("eval_data_freebaseqa_json");
  write_bytes(dir / "broken.json", "{\"Questions\": [");
  kick::test::require_error([&] { ke::load_freebaseqa_json(dir / "broken.json"); }, {"broken.json", "invalid JSON"});
  write_bytes(dir / "no_parses.json", R"({"Questions": [{"Question-ID": "q", "RawQuestion": "r", "Parses": []}]})");
  kick::test::require_error([&] { ke::load_freebaseqa_json(dir / "no_parses.json"); },
                {"no_parses.json:Questions[0]", "\"Parses\" is empty"});
  write_bytes(dir / "not_object.json", "[1, 2]");
  kick::test::require_error([&] { ke::load_freebaseqa_json(dir / "not_object.json"); }, {"not_object.json", "expected a JSON object"});
}

// ------------------------------------------------------------------------------------------- NQ-open and gzip

TEST_CASE("NQ-open oracle: 2655 questions with one gold passage each as Python's gzip and json read them",
          "[eval-data]") {
  const json& ref = reference().at("nq_open");
  const auto examples = ke::load_nq_open(kick::data_path("retrieval_qa/nq-open-oracle.jsonl.gz"));
  REQUIRE(examples.size() == 2655);
  CHECK(examples.size() == ref.at("rows").get<size_t>());
  size_t answers = 0;
  std::set<std::string> ids;
  for (const auto& e : examples) {
    REQUIRE(e.passages.size() == 1);
    CHECK(e.passages[0].source == "gold");
    CHECK_FALSE(e.passages[0].text.empty());
    CHECK_FALSE(e.answers.empty());
    CHECK(e.reference_answers == e.answers);
    answers += e.answers.size();
    ids.insert(e.id);
  }
  CHECK(ids.size() == examples.size());
  CHECK(answers == ref.at("answers").get<size_t>());
  CHECK(qa_digest(examples, true) == ref.at("digest").get<std::string>());
  CHECK(examples[0].question == "who got the first nobel prize in physics");
  CHECK(examples[0].answers == std::vector<std::string>{"Wilhelm Conrad R\u00f6ntgen"});
  CHECK(examples[0].passages[0].title == "List of Nobel laureates in Physics");
  CHECK(ends_with(examples[0].source, "nq-open-oracle.jsonl.gz:1"));
  CHECK(examples[0].id == "nq-open-oracle-0");
}

TEST_CASE("NQ-open: hand-made gzip fixtures with one and two members", "[eval-data]") {
  const auto small = ke::load_nq_open(eval_fixture("data_nq_small.jsonl.gz"));
  REQUIRE(small.size() == 3);
  CHECK(small[0].answers == std::vector<std::string>{"J. R. R. Tolkien", "Tolkien"});  // deduplicated
  CHECK(small[1].question == "capital of t\u00fcrkiye");
  REQUIRE(small[1].passages.size() == 2);
  CHECK(small[1].passages[0].source == "gold");
  CHECK(small[1].passages[1].source == "retrieved");
  CHECK(small[1].passages[1].title == "Istanbul");
  CHECK(qa_digest(small, true) == reference().at("nq_fixture").at("digest").get<std::string>());

  const auto two = ke::load_nq_open(eval_fixture("data_nq_two_members.jsonl.gz"));
  CHECK(qa_digest(two, true) == qa_digest(small, true));
  CHECK(ke::read_gzip_file(eval_fixture("data_nq_two_members.jsonl.gz")) ==
        ke::read_gzip_file(eval_fixture("data_nq_small.jsonl.gz")));
  kick::test::require_error([] { ke::load_nq_open(eval_fixture("data_nq_bad_answers.jsonl.gz")); },
                {"data_nq_bad_answers.jsonl.gz:2", "\"answers\"", "must be an array of strings"});
}

TEST_CASE("gzip: zero padding passes and truncated or corrupt or empty or plain files are errors naming the file",
          "[eval-data]") {
  const std::string good = read_bytes(eval_fixture("data_nq_small.jsonl.gz"));
  const std::string text = ke::read_gzip_file(eval_fixture("data_nq_small.jsonl.gz"));
  CHECK_THAT(text, Contains("who wrote the hobbit"));
  CHECK(std::count(text.begin(), text.end(), '\n') == 3);
  const fs::path dir = kick::test::scratch_dir("eval_data_gzip");

  write_bytes(dir / "padded.gz", good + std::string(16, '\0'));
  CHECK(ke::read_gzip_file(dir / "padded.gz") == text);

  write_bytes(dir / "cut_trailer.gz", good.substr(0, good.size() - 6));
  kick::test::require_error([&] { ke::read_gzip_file(dir / "cut_trailer.gz"); }, {"cut_trailer.gz", "truncated"});
  write_bytes(dir / "cut_half.gz", good.substr(0, good.size() / 2));
  kick::test::require_error([&] { ke::read_gzip_file(dir / "cut_half.gz"); }, {"cut_half.gz", "truncated"});
  kick::test::require_error([&] { ke::load_nq_open(dir / "cut_half.gz"); }, {"cut_half.gz", "truncated"});

  std::string bad_crc = good;
  bad_crc[bad_crc.size() - 8] = static_cast<char>(bad_crc[bad_crc.size() - 8] ^ 0x5a);
  write_bytes(dir / "bad_crc.gz", bad_crc);
  kick::test::require_error([&] { ke::read_gzip_file(dir / "bad_crc.gz"); }, {"bad_crc.gz", "corrupt gzip data"});

  write_bytes(dir / "garbage_after.gz", good + "not a gzip member");
  kick::test::require_error([&] { ke::read_gzip_file(dir / "garbage_after.gz"); }, {"garbage_after.gz", "corrupt gzip data"});
  write_bytes(dir / "plain.gz", "{\"question\": \"not compressed\"}\n");
  kick::test::require_error([&] { ke::read_gzip_file(dir / "plain.gz"); }, {"plain.gz", "corrupt gzip data"});
  write_bytes(dir / "empty.gz", "");
  kick::test::require_error([&] { ke::read_gzip_file(dir / "empty.gz"); }, {"empty.gz", "empty file"});
  kick::test::require_error([&] { ke::read_gzip_file(dir / "missing.gz"); }, {"missing.gz", "file not found"});
  kick::test::require_error([&] { ke::read_gzip_file(dir); }, {"eval_data_gzip", "is a folder"});

  // Found by fuzzing: a number past double's range is the JSON parser's out_of_range, not a parse_error.
  write_bytes(dir / "huge_number.jsonl", "{\"question\": \"q\", \"answers\": [\"a\"], \"ctxs\": [], \"n\": 4E444444444}\n");
  kick::test::require_error([&] { ke::load_nq_open(dir / "huge_number.jsonl"); }, {"huge_number.jsonl:1", "invalid JSON"});

  // NQ-open decides by the gzip magic bytes, not the name: a user's plain JSONL subset loads as it is.
  write_bytes(dir / "subset.jsonl", text);
  const auto plain = ke::load_nq_open(dir / "subset.jsonl");
  const auto zipped = ke::load_nq_open(eval_fixture("data_nq_small.jsonl.gz"));
  REQUIRE(plain.size() == zipped.size());
  for (size_t i = 0; i < plain.size(); ++i) {
    CHECK(plain[i].question == zipped[i].question);
    CHECK(plain[i].answers == zipped[i].answers);
  }
}

// ------------------------------------------------------------------------------------------- TriviaQA

TEST_CASE("TriviaQA rc: hand-made files in the released schema with and without evidence", "[eval-data]") {
  const fs::path root = eval_fixture("data_triviaqa");
  const auto plain = ke::load_triviaqa_rc(root / "qa" / "web-dev.json");
  REQUIRE(plain.size() == 3);
  CHECK(plain[0].id == "tc_1");
  CHECK(plain[0].question == "Who was the first American to win the Nobel Prize for Literature?");  // stripped
  CHECK(plain[0].answers == std::vector<std::string>{"(Harry) Sinclair Lewis", "Sinclair Lewis"});
  CHECK(plain[0].reference_answers == std::vector<std::string>{"harry sinclair lewis", "sinclair lewis"});
  CHECK(ends_with(plain[0].source, "web-dev.json:Data[0]"));
  for (const auto& e : plain) CHECK(e.passages.empty());

  const auto with_evidence = ke::load_triviaqa_rc(root / "qa" / "web-dev.json", root / "evidence");
  REQUIRE(with_evidence.size() == 3);
  // The first entity page, then the first search result: the order LLM-KICK concatenates them in.
  const auto& first = with_evidence[0].passages;
  REQUIRE(first.size() == 2);
  CHECK(first[0].source == "wikipedia");
  CHECK(first[0].title == "Sinclair Lewis");
  CHECK(first[0].text ==
        "Sinclair Lewis (1885-1951) was an American novelist who won the 1930 Nobel Prize in Literature.");
  CHECK(first[1].source == "web");
  CHECK(first[1].title == "The Nobel Prize in Literature 1930");
  CHECK(first[1].text == "The Nobel Prize in Literature 1930 was awarded to Sinclair Lewis.");
  REQUIRE(with_evidence[1].passages.size() == 1);
  CHECK(with_evidence[1].passages[0].source == "web");
  CHECK(with_evidence[1].passages[0].text == "Gene Simmons co-founded Kiss.");
  REQUIRE(with_evidence[2].passages.size() == 1);  // no SearchResults field at all
  CHECK(with_evidence[2].passages[0].source == "wikipedia");
  CHECK(with_evidence[2].passages[0].text == "Kiss (band) is an American rock band formed in New York City in 1973.");
}

TEST_CASE("TriviaQA rc: errors name the file and the Data index and field", "[eval-data]") {
  const fs::path root = eval_fixture("data_triviaqa");
  kick::test::require_error([&] { ke::load_triviaqa_rc(root / "qa" / "bad-missing-evidence.json", root / "evidence"); },
                {"bad-missing-evidence.json:Data[2].EntityPages[0]", "No_such_page.txt", "not found"});
  CHECK(ke::load_triviaqa_rc(root / "qa" / "bad-missing-evidence.json").size() == 3);  // evidence not asked for
  kick::test::require_error([&] { ke::load_triviaqa_rc(root / "qa" / "bad-wrong-type.json"); },
                {"bad-wrong-type.json:Data[1].Answer", "\"Aliases\"", "must be an array of strings"});
  kick::test::require_error([&] { ke::load_triviaqa_rc(root / "qa" / "bad-missing-answer.json"); },
                {"bad-missing-answer.json:Data[0]", "missing field \"Answer\""});
  kick::test::require_error([&] { ke::load_triviaqa_rc(root / "qa" / "web-dev.json", root / "no_such_evidence"); },
                {"no_such_evidence", "folder not found"});
  kick::test::require_error([&] { ke::load_triviaqa_rc(root / "qa" / "missing.json"); }, {"missing.json", "file not found"});

  // Evidence file names stay inside the evidence folder (found by fuzzing the reader): no "..", no absolute paths.
  const fs::path dir = kick::test::scratch_dir("eval_data_triviaqa_escape");
  for (const char* name : {"../../../etc/hostname", "/etc/hostname", "wikipedia/../../x.txt"}) {
    const nlohmann::json file = {{"Data", {{{"QuestionId", "q1"}, {"Question", "Who?"},
                                            {"Answer", {{"Value", "x"}, {"Aliases", {"x"}}, {"NormalizedAliases", {"x"}}}},
                                            {"EntityPages", {{{"Filename", name}}}}}}}};
    write_bytes(dir / "escape.json", file.dump());
    kick::test::require_error([&] { ke::load_triviaqa_rc(dir / "escape.json", root / "evidence"); },
                              {"escape.json:Data[0].EntityPages[0]", "\"Filename\"", "inside the evidence folder"});
  }
}

// ------------------------------------------------------------------------------------------- CNN/DailyMail

TEST_CASE("CNN/DailyMail: 30 stories per bucket with highlights apart from the article", "[eval-data]") {
  const auto stories = ke::load_cnn_dailymail(kick::data_path("cnn_dailymail"));
  REQUIRE(stories.size() == 90);
  const std::vector<std::string> buckets = {"small", "mid", "large"};
  for (size_t b = 0; b < 3; ++b) {
    INFO(buckets[b]);
    const json& ref = reference().at("cnn_dailymail").at(buckets[b]);
    Digest d;
    size_t paragraphs = 0, highlights = 0;
    for (size_t i = 0; i < 30; ++i) {
      const ke::Story& s = stories[b * 30 + i];
      CHECK(s.bucket == buckets[b]);
      CHECK_FALSE(s.highlights.empty());
      CHECK_FALSE(s.paragraphs.empty());
      const std::set<std::string> para_set(s.paragraphs.begin(), s.paragraphs.end());
      for (const auto& h : s.highlights) {
        CHECK(para_set.count(h) == 0);
        CHECK(h.rfind("@highlight", 0) != 0);
      }
      for (const auto& p : s.paragraphs) CHECK(p.rfind("@highlight", 0) != 0);
      paragraphs += s.paragraphs.size();
      highlights += s.highlights.size();
      d.field(s.id).list(s.paragraphs).list(s.highlights).list(s.lines);
      d.end();
      if (i > 0) CHECK(stories[b * 30 + i - 1].id < s.id);
    }
    CHECK(stories[b * 30].id == ref.at("first_id").get<std::string>());
    CHECK(paragraphs == ref.at("paragraphs").get<size_t>());
    CHECK(highlights == ref.at("highlights").get<size_t>());
    CHECK(d.hex() == ref.at("digest").get<std::string>());
  }
  const ke::Story sample =
      ke::load_story(kick::data_path("cnn_dailymail/small/0d47c7c8af5749114d8b1e5d09e34228b9a457f4.story"));
  CHECK(sample.id == "0d47c7c8af5749114d8b1e5d09e34228b9a457f4");
  CHECK(sample.bucket.empty());
  CHECK(sample.paragraphs.front().rfind("(CNN) -- A landslide buried 83 workers in a mining area", 0) == 0);
  CHECK(sample.highlights.front() == "The incident occurred around 6 a.m., Xinhua News Agency says");
  CHECK(sample.lines.front() == sample.paragraphs.front());
  CHECK(sample.lines.at(1).empty());
}

TEST_CASE("CNN/DailyMail: line endings and malformed stories", "[eval-data]") {
  const ke::Story s = ke::load_story(eval_fixture("data_story_crlf.story"));
  CHECK(s.id == "data_story_crlf");
  CHECK(s.lines.size() == 12);
  CHECK(s.lines[2] == "Second paragraph.");
  CHECK(s.lines[3] == "Third on a CR line.");
  CHECK(s.paragraphs ==
        std::vector<std::string>{"(CNN) -- First paragraph.", "Second paragraph.", "Third on a CR line."});
  CHECK(s.highlights == std::vector<std::string>{"First highlight", "Second highlight"});

  kick::test::require_error([] { ke::load_story(eval_fixture("data_story_no_highlight.story")); },
                {"data_story_no_highlight.story", "no @highlight"});
  kick::test::require_error([] { ke::load_story(eval_fixture("data_story_dangling_highlight.story")); },
                {"data_story_dangling_highlight.story:7", "@highlight with no sentence"});
  kick::test::require_error([] { ke::load_cnn_dailymail(kick::data_path("cnn_dailymail"), {"small", "huge"}); },
                {"huge", "folder not found"});
  const fs::path dir = kick::test::scratch_dir("eval_data_stories");
  fs::create_directories(dir / "small");
  kick::test::require_error([&] { ke::load_cnn_dailymail(dir, {"small"}); }, {"small", "no .story files"});
  write_bytes(dir / "small" / "empty.story", "\n\n");
  kick::test::require_error([&] { ke::load_cnn_dailymail(dir, {"small"}); }, {"empty.story", "empty file"});
}

// ------------------------------------------------------------------------------------------- instructions

TEST_CASE("vicuna80 and MT-Bench: rows and turns and references match Python's json module", "[eval-data]") {
  const auto vicuna = ke::load_vicuna80(kick::data_path("instructions/vicuna80.jsonl"));
  REQUIRE(vicuna.size() == 80);
  std::map<std::string, int64_t> categories;
  for (size_t i = 0; i < vicuna.size(); ++i) {
    CHECK(vicuna[i].question_id == static_cast<int64_t>(i + 1));
    CHECK(vicuna[i].turns.size() == 1);
    CHECK(vicuna[i].reference.empty());
    ++categories[vicuna[i].category];
  }
  for (const auto& item : reference().at("vicuna80").at("categories").items())
    CHECK(categories[item.key()] == item.value().get<int64_t>());
  CHECK(vicuna[0].turns[0] == "How can I improve my time management skills?");
  CHECK(ends_with(vicuna[0].source, "vicuna80.jsonl:1"));
  CHECK(instruction_digest(vicuna) == reference().at("vicuna80").at("digest").get<std::string>());

  const auto mt = ke::load_mt_bench(kick::data_path("instructions/mt_bench.jsonl"));
  REQUIRE(mt.size() == 80);
  size_t with_reference = 0;
  for (size_t i = 0; i < mt.size(); ++i) {
    CHECK(mt[i].question_id == static_cast<int64_t>(81 + i));
    CHECK(mt[i].turns.size() == 2);
    with_reference += !mt[i].reference.empty();
  }
  CHECK(with_reference == 39);
  CHECK(with_reference == reference().at("mt_bench").at("with_reference").get<size_t>());
  CHECK(mt[0].category == "writing");
  CHECK(mt[0].turns[1] == "Rewrite your previous response. Start every sentence with the letter A.");
  CHECK(instruction_digest(mt) == reference().at("mt_bench").at("digest").get<std::string>());
}

TEST_CASE("vicuna80 and MT-Bench: bad rows name the file and line", "[eval-data]") {
  kick::test::require_error([] { ke::load_vicuna80(eval_fixture("data_vicuna_bad.jsonl")); },
                {"data_vicuna_bad.jsonl:3", "missing field \"text\""});
  kick::test::require_error([] { ke::load_vicuna80(eval_fixture("data_vicuna_syntax.jsonl")); },
                {"data_vicuna_syntax.jsonl:2", "invalid JSON"});
  kick::test::require_error([] { ke::load_mt_bench(eval_fixture("data_mt_bench_bad.jsonl")); },
                {"data_mt_bench_bad.jsonl:2", "\"turns\"", "must be an array of strings", "got string"});
  kick::test::require_error([] { ke::load_mt_bench(eval_fixture("data_mt_bench_bad_id.jsonl")); },
                {"data_mt_bench_bad_id.jsonl:1", "\"question_id\"", "must be an integer"});
  kick::test::require_error([] { ke::load_mt_bench(eval_fixture("data_mmlu_empty.csv")); }, {"data_mmlu_empty.csv", "empty file"});
}
