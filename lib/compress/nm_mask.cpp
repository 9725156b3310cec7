// compress/nm_mask.cpp: the pruning mask from importance scores (unstructured per row or per matrix,
// or N:M), shared by magnitude, Wanda, SparseGPT's block masks and the tests; and the selection of the
// k lowest scores that those masks are built from.
#include <algorithm>
#include <atomic>
#include <cmath>
#include <cstring>
#include <vector>

#include <ATen/Parallel.h>

#include "../model/cpu_elements.hpp"
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

namespace {

// The k-th smallest order key of a row (1 <= k <= count), by bisection on the key's 32 bits: each step counts
// the keys at or below a midpoint, a branch-free loop the compiler vectorizes. On rows of 576-1536 scores that is
// several times cheaper than nth_element, whose partitioning mispredicts about every other comparison on such data.
KICK_CLONES_EXACT uint32_t kth_smallest_key(const uint32_t* keys, int64_t count, int64_t k) {
  uint32_t low = 0, high = 0xFFFFFFFFu;
  while (low < high) {
    const uint32_t mid = low + (high - low) / 2;
    uint32_t at_or_below = 0;  // count < 2^31: a 32-bit lane each
    for (int64_t j = 0; j < count; ++j) at_or_below += keys[j] <= mid ? 1u : 0u;
    if (static_cast<int64_t>(at_or_below) >= k) high = mid;
    else low = mid + 1;
  }
  return low;
}

// Scores |w| * scale (or |w|) of one row as order keys; false if one is NaN. +0 for -0: they tie, as in a sort.
KICK_CLONES_EXACT bool row_keys(const float* __restrict values, const float* __restrict scale, int64_t columns,
                                uint32_t* __restrict keys) {
  uint32_t nan = 0;
  for (int64_t j = 0; j < columns; ++j) {
    const float score = (scale ? std::fabs(values[j]) * scale[j] : std::fabs(values[j])) + 0.0f;
    nan |= score != score ? 1u : 0u;
    keys[j] = order_key(score);
  }
  return nan == 0;
}

// How many keys are below the threshold, and how many at or below it.
KICK_CLONES_EXACT std::pair<int64_t, int64_t> count_around(const uint32_t* keys, uint32_t threshold, int64_t columns) {
  uint32_t below = 0, at_or_below = 0;
  for (int64_t j = 0; j < columns; ++j) {
    below += keys[j] < threshold ? 1u : 0u;
    at_or_below += keys[j] <= threshold ? 1u : 0u;
  }
  return {below, at_or_below};
}

// Entries whose key is below `limit` pruned to +0, the rest copied.
KICK_CLONES_EXACT void prune_below(const float* __restrict values, const uint32_t* __restrict keys, uint32_t limit,
                                   int64_t columns, float* __restrict out, bool* __restrict mask) {
  for (int64_t j = 0; j < columns; ++j) {
    const bool prune = keys[j] < limit;
    mask[j] = prune;
    out[j] = prune ? 0.0f : values[j];
  }
}

struct RowTotals {
  int64_t zeros = 0;
  double weight_sq = 0, error_sq = 0;
};

// Zeros of the result and the fp64 sums of w^2 and of the pruned w^2, in eight fixed lanes (so they pipeline
// and vectorize, and give the same bits every run).
KICK_CLONES_EXACT RowTotals row_totals(const float* __restrict values, const float* __restrict out, int64_t columns) {
  constexpr int64_t kLanes = 8;
  double weight_sq[kLanes] = {}, error_sq[kLanes] = {};
  uint32_t zeros = 0;
  for (int64_t j = 0; j < columns; ++j) zeros += out[j] == 0.0f ? 1u : 0u;
  int64_t j = 0;
  // w - out is w where pruned and 0 elsewhere: the error without a branch.
  for (; j + kLanes <= columns; j += kLanes) {
    for (int64_t l = 0; l < kLanes; ++l) {
      const double v = values[j + l], d = static_cast<double>(values[j + l]) - static_cast<double>(out[j + l]);
      weight_sq[l] += v * v;
      error_sq[l] += d * d;
    }
  }
  for (; j < columns; ++j) {
    const double v = values[j], d = static_cast<double>(values[j]) - static_cast<double>(out[j]);
    weight_sq[0] += v * v;
    error_sq[0] += d * d;
  }
  RowTotals totals;
  totals.zeros = zeros;
  for (int64_t l = 0; l < kLanes; ++l) {
    totals.weight_sq += weight_sq[l];
    totals.error_sq += error_sq[l];
  }
  return totals;
}

// One row: everything below the k-th key, then the first entries (by position) equal to it until k are taken.
RowTotals prune_row(const float* values, const float* scale, int64_t columns, int64_t k, uint32_t* keys, float* out,
                    bool* mask, bool* saw_nan) {
  if (!row_keys(values, scale, columns, keys)) {
    *saw_nan = true;
    return {};
  }
  if (k == 0) {
    std::copy(values, values + columns, out);
    std::fill(mask, mask + columns, false);
  } else {
    const uint32_t threshold = kth_smallest_key(keys, columns, k);
    const auto [below, at_or_below] = count_around(keys, threshold, columns);
    // Usually no tie reaches past the k-th score, and everything at or below it is exactly the k lowest.
    // (A NaN score never gets here, so the threshold is at most +inf's key and threshold + 1 does not wrap.)
    prune_below(values, keys, at_or_below == k ? threshold + 1 : threshold, columns, out, mask);
    int64_t ties_to_take = at_or_below == k ? 0 : k - below;
    for (int64_t j = 0; j < columns && ties_to_take > 0; ++j) {
      if (keys[j] == threshold) {
        mask[j] = true;
        out[j] = 0.0f;
        --ties_to_take;
      }
    }
  }
  return row_totals(values, out, columns);
}

}  // namespace

