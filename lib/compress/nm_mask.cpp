// compress/nm_mask.cpp: the pruning mask from importance scores (unstructured per row or per matrix,
// or N:M), shared by magnitude, Wanda, SparseGPT's block masks and the tests; and the selection of the
// k lowest scores that those masks are built from.
#include <algorithm>
#include <cstring>
#include <vector>

#include <ATen/Parallel.h>

#include "internal.hpp"

namespace kick::compress {

namespace detail {

// A stable sort's first k, per row, without the sort: the k-th smallest score is found by selection
// (nth_element or at::kthvalue, linear time), everything below it is taken, and of the entries equal to it the first
// ones by position until k are taken. NaN scores (which a sort orders last and selection would make
// the threshold) go through the sort itself, so the result is always the stable sort's.
Tensor lowest_k_by_sort(const Tensor& scores, int64_t k) {
  auto mask = at::zeros(scores.sizes(), scores.options().dtype(at::kBool));
  if (k == 0) return mask;
  auto order = std::get<1>(at::sort(scores, /*stable=*/c10::optional<bool>(true), /*dim=*/1));
  return mask.scatter_(1, order.narrow(1, 0, k), true);
}

namespace {

// Order-preserving map from a float's bits to an unsigned key: negative floats reversed below the positive
// ones. -0.0 gets the key just below +0.0; the two compare equal as floats, so either is a correct k-th value.
inline uint32_t order_key(float value) {
  uint32_t bits;
  std::memcpy(&bits, &value, sizeof bits);
  return (bits & 0x80000000u) ? ~bits : (bits | 0x80000000u);
}

// Rows from this long select by radix: one histogram pass over the keys' high 16 bits (256 KB of counts)
// finds the bucket holding the k-th value, and selection runs on that bucket's few entries only. nth_element
// on a copy of the whole row measured 5-10x slower on SmolLM2's matrices (magnitude's per-matrix threshold).
constexpr int64_t kRadixSelectMinColumns = 1 << 15;

}  // namespace

float kth_smallest_radix(const float* values, int64_t count, int64_t k) {
  if (k < 1 || k > count) fail("kth_smallest_radix: k = {} of {} values (expected 1..{})", k, count, count);
  std::vector<int64_t> histogram(size_t{1} << 16, 0);
  for (int64_t i = 0; i < count; ++i) ++histogram[order_key(values[i]) >> 16];
  int64_t below = 0;
  uint32_t bucket = 0;
  while (below + histogram[bucket] < k) below += histogram[bucket++];
  std::vector<float> candidates;
  candidates.reserve(static_cast<size_t>(histogram[bucket]));
  for (int64_t i = 0; i < count; ++i)
    if ((order_key(values[i]) >> 16) == bucket) candidates.push_back(values[i]);
  const auto rank = static_cast<size_t>(k - below - 1);
  std::nth_element(candidates.begin(), candidates.begin() + static_cast<std::ptrdiff_t>(rank), candidates.end());
  return candidates[rank];
}

namespace {

// The k-th smallest score of every row ([R, 1]) for fp32 CPU scores: std::nth_element on a copy of each
// row (no index bookkeeping; rows in parallel), or the radix select for long rows; at::kthvalue elsewhere.
// NaN rows are left to the caller.
Tensor kth_smallest_per_row(const Tensor& scores, int64_t k) {
  if (!scores.device().is_cpu() || scores.scalar_type() != at::kFloat)
    return std::get<0>(at::kthvalue(scores, k, /*dim=*/1, /*keepdim=*/true));
  auto s = scores.contiguous();
  const int64_t rows = s.size(0), columns = s.size(1);
  auto threshold = at::empty({rows, 1}, s.options());
  const float* src = s.data_ptr<float>();
  float* out = threshold.data_ptr<float>();
  at::parallel_for(0, rows, 1, [&](int64_t begin, int64_t end) {
    std::vector<float> row(columns >= kRadixSelectMinColumns ? 0 : static_cast<size_t>(columns));
    for (int64_t r = begin; r < end; ++r) {
      const float* values = src + r * columns;
      // NaN compares false both ways and would break the ordering: such a row reports NaN.
      if (std::any_of(values, values + columns, [](float v) { return v != v; })) {
        out[r] = NAN;
        continue;
      }
      if (columns >= kRadixSelectMinColumns) {
        out[r] = kth_smallest_radix(values, columns, k);
        continue;
      }
      std::copy(values, values + columns, row.begin());
      std::nth_element(row.begin(), row.begin() + (k - 1), row.end());
      out[r] = row[static_cast<size_t>(k - 1)];
    }
  });
  return threshold;
}

}  // namespace

Tensor lowest_k_per_row(const Tensor& scores, int64_t k) {
  const int64_t columns = scores.size(1);
  if (k <= 0) return at::zeros(scores.sizes(), scores.options().dtype(at::kBool));
  if (k >= columns) return at::ones(scores.sizes(), scores.options().dtype(at::kBool));
  auto threshold = kth_smallest_per_row(scores, k);
  if (at::isnan(threshold).any().item<bool>()) return lowest_k_by_sort(scores, k);
  auto below = scores < threshold;
  auto at_or_below = scores <= threshold;
  // No ties beyond the k-th: everything up to the threshold is exactly the k lowest.
  if ((at_or_below.sum(1) == k).all().item<bool>()) return at_or_below;
  auto at_threshold = scores == threshold;
  auto still_needed = k - below.sum(1, /*keepdim=*/true);
  auto rank_among_ties = at_threshold.to(at::kInt).cumsum(1);
  return below.logical_or_(at_threshold.logical_and_(rank_among_ties <= still_needed));
}

}  // namespace detail

// kick deliberately prunes exactly floor(count * ratio) entries (the lowest scores, ties broken by
// position as a stable sort would). The references' magnitude path keeps `score <= sorted[k]`, which
// prunes k + 1 entries (more on ties) and one entry even at ratio 0.
Tensor prune_mask(const Tensor& scores, const SparsityConfig& config, bool per_row) {
  config.validate();
  detail::check_weight(scores, "prune_mask");
  const int64_t out = scores.size(0), in = scores.size(1);
  auto s = scores.to(at::kFloat);
  if (config.structured()) {
    if (in % config.m != 0) fail("sparsity {}: m = {} must divide in_features = {}", config.describe(), config.m, in);
    // Wanda's loop over column groups of m with topk(n, largest=False), done for all groups at once.
    auto mask = at::zeros({out, in}, s.options().dtype(at::kBool));
    auto grouped = s.reshape({out, in / config.m, config.m});
    auto lowest = std::get<1>(at::topk(grouped, config.n, /*dim=*/-1, /*largest=*/false));
    return mask.reshape({out, in / config.m, config.m}).scatter_(-1, lowest, true).reshape({out, in});
  }
  if (per_row) return detail::lowest_k_per_row(s, static_cast<int64_t>(static_cast<double>(in) * config.ratio));
  const auto k = static_cast<int64_t>(static_cast<double>(s.numel()) * config.ratio);
  return detail::lowest_k_per_row(s.reshape({1, -1}), k).reshape({out, in});
}

}  // namespace kick::compress
