// [eval-metrics] tests: the metrics of kick/eval.hpp (lib/eval/metrics.cpp, lib/eval/rouge.cpp) against
// tests/fixtures/eval/metrics_reference.json, made by tests/reference/eval_metrics_reference.py with
// Google's rouge-score, NLTK's PorterStemmer and Python twins of the SQuAD / TriviaQA / LLM-KICK / FastChat
// scoring code; plus hand-made cases for every documented LLM-KICK quirk, MMLU aggregation and judge replies.
#include <catch2/catch.hpp>

#include <cmath>
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>

#include "kick/core.hpp"
#include "kick/eval.hpp"
#include "test_helpers.hpp"

namespace ke = kick::eval;
using Catch::Matchers::Contains;
using nlohmann::json;

namespace {

const json& reference() {
  static const json j = [] {
    std::ifstream in(kick::test::fixture("eval/metrics_reference.json"));
    REQUIRE(in.good());
    return json::parse(in);
  }();
  return j;
}

std::vector<std::string> strings(const json& j) { return j.get<std::vector<std::string>>(); }

std::vector<std::string> split_spaces(const std::string& s) {
  std::vector<std::string> out;
  std::istringstream in(s);
  for (std::string word; in >> word;) out.push_back(word);
  return out;
}

void check_rouge(const ke::RougeScore& got, const json& expected) {
  CHECK(got.precision == Approx(expected[0].get<double>()).margin(1e-9).epsilon(0));
  CHECK(got.recall == Approx(expected[1].get<double>()).margin(1e-9).epsilon(0));
  CHECK(got.fmeasure == Approx(expected[2].get<double>()).margin(1e-9).epsilon(0));
}

// repr(float) from the fixture: "8.0", "inf", "-inf", ...
double from_repr(const json& j) { return std::strtod(j.get<std::string>().c_str(), nullptr); }

}  // namespace

// ---------------------------------------------------------------------------------- fixture: QA metrics

TEST_CASE("SQuAD and TriviaQA normalisation, EM and F1 equal the Python twins", "[eval-metrics]") {
  const auto& cases = reference()["qa"];
  REQUIRE(cases.size() > 150);
  for (const auto& c : cases) {
    const auto prediction = c["prediction"].get<std::string>();
    const auto golds = strings(c["golds"]);
    INFO("prediction '" << prediction << "' golds " << c["golds"].dump());
    CHECK(ke::normalize_answer(prediction) == c["normalized_squad"].get<std::string>());
    CHECK(ke::normalize_answer_triviaqa(prediction) == c["normalized_triviaqa"].get<std::string>());
    CHECK(ke::exact_match_max(prediction, golds, ke::Normalization::squad) == c["em_squad"].get<double>());
    CHECK(ke::token_f1_max(prediction, golds, ke::Normalization::squad) == c["f1_squad"].get<double>());
    CHECK(ke::exact_match_max(prediction, golds, ke::Normalization::triviaqa) == c["em_triviaqa"].get<double>());
    CHECK(ke::token_f1_max(prediction, golds, ke::Normalization::triviaqa) == c["f1_triviaqa"].get<double>());
  }
}

TEST_CASE("LLM-KICK retrieval and factoid matches and their strict twins equal the Python twins", "[eval-metrics]") {
  for (const auto& c : reference()["qa"]) {
    const auto prediction = c["prediction"].get<std::string>();
    const auto golds = strings(c["golds"]);
    INFO("prediction '" << prediction << "' golds " << c["golds"].dump());
    CHECK(ke::retrieval_em_llmkick_max(prediction, golds) == c["retrieval_em_llmkick"].get<double>());
    CHECK(ke::retrieval_em_strict_max(prediction, golds) == c["retrieval_em_strict"].get<double>());
    CHECK(ke::factoid_match_strict(prediction, golds) == c["factoid_strict"].get<bool>());
    CHECK(ke::factoid_match_llmkick(prediction, golds) == c["factoid_llmkick"].get<bool>());
    CHECK(ke::factoid_normalize_llmkick(prediction) == c["factoid_normalized_llmkick"].get<std::string>());
    CHECK(ke::first_line_answer(prediction) == c.value("first_line_answer", prediction));
  }
  const auto& factoid = reference()["factoid"];
  REQUIRE(factoid.size() > 40);
  for (const auto& c : factoid) {
    const auto prompt = c["prompt"].get<std::string>(), generation = c["generation"].get<std::string>();
    const auto aliases = strings(c["aliases"]);
    INFO("generation '" << generation << "' aliases " << c["aliases"].dump());
    CHECK(ke::factoid_match_llmkick(ke::factoid_output_llmkick(prompt, generation), aliases) ==
          c["llmkick"].get<bool>());
    CHECK(ke::factoid_match_llmkick(generation, aliases) == c["llmkick_generation_only"].get<bool>());
    CHECK(ke::factoid_match_strict(generation, aliases) == c["strict"].get<bool>());
  }
}

