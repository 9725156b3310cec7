// compress/config.cpp: validation and description of the compression configurations, and the shape
// checks every algorithm core runs before doing any work.
#include <cmath>

#include "internal.hpp"

namespace kick::compress {

void SparsityConfig::validate() const {
  if (m < 0) fail("sparsity m = {} must be >= 0 (0 for unstructured, else the group size of n:m)", m);
  if (structured()) {
    if (n < 1) fail("sparsity n = {} must be >= 1 (n:m prunes n of every m)", n);
    if (n >= m) fail("sparsity n:m = {}:{} needs 1 <= n < m", n, m);
    return;
  }
  if (!(ratio >= 0 && ratio < 1)) fail("sparsity ratio = {} must be in [0, 1)", ratio);
}

std::string SparsityConfig::describe() const {
  if (structured()) return fmt::format("{}:{}", n, m);
  return fmt::format("{:g}%", ratio * 100);
}

void QuantizerConfig::validate(int64_t in_features) const {
  if (bits < 2 || bits > 8) fail("quantization bits = {} must be in 2..8", bits);
  if (group_size == 0 || group_size < -1)
    fail("quantization group_size = {} must be -1 (one group per row) or a positive divisor of in_features",
         group_size);
  if (in_features > 0 && group_size > 0 && in_features % group_size != 0)
    fail("quantization group_size = {} must divide in_features = {}", group_size, in_features);
}

namespace detail {

void check_weight(const Tensor& weight, const char* what) {
  if (!weight.defined()) fail("{}: weight is undefined (expected a 2-D floating-point tensor)", what);
  if (weight.dim() != 2 || weight.size(0) < 1 || weight.size(1) < 1)
    fail("{}: weight has shape {} (expected 2-D [out, in] and non-empty)", what, shape_string(weight.sizes()));
  if (!at::isFloatingType(weight.scalar_type()))
    fail("{}: weight has dtype {} (expected a floating-point dtype)", what, std::string(c10::toString(weight.scalar_type())));
}

void check_hessian(const Tensor& hessian, int64_t in_features, const char* what) {
  if (!hessian.defined() || hessian.dim() != 2 || hessian.size(0) != in_features || hessian.size(1) != in_features)
    fail("{}: hessian has shape {} (expected [{}, {}] to match the weight's in_features)", what,
         hessian.defined() ? shape_string(hessian.sizes()) : std::string("undefined"), in_features, in_features);
}

void check_percdamp_blocksize(double percdamp, int64_t blocksize, const char* what) {
  if (!(percdamp >= 0 && std::isfinite(percdamp))) fail("{}: percdamp = {} must be finite and >= 0", what, percdamp);
  if (blocksize < 1) fail("{}: blocksize = {} must be >= 1", what, blocksize);
}

}  // namespace detail
}  // namespace kick::compress
