// The tokenizer factory and the base every kind shares: token lookup, splitting special tokens out of
// the text before the algorithm runs, and decoding with control tokens hidden.
#include <algorithm>

#include "tokenizers.hpp"

namespace kick {

namespace detail {

TokenizerBase::TokenizerBase(const VocabSpec& vocab) : vocab_(vocab) {
  if (vocab_.tokens.empty()) fail("tokenizer ({}): the vocabulary is empty", vocab_.model);
  ids_.reserve(vocab_.tokens.size());
  for (size_t i = 0; i < vocab_.tokens.size(); ++i) ids_.emplace(std::string_view(vocab_.tokens[i]), static_cast<int32_t>(i));
  auto check_id = [&](int32_t id, const char* field) {
    if (id >= static_cast<int32_t>(vocab_.tokens.size())) {
      fail("tokenizer ({}): {} {} is outside the vocabulary of {}", vocab_.model, field, id, vocab_.tokens.size());
    }
  };
  check_id(vocab_.bos_id, "bos id");
  check_id(vocab_.eos_id, "eos id");
  check_id(vocab_.unk_id, "unknown-token id");
  if (!vocab_.token_types.empty() && vocab_.token_types.size() != vocab_.tokens.size()) {
    fail("tokenizer ({}): {} token types for {} tokens", vocab_.model, vocab_.token_types.size(), vocab_.tokens.size());
  }
  // llama2.c's tokenizer has no notion of special tokens in text; others match control/user tokens.
  if (vocab_.model != "llama2c") {
    for (size_t i = 0; i < vocab_.token_types.size(); ++i) {
      const int32_t type = vocab_.token_types[i];
      if ((type == 3 || type == 4) && !vocab_.tokens[i].empty()) specials_.push_back(static_cast<int32_t>(i));
    }
    std::stable_sort(specials_.begin(), specials_.end(), [&](int32_t a, int32_t b) {
      return vocab_.tokens[static_cast<size_t>(a)].size() > vocab_.tokens[static_cast<size_t>(b)].size();
    });
  }
}

int32_t TokenizerBase::token_id(std::string_view token) const {
  auto it = ids_.find(token);
  return it == ids_.end() ? -1 : it->second;
}

bool TokenizerBase::is_control(int32_t id) const {
  if (id == vocab_.bos_id || id == vocab_.eos_id) return true;
  return static_cast<size_t>(id) < vocab_.token_types.size() && vocab_.token_types[static_cast<size_t>(id)] == 3;
}

std::vector<int32_t> TokenizerBase::encode(std::string_view text, bool add_bos, bool parse_special) const {
  std::vector<int32_t> out;
  if (add_bos && vocab_.bos_id >= 0) out.push_back(vocab_.bos_id);
  bool after_special = true;
  size_t pos = 0;
  while (pos < text.size()) {
    // The earliest special token in the rest of the text (longest on a tie).
    size_t best_at = std::string_view::npos;
    int32_t best_id = -1;
    if (parse_special) {
      for (int32_t id : specials_) {
        const auto& s = vocab_.tokens[static_cast<size_t>(id)];
        size_t at = text.find(s, pos);
        if (at < best_at) {
          best_at = at;
          best_id = id;
        }
      }
    }
    const size_t end = best_id >= 0 ? best_at : text.size();
    if (end > pos) {
      encode_plain(text.substr(pos, end - pos), after_special, out);
      after_special = false;
    }
    if (best_id < 0) break;
    out.push_back(best_id);
    after_special = true;
    pos = best_at + vocab_.tokens[static_cast<size_t>(best_id)].size();
  }
  return out;
}

std::string TokenizerBase::decode(const std::vector<int32_t>& ids, bool render_special) const {
  std::string text;
  bool first = true;
  for (int32_t id : ids) {
    if (id < 0 || id >= vocab_size()) fail("decode: token id {} is outside the vocabulary of {}", id, vocab_size());
    if (is_control(id)) {
      if (render_special) text += vocab_.tokens[static_cast<size_t>(id)];
      if (id == vocab_.bos_id) first = true;
      continue;
    }
    if (!vocab_.token_types.empty() && vocab_.token_types[static_cast<size_t>(id)] == 4) {
      text += vocab_.tokens[static_cast<size_t>(id)];
      first = false;
      continue;
    }
    text += piece_text(id, first);
    first = false;
  }
  return text;
}

std::string TokenizerBase::piece(int32_t id) const {
  if (id < 0 || id >= vocab_size()) fail("piece: token id {} is outside the vocabulary of {}", id, vocab_size());
  if (is_control(id)) return "";
  return piece_text(id, false);
}

}  // namespace detail

std::unique_ptr<Tokenizer> make_tokenizer(const VocabSpec& vocab) {
  if (vocab.model == "llama" || vocab.model == "llama2c") return std::make_unique<detail::ScoreBpeTokenizer>(vocab);
  if (vocab.model == "gpt2") return std::make_unique<detail::ByteBpeTokenizer>(vocab);
  fail("tokenizer model '{}' is not supported (expected llama, llama2c or gpt2)", vocab.model);
}

}  // namespace kick
