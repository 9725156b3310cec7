// lib/eval/mmlu_scoring.cpp: few-shot MMLU letter scoring for one subject. The header and shots are the
// same for every question of a subject, so their KV cache is computed once and copied into each batch; a
// batch then runs only the questions' own tokens, right-padded, and reads the next-token distribution at
// each row's last real token. Both protocols come from that one distribution: llm-kick's generated letter
// (its greedy token, decoded) and strict's log-likelihood of " A".." D". Beside it, the naive reference:
// LLM-KICK's own way, one whole prompt at a time through generate() (tests and `kick bench mmlu` compare them).
#include <algorithm>
#include <map>
#include <numeric>

#include "kick/core.hpp"
#include "kick/evaluate.hpp"

namespace kick::eval {
namespace {

constexpr std::array<const char*, 4> kChoiceContinuations = {" A", " B", " C", " D"};

struct PreparedQuestion {
  std::vector<int32_t> ids;  // the whole prompt
  int shots = 0;
  bool reuses_prefix = false;
};

// Next-token log-probabilities [rows, V] at each row's last real token. ids_rows hold the tokens after the
// cached prefix (the whole prompt when prefix_length is 0).
Tensor last_token_logprobs(const Model& model, const KVCache* prefix_cache, int64_t prefix_length,
                           const std::vector<const std::vector<int32_t>*>& rows, size_t skip) {
  const auto batch = static_cast<int64_t>(rows.size());
  int64_t longest = 0;
  for (const auto* r : rows) longest = std::max<int64_t>(longest, static_cast<int64_t>(r->size() - skip));
  const int32_t pad = std::max<int32_t>(0, model.tokenizer().eos_id());
  auto ids = at::full({batch, longest}, pad, at::TensorOptions().dtype(at::kLong));
  auto ids_access = ids.accessor<int64_t, 2>();
  std::vector<int64_t> last(rows.size());
  for (size_t b = 0; b < rows.size(); ++b) {
    const auto& r = *rows[b];
    for (size_t i = skip; i < r.size(); ++i) ids_access[static_cast<int64_t>(b)][static_cast<int64_t>(i - skip)] = r[i];
    last[b] = static_cast<int64_t>(r.size() - skip) - 1;
  }
  // Right padding needs no mask: causal attention keeps every real token from seeing the pads after it.
  Tensor hidden;
  if (prefix_cache) {
    KVCache cache = model.make_cache(batch, prefix_length + longest);
    cache.copy_prefix_from(*prefix_cache, 0, prefix_length);
    hidden = model.forward_hidden(ids.to(model.options().device), &cache);
  } else {
    hidden = model.forward_hidden(ids.to(model.options().device));
  }
  auto index = at::tensor(last, at::TensorOptions().dtype(at::kLong)).to(hidden.device());
  auto picked = hidden.index_select(1, index);  // [B, B, H]: row b's own position is on the diagonal
  auto diagonal = picked.diagonal(0, 0, 1).transpose(0, 1).unsqueeze(1);  // [B, 1, H]
  return at::log_softmax(model.head(diagonal).squeeze(1), -1).to(at::kCPU);
}

// Every question's whole prompt (shots dropped against the task's budget or the model's context, whichever is
// smaller), the one-token continuations " A".." D", and which protocol's letter rule applies.
struct SubjectPrompts {
  std::vector<PreparedQuestion> questions;
  std::array<int32_t, 4> choice_tokens{};
  bool llmkick_letter = false;
};

SubjectPrompts prepare_subject(const Model& model, const TaskSpec& task, const std::vector<MmluExample>& shots,
                               const std::vector<MmluExample>& questions) {
  const Tokenizer& tokenizer = model.tokenizer();
  const bool bos = tokenizer.add_bos_default();
  SubjectPrompts out;
  out.llmkick_letter = task.option("scoring", task.protocol == kProtocolLlmKick ? "generate" : "loglikelihood") == "generate";
  for (size_t c = 0; c < 4; ++c) {
    auto ids = tokenizer.encode(kChoiceContinuations[c], false, false);
    if (ids.size() != 1) {
      fail("mmlu: the continuation \"{}\" is {} tokens for this tokenizer; letter scoring needs one", kChoiceContinuations[c],
           ids.size());
    }
    out.choice_tokens[c] = ids[0];
  }
  TaskSpec spec = task;
  const int64_t budget = task.few_shot.max_prompt_tokens > 0
                             ? std::min<int64_t>(task.few_shot.max_prompt_tokens, model.config().max_position - 1)
                             : model.config().max_position - 1;
  spec.few_shot.max_prompt_tokens = budget;
  TokenCounter count = [&](const std::string& text) { return tokenizer.encode(text, bos, false).size(); };
  out.questions.resize(questions.size());
  for (size_t i = 0; i < questions.size(); ++i) {
    FewShotPrompt prompt = render_mmlu_prompt(spec, shots, questions[i], count);
    if (!prompt.fits) fail("mmlu: {}: the question alone exceeds {} tokens", questions[i].source, budget);
    out.questions[i].ids = tokenizer.encode(prompt.text, bos, false);
    out.questions[i].shots = prompt.shots;
  }
  return out;
}

// One row's prediction from its next-token log-probabilities [V].
void read_prediction(const SubjectPrompts& subject, const Tokenizer& tokenizer, const Tensor& logprobs, MmluPrediction& p) {
  auto access = logprobs.accessor<float, 1>();
  for (size_t c = 0; c < 4; ++c) p.logprobs[c] = access[subject.choice_tokens[c]];
  if (subject.llmkick_letter) {
    const auto greedy = static_cast<int32_t>(logprobs.argmax().item<int64_t>());
    p.predicted = mmlu_letter_llmkick(tokenizer.decode({greedy})).value_or(0);
  } else {
    p.predicted = static_cast<char>('A' + (std::max_element(p.logprobs.begin(), p.logprobs.end()) - p.logprobs.begin()));
  }
}

}  // namespace

std::vector<MmluExample> mmlu_subject_shots(const TaskSpec& spec, const MmluData& data, const std::string& subject) {
  const auto dev = data.dev.find(subject);
  if (dev == data.dev.end()) return {};
  return {dev->second.begin(), dev->second.begin() + std::min<long>(spec.few_shot.k, static_cast<long>(dev->second.size()))};
}

std::vector<MmluPrediction> score_mmlu_subject(const Model& model, const TaskSpec& task,
                                               const std::vector<MmluExample>& shots,
                                               const std::vector<MmluExample>& questions, int64_t batch_size,
                                               bool reuse_prefix) {
  at::NoGradGuard no_grad;
  SubjectPrompts subject = prepare_subject(model, task, shots, questions);
  auto& prepared = subject.questions;
  // Questions are grouped by the number of shots their prompt kept: long questions (US history, law) drop shots
  // to fit the budget, and questions that kept the same shots share the same leading text. Each group's cached
  // prefix is the longest run of leading TOKENS all its prompts share (at least one token of each left over):
  // cutting at the text boundary instead would not do, as a byte-level BPE tokenizes the "\n\n" ending the
  // shots differently when the question follows. Groups of one, and zero-shot prompts, run whole.
  std::map<int, std::vector<size_t>> groups;
  for (size_t i = 0; i < prepared.size(); ++i) groups[reuse_prefix ? prepared[i].shots : -1].push_back(i);
  std::vector<MmluPrediction> out(questions.size());
  const auto step = static_cast<size_t>(std::max<int64_t>(1, batch_size));
  for (auto& [group_shots, members_of_group] : groups) {
    std::vector<int32_t> prefix_ids;
    if (group_shots > 0 && members_of_group.size() > 1) {
      const auto& first = prepared[members_of_group.front()].ids;
      prefix_ids.assign(first.begin(), first.end() - 1);
      for (size_t m : members_of_group) {
        const auto& ids = prepared[m].ids;
        const auto limit = std::min(prefix_ids.size(), ids.size() - 1);
        const auto mismatch = std::mismatch(prefix_ids.begin(), prefix_ids.begin() + static_cast<long>(limit), ids.begin());
        prefix_ids.resize(static_cast<size_t>(mismatch.first - prefix_ids.begin()));
      }
    }
    std::optional<KVCache> prefix_cache;
    if (!prefix_ids.empty()) {
      for (size_t m : members_of_group) prepared[m].reuses_prefix = true;
      prefix_cache.emplace(model.make_cache(1, static_cast<int64_t>(prefix_ids.size())));
      auto ids = at::tensor(std::vector<int64_t>(prefix_ids.begin(), prefix_ids.end()), at::kLong).view({1, -1});
      model.forward_hidden(ids.to(model.options().device), &*prefix_cache);
    }
    // Longest first, so a batch pads little.
    std::vector<size_t> order = members_of_group;
    std::stable_sort(order.begin(), order.end(), [&](size_t x, size_t y) { return prepared[x].ids.size() > prepared[y].ids.size(); });
    for (size_t start = 0; start < order.size(); start += step) {
      const std::vector<size_t> members(order.begin() + static_cast<long>(start),
                                        order.begin() + static_cast<long>(std::min(order.size(), start + step)));
      std::vector<const std::vector<int32_t>*> rows;
      for (size_t m : members) rows.push_back(&prepared[m].ids);
      Tensor logprobs = prefix_cache ? last_token_logprobs(model, &*prefix_cache, static_cast<int64_t>(prefix_ids.size()), rows,
                                                           prefix_ids.size())
                                     : last_token_logprobs(model, nullptr, 0, rows, 0);
      for (size_t b = 0; b < members.size(); ++b) {
        MmluPrediction& p = out[members[b]];
        p.shots = prepared[members[b]].shots;
        p.prefix_reused = prepared[members[b]].reuses_prefix;
        read_prediction(subject, model.tokenizer(), logprobs[static_cast<int64_t>(b)], p);
      }
    }
  }
  return out;
}

std::vector<MmluPrediction> score_mmlu_subject_per_question(const Model& model, const TaskSpec& task,
                                                            const std::vector<MmluExample>& shots,
                                                            const std::vector<MmluExample>& questions) {
  at::NoGradGuard no_grad;
  const SubjectPrompts subject = prepare_subject(model, task, shots, questions);
  std::vector<MmluPrediction> out(questions.size());
  SamplingOptions greedy;
  greedy.max_new_tokens = 1;
  for (size_t i = 0; i < questions.size(); ++i) {
    const auto& ids = subject.questions[i].ids;
    MmluPrediction& p = out[i];
    p.shots = subject.questions[i].shots;
    if (subject.llmkick_letter) {
      // LLM-KICK's generate(max_length = prompt + 1): the letter of the one token generate() picks.
      p.predicted = mmlu_letter_llmkick(generate(model, {ids}, greedy).at(0).text).value_or(0);
      continue;
    }
    auto input = at::tensor(std::vector<int64_t>(ids.begin(), ids.end()), at::kLong).view({1, -1});
    const Tensor logits = model.forward_last(input.to(model.options().device), nullptr).view({-1});
    read_prediction(subject, model.tokenizer(), at::log_softmax(logits.to(at::kFloat), -1).to(at::kCPU), p);
  }
  return out;
}

}  // namespace kick::eval
