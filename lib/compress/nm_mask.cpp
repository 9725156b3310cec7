// compress/nm_mask.cpp: the pruning mask from importance scores (unstructured per row or per matrix,
// or N:M), shared by magnitude, Wanda and the tests.
#include "internal.hpp"

namespace kick::compress {

// kick deliberately prunes exactly floor(count * ratio) entries (the lowest scores, ties broken by
// position through a stable sort). The references' magnitude path keeps `score <= sorted[k]`, which
// prunes k + 1 entries (more on ties) and one entry even at ratio 0.
Tensor prune_mask(const Tensor& scores, const SparsityConfig& config, bool per_row) {
  config.validate();
  detail::check_weight(scores, "prune_mask");
  const int64_t out = scores.size(0), in = scores.size(1);
  auto s = scores.to(at::kFloat);
  auto mask = at::zeros({out, in}, s.options().dtype(at::kBool));
  if (config.structured()) {
    if (in % config.m != 0) fail("sparsity {}: m = {} must divide in_features = {}", config.describe(), config.m, in);
    // Wanda's loop over column groups of m with topk(n, largest=False), done for all groups at once.
    auto grouped = s.reshape({out, in / config.m, config.m});
    auto lowest = std::get<1>(at::topk(grouped, config.n, /*dim=*/-1, /*largest=*/false));
    return mask.reshape({out, in / config.m, config.m}).scatter_(-1, lowest, true).reshape({out, in});
  }
  if (per_row) {
    const auto k = static_cast<int64_t>(static_cast<double>(in) * config.ratio);
    if (k == 0) return mask;
    auto order = std::get<1>(at::sort(s, /*stable=*/c10::optional<bool>(true), /*dim=*/-1));
    return mask.scatter_(1, order.narrow(1, 0, k), true);
  }
  const auto k = static_cast<int64_t>(static_cast<double>(s.numel()) * config.ratio);
  if (k == 0) return mask;
  auto order = std::get<1>(at::sort(s.reshape({-1}), /*stable=*/c10::optional<bool>(true), /*dim=*/0));
  return mask.reshape({-1}).scatter_(0, order.narrow(0, 0, k), true).reshape({out, in});
}

}  // namespace kick::compress
