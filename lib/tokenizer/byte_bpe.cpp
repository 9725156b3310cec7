// GPT-2 byte-level BPE: named pre-tokenizer regexes (PCRE2, Unicode properties), the byte<->unicode map,
// merges applied by rank within each pre-token, and a per-word cache.
#define PCRE2_CODE_UNIT_WIDTH 8
#include <pcre2.h>

#include <climits>

#include "tokenizers.hpp"

namespace kick::detail {

namespace {

constexpr const char* kGpt2Pattern =
    "'s|'t|'re|'ve|'m|'ll|'d| ?\\p{L}+| ?\\p{N}+| ?[^\\s\\p{L}\\p{N}]+|\\s+(?!\\S)|\\s+";
constexpr const char* kLlama3Pattern =
    "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}{1,3}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|"
    "\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+";

// The regexes a named pre-tokenizer applies in sequence: each splits every piece of the previous one.
std::vector<std::string> pre_tokenizer_patterns(const std::string& name) {
  if (name == "smollm") return {"\\p{N}", kGpt2Pattern};  // HF: Digits(individual) then ByteLevel
  if (name == "gpt2" || name == "default" || name.empty()) return {kGpt2Pattern};
  if (name == "llama3" || name == "llama-bpe") return {kLlama3Pattern};
  fail("tokenizer (gpt2): pre-tokenizer '{}' is not supported (expected smollm, gpt2, default or llama3)", name);
}

void append_utf8(std::string& out, uint32_t cp) {
  if (cp < 0x80) {
    out += static_cast<char>(cp);
  } else if (cp < 0x800) {
    out += static_cast<char>(0xC0 | (cp >> 6));
    out += static_cast<char>(0x80 | (cp & 0x3F));
  } else {
    out += static_cast<char>(0xE0 | (cp >> 12));
    out += static_cast<char>(0x80 | ((cp >> 6) & 0x3F));
    out += static_cast<char>(0x80 | (cp & 0x3F));
  }
}

// Decodes one UTF-8 code point at s[i], advancing i; invalid bytes come back as themselves.
uint32_t next_codepoint(const std::string& s, size_t& i) {
  const auto c = static_cast<unsigned char>(s[i]);
  size_t len = c < 0x80 ? 1 : (c >> 5) == 0x6 ? 2 : (c >> 4) == 0xE ? 3 : (c >> 3) == 0x1E ? 4 : 1;
  if (i + len > s.size()) len = 1;
  uint32_t cp = len == 1 ? c : len == 2 ? (c & 0x1F) : len == 3 ? (c & 0x0F) : (c & 0x07);
  for (size_t k = 1; k < len; ++k) cp = (cp << 6) | (static_cast<unsigned char>(s[i + k]) & 0x3F);
  i += len;
  return cp;
}

}  // namespace

struct ByteBpeTokenizer::Regexes {
  std::vector<pcre2_code*> codes;
  ~Regexes() {
    for (auto* c : codes) pcre2_code_free(c);
  }
  // Splits text into the regex's matches and the gaps between them, in order.
  static void split(pcre2_code* code, std::string_view text, std::vector<std::string_view>& out) {
    pcre2_match_data* md = pcre2_match_data_create_from_pattern(code, nullptr);
    const auto* subject = reinterpret_cast<PCRE2_SPTR>(text.data());
    size_t offset = 0;
    while (offset < text.size()) {
      int rc = pcre2_match(code, subject, text.size(), offset, 0, md, nullptr);
      if (rc < 0) break;
      const PCRE2_SIZE* ov = pcre2_get_ovector_pointer(md);
      const size_t start = ov[0], end = ov[1];
      if (start > offset) out.push_back(text.substr(offset, start - offset));
      if (end == start) {  // empty match: step one byte so the loop always advances
        out.push_back(text.substr(start, 1));
        offset = start + 1;
      } else {
        out.push_back(text.substr(start, end - start));
        offset = end;
      }
    }
    if (offset < text.size()) out.push_back(text.substr(offset));
    pcre2_match_data_free(md);
  }
};

ByteBpeTokenizer::ByteBpeTokenizer(const VocabSpec& vocab) : TokenizerBase(vocab), regexes_(std::make_unique<Regexes>()) {
  for (const auto& pattern : pre_tokenizer_patterns(vocab.pre)) {
    int error = 0;
    PCRE2_SIZE error_offset = 0;
    pcre2_code* code = pcre2_compile(reinterpret_cast<PCRE2_SPTR>(pattern.c_str()), PCRE2_ZERO_TERMINATED,
                                     PCRE2_UTF | PCRE2_UCP | PCRE2_MATCH_INVALID_UTF, &error, &error_offset, nullptr);
    if (!code) fail("tokenizer (gpt2/{}): cannot compile pre-tokenizer regex (PCRE2 error {})", vocab.pre, error);
    pcre2_jit_compile(code, PCRE2_JIT_COMPLETE);  // optional speed-up; the interpreter is the fallback
    regexes_->codes.push_back(code);
  }
  for (size_t rank = 0; rank < vocab.merges.size(); ++rank) {
    const auto& m = vocab.merges[rank];
    const auto space = m.find(' ');
    if (space == std::string::npos || space == 0 || space + 1 == m.size()) {
      fail("tokenizer (gpt2): merge {} '{}' is not 'left right'", rank, m);
    }
    merge_rank_.emplace(m, static_cast<int32_t>(rank));
  }
  // GPT-2's reversible byte -> printable code point map.
  std::vector<int> printable;
  for (int b = '!'; b <= '~'; ++b) printable.push_back(b);
  for (int b = 0xA1; b <= 0xAC; ++b) printable.push_back(b);
  for (int b = 0xAE; b <= 0xFF; ++b) printable.push_back(b);
  std::array<bool, 256> direct{};
  for (int b : printable) direct[static_cast<size_t>(b)] = true;
  uint32_t next = 256;
  for (int b = 0; b < 256; ++b) {
    const uint32_t cp = direct[static_cast<size_t>(b)] ? static_cast<uint32_t>(b) : next++;
    append_utf8(byte_to_unicode_[static_cast<size_t>(b)], cp);
    unicode_to_byte_[cp] = static_cast<uint8_t>(b);
  }
}

ByteBpeTokenizer::~ByteBpeTokenizer() = default;

void ByteBpeTokenizer::bpe_word(const std::string& word, std::vector<int32_t>& out) const {
  {
    std::lock_guard<std::mutex> lock(cache_mutex_);
    auto it = cache_.find(word);
    if (it != cache_.end()) {
      out.insert(out.end(), it->second.begin(), it->second.end());
      return;
    }
  }
  std::vector<std::string> symbols;
  for (size_t i = 0; i < word.size();) {
    size_t start = i;
    next_codepoint(word, i);
    symbols.push_back(word.substr(start, i - start));
  }
  std::string key;
  while (symbols.size() > 1) {
    int32_t best_rank = INT32_MAX;
    size_t best = 0;
    for (size_t i = 0; i + 1 < symbols.size(); ++i) {
      key.assign(symbols[i]).append(" ").append(symbols[i + 1]);
      auto it = merge_rank_.find(key);
      if (it != merge_rank_.end() && it->second < best_rank) {
        best_rank = it->second;
        best = i;
      }
    }
    if (best_rank == INT32_MAX) break;
    symbols[best] += symbols[best + 1];
    symbols.erase(symbols.begin() + static_cast<std::ptrdiff_t>(best) + 1);
  }
  std::vector<int32_t> ids;
  for (const auto& s : symbols) {
    int32_t id = token_id(s);
    if (id < 0) {
      if (vocab_.unk_id < 0) fail("tokenizer (gpt2): no token for '{}' and no unknown token", s);
      id = vocab_.unk_id;
    }
    ids.push_back(id);
  }
  out.insert(out.end(), ids.begin(), ids.end());
  std::lock_guard<std::mutex> lock(cache_mutex_);
  if (cache_.size() > 200000) cache_.clear();
  cache_.emplace(word, std::move(ids));
}

void ByteBpeTokenizer::encode_plain(std::string_view text, bool, std::vector<int32_t>& out) const {
  std::vector<std::string_view> pieces = {text}, next;
  for (auto* code : regexes_->codes) {
    next.clear();
    for (auto p : pieces) Regexes::split(code, p, next);
    pieces.swap(next);
  }
  std::string mapped;
  for (auto p : pieces) {
    mapped.clear();
    for (unsigned char c : p) mapped += byte_to_unicode_[c];
    bpe_word(mapped, out);
  }
}

std::string ByteBpeTokenizer::piece_text(int32_t id, bool) const {
  const std::string& token = vocab_.tokens[static_cast<size_t>(id)];
  std::string bytes;
  for (size_t i = 0; i < token.size();) {
    const size_t start = i;
    const uint32_t cp = next_codepoint(token, i);
    auto it = unicode_to_byte_.find(cp);
    if (it != unicode_to_byte_.end()) {
      bytes += static_cast<char>(it->second);
    } else {
      bytes.append(token, start, i - start);  // not byte-mapped (added tokens): as written
    }
  }
  return bytes;
}

}  // namespace kick::detail