TEST_CASE("normalisation follows Python's word characters, whitespace and lower() over all of Unicode", "[eval-metrics]") {
  const auto& unicode = reference()["unicode"];
  // Every edge of the \w ranges and every whitespace character, as "the<c>an" probes.
  for (const auto& probe : unicode["word_probes"]) {
    const auto text = probe[0].get<std::string>();
    const auto squad = probe[1].get<std::string>();
    const auto triviaqa = probe[2].is_null() ? squad : probe[2].get<std::string>();
    INFO("probes: " << text);
    CHECK(ke::normalize_answer(text) == squad);
    CHECK(ke::normalize_answer_triviaqa(text) == triviaqa);
  }
  // Every character str.lower() changes.
  const auto uppers = unicode["uppers"].get<std::string>(), lowered = unicode["uppers_lower"].get<std::string>();
  REQUIRE(uppers.size() > 2000);
  CHECK(ke::normalize_answer(uppers) == lowered);
  CHECK(ke::normalize_answer_triviaqa(uppers) == lowered);
  CHECK(ke::factoid_normalize_llmkick(uppers) == lowered);
}

// ---------------------------------------------------------------------------------- fixture: ROUGE, Porter

TEST_CASE("ROUGE-1/2/L equal rouge-score with and without stemming", "[eval-metrics]") {
  const auto& cases = reference()["rouge"];
  REQUIRE(cases.size() > 60);
  for (const auto& c : cases) {
    const auto prediction = c["prediction"].get<std::string>(), ref = c["reference"].get<std::string>();
    for (const bool stem : {true, false}) {
      const auto& expected = c[stem ? "stem" : "nostem"];
      INFO("stem " << stem << " prediction '" << prediction << "' reference '" << ref << "'");
      check_rouge(ke::rouge_n(prediction, ref, 1, stem), expected["rouge1"]);
      check_rouge(ke::rouge_n(prediction, ref, 2, stem), expected["rouge2"]);
      check_rouge(ke::rouge_l(prediction, ref, stem), expected["rougeL"]);
    }
  }
}

TEST_CASE("multi-reference ROUGE equals rouge-score's score_multi", "[eval-metrics]") {
  const auto& cases = reference()["rouge_multi"];
  REQUIRE(cases.size() > 15);
  for (const auto& c : cases) {
    const auto prediction = c["prediction"].get<std::string>();
    const auto refs = strings(c["references"]);
    for (const bool stem : {true, false}) {
      const auto& expected = c[stem ? "stem" : "nostem"];
      INFO("stem " << stem << " prediction '" << prediction << "' references " << c["references"].dump());
      check_rouge(ke::rouge_n_multi(prediction, refs, 1, stem), expected["rouge1"]);
      check_rouge(ke::rouge_n_multi(prediction, refs, 2, stem), expected["rouge2"]);
      check_rouge(ke::rouge_l_multi(prediction, refs, stem), expected["rougeL"]);
    }
  }
  CHECK_THROWS_WITH(ke::rouge_l_multi("a", {}), Contains("at least one reference"));
  CHECK_THROWS_WITH(ke::rouge_n("a", "a", 0), Contains("n >= 1"));
}

