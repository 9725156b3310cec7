// compress/statistics.cpp: the calibration statistics accumulator (InputStatistics) and the Hessian
// preparation the second-order solvers share (prepare_hessian): dead columns, act order and the damped
// inverse-Hessian factor.
#include <ATen/Parallel.h>

#include <cmath>
#include <cstring>

#include "../model/cpu_elements.hpp"
#include "internal.hpp"

namespace kick::compress {

namespace detail {

ChannelSums channel_sums_reference(const Tensor& x) {
  auto x32 = x.to(at::kFloat);
  auto finite = at::isfinite(x32).all(1);
  auto kept = x32.index({finite});
  return {kept.pow(2).sum(0), kept.abs().sum(0), kept.size(0)};
}

namespace {
constexpr int64_t kChannelSumRows = 128;  // rows per partial sum: fixed, so the result is the same on any thread count

template <typename T>
KICK_CLONES_FMA void channel_sums_rows(const T* x, int64_t in, int64_t begin, int64_t end, float* squares,
                                       float* absolutes, int64_t* finite_rows) {
  for (int64_t r = begin; r < end; ++r) {
    const T* row = x + r * in;
    // Inf and NaN have every exponent bit set. An integer OR vectorizes where a float reduction would not.
    uint32_t nonfinite = 0;
    for (int64_t c = 0; c < in; ++c) {
      const float v = cpu::load(row, c);
      uint32_t bits;
      std::memcpy(&bits, &v, sizeof bits);
      nonfinite |= static_cast<uint32_t>((bits & 0x7F800000u) == 0x7F800000u);
    }
    if (nonfinite) continue;
    ++*finite_rows;
    for (int64_t c = 0; c < in; ++c) {
      const float v = cpu::load(row, c);
      squares[c] += v * v;
      absolutes[c] += std::fabs(v);
    }
  }
}
}  // namespace

ChannelSums channel_sums_cpu(const Tensor& x) {
  if (!cpu::fused_dtype(x) || x.dim() != 2 || !x.is_contiguous())
    fail("channel_sums_cpu: expected a contiguous 2-D fp32 or bf16 CPU tensor, got {} {}", dtype_name(x.scalar_type()),
         shape_string(x.sizes()));
  const int64_t rows = x.size(0), in = x.size(1), chunks = (rows + kChannelSumRows - 1) / kChannelSumRows;
  auto partial = at::zeros({std::max<int64_t>(chunks, 1), 2, in}, x.options().dtype(at::kFloat));
  std::vector<int64_t> finite(static_cast<size_t>(std::max<int64_t>(chunks, 1)), 0);
  float* sums = partial.data_ptr<float>();
  const bool bf16 = x.scalar_type() == at::kBFloat16;
  at::parallel_for(0, chunks, 1, [&](int64_t begin, int64_t end) {
    for (int64_t chunk = begin; chunk < end; ++chunk) {
      const int64_t first = chunk * kChannelSumRows, last = std::min(rows, first + kChannelSumRows);
      float* squares = sums + chunk * 2 * in;
      if (bf16) channel_sums_rows(cpu::data_as<uint16_t>(x), in, first, last, squares, squares + in, &finite[chunk]);
      else channel_sums_rows(cpu::data_as<float>(x), in, first, last, squares, squares + in, &finite[chunk]);
    }
  });
  // Chunks combine in order, one after the other.
  for (int64_t chunk = 1; chunk < chunks; ++chunk) partial[0].add_(partial[chunk]);
  int64_t finite_rows = 0;
  for (int64_t f : finite) finite_rows += f;
  return {partial[0][0].clone(), partial[0][1].clone(), finite_rows};
}

}  // namespace detail

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

#if KICK_HAVE_BLAS_SYRK
// CBLAS (standard enum values; every BLAS CMake's FindBLAS picks here exports it), declared here so that no
// cblas.h is needed. CMake asks FindBLAS for 32-bit integers.
extern "C" void cblas_ssyrk(int order, int uplo, int trans, int n, int k, float alpha, const float* a, int lda,
                            float beta, float* c, int ldc);
extern "C" void cblas_strmm(int order, int side, int uplo, int trans_a, int diag, int m, int n, float alpha,
                            const float* a, int lda, float* b, int ldb);
namespace {
constexpr int kCblasRowMajor = 101, kCblasUpper = 121, kCblasLower = 122, kCblasNoTrans = 111, kCblasTrans = 112,
              kCblasRight = 142, kCblasNonUnit = 131;
}
#endif

namespace detail {

// Column blocks of the upper triangle: X^T X is symmetric, so only the blocks on and above the
// diagonal are multiplied (about 55% of the full product at kick's widths).
void syrk_upper_reference(Tensor& h, const Tensor& x, double alpha, double beta) {
  constexpr int64_t kBlock = 128;
  const int64_t in = h.size(0);
  for (int64_t j0 = 0; j0 < in; j0 += kBlock) {
    const int64_t width = std::min(kBlock, in - j0);
    auto upper = h.narrow(0, j0, width).narrow(1, j0, in - j0);
    upper.addmm_(x.narrow(1, j0, width).t(), x.narrow(1, j0, in - j0), beta, alpha);
  }
}

bool syrk_uses_blas() { return KICK_HAVE_BLAS_SYRK != 0; }

void syrk_upper(Tensor& h, const Tensor& x, double alpha, double beta) {
  if (!h.defined() || h.dim() != 2 || h.size(0) != h.size(1) || !x.defined() || x.dim() != 2 || x.size(1) != h.size(0))
    fail("syrk_upper: h {} and x {} (expected h [in, in] and x [n, in])",
         h.defined() ? shape_string(h.sizes()) : std::string("undefined"),
         x.defined() ? shape_string(x.sizes()) : std::string("undefined"));
#if KICK_HAVE_BLAS_SYRK
  constexpr int64_t kIntMax = 2147483647;
  if (h.device().is_cpu() && x.device().is_cpu() && h.scalar_type() == at::kFloat && x.scalar_type() == at::kFloat &&
      h.is_contiguous() && h.size(0) <= kIntMax && x.size(0) <= kIntMax && x.size(0) > 0) {
    const auto xc = x.contiguous();
    const int n = static_cast<int>(h.size(0)), k = static_cast<int>(xc.size(0));
    // Row-major upper triangle of x^T x: A = x is [k, n] with lda = n, op(A) = A^T.
    cblas_ssyrk(kCblasRowMajor, kCblasUpper, kCblasTrans, n, k, static_cast<float>(alpha), xc.data_ptr<float>(), n,
                static_cast<float>(beta), h.data_ptr<float>(), n);
    return;
  }
#endif
  syrk_upper_reference(h, x, alpha, beta);
}

// A non-finite element makes the sum non-finite; a non-finite sum of finite elements (overflow) is told
// apart by the full check. One reduction instead of a bool tensor of the matrix's size.
bool all_finite(const Tensor& t) {
  if (at::isfinite(t.sum()).item<bool>()) return true;
  return at::isfinite(t).all().item<bool>();
}

Tensor symmetric_from_upper_reference(const Tensor& h) { return at::triu(h) + at::triu(h, 1).t(); }

// ATen's triu and the strided transposed add took 25 ms for a 1536-wide Hessian on one thread, in the
// critical path of every layer's solve; copying 64 x 64 tiles takes a tenth of that.
Tensor symmetric_from_upper(const Tensor& h) {
  if (!h.device().is_cpu() || h.scalar_type() != at::kFloat || h.dim() != 2 || h.size(0) != h.size(1))
    return symmetric_from_upper_reference(h);
  constexpr int64_t kTile = 64;
  const auto source = h.contiguous();
  auto out = at::empty_like(source);
  const int64_t n = source.size(0), tiles = (n + kTile - 1) / kTile;
  const float* in = source.data_ptr<float>();
  float* result = out.data_ptr<float>();
  at::parallel_for(0, tiles, 1, [&](int64_t begin, int64_t end) {
    for (int64_t ti = begin; ti < end; ++ti) {
      const int64_t i0 = ti * kTile, i1 = std::min(n, i0 + kTile);
      for (int64_t j0 = i0; j0 < n; j0 += kTile) {
        const int64_t j1 = std::min(n, j0 + kTile);
        for (int64_t i = i0; i < i1; ++i)
          for (int64_t j = std::max(j0, i); j < j1; ++j) {
            const float value = in[i * n + j];
            result[i * n + j] = value;
            result[j * n + i] = value;
          }
      }
    }
  });
  return out;
}

Tensor gram(const Tensor& x) {
  auto x32 = x.to(at::kFloat).contiguous();
  auto g = at::zeros({x32.size(1), x32.size(1)}, x32.options());
  syrk_upper(g, x32, 1.0, 0.0);
  return symmetric_from_upper(g);
}

SampleGram sample_gram(const Tensor& x) {
  SampleGram out;
  out.full = gram(x);
  auto [lower, info] = at::linalg_cholesky_ex(out.full);
  if (info.item<int64_t>() == 0 && all_finite(lower)) {
    out.lower = lower.contiguous();  // LAPACK's factor comes column-major; strmm reads it row-major
    out.full = Tensor();
  }
  return out;
}

double squared_norm_times_lower_reference(const Tensor& m, const Tensor& lower) {
  return at::matmul(m.to(at::kFloat), lower).pow(2).sum().item<double>();
}

double squared_norm_times_lower(const Tensor& m, const Tensor& lower) {
  if (!m.defined() || m.dim() != 2 || !lower.defined() || lower.dim() != 2 || lower.size(0) != lower.size(1) ||
      lower.size(0) != m.size(1))
    fail("squared_norm_times_lower: m {} and lower {} (expected m [out, in] and lower [in, in])",
         m.defined() ? shape_string(m.sizes()) : std::string("undefined"),
         lower.defined() ? shape_string(lower.sizes()) : std::string("undefined"));
#if KICK_HAVE_BLAS_SYRK
  constexpr int64_t kIntMax = 2147483647;
  if (m.device().is_cpu() && lower.device().is_cpu() && lower.scalar_type() == at::kFloat && lower.is_contiguous() &&
      m.size(0) <= kIntMax && m.size(1) <= kIntMax && m.numel() > 0) {
    // B := B L in place, on a copy (m may be the caller's weight).
    auto b = at::empty(m.sizes(), m.options().dtype(at::kFloat));
    b.copy_(m);
    const int rows = static_cast<int>(b.size(0)), in = static_cast<int>(b.size(1));
    cblas_strmm(kCblasRowMajor, kCblasRight, kCblasLower, kCblasNoTrans, kCblasNonUnit, rows, in, 1.0f,
                lower.data_ptr<float>(), in, b.data_ptr<float>(), in);
    return b.pow(2).sum().item<double>();
  }
#endif
  return squared_norm_times_lower_reference(m, lower);
}

}  // namespace detail

// Running means as the references keep them (H *= n_old / n_new; H += (2 / n_new) x^T x), so that
// batches of any size give the same statistics. kick counts tokens where the references count
// sequences; every consumer is invariant to that overall scale. Tokens with NaN/Inf are counted and
// left out so that one bad activation cannot poison the whole Hessian.
void InputStatistics::add(const Tensor& input) {
  const int64_t in_features = in_features_;
  if (!input.defined() || input.dim() < 1 || input.size(-1) != in_features)
    fail("InputStatistics::add: input has shape {} (expected [..., {}])",
         input.defined() ? shape_string(input.sizes()) : std::string("undefined"), in_features);
  auto rows = input.reshape({-1, in_features});
  // Channel moments alone, on CPU: one fused pass over the input in its own dtype (no fp32 copy, no temporaries).
  // Otherwise ATen ops on an fp32 copy of the finite rows, which the Hessian needs anyway.
  detail::ChannelSums sums;
  Tensor x;
  if (!with_hessian_ && with_moments_ && device_.is_cpu() && cpu::fused_dtype(rows)) {
    sums = detail::channel_sums_cpu(rows.contiguous());
    nonfinite_ += rows.size(0) - sums.finite_rows;
  } else {
    x = rows.to(device_, at::kFloat);
    // A row holding NaN or Inf has a non-finite sum (finite values summing past FLT_MAX, which would
    // also count, do not occur in activations); this costs one pass instead of a bool tensor of x's size.
    auto finite_rows = at::isfinite(x.sum(1));
    const int64_t bad = x.size(0) - finite_rows.sum().item<int64_t>();
    if (bad > 0) {
      nonfinite_ += bad;
      x = x.index({finite_rows});
    }
    sums.finite_rows = x.size(0);
    if (with_moments_ && sums.finite_rows > 0) {
      sums.squares = x.pow(2).sum(0);
      sums.absolutes = x.abs().sum(0);
    }
  }
  const int64_t n = sums.finite_rows;
  if (n == 0) return;
  const double keep = static_cast<double>(tokens_) / static_cast<double>(tokens_ + n);
  tokens_ += n;
  const double total = static_cast<double>(tokens_);
  if (with_hessian_) detail::syrk_upper(h_, x.contiguous(), 2.0 / total, keep);
  if (with_moments_) {
    sq_.mul_(keep).add_(sums.squares / total);
    abs_.mul_(keep).add_(sums.absolutes / total);
  }
}

Tensor InputStatistics::hessian() const {
  if (!with_hessian_) fail("InputStatistics::hessian: this accumulator was built with hessian = false");
  return detail::symmetric_from_upper(h_);
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

namespace {

// L^-1 for a lower-triangular L, as four column panels: panel j of L^-1 is zero above its first row, so
// only the trailing [n - j0, n - j0] system is solved for it. That is about 0.47 n^3 flops against n^3
// for a solve against the whole identity, through the same triangular solve on every device.
Tensor lower_triangular_inverse(const Tensor& lower) {
  constexpr int64_t kPanels = 4;
  const int64_t n = lower.size(0), width = (n + kPanels - 1) / kPanels;
  auto inverse = at::zeros_like(lower);
  for (int64_t j0 = 0; j0 < n; j0 += width) {
    const int64_t w = std::min(width, n - j0);
    auto rhs = at::zeros({n - j0, w}, lower.options());
    rhs.narrow(0, 0, w).copy_(at::eye(w, lower.options()));
    inverse.narrow(0, j0, n - j0).narrow(1, j0, w).copy_(
        at::linalg_solve_triangular(lower.narrow(0, j0, n - j0).narrow(1, j0, n - j0), rhs, /*upper=*/false));
  }
  return inverse;
}

// The upper Cholesky factor U of (H + damp I)^-1, the matrix the references get as cholesky(H + damp I)
// -> cholesky_inverse -> upper cholesky. With J the exchange matrix (reversed order), J (H + damp I) J =
// L L^T gives (H + damp I)^-1 = J L^-T L^-1 J = U^T U for U = J L^-1 J, which is upper triangular with a
// positive diagonal, so it is that same unique factor. One Cholesky and one triangular inverse: about
// 0.8 n^3 flops against the references' 1.33 n^3 (58 against 138 ms at 1536 columns on one thread here),
// and as close to the fp64 factor (tests/unit/test_compress.cpp). Undefined on failure.
Tensor try_factor(const Tensor& hessian, const Tensor& damp) {
  auto reversed = hessian.flip({0, 1});  // a copy; its diagonal is H's, reversed
  reversed.diagonal().add_(damp);
  auto [lower, info] = at::linalg_cholesky_ex(reversed);
  if (info.item<int64_t>() != 0) return {};
  auto upper = lower_triangular_inverse(lower).flip({0, 1});
  if (!all_finite(upper)) return {};
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

// The references' order: dead columns get H[d, d] = 1 (their weights are zeroed by the solver), then
// act order sorts the columns by the resulting diagonal, then the damped factor of the permuted H.
PreparedHessian prepare_hessian(const Tensor& hessian, double percdamp, bool act_order) {
  if (!hessian.defined() || hessian.dim() != 2 || hessian.size(0) != hessian.size(1) || hessian.size(0) < 1)
    fail("prepare_hessian: hessian has shape {} (expected a square [in, in] matrix)",
         hessian.defined() ? shape_string(hessian.sizes()) : std::string("undefined"));
  detail::check_percdamp_blocksize(percdamp, 1, "prepare_hessian");
  auto h = hessian.to(at::kFloat);  // inverse_hessian_factor copies it; only a dead-column fix needs one here
  PreparedHessian prepared;
  prepared.dead = at::diag(h) == 0;
  prepared.any_dead = prepared.dead.any().item<bool>();
  if (prepared.any_dead) {
    h = h.clone();
    h.diagonal().masked_fill_(prepared.dead, 1.0);
  }
  if (act_order) {
    prepared.perm = at::argsort(at::diag(h), /*dim=*/-1, /*descending=*/true);
    h = h.index_select(0, prepared.perm).index_select(1, prepared.perm);
  }
  auto factor = detail::inverse_hessian_factor(h, percdamp);
  prepared.upper = factor.upper;
  prepared.percdamp = percdamp;
  prepared.damping = factor.damping;
  prepared.retries = factor.retries;
  prepared.act_order = act_order;
  return prepared;
}

namespace detail {

void check_prepared(const PreparedHessian& prepared, int64_t in_features, double percdamp, bool act_order,
                    const char* what) {
  if (prepared.in_features() != in_features)
    fail("{}: prepared hessian is for {} input columns (expected {} to match the weight's in_features)", what,
         prepared.in_features(), in_features);
  if (prepared.percdamp != percdamp)
    fail("{}: prepared hessian was damped with percdamp = {} (the config asks for {})", what, prepared.percdamp, percdamp);
  if (prepared.act_order != act_order)
    fail("{}: prepared hessian has act_order = {} (the config asks for {})", what, prepared.act_order, act_order);
}

}  // namespace detail
}  // namespace kick::compress
