// Internal to lib/tokenizer: the shared base (token lookup, special-token splitting, decode) and the two
// algorithms: score-ranked BPE (llama2.c, SentencePiece-style) and GPT-2 byte-level BPE.
#pragma once

#include <array>
#include <memory>
#include <mutex>
#include <string>
#include <unordered_map>
#include <vector>

#include "kick/tokenizer.hpp"

namespace kick::detail {

class TokenizerBase : public Tokenizer {
 public:
  explicit TokenizerBase(const VocabSpec& vocab);
  std::vector<int32_t> encode(std::string_view text, bool add_bos, bool parse_special = true) const override;
  std::string decode(const std::vector<int32_t>& ids, bool render_special = false) const override;
  std::string piece(int32_t id) const override;
  int32_t vocab_size() const override { return static_cast<int32_t>(vocab_.tokens.size()); }
  int32_t bos_id() const override { return vocab_.bos_id; }
  int32_t eos_id() const override { return vocab_.eos_id; }
  bool add_bos_default() const override { return vocab_.add_bos; }
  int32_t token_id(std::string_view token) const override;

 protected:
  // Encodes text containing no special tokens; `after_special` is true at the start of the text and
  // right after a special token (where SentencePiece adds its prefix space).
  virtual void encode_plain(std::string_view text, bool after_special, std::vector<int32_t>& out) const = 0;
  // The text of one token; `first` is true for the first text token of a sequence.
  virtual std::string piece_text(int32_t id, bool first) const = 0;
  bool is_control(int32_t id) const;

  VocabSpec vocab_;
  std::unordered_map<std::string_view, int32_t> ids_;  // views into vocab_.tokens, which never changes
  std::vector<int32_t> specials_;  // control and user-defined tokens matched in text, longest first
};

class ScoreBpeTokenizer : public TokenizerBase {
 public:
  explicit ScoreBpeTokenizer(const VocabSpec& vocab);
  std::string kind() const override { return vocab_.model; }

 protected:
  void encode_plain(std::string_view text, bool after_special, std::vector<int32_t>& out) const override;
  std::string piece_text(int32_t id, bool first) const override;

 private:
  bool real_spaces_;
  std::array<int32_t, 256> byte_token_{};
};

class ByteBpeTokenizer : public TokenizerBase {
 public:
  explicit ByteBpeTokenizer(const VocabSpec& vocab);
  ~ByteBpeTokenizer() override;
  std::string kind() const override { return "gpt2/" + vocab_.pre; }

 protected:
  void encode_plain(std::string_view text, bool after_special, std::vector<int32_t>& out) const override;
  std::string piece_text(int32_t id, bool first) const override;

 private:
  void bpe_word(const std::string& word, std::vector<int32_t>& out) const;
  struct Regexes;
  std::unique_ptr<Regexes> regexes_;
  std::unordered_map<std::string, int32_t> merge_rank_;  // "left right" -> rank
  std::array<std::string, 256> byte_to_unicode_;
  std::unordered_map<uint32_t, uint8_t> unicode_to_byte_;
  mutable std::mutex cache_mutex_;
  mutable std::unordered_map<std::string, std::vector<int32_t>> cache_;
};

}  // namespace kick::detail