std::optional<PruneResult> prune_lowest_per_row_cpu(const Tensor& weight, const Tensor& column_scale, int64_t k) {
  if (!weight.device().is_cpu() || weight.scalar_type() != at::kFloat || weight.dim() != 2) return std::nullopt;
  const int64_t rows = weight.size(0), columns = weight.size(1);
  if (column_scale.defined() && (column_scale.numel() != columns || column_scale.scalar_type() != at::kFloat))
    fail("prune_lowest_per_row_cpu: column_scale has shape {} (expected [{}] fp32)", shape_string(column_scale.sizes()), columns);
  k = std::clamp<int64_t>(k, 0, columns);
  auto w = weight.contiguous();
  auto scale = column_scale.defined() ? column_scale.to(at::kCPU).contiguous() : Tensor();
  PruneResult result;
  result.weight = at::empty_like(w);
  result.mask = at::empty({rows, columns}, w.options().dtype(at::kBool));
  const float* src = w.data_ptr<float>();
  const float* by_column = scale.defined() ? scale.data_ptr<float>() : nullptr;
  float* dst = result.weight.data_ptr<float>();
  bool* pruned = result.mask.data_ptr<bool>();
  // Per-row totals, summed in row order afterwards: the same figures at any thread count.
  std::vector<RowTotals> row_totals(static_cast<size_t>(rows));
  std::atomic<bool> saw_nan{false};
  at::parallel_for(0, rows, 1, [&](int64_t begin, int64_t end) {
    std::vector<uint32_t> keys(static_cast<size_t>(columns));
    bool nan = false;
    for (int64_t r = begin; r < end && !nan; ++r)
      row_totals[static_cast<size_t>(r)] = prune_row(src + r * columns, by_column, columns, k, keys.data(),
                                                     dst + r * columns, pruned + r * columns, &nan);
    if (nan) saw_nan.store(true);
  });
  if (saw_nan.load()) return std::nullopt;
  RowTotals all;
  for (const auto& row : row_totals) {
    all.zeros += row.zeros;
    all.weight_sq += row.weight_sq;
    all.error_sq += row.error_sq;
  }
  result.stats.sparsity = w.numel() > 0 ? static_cast<double>(all.zeros) / static_cast<double>(w.numel()) : 0.0;
  result.stats.error = all.weight_sq > 0 ? all.error_sq / all.weight_sq : 0.0;
  return result;
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
