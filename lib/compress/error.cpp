// compress/error.cpp: reconstruction error measures and LayerStats serialization.
#include "internal.hpp"
#include "kick/model.hpp"

namespace kick::compress {

// With H = (2/n) X^T X the token count cancels: ||D X^T||^2 / ||W X^T||^2 = tr(D H D^T) / tr(W H W^T).
double output_error(const Tensor& original, const Tensor& compressed, const Tensor& hessian) {
  detail::check_weight(original, "output_error");
  if (compressed.sizes() != original.sizes())
    fail("output_error: compressed weight has shape {} (expected {} like the original)",
         shape_string(compressed.sizes()), shape_string(original.sizes()));
  detail::check_hessian(hessian, original.size(1), "output_error");
  auto w = original.to(at::kFloat);
  auto h = hessian.to(w.device(), at::kFloat);
  auto diff = w - compressed.to(w.device(), at::kFloat);
  double reference = (at::matmul(w, h) * w).sum().item<double>();
  double residual = (at::matmul(diff, h) * diff).sum().item<double>();
  return reference > 0 ? residual / reference : 0.0;
}

nlohmann::json LayerStats::to_json() const {
  return {{"sparsity", sparsity},
          {"error", error},
          {"damping", damping},
          {"cholesky_retries", cholesky_retries},
          {"seconds", seconds}};
}

namespace detail {

double fraction_zero(const Tensor& tensor) {
  if (tensor.numel() == 0) return 0;
  return (tensor == 0).sum().item<double>() / static_cast<double>(tensor.numel());
}

double squared_output_norm(const Tensor& m, const Tensor& x, const Tensor& gram) {
  if (gram.defined()) return (at::matmul(m, gram) * m).sum().clamp_min(0).item<double>();  // rounding can dip below 0
  if (x.scalar_type() == at::kBFloat16) return matmul_routed(x, m.to(at::kBFloat16).t()).to(at::kFloat).pow(2).sum().item<double>();
  return at::matmul(x.to(at::kFloat), m.to(at::kFloat).t()).pow(2).sum().item<double>();
}

double squared_output_norm(const Tensor& m, const Tensor& x, const SampleGram& gram) {
  if (gram.lower.defined()) return squared_norm_times_lower(m, gram.lower);
  return squared_output_norm(m, x, gram.full);
}

double relative_weight_error(const Tensor& original, const Tensor& changed) {
  auto w = original.to(at::kFloat);
  double reference = w.pow(2).sum().item<double>();
  double residual = (w - changed.to(w.device(), at::kFloat)).pow(2).sum().item<double>();
  return reference > 0 ? residual / reference : 0.0;
}

}  // namespace detail
}  // namespace kick::compress
