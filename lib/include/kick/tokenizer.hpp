// kick/tokenizer.hpp: text <-> token ids for the three vocabularies kick reads (llama2.c, SentencePiece
// BPE from GGUF/tokenizer.json, GPT-2 byte-level BPE with named pre-tokenizers).
#pragma once

#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "kick/io.hpp"

namespace kick {

class Tokenizer {
 public:
  virtual ~Tokenizer() = default;
  // Encodes text; special-token strings in the text (e.g. "<|im_start|>") become their ids when
  // `parse_special` is set. Adds BOS when add_bos is set (the vocab's default is add_bos_default()).
  virtual std::vector<int32_t> encode(std::string_view text, bool add_bos, bool parse_special = true) const = 0;
  // Decodes ids to UTF-8; control tokens (BOS/EOS...) render as nothing unless `render_special`.
  virtual std::string decode(const std::vector<int32_t>& ids, bool render_special = false) const = 0;
  // The bytes one token contributes when appended to a decoded stream (for streaming output).
  virtual std::string piece(int32_t id) const = 0;
  virtual int32_t vocab_size() const = 0;
  virtual int32_t bos_id() const = 0;
  virtual int32_t eos_id() const = 0;
  virtual bool add_bos_default() const = 0;
  virtual std::string kind() const = 0;  // "llama2c", "llama", "gpt2/<pre>"
  // Token id for an exact token string, or -1.
  virtual int32_t token_id(std::string_view token) const = 0;
};

// Builds the right tokenizer for a vocabulary; throws naming the field on an inconsistent spec.
std::unique_ptr<Tokenizer> make_tokenizer(const VocabSpec& vocab);

}  // namespace kick