TEST_CASE("the Porter stemmer equals NLTK's PorterStemmer on every word of the CNN/DailyMail stories",
          "[eval-metrics]") {
  const auto& porter = reference()["porter"];
  const auto words = split_spaces(porter["words"].get<std::string>());
  const auto stems = split_spaces(porter["stems"].get<std::string>());
  REQUIRE(words.size() > 8000);
  REQUIRE(words.size() == stems.size());
  size_t changed = 0;
  for (size_t i = 0; i < words.size(); ++i) {
    const std::string& expected = stems[i] == "=" ? words[i] : stems[i];
    changed += stems[i] != "=";
    INFO("word '" << words[i] << "'");
    CHECK(ke::porter_stem(words[i]) == expected);
  }
  CHECK(changed > 2000);  // the fixture really exercises the rules
  CHECK(ke::porter_stem("") == porter["empty"].get<std::string>());
  // A long run of 'y' (rouge-score stems any [a-z0-9]+ token): no recursion that could overflow the stack.
  CHECK(ke::porter_stem(std::string(200000, 'y')).size() == 200000);
}

TEST_CASE("rouge_tokenize lower-cases as Python does and stems only tokens longer than three", "[eval-metrics]") {
  CHECK(ke::rouge_tokenize("\xC4\xB0stanbul \xE2\x84\xAA" "elvin", false) ==
        std::vector<std::string>{"i", "stanbul", "kelvin"});
  CHECK(ke::rouge_tokenize("Caf\xC3\xA9s running, ran!", true) == std::vector<std::string>{"caf", "s", "run", "ran"});
  CHECK(ke::rouge_tokenize("ies dies", true) == std::vector<std::string>{"ies", "die"});
  CHECK(ke::rouge_tokenize("", true).empty());
}

// ---------------------------------------------------------------------------------- LLM-KICK quirks by hand

TEST_CASE("LLM-KICK retrieval EM credits an empty prediction, strict never does", "[eval-metrics]") {
  CHECK(ke::retrieval_em_llmkick("", "Paris"));
  CHECK(ke::retrieval_em_llmkick("The", "Paris"));  // normalises to "" too
  CHECK(ke::retrieval_em_llmkick_max("", {"Paris", "London"}) == 1.0);
  CHECK_FALSE(ke::retrieval_em_strict("", "Paris"));
  CHECK_FALSE(ke::retrieval_em_strict("", ""));
  CHECK(ke::retrieval_em_strict_max("", {"Paris"}) == 0.0);
  // Containment both ways under llm-kick; equality under strict.
  CHECK(ke::retrieval_em_llmkick("It is Paris, France", "paris"));
  CHECK(ke::retrieval_em_llmkick("Paris", "Paris, France"));
  CHECK_FALSE(ke::retrieval_em_strict("It is Paris", "paris"));
  CHECK(ke::retrieval_em_strict("The Paris!", "paris"));
  CHECK(ke::retrieval_em_llmkick_max("x", {}) == 0.0);
  // The answer the reference scores: stripped, then its first line.
  CHECK(ke::first_line_answer("  Paris\nQ: next") == "Paris");
  CHECK(ke::first_line_answer("\n\n") == "");
  CHECK(ke::first_line_answer("\xC2\xA0Paris \nx") == "Paris ");
}

TEST_CASE("LLM-KICK factoid: empty aliases match everything, the prompt counts, only spaces are removed",
          "[eval-metrics]") {
  CHECK(ke::factoid_match_llmkick("anything", {""}));
  CHECK(ke::factoid_match_llmkick("anything", {"   "}));
  CHECK_FALSE(ke::factoid_match_strict("anything", {""}));
  CHECK_FALSE(ke::factoid_match_llmkick("anything", {}));
  const std::string prompt = "Please give answer to this question: Which city hosts the Eiffel Tower?\nThe answer is ";
  const std::string output = ke::factoid_output_llmkick(prompt, "I am not sure.");
  CHECK(output == prompt + "I am not sure.");
  CHECK(ke::factoid_match_llmkick(output, {"Eiffel Tower"}));            // found in the question
  CHECK_FALSE(ke::factoid_match_strict("I am not sure.", {"Eiffel Tower"}));
  CHECK(ke::factoid_match_llmkick("NewYork", {"new york"}));
  CHECK_FALSE(ke::factoid_match_llmkick("new\tyork", {"new york"}));     // tabs stay
  CHECK(ke::factoid_match_llmkick("Marsupial", {"mars"}));              // a substring, not a word
  CHECK_FALSE(ke::factoid_match_strict("Marsupial", {"mars"}));
  CHECK(ke::factoid_match_strict("It is the Red Planet, Mars.", {"red planet"}));
  CHECK(ke::factoid_normalize_llmkick("  \xC3\x89mile Zola\xC2\xA0") == "\xC3\xA9milezola");
}

