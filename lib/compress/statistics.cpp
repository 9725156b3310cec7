// compress/statistics.cpp: the calibration statistics accumulator (InputStatistics) and the Hessian
// preparation the second-order solvers share: dead columns and the damped inverse-Hessian factor.
#include <cmath>

#include "internal.hpp"

namespace kick::compress {

InputStatistics::InputStatistics(int64_t in_features, bool hessian, at::Device device, bool channel_moments)
    : with_hessian_(hessian), with_moments_(channel_moments) {
  if (in_features < 1) fail("InputStatistics: in_features = {} must be >= 1", in_features);
  auto options = at::TensorOptions().dtype(at::kFloat).device(device);
  if (with_hessian_) h_ = at::zeros({in_features, in_features}, options);
  in_features_ = in_features;
  device_ = device;
  if (with_moments_) {
    sq_ = at::zeros({in_features}, options);
    abs_ = at::zeros({in_features}, options);
  }
}

namespace {
// Column blocks of the Hessian's block upper triangle: X^T X is symmetric, so only the blocks on and
// above the diagonal are multiplied (a symmetric rank-k update done with GEMMs, about 55% of the full
// product at kick's widths); hessian() mirrors the rest.
constexpr int64_t kHessianBlock = 64;
}  // namespace

// Running means as the references keep them (H *= n_old / n_new; H += (2 / n_new) x^T x), so that
// batches of any size give the same statistics. kick counts tokens where the references count
// sequences; every consumer is invariant to that overall scale. Tokens with NaN/Inf are counted and
// left out so that one bad activation cannot poison the whole Hessian.
void InputStatistics::add(const Tensor& input) {
  const int64_t in_features = in_features_;
  if (!input.defined() || input.dim() < 1 || input.size(-1) != in_features)
    fail("InputStatistics::add: input has shape {} (expected [..., {}])",
         input.defined() ? shape_string(input.sizes()) : std::string("undefined"), in_features);
  auto x = input.reshape({-1, in_features}).to(device_, at::kFloat);
  // A row holding NaN or Inf has a non-finite sum (finite values summing past FLT_MAX, which would
  // also count, do not occur in activations); this costs one pass instead of a bool tensor of x's size.
  auto finite_rows = at::isfinite(x.sum(1));
  const int64_t bad = x.size(0) - finite_rows.sum().item<int64_t>();
  if (bad > 0) {
    nonfinite_ += bad;
    x = x.index({finite_rows});
  }
  const int64_t n = x.size(0);
  if (n == 0) return;
  const double keep = static_cast<double>(tokens_) / static_cast<double>(tokens_ + n);
  tokens_ += n;
  const double total = static_cast<double>(tokens_);
  if (with_hessian_) {
    auto scaled = x * std::sqrt(2.0 / total);
    for (int64_t j0 = 0; j0 < in_features; j0 += kHessianBlock) {
      const int64_t width = std::min(kHessianBlock, in_features - j0);
      auto upper = h_.narrow(0, j0, width).narrow(1, j0, in_features - j0);
      upper.mul_(keep).addmm_(scaled.narrow(1, j0, width).t(), scaled.narrow(1, j0, in_features - j0));
    }
  }
  if (with_moments_) {
    sq_.mul_(keep).add_(x.pow(2).sum(0) / total);
    abs_.mul_(keep).add_(x.abs().sum(0) / total);
  }
}

Tensor InputStatistics::hessian() const {
  if (!with_hessian_) fail("InputStatistics::hessian: this accumulator was built with hessian = false");
  auto full = h_.clone();
  for (int64_t j0 = kHessianBlock; j0 < in_features_; j0 += kHessianBlock) {
    const int64_t width = std::min(kHessianBlock, in_features_ - j0);
    full.narrow(0, j0, width).narrow(1, 0, j0).copy_(h_.narrow(0, 0, j0).narrow(1, j0, width).t());
  }
  return full;
}
Tensor InputStatistics::squared_norms() const {
  if (!with_moments_) fail("InputStatistics::squared_norms: this accumulator was built without channel moments");
  return sq_;
}
Tensor InputStatistics::mean_abs() const {
  if (!with_moments_) fail("InputStatistics::mean_abs: this accumulator was built without channel moments");
  return abs_;
}

namespace detail {

void handle_dead_columns(Tensor& hessian, Tensor& weight) {
  auto dead = at::diag(hessian) == 0;
  if (!dead.any().item<bool>()) return;
  hessian.diagonal().masked_fill_(dead, 1.0);
  weight.index_put_({at::indexing::Slice(), dead}, 0.0);
}

namespace {

// The reference's Hinv: cholesky(H + damp I) -> cholesky_inverse -> upper cholesky. Undefined on failure.
Tensor try_factor(const Tensor& hessian, const Tensor& damp) {
  auto damped = hessian.clone();
  damped.diagonal().add_(damp);
  auto [lower, info] = at::linalg_cholesky_ex(damped);
  if (info.item<int64_t>() != 0) return {};
  auto inverse = at::cholesky_inverse(lower);
  auto [upper, info_inverse] = at::linalg_cholesky_ex(inverse, /*upper=*/true);
  if (info_inverse.item<int64_t>() != 0 || !at::isfinite(upper).all().item<bool>()) return {};
  return upper;
}

}  // namespace

InverseHessianFactor inverse_hessian_factor(const Tensor& hessian, double percdamp) {
  constexpr int kTries = 5;
  auto h = hessian.to(at::kFloat).clone();
  auto mean_diag = at::mean(at::diag(h));
  const double mean_value = mean_diag.item<double>();
  // An indefinite or non-finite H can have mean(diag) <= 0: damp relative to 1 instead.
  if (!(mean_value > 0 && std::isfinite(mean_value))) mean_diag = at::ones({}, h.options());
  InverseHessianFactor result;
  for (int attempt = 0; attempt < kTries; ++attempt) {
    // percdamp = 0 would never grow: retries start from at least 1%.
    const double fraction = attempt == 0 ? percdamp : std::max(percdamp, 0.01) * std::pow(10.0, attempt);
    auto upper = try_factor(h, mean_diag * fraction);
    if (upper.defined()) {
      result.upper = upper;
      result.damping = fraction;
      result.retries = attempt;
      return result;
    }
  }
  // Last resort: ignore the off-diagonal couplings (plain per-column rounding/pruning with the damped
  // diagonal), which is always positive definite.
  const double fraction = std::max(percdamp, 0.01) * std::pow(10.0, kTries - 1);
  auto diagonal = at::diag(h);
  diagonal = at::where(at::isfinite(diagonal) & (diagonal > 0), diagonal, at::ones_like(diagonal));
  result.upper = at::diag(at::rsqrt(diagonal + mean_diag * fraction));
  result.damping = fraction;
  result.retries = kTries;
  return result;
}

}  // namespace detail
}  // namespace kick::compress
