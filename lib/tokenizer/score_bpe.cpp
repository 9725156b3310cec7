// SentencePiece-style BPE for score-ranked vocabularies: llama2.c's tokenizer.bin (pieces with real
// spaces, a dummy " " prefix) and GGUF/tokenizer.json `llama` vocabularies (spaces as U+2581, an
// optional prefix), merging the adjacent pair whose union has the highest score, with byte fallback.
#include <queue>

#include "tokenizers.hpp"

namespace kick::detail {

namespace {

constexpr const char* kSpaceMarker = "\xE2\x96\x81";  // U+2581

size_t utf8_length(unsigned char lead) {
  if (lead < 0x80) return 1;
  if ((lead >> 5) == 0x6) return 2;
  if ((lead >> 4) == 0xE) return 3;
  if ((lead >> 3) == 0x1E) return 4;
  return 1;  // invalid lead byte: one byte, which byte fallback will encode
}

}  // namespace

ScoreBpeTokenizer::ScoreBpeTokenizer(const VocabSpec& vocab) : TokenizerBase(vocab), real_spaces_(vocab.model == "llama2c") {
  if (vocab.scores.size() != vocab.tokens.size()) {
    fail("tokenizer ({}): {} scores for {} tokens", vocab.model, vocab.scores.size(), vocab.tokens.size());
  }
  for (int b = 0; b < 256; ++b) {
    byte_token_[b] = token_id(fmt::format("<0x{:02X}>", b));
  }
}

void ScoreBpeTokenizer::encode_plain(std::string_view text, bool at_start, std::vector<int32_t>& out) const {
  if (text.empty()) return;
  std::string normalized;
  if (real_spaces_) {
    if (at_start) normalized = " ";  // llama2.c's dummy prefix
    normalized.append(text);
  } else {
    if (at_start && vocab_.add_space_prefix) normalized = kSpaceMarker;
    for (char ch : text) {
      if (ch == ' ') normalized += kSpaceMarker;
      else normalized += ch;
    }
  }
  // Symbols: one UTF-8 character each, in a doubly linked list.
  struct Symbol {
    size_t start, length;
    int prev, next;
  };
  std::vector<Symbol> symbols;
  for (size_t i = 0; i < normalized.size();) {
    size_t len = std::min(utf8_length(static_cast<unsigned char>(normalized[i])), normalized.size() - i);
    symbols.push_back({i, len, static_cast<int>(symbols.size()) - 1, static_cast<int>(symbols.size()) + 1});
    i += len;
  }
  symbols.back().next = -1;
  struct Bigram {
    float score;
    int left;
    size_t length;
    bool operator<(const Bigram& o) const { return score < o.score || (score == o.score && left > o.left); }
  };
  std::priority_queue<Bigram> queue;
  auto try_add = [&](int left) {
    if (left < 0) return;
    int right = symbols[static_cast<size_t>(left)].next;
    if (right < 0) return;
    const auto& l = symbols[static_cast<size_t>(left)];
    const auto& r = symbols[static_cast<size_t>(right)];
    std::string_view joined(normalized.data() + l.start, l.length + r.length);
    int32_t id = token_id(joined);
    if (id < 0) return;
    queue.push({vocab_.scores[static_cast<size_t>(id)], left, joined.size()});
  };
  for (int i = 0; i + 1 < static_cast<int>(symbols.size()); ++i) try_add(i);
  while (!queue.empty()) {
    Bigram b = queue.top();
    queue.pop();
    auto& l = symbols[static_cast<size_t>(b.left)];
    if (l.length == 0 || l.next < 0) continue;
    auto& r = symbols[static_cast<size_t>(l.next)];
    if (l.length + r.length != b.length) continue;  // stale: one side merged since
    l.length += r.length;
    r.length = 0;
    l.next = r.next;
    if (r.next >= 0) symbols[static_cast<size_t>(r.next)].prev = b.left;
    try_add(l.prev);
    try_add(b.left);
  }
  for (int i = 0; i >= 0; i = symbols[static_cast<size_t>(i)].next) {
    const auto& s = symbols[static_cast<size_t>(i)];
    std::string_view piece(normalized.data() + s.start, s.length);
    int32_t id = token_id(piece);
    if (id >= 0) {
      out.push_back(id);
      continue;
    }
    for (unsigned char byte : piece) {
      int32_t b = byte_token_[byte];
      out.push_back(b >= 0 ? b : std::max(0, vocab_.unk_id));
    }
  }
}

std::string ScoreBpeTokenizer::piece_text(int32_t id, bool after_bos) const {
  const std::string& token = vocab_.tokens[static_cast<size_t>(id)];
  if (token.size() == 6 && token.compare(0, 3, "<0x") == 0 && token.back() == '>') {
    return std::string(1, static_cast<char>(std::stoi(token.substr(3, 2), nullptr, 16)));
  }
  std::string text;
  if (real_spaces_) {
    text = token;
  } else {
    for (size_t i = 0; i < token.size();) {
      if (token.compare(i, 3, kSpaceMarker) == 0) {
        text += ' ';
        i += 3;
      } else {
        text += token[i++];
      }
    }
  }
  // The prefix space added at encode time is not part of the text.
  if (after_bos && !text.empty() && text[0] == ' ' && (real_spaces_ || vocab_.add_space_prefix)) text.erase(0, 1);
  return text;
}

}  // namespace kick::detail
