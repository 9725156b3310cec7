// Scoring a model on text: log-likelihood of continuations (batched, right-padded) and the
// SparseGPT/GPTQ/Wanda perplexity protocol over non-overlapping windows.
#include <algorithm>
#include <cmath>
#include <numeric>
#include <sstream>

#include "kick/model.hpp"

namespace kick {

namespace {

// Sum of log-probabilities of `targets` [N] under hidden states [N, H], with the head applied in
// chunks so the [N, V] logits never exist all at once. Also reports whether each target is the argmax.
std::pair<Tensor, Tensor> score_positions(const Model& model, const Tensor& hidden, const Tensor& targets) {
  constexpr int64_t kChunk = 512;
  const int64_t n = hidden.size(0);
  auto logprobs = at::empty({n}, at::TensorOptions().dtype(at::kFloat).device(hidden.device()));
  auto greedy = at::empty({n}, at::TensorOptions().dtype(at::kBool).device(hidden.device()));
  for (int64_t start = 0; start < n; start += kChunk) {
    const int64_t len = std::min(kChunk, n - start);
    auto logits = model.head(hidden.narrow(0, start, len));
    auto lsm = at::log_softmax(logits, -1);
    auto tgt = targets.narrow(0, start, len).unsqueeze(1);
    logprobs.narrow(0, start, len).copy_(lsm.gather(1, tgt).squeeze(1));
    greedy.narrow(0, start, len).copy_(logits.argmax(-1) == tgt.squeeze(1));
  }
  return {logprobs, greedy};
}

}  // namespace

std::vector<LoglikelihoodResult> loglikelihood(const Model& model,
                                               const std::vector<LoglikelihoodRequest>& requests,
                                               int64_t batch_size) {
  at::NoGradGuard no_grad;
  if (batch_size <= 0) fail("loglikelihood: batch size must be positive, got {}", batch_size);
  const int64_t context_limit = model.config().max_position;
  const int32_t fallback_start = model.tokenizer().bos_id() >= 0 ? model.tokenizer().bos_id()
                                                                  : model.tokenizer().eos_id();
  struct Prepared {
    std::vector<int32_t> input, target;
    int64_t continuation = 0;
  };
  std::vector<Prepared> prepared(requests.size());
  for (size_t i = 0; i < requests.size(); ++i) {
    const auto& rq = requests[i];
    if (rq.continuation.empty()) fail("loglikelihood: request {} has an empty continuation", i);
    std::vector<int32_t> full = rq.context;
    if (full.empty()) full.push_back(fallback_start);
    full.insert(full.end(), rq.continuation.begin(), rq.continuation.end());
    const auto cont = static_cast<int64_t>(rq.continuation.size());
    if (cont >= context_limit) fail("loglikelihood: continuation {} has {} tokens, context is {}", i, cont, context_limit);
    // Keep the last context_limit + 1 tokens: the model sees context_limit inputs.
    if (static_cast<int64_t>(full.size()) > context_limit + 1) full.erase(full.begin(), full.end() - (context_limit + 1));
    prepared[i].input.assign(full.begin(), full.end() - 1);
    prepared[i].target.assign(full.begin() + 1, full.end());
    prepared[i].continuation = cont;
  }
  std::vector<size_t> order(requests.size());
  std::iota(order.begin(), order.end(), 0);
  std::stable_sort(order.begin(), order.end(), [&](size_t a, size_t b) {
    return prepared[a].input.size() > prepared[b].input.size();
  });

  std::vector<LoglikelihoodResult> results(requests.size());
  for (size_t begin = 0; begin < order.size(); begin += static_cast<size_t>(batch_size)) {
    const size_t end = std::min(order.size(), begin + static_cast<size_t>(batch_size));
    const auto rows = static_cast<int64_t>(end - begin);
    const auto width = static_cast<int64_t>(prepared[order[begin]].input.size());
    auto ids = at::zeros({rows, width}, at::TensorOptions().dtype(at::kLong));
    auto acc = ids.accessor<int64_t, 2>();
    std::vector<int64_t> flat_rows, flat_cols, flat_targets;
    for (int64_t r = 0; r < rows; ++r) {
      const auto& p = prepared[order[begin + static_cast<size_t>(r)]];
      for (size_t j = 0; j < p.input.size(); ++j) acc[r][static_cast<int64_t>(j)] = p.input[j];
      const auto len = static_cast<int64_t>(p.input.size());
      for (int64_t j = len - p.continuation; j < len; ++j) {
        flat_rows.push_back(r);
        flat_cols.push_back(j);
        flat_targets.push_back(p.target[static_cast<size_t>(j)]);
      }
    }
    // Right padding needs no mask: causal attention keeps real tokens from seeing the pads after them.
    auto hidden = model.forward_hidden(ids.to(model.options().device));
    auto device = hidden.device();
    auto index_r = at::tensor(flat_rows, at::TensorOptions().dtype(at::kLong)).to(device);
    auto index_c = at::tensor(flat_cols, at::TensorOptions().dtype(at::kLong)).to(device);
    auto selected = hidden.index({index_r, index_c});
    auto targets = at::tensor(flat_targets, at::TensorOptions().dtype(at::kLong)).to(device);
    auto scored = score_positions(model, selected, targets);
    auto logprobs = scored.first.to(at::kCPU).to(at::kDouble);
    auto greedy = scored.second.to(at::kCPU);
    auto lp = logprobs.accessor<double, 1>();
    auto gr = greedy.accessor<bool, 1>();
    int64_t k = 0;
    for (int64_t r = 0; r < rows; ++r) {
      auto& result = results[order[begin + static_cast<size_t>(r)]];
      const auto& p = prepared[order[begin + static_cast<size_t>(r)]];
      result.tokens = p.continuation;
      result.is_greedy = true;
      for (int64_t j = 0; j < p.continuation; ++j, ++k) {
        result.logprob += lp[k];
        result.is_greedy = result.is_greedy && gr[k];
      }
    }
  }
  return results;
}

PerplexityResult perplexity(const Model& model, const std::vector<int32_t>& ids, int64_t seqlen,
                            int64_t max_windows, const ProgressCallback& progress) {
  at::NoGradGuard no_grad;
  if (seqlen < 2) fail("perplexity: seqlen must be at least 2, got {}", seqlen);
  if (seqlen > model.config().max_position) {
    fail("perplexity: seqlen {} exceeds the model's context of {}", seqlen, model.config().max_position);
  }
  PerplexityResult result;
  result.seqlen = seqlen;
  result.total_tokens = static_cast<int64_t>(ids.size());
  int64_t windows = result.total_tokens / seqlen;
  if (windows == 0) fail("perplexity: text has {} tokens, fewer than one window of {}", ids.size(), seqlen);
  if (max_windows > 0) windows = std::min(windows, max_windows);
  auto all = at::tensor(std::vector<int64_t>(ids.begin(), ids.end()), at::TensorOptions().dtype(at::kLong));
  double nll_sum = 0;
  for (int64_t w = 0; w < windows; ++w) {
    auto window = all.narrow(0, w * seqlen, seqlen).to(model.options().device);
    auto hidden = model.forward_hidden(window.unsqueeze(0)).squeeze(0);
    auto scored = score_positions(model, hidden.narrow(0, 0, seqlen - 1), window.narrow(0, 1, seqlen - 1));
    // Each window's mean NLL counts equally, as the reference protocol's (loss * seqlen) / (n * seqlen).
    nll_sum += -scored.first.to(at::kDouble).mean().item<double>();
    if (progress) progress(w + 1, windows);
  }
  result.windows = windows;
  result.scored_tokens = windows * (seqlen - 1);
  result.mean_nll = nll_sum / double(windows);
  result.perplexity = std::exp(result.mean_nll);
  return result;
}

std::string wikitext_join(const std::string& raw) {
  std::string joined;
  joined.reserve(raw.size() * 2);
  size_t start = 0;
  bool first = true;
  while (start < raw.size()) {
    size_t nl = raw.find('\n', start);
    size_t end = nl == std::string::npos ? raw.size() : nl + 1;
    std::string_view line(raw.data() + start, end - start);
    bool blank = line.find_first_not_of(" \t\r\n") == std::string_view::npos;
    if (!first) joined += "\n\n";
    if (!blank) joined.append(line);
    first = false;
    start = end;
  }
  return joined;
}

}  // namespace kick
