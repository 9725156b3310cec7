// Batched text generation: left-padded prompts, one preallocated KV cache, greedy or temperature /
// top-k / top-p sampling with a per-row seeded generator, EOS, stop strings and token budgets per row.
// Rows that finish leave the batch once a quarter of it is done, so one long answer does not make every
// finished row keep paying for decoding steps.
#include <ATen/CPUGeneratorImpl.h>

#include <algorithm>
#include <limits>

#include "kick/model.hpp"

namespace kick {

namespace {

// Picks the next token of one row from its fp32 logits [V] on the CPU.
int32_t sample_token(const Tensor& logits, const SamplingOptions& options, at::Generator& generator) {
  if (options.temperature <= 0.0) return static_cast<int32_t>(logits.argmax().item<int64_t>());
  auto scaled = logits / options.temperature;
  if (options.top_k > 0 && options.top_k < scaled.size(-1)) {
    // transformers' order: temperature, then top-k, then top-p; ties with the k-th logit stay in.
    auto kth = std::get<0>(scaled.topk(options.top_k)).min();
    scaled.masked_fill_(scaled < kth, -std::numeric_limits<float>::infinity());
  }
  auto probs = at::softmax(scaled, -1);
  if (options.top_p < 1.0) {
    auto sorted = probs.sort(/*dim=*/-1, /*descending=*/true);
    auto sorted_probs = std::get<0>(sorted);
    auto sorted_index = std::get<1>(sorted);
    // Keep the smallest prefix whose mass reaches top_p (the first token always stays).
    auto outside = (sorted_probs.cumsum(-1) - sorted_probs) > options.top_p;
    sorted_probs = sorted_probs.masked_fill(outside, 0.0);
    auto pick = at::multinomial(sorted_probs, 1, /*replacement=*/false, generator);
    return static_cast<int32_t>(sorted_index.index_select(0, pick).item<int64_t>());
  }
  return static_cast<int32_t>(at::multinomial(probs, 1, false, generator).item<int64_t>());
}

// Position of the first stop string in text at or after `from`, or npos.
size_t find_stop(const std::string& text, const std::vector<std::string>& stops, size_t from) {
  size_t best = std::string::npos;
  for (const auto& s : stops) {
    if (s.empty()) continue;
    size_t start = from > s.size() ? from - s.size() : 0;
    size_t at = text.find(s, start);
    if (at != std::string::npos) best = std::min(best, at);
  }
  return best;
}

}  // namespace

std::vector<Generation> generate(const Model& model, const std::vector<std::vector<int32_t>>& prompts,
                                 const SamplingOptions& options, const TokenCallback& on_token) {
  at::NoGradGuard no_grad;
  const auto batch = static_cast<int64_t>(prompts.size());
  std::vector<Generation> results(prompts.size());
  if (batch == 0) return results;
  if (options.top_p <= 0.0 || options.top_p > 1.0) fail("generate: top_p must be in (0, 1], got {}", options.top_p);

  int64_t longest = 0;
  bool ragged = false;
  for (size_t r = 0; r < prompts.size(); ++r) {
    if (prompts[r].empty()) fail("generate: prompt {} is empty (encode with BOS or give some text)", r);
    ragged = ragged || (r > 0 && prompts[r].size() != prompts[0].size());
    longest = std::max<int64_t>(longest, static_cast<int64_t>(prompts[r].size()));
    results[r].prompt_tokens = static_cast<int64_t>(prompts[r].size());
  }
  const int64_t context = model.config().max_position;
  if (longest >= context) fail("generate: prompt of {} tokens leaves no room in the context of {}", longest, context);
  if (!options.row_max_new_tokens.empty() && options.row_max_new_tokens.size() != prompts.size()) {
    fail("generate: {} row budgets for {} prompts", options.row_max_new_tokens.size(), prompts.size());
  }
  std::vector<int64_t> row_budget(prompts.size());
  int64_t budget = 0;
  for (size_t r = 0; r < prompts.size(); ++r) {
    const int64_t wanted = options.row_max_new_tokens.empty() ? options.max_new_tokens : options.row_max_new_tokens[r];
    if (wanted < 0) fail("generate: row {}: max_new_tokens must be >= 0, got {}", r, wanted);
    row_budget[r] = std::min(wanted, context - longest);
    budget = std::max(budget, row_budget[r]);
  }
  const int64_t capacity = longest + budget;
  const int32_t pad = std::max<int32_t>(0, model.tokenizer().eos_id());
  const int32_t eos = model.tokenizer().eos_id();

  auto prompt_ids = at::full({batch, longest}, pad, at::TensorOptions().dtype(at::kLong));
  auto mask = at::zeros({batch, capacity}, at::TensorOptions().dtype(at::kLong));
  for (int64_t r = 0; r < batch; ++r) {
    const auto& p = prompts[static_cast<size_t>(r)];
    const int64_t offset = longest - static_cast<int64_t>(p.size());
    auto row = prompt_ids.accessor<int64_t, 2>();
    for (size_t i = 0; i < p.size(); ++i) row[r][offset + static_cast<int64_t>(i)] = p[i];
    mask[r].narrow(0, offset, capacity - offset).fill_(1);
  }
  mask = mask.to(model.options().device);

  std::vector<at::Generator> generators;
  if (!options.row_seeds.empty() && options.row_seeds.size() != prompts.size()) {
    fail("generate: {} row seeds for {} prompts", options.row_seeds.size(), prompts.size());
  }
  for (int64_t r = 0; r < batch; ++r) {
    const auto row = static_cast<size_t>(r);
    generators.push_back(at::detail::createCPUGenerator(
        options.row_seeds.empty() ? options.seed + static_cast<uint64_t>(r) : options.row_seeds[row]));
  }
  std::vector<bool> done(prompts.size());
  for (size_t r = 0; r < prompts.size(); ++r) done[r] = row_budget[r] == 0;
  std::vector<size_t> emitted(prompts.size(), 0);
  for (auto& g : results) g.finish_reason = "length";

  // live[i] = the prompt whose state sits in row i of the cache, the mask and the logits.
  std::vector<size_t> live(prompts.size());
  for (size_t r = 0; r < live.size(); ++r) live[r] = r;
  auto cache = model.make_cache(batch, capacity);
  auto step_ids = at::empty({batch, 1}, at::TensorOptions().dtype(at::kLong));
  auto logits = model.forward_last(prompt_ids, &cache, ragged ? mask.narrow(1, 0, longest) : Tensor());
  for (int64_t step = 0; step < budget; ++step) {
    auto cpu_logits = logits.to(at::kCPU);
    auto ids = step_ids.accessor<int64_t, 2>();
    size_t active = 0;
    for (size_t i = 0; i < live.size(); ++i) {
      const size_t r = live[i];
      if (done[r]) {
        ids[static_cast<int64_t>(i)][0] = pad;
        continue;
      }
      int32_t token = sample_token(cpu_logits[static_cast<int64_t>(i)], options, generators[r]);
      ids[static_cast<int64_t>(i)][0] = token;
      auto& g = results[r];
      if (options.stop_at_eos && token == eos) {
        g.finish_reason = "eos";
        done[r] = true;
        continue;
      }
      g.tokens.push_back(token);
      g.text = model.tokenizer().decode(g.tokens);
      size_t stop_at = find_stop(g.text, options.stop, emitted[r]);
      if (stop_at != std::string::npos) {
        g.text.resize(stop_at);
        g.finish_reason = "stop";
        done[r] = true;
      }
      if (on_token && g.text.size() > emitted[r]) {
        if (!on_token(r, g.text.substr(emitted[r]))) done[r] = true;
      }
      emitted[r] = std::max(emitted[r], g.text.size());
      if (static_cast<int64_t>(g.tokens.size()) >= row_budget[r]) done[r] = true;
      if (!done[r]) ++active;
    }
    if (active == 0 || step + 1 == budget) break;
    if (active * 4 <= live.size() * 3) {
      // A quarter or more of the rows are done: drop them (their cache rows, mask rows and next ids).
      std::vector<int64_t> keep;
      std::vector<size_t> still_live;
      for (size_t i = 0; i < live.size(); ++i) {
        if (!done[live[i]]) keep.push_back(static_cast<int64_t>(i)), still_live.push_back(live[i]);
      }
      cache.keep_rows(keep);
      auto index = at::tensor(keep, at::TensorOptions().dtype(at::kLong));
      mask = mask.index_select(0, index.to(mask.device()));
      step_ids = step_ids.index_select(0, index);
      live = std::move(still_live);
    }
    logits = model.forward_last(step_ids.to(model.options().device), &cache,
                                ragged ? mask.narrow(1, 0, cache.length() + 1) : Tensor());
  }
  return results;
}

}  // namespace kick