TEST_CASE("SQuAD and TriviaQA normalisation by hand", "[eval-metrics]") {
  CHECK(ke::normalize_answer("The  Beatles!") == "beatles");
  CHECK(ke::normalize_answer("New_York") == "newyork");
  CHECK(ke::normalize_answer_triviaqa("New_York") == "new york");
  CHECK(ke::normalize_answer_triviaqa("It\xE2\x80\x99s") == "it s");
  CHECK(ke::normalize_answer("It\xE2\x80\x99s") == "it\xE2\x80\x99s");
  CHECK(ke::normalize_answer("\xC3\x89MILE") == "\xC3\xA9mile");  // Python's lower() is Unicode
  CHECK(ke::normalize_answer("age\xC2\xA0" "44") == "age 44");      // so is its split()
  CHECK(ke::normalize_answer("\xE2\x80\x9CThe Godfather\xE2\x80\x9D") == "\xE2\x80\x9C godfather\xE2\x80\x9D");
  CHECK(ke::normalize(" A an THE ", ke::Normalization::squad).empty());
  CHECK(ke::exact_match("", "the"));
  CHECK(ke::token_f1("", "") == 0.0);
  CHECK(ke::token_f1("cat cat cat", "cat") == Approx(0.5));
  CHECK(ke::exact_match_max("x", {}) == 0.0);
  // Malformed UTF-8 is kept as it is and splits nothing.
  CHECK(ke::normalize_answer("the\xFF" "an \xC3") == "\xFF \xC3");
}

// ---------------------------------------------------------------------------------- MMLU

TEST_CASE("MMLU letters: llm-kick's last character, strict's first letter", "[eval-metrics]") {
  for (const auto& c : reference()["mmlu"]["letters"]) {
    const auto generation = c["generation"].get<std::string>();
    INFO("generation '" << generation << "'");
    const auto llmkick = ke::mmlu_letter_llmkick(generation);
    const auto strict = ke::mmlu_letter_strict(generation);
    CHECK(llmkick.has_value() == !c["llmkick"].is_null());
    if (llmkick && !c["llmkick"].is_null()) CHECK(std::string(1, *llmkick) == c["llmkick"].get<std::string>());
    CHECK(strict.has_value() == !c["strict"].is_null());
    if (strict && !c["strict"].is_null()) CHECK(std::string(1, *strict) == c["strict"].get<std::string>());
  }
  // The last-character rule: a one-token " An" is read as 'n', a trailing newline as no letter.
  CHECK(ke::mmlu_letter_llmkick(" B") == 'B');
  CHECK_FALSE(ke::mmlu_letter_llmkick(" An").has_value());
  CHECK_FALSE(ke::mmlu_letter_llmkick("B\n").has_value());
  CHECK_FALSE(ke::mmlu_letter_llmkick("b").has_value());  // compared case-sensitively with the label
  CHECK_FALSE(ke::mmlu_letter_llmkick("").has_value());   // the prompt's ':' is last
  CHECK(ke::mmlu_letter_strict(" b)") == 'B');
  CHECK_FALSE(ke::mmlu_letter_strict("Because").has_value());
  CHECK_FALSE(ke::mmlu_letter_strict("A\xC3\xA9").has_value());  // followed by a letter
}

