// lib/eval/rouge.cpp: ROUGE-1/2/L as Google's rouge-score computes them, and the Porter stemmer in the
// form NLTK's PorterStemmer() runs it (mode NLTK_EXTENSIONS), which is what rouge-score calls. Checked
// against both packages by tests/unit/test_eval_metrics.cpp (fixture: tests/reference/eval_metrics_reference.py).
#include <algorithm>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "kick/core.hpp"
#include "kick/eval.hpp"

namespace kick::eval {

// ---------------------------------------------------------------------------------- Porter (NLTK)

namespace {

bool is_vowel(char c) { return c == 'a' || c == 'e' || c == 'i' || c == 'o' || c == 'u'; }

// Porter's consonant: not a vowel, and a 'y' only when it follows a vowel or starts the word. Walks back
// over a run of 'y's instead of recursing, so a token like "yyyy..." cannot overflow the stack.
bool is_consonant(std::string_view w, size_t i) {
  if (is_vowel(w[i])) return false;
  if (w[i] != 'y') return true;
  bool negate = false;
  while (i > 0 && w[i] == 'y') {
    negate = !negate;
    --i;
  }
  return !is_vowel(w[i]) != negate;
}

// m in [C](VC){m}[V]: the number of vowel-to-consonant transitions.
int measure(std::string_view s) {
  int m = 0;
  bool previous_consonant = true, previous_vowel = false;
  for (size_t i = 0; i < s.size(); ++i) {
    bool consonant;
    if (is_vowel(s[i]))
      consonant = false;
    else if (s[i] == 'y')
      consonant = i == 0 ? true : !previous_consonant;
    else
      consonant = true;
    if (consonant && previous_vowel) ++m;
    previous_vowel = !consonant;
    previous_consonant = consonant;
  }
  return m;
}

bool contains_vowel(std::string_view s) {
  for (size_t i = 0; i < s.size(); ++i)
    if (!is_consonant(s, i)) return true;
  return false;
}
bool ends_double_consonant(std::string_view w) {
  return w.size() >= 2 && w[w.size() - 1] == w[w.size() - 2] && is_consonant(w, w.size() - 1);
}
// *o: consonant-vowel-consonant with the last not w, x or y; NLTK also accepts a two-letter vowel-consonant.
bool ends_cvc(std::string_view w) {
  const size_t n = w.size();
  if (n >= 3 && is_consonant(w, n - 3) && !is_consonant(w, n - 2) && is_consonant(w, n - 1) && w[n - 1] != 'w' &&
      w[n - 1] != 'x' && w[n - 1] != 'y')
    return true;
  return n == 2 && !is_consonant(w, 0) && is_consonant(w, 1);
}
bool ends_with(std::string_view w, std::string_view suffix) {
  return w.size() >= suffix.size() && w.substr(w.size() - suffix.size()) == suffix;
}

enum class Condition { none, measure_positive, measure_above_one, measure_above_one_after_s_or_t };
struct Rule {
  std::string_view suffix, replacement;
  Condition condition;
};

bool holds(Condition condition, std::string_view stem) {
  switch (condition) {
    case Condition::none: return true;
    case Condition::measure_positive: return measure(stem) > 0;
    case Condition::measure_above_one: return measure(stem) > 1;
    case Condition::measure_above_one_after_s_or_t:
      return measure(stem) > 1 && (stem.back() == 's' || stem.back() == 't');
  }
  return false;
}

// The first rule whose suffix matches decides: its condition holds -> replaced, otherwise the word stays.
template <size_t N>
void apply_rules(std::string& word, const Rule (&rules)[N]) {
  for (const Rule& rule : rules) {
    if (!ends_with(word, rule.suffix)) continue;
    const std::string_view stem(word.data(), word.size() - rule.suffix.size());
    if (holds(rule.condition, stem)) word.replace(stem.size(), rule.suffix.size(), rule.replacement);
    return;
  }
}

void step1a(std::string& w) {
  if (ends_with(w, "ies") && w.size() == 4) {
    w = w.substr(0, 1) + "ie";
    return;
  }
  static constexpr Rule rules[] = {{"sses", "ss", Condition::none}, {"ies", "i", Condition::none},
                                   {"ss", "ss", Condition::none},   {"s", "", Condition::none}};
  apply_rules(w, rules);
}

void step1b(std::string& w) {
  if (ends_with(w, "ied")) {
    w.replace(w.size() - 3, 3, w.size() == 4 ? "ie" : "i");
    return;
  }
  if (ends_with(w, "eed")) {
    if (measure(std::string_view(w).substr(0, w.size() - 3)) > 0) w.pop_back();
    return;
  }
  size_t cut = 0;
  for (std::string_view suffix : {std::string_view("ed"), std::string_view("ing")})
    if (ends_with(w, suffix) && contains_vowel(std::string_view(w).substr(0, w.size() - suffix.size()))) {
      cut = suffix.size();
      break;
    }
  if (cut == 0) return;
  w.resize(w.size() - cut);
  if (ends_with(w, "at") || ends_with(w, "bl") || ends_with(w, "iz")) {
    w += 'e';
  } else if (ends_double_consonant(w)) {
    if (w.back() != 'l' && w.back() != 's' && w.back() != 'z') w.pop_back();
  } else if (measure(w) == 1 && ends_cvc(w)) {
    w += 'e';
  }
}

// NLTK: y -> i only after a consonant that is not the whole stem ("happy" -> "happi", "by" stays).
void step1c(std::string& w) {
  if (ends_with(w, "y") && w.size() > 2 && is_consonant(w, w.size() - 2)) w.back() = 'i';
}

void step2(std::string& w) {
  if (ends_with(w, "alli") && measure(std::string_view(w).substr(0, w.size() - 4)) > 0) {
    w.replace(w.size() - 4, 4, "al");
    step2(w);
    return;
  }
  // "logi" -> "log" needs the measure of the word less "ogi" (NLTK's extension), so it sits outside the table.
  static constexpr Condition p = Condition::measure_positive;
  static constexpr Rule rules[] = {
      {"ational", "ate", p}, {"tional", "tion", p}, {"enci", "ence", p},   {"anci", "ance", p},
      {"izer", "ize", p},    {"bli", "ble", p},     {"alli", "al", p},     {"entli", "ent", p},
      {"eli", "e", p},       {"ousli", "ous", p},   {"ization", "ize", p}, {"ation", "ate", p},
      {"ator", "ate", p},    {"alism", "al", p},    {"iveness", "ive", p}, {"fulness", "ful", p},
      {"ousness", "ous", p}, {"aliti", "al", p},    {"iviti", "ive", p},   {"biliti", "ble", p},
      {"fulli", "ful", p},   {"logi", "log", Condition::none}};
  for (const Rule& rule : rules) {
    if (!ends_with(w, rule.suffix)) continue;
    const std::string_view stem(w.data(), w.size() - rule.suffix.size());
    const bool ok = rule.suffix == "logi" ? measure(std::string_view(w).substr(0, w.size() - 3)) > 0
                                          : holds(rule.condition, stem);
    if (ok) w.replace(stem.size(), rule.suffix.size(), rule.replacement);
    return;
  }
}

void step3(std::string& w) {
  static constexpr Condition p = Condition::measure_positive;
  static constexpr Rule rules[] = {{"icate", "ic", p}, {"ative", "", p}, {"alize", "al", p}, {"iciti", "ic", p},
                                   {"ical", "ic", p},  {"ful", "", p},   {"ness", "", p}};
  apply_rules(w, rules);
}

void step4(std::string& w) {
  static constexpr Condition g = Condition::measure_above_one;
  static constexpr Rule rules[] = {
      {"al", "", g},  {"ance", "", g}, {"ence", "", g}, {"er", "", g},  {"ic", "", g},   {"able", "", g},
      {"ible", "", g}, {"ant", "", g}, {"ement", "", g}, {"ment", "", g}, {"ent", "", g},
      {"ion", "", Condition::measure_above_one_after_s_or_t},
      {"ou", "", g},  {"ism", "", g},  {"ate", "", g},  {"iti", "", g}, {"ous", "", g},  {"ive", "", g},
      {"ize", "", g}};
  apply_rules(w, rules);
}

void step5a(std::string& w) {
  if (!ends_with(w, "e")) return;
  const std::string_view stem(w.data(), w.size() - 1);
  const int m = measure(stem);
  if (m > 1 || (m == 1 && !ends_cvc(stem))) w.pop_back();
}

void step5b(std::string& w) {
  if (ends_with(w, "ll") && measure(std::string_view(w).substr(0, w.size() - 1)) > 1) w.pop_back();
}

size_t code_points(std::string_view s) {
  size_t n = 0;
  for (char c : s) n += (static_cast<unsigned char>(c) & 0xC0) != 0x80;
  return n;
}

}  // namespace

std::string porter_stem(std::string_view input) {
  std::string word(input);
  for (char& c : word)
    if (c >= 'A' && c <= 'Z') c = static_cast<char>(c - 'A' + 'a');
  static const std::unordered_map<std::string, std::string> irregular = {
      {"sky", "sky"},         {"skies", "sky"},       {"dying", "die"},       {"lying", "lie"},
      {"tying", "tie"},       {"news", "news"},       {"innings", "inning"},  {"inning", "inning"},
      {"outings", "outing"},  {"outing", "outing"},   {"cannings", "canning"}, {"canning", "canning"},
      {"howe", "howe"},       {"proceed", "proceed"}, {"exceed", "exceed"},   {"succeed", "succeed"}};
  if (auto it = irregular.find(word); it != irregular.end()) return it->second;
  if (code_points(input) <= 2) return word;
  step1a(word);
  step1b(word);
  step1c(word);
  step2(word);
  step3(word);
  step4(word);
  step5a(word);
  step5b(word);
  return word;
}

// ---------------------------------------------------------------------------------- ROUGE

std::vector<std::string> rouge_tokenize(std::string_view text, bool stem) {
  // rouge-score: text.lower(), then every run outside [a-z0-9] becomes a space. Python's lower() brings two
  // non-ASCII characters into that range: U+0130 (-> "i" + U+0307) and U+212A KELVIN SIGN (-> "k").
  std::string s;
  s.reserve(text.size());
  for (size_t i = 0; i < text.size(); ++i) {
    const char c = text[i];
    if ((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9')) {
      s += c;
    } else if (c >= 'A' && c <= 'Z') {
      s += static_cast<char>(c - 'A' + 'a');
    } else if (text.substr(i, 2) == "\xC4\xB0") {
      s += "i ";
      i += 1;
    } else if (text.substr(i, 3) == "\xE2\x84\xAA") {
      s += 'k';
      i += 2;
    } else {
      s += ' ';
    }
  }
  std::vector<std::string> tokens;
  size_t i = 0;
  while (i < s.size()) {
    while (i < s.size() && s[i] == ' ') ++i;
    size_t j = i;
    while (j < s.size() && s[j] != ' ') ++j;
    if (j > i) {
      std::string token = s.substr(i, j - i);
      tokens.push_back(stem && token.size() > 3 ? porter_stem(token) : std::move(token));
    }
    i = j;
  }
  return tokens;
}

namespace {

double fmeasure(double precision, double recall) {
  return precision + recall > 0 ? 2 * precision * recall / (precision + recall) : 0.0;
}

// n-gram -> count, keyed by the tokens joined with ' ' (tokens never hold a space).
std::unordered_map<std::string, int64_t> ngram_counts(const std::vector<std::string>& tokens, int n) {
  std::unordered_map<std::string, int64_t> counts;
  const auto width = static_cast<size_t>(n);
  for (size_t i = 0; i + width <= tokens.size(); ++i) {
    std::string key = tokens[i];
    for (size_t k = 1; k < width; ++k) (key += ' ') += tokens[i + k];
    ++counts[key];
  }
  return counts;
}

RougeScore rouge_n_tokens(const std::vector<std::string>& prediction, const std::vector<std::string>& reference,
                          int n) {
  const auto pred = ngram_counts(prediction, n), ref = ngram_counts(reference, n);
  int64_t overlap = 0, pred_total = 0, ref_total = 0;
  for (const auto& [gram, count] : ref) {
    ref_total += count;
    if (auto it = pred.find(gram); it != pred.end()) overlap += std::min(count, it->second);
  }
  for (const auto& entry : pred) pred_total += entry.second;
  RougeScore s;
  s.precision = static_cast<double>(overlap) / static_cast<double>(std::max<int64_t>(pred_total, 1));
  s.recall = static_cast<double>(overlap) / static_cast<double>(std::max<int64_t>(ref_total, 1));
  s.fmeasure = fmeasure(s.precision, s.recall);
  return s;
}

RougeScore rouge_l_tokens(const std::vector<std::string>& prediction, const std::vector<std::string>& reference) {
  if (prediction.empty() || reference.empty()) return {};
  std::vector<int64_t> previous(prediction.size() + 1, 0), current(prediction.size() + 1, 0);
  for (size_t i = 1; i <= reference.size(); ++i) {
    for (size_t j = 1; j <= prediction.size(); ++j)
      current[j] = reference[i - 1] == prediction[j - 1] ? previous[j - 1] + 1 : std::max(previous[j], current[j - 1]);
    std::swap(previous, current);
  }
  const auto lcs = static_cast<double>(previous[prediction.size()]);
  RougeScore s;
  s.precision = lcs / static_cast<double>(prediction.size());
  s.recall = lcs / static_cast<double>(reference.size());
  s.fmeasure = fmeasure(s.precision, s.recall);
  return s;
}

// score_multi: the reference with the highest F-measure, the first one on a tie (np.argmax).
template <typename Score>
RougeScore best_of(const std::vector<std::string>& references, Score&& score) {
  if (references.empty()) fail("ROUGE needs at least one reference, got none");
  RougeScore best = score(references[0]);
  for (size_t i = 1; i < references.size(); ++i) {
    RougeScore s = score(references[i]);
    if (s.fmeasure > best.fmeasure) best = s;
  }
  return best;
}

}  // namespace

RougeScore rouge_n(std::string_view prediction, std::string_view reference, int n, bool stem) {
  if (n < 1) fail("ROUGE-N needs n >= 1, got {}", n);
  return rouge_n_tokens(rouge_tokenize(prediction, stem), rouge_tokenize(reference, stem), n);
}
RougeScore rouge_l(std::string_view prediction, std::string_view reference, bool stem) {
  return rouge_l_tokens(rouge_tokenize(prediction, stem), rouge_tokenize(reference, stem));
}
RougeScore rouge_n_multi(std::string_view prediction, const std::vector<std::string>& references, int n, bool stem) {
  if (n < 1) fail("ROUGE-N needs n >= 1, got {}", n);
  const auto tokens = rouge_tokenize(prediction, stem);
  return best_of(references, [&](const std::string& r) { return rouge_n_tokens(tokens, rouge_tokenize(r, stem), n); });
}
RougeScore rouge_l_multi(std::string_view prediction, const std::vector<std::string>& references, bool stem) {
  const auto tokens = rouge_tokenize(prediction, stem);
  return best_of(references, [&](const std::string& r) { return rouge_l_tokens(tokens, rouge_tokenize(r, stem)); });
}

}  // namespace kick::eval