TEST_CASE("MMLU subjects and the Hendrycks category map", "[eval-metrics]") {
  const auto& mmlu = reference()["mmlu"];
  CHECK(ke::mmlu_subjects() == strings(mmlu["subjects"]));  // the data's test folder, sorted
  REQUIRE(ke::mmlu_subjects().size() == 57);
  for (const auto& subject : ke::mmlu_subjects()) {
    INFO(subject);
    CHECK(ke::mmlu_subcategory(subject) == mmlu["subcategories"][subject].get<std::string>());
    CHECK(ke::mmlu_category(subject) == mmlu["categories"][subject].get<std::string>());
  }
  CHECK(ke::mmlu_categories() ==
        std::vector<std::string>{"STEM", "humanities", "social sciences", "other (business, health, misc.)"});
  CHECK_THROWS_WITH(ke::mmlu_subcategory("astrology"), Contains("astrology"));
  CHECK_THROWS_AS(ke::mmlu_category("abstract algebra"), kick::Error);
}

TEST_CASE("aggregate_mmlu equals main_mmlu.py's per-subcategory, per-category and overall accuracy",
          "[eval-metrics]") {
  auto check_cells = [](const std::map<std::string, ke::AccuracyCell>& got, const json& expected) {
    CHECK(got.size() == expected.size());
    for (const auto& [name, cell] : expected.items()) {
      INFO(name);
      REQUIRE(got.count(name) == 1);
      CHECK(got.at(name).correct == cell[0].get<int64_t>());
      CHECK(got.at(name).total == cell[1].get<int64_t>());
    }
  };
  for (const auto& c : reference()["mmlu"]["aggregates"]) {
    std::vector<std::pair<std::string, bool>> results;
    for (const auto& r : c["results"]) results.emplace_back(r[0].get<std::string>(), r[1].get<bool>());
    INFO(results.size() << " results");
    const auto acc = ke::aggregate_mmlu(results);
    check_cells(acc.per_subject, c["per_subject"]);
    check_cells(acc.per_subcategory, c["per_subcategory"]);
    check_cells(acc.per_category, c["per_category"]);
    CHECK(acc.overall.correct == c["overall"][0].get<int64_t>());
    CHECK(acc.overall.total == c["overall"][1].get<int64_t>());
    CHECK(acc.macro_subjects == Approx(c["macro_subjects"].get<double>()).margin(1e-12));
  }
  // By hand: micro over questions vs macro over subjects.
  const auto acc = ke::aggregate_mmlu({{"anatomy", true}, {"anatomy", true}, {"anatomy", false}, {"virology", false},
                                       {"abstract_algebra", true}});
  CHECK(acc.overall.correct == 3);
  CHECK(acc.overall.total == 5);
  CHECK(acc.overall.accuracy() == Approx(0.6));
  CHECK(acc.macro_subjects == Approx((2.0 / 3 + 0 + 1) / 3));
  CHECK(acc.per_subcategory.at("health").total == 4);
  CHECK(acc.per_category.at("other (business, health, misc.)").correct == 2);
  CHECK(acc.per_category.at("STEM").accuracy() == 1.0);
  CHECK(acc.per_category.count("humanities") == 0);
  const auto empty = ke::aggregate_mmlu({});
  CHECK(empty.overall.total == 0);
  CHECK(empty.overall.accuracy() == 0.0);
  CHECK(empty.macro_subjects == 0.0);
  CHECK_THROWS_WITH(ke::aggregate_mmlu({{"anatomy", true}, {"cooking", false}}), Contains("cooking"));
}

// ---------------------------------------------------------------------------------- judges

TEST_CASE("judge replies parse as FastChat and LLM-KICK read them", "[eval-metrics]") {
  const auto& judge = reference()["judge"];
  for (const auto& c : judge["rating"]) {
    const auto reply = c["reply"].get<std::string>();
    INFO("rating reply '" << reply << "'");
    const auto parsed = ke::parse_judge_rating(reply);
    REQUIRE(parsed.ok() == !c["value"].is_null());
    if (parsed.ok()) {
      CHECK(*parsed.value == c["value"].get<double>());
      CHECK(parsed.error.empty());
    } else {
      CHECK_FALSE(parsed.error.empty());
    }
  }
  for (const auto& c : judge["verdict"]) {
    const auto reply = c["reply"].get<std::string>();
    INFO("verdict reply '" << reply << "'");
    const auto parsed = ke::parse_judge_verdict(reply);
    REQUIRE(parsed.ok() == !c["value"].is_null());
    if (parsed.ok()) {
      const auto expected = c["value"].get<std::string>();
      CHECK(*parsed.value == (expected == "A" ? ke::Verdict::A : expected == "B" ? ke::Verdict::B : ke::Verdict::Tie));
    } else {
      CHECK_FALSE(parsed.error.empty());
    }
  }
  for (const auto& c : judge["pair"]) {
    const auto reply = c["reply"].get<std::string>();
    INFO("pair reply '" << reply << "'");
    const auto parsed = ke::parse_judge_pair_llmkick(reply);
    REQUIRE(parsed.ok() == !c["value"].is_null());
    if (parsed.ok()) {
      CHECK(parsed.value->first == from_repr(c["value"][0]));
      CHECK(parsed.value->second == from_repr(c["value"][1]));
    } else {
      CHECK_FALSE(parsed.error.empty());
    }
  }
  for (const auto& c : judge["summary"]) {
    const auto reply = c["reply"].get<std::string>();
    INFO("summary reply '" << reply << "'");
    const auto parsed = ke::parse_judge_summary_llmkick(reply);
    REQUIRE(parsed.ok() == !c["value"].is_null());
    if (parsed.ok()) {
      CHECK(parsed.value->size() == 4);
      for (const auto& aspect : ke::summary_aspects()) {
        CHECK(parsed.value->at(aspect).first == from_repr(c["value"][aspect][0]));
        CHECK(parsed.value->at(aspect).second == from_repr(c["value"][aspect][1]));
      }
    } else {
      CHECK_FALSE(parsed.error.empty());
    }
  }
}

TEST_CASE("judge replies by hand: values, priorities and error texts", "[eval-metrics]") {
  CHECK(*ke::parse_judge_rating("Rating: [[7.5]]").value == 7.5);
  CHECK(*ke::parse_judge_rating("[3] but overall [[9]]").value == 9.0);  // [[x]] anywhere beats [x]
  const auto no_rating = ke::parse_judge_rating("I would give it an eight.");
  CHECK_FALSE(no_rating.ok());
  CHECK_THAT(no_rating.error, Contains("[[rating]]"));
  CHECK(*ke::parse_judge_verdict("[[C]] ... [[B]]").value == ke::Verdict::B);  // A, then B, then C
  CHECK_THAT(ke::parse_judge_verdict("tie").error, Contains("[[C]]"));
  const auto pair = ke::parse_judge_pair_llmkick("8 7\nAssistant 1 explained more.");
  REQUIRE(pair.ok());
  CHECK(pair.value->first == 8.0);
  CHECK(pair.value->second == 7.0);
  const auto spaced = ke::parse_judge_pair_llmkick("8, 7");  // ',' -> ' ' leaves two spaces: three fields
  CHECK_FALSE(spaced.ok());
  CHECK_THAT(spaced.error, Contains("8  7"));
  const auto nan = ke::parse_judge_pair_llmkick("nan 2");  // Python's float() reads it, so does kick
  REQUIRE(nan.ok());
  CHECK(std::isnan(nan.value->first));
  CHECK_FALSE(ke::parse_judge_pair_llmkick("").ok());
  const auto summary = ke::parse_judge_summary_llmkick("9 8\n7 7\n8 8");
  CHECK_FALSE(summary.ok());
  CHECK_THAT(summary.error, Contains("line 4 (relevance)"));
  const auto bad_line = ke::parse_judge_summary_llmkick("9 8\n7,7\n8 8\n6 6");
  CHECK_FALSE(bad_line.ok());
  CHECK_THAT(bad_line.error, Contains("line 2 (consistent)"));
  CHECK(ke::summary_aspects() == std::vector<std::string>{"coherence", "consistent", "fluency", "relevance"});
}
