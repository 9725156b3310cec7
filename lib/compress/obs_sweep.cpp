// compress/obs_sweep.cpp: the column sweep inside one block that SparseGPT and GPTQ share. Column by
// column, each weight becomes its pruned and/or quantized value q, and the error (w - q) / d is fed
// forward to the block's later columns through the row of the upper Cholesky factor of H^-1. Rows never
// interact inside a block, so the CPU kernel runs rows in parallel with the whole sweep of a row in
// cache; the ATen version (one op per column, any device) is its reference and is tested against it.
#include <algorithm>
#include <cmath>
#include <vector>

#include <ATen/Parallel.h>

#include "internal.hpp"

namespace kick::compress::detail {

namespace {
using at::indexing::None;
using at::indexing::Slice;

constexpr int64_t kPanel = 8;  // rows swept together: one AVX2 vector of fp32

void check_sweep(const ObsSweep& sweep) {
  const auto& W1 = sweep.block;
  if (!W1.defined() || W1.dim() != 2 || W1.scalar_type() != at::kFloat)
    fail("obs_sweep: block must be a 2-D fp32 tensor");
  const int64_t count = W1.size(1);
  if (!sweep.hinv.defined() || sweep.hinv.sizes() != at::IntArrayRef({count, count}))
    fail("obs_sweep: hinv must be [{}, {}]", count, count);
  if (sweep.mask.defined() && sweep.mask.sizes() != W1.sizes()) fail("obs_sweep: mask must match the block's shape");
  if (sweep.nm_n > 0 && !sweep.mask.defined()) fail("obs_sweep: N:M needs a mask to fill");
  if (sweep.nm_n < 0 || (sweep.nm_n > 0 && sweep.nm_m <= sweep.nm_n))
    fail("obs_sweep: N:M with n = {}, m = {} (expected 0 < n < m)", sweep.nm_n, sweep.nm_m);
  if (sweep.nm_n > 0 && count % sweep.nm_m != 0) fail("obs_sweep: m = {} must divide the block width {}", sweep.nm_m, count);
  if (!sweep.grids.empty() && static_cast<int64_t>(sweep.grids.size()) != count)
    fail("obs_sweep: {} grids for {} columns", sweep.grids.size(), count);
}

ObsSweepResult allocate_result(const ObsSweep& sweep) {
  ObsSweepResult result;
  result.values = at::zeros_like(sweep.block);
  result.errors = at::zeros_like(sweep.block);
  if (!sweep.grids.empty()) result.codes = at::zeros_like(sweep.block);
  return result;
}

}  // namespace

ObsSweepResult obs_sweep_reference(ObsSweep& sweep) {
  check_sweep(sweep);
  auto& W1 = sweep.block;
  const auto& Hinv1 = sweep.hinv;
  const int64_t count = W1.size(1);
  auto result = allocate_result(sweep);
  auto Losses1 = at::zeros_like(W1);
  for (int64_t i = 0; i < count; ++i) {
    auto w = W1.select(1, i);
    auto d = Hinv1.index({i, i});
    if (sweep.nm_n > 0 && i % sweep.nm_m == 0) {
      auto score = W1.narrow(1, i, sweep.nm_m).pow(2) / at::diag(Hinv1).narrow(0, i, sweep.nm_m).reshape({1, -1}).pow(2);
      auto lowest = std::get<1>(at::topk(score, sweep.nm_n, /*dim=*/1, /*largest=*/false));
      sweep.mask.scatter_(1, lowest + i, true);
    }
    auto q = w.clone();
    if (sweep.mask.defined()) q.masked_fill_(sweep.mask.select(1, i), 0);
    if (!sweep.grids.empty()) {
      auto code = quantize_to_codes(q.unsqueeze(1), *sweep.grids[i]);
      q = codes_to_values(code, *sweep.grids[i]).flatten();
      result.codes.select(1, i).copy_(code.flatten());
    }
    result.values.select(1, i).copy_(q);
    Losses1.select(1, i).copy_((w - q).pow(2) / d.pow(2));
    auto err1 = (w - q) / d;
    W1.narrow(1, i, count - i).sub_(at::matmul(err1.unsqueeze(1), Hinv1.index({i, Slice(i, None)}).unsqueeze(0)));
    result.errors.select(1, i).copy_(err1);
  }
  result.losses = at::sum(Losses1, 1);
  return result;
}

// The same arithmetic as the reference, element by element and in the same order (this file is built
// without floating-point contraction), so both give the same bits; only the loss sum is accumulated
// differently (in double per row). Unquantized sweeps compute a code too (scale 1, zero 0, never stored):
// one branch-free loop serves both.
ObsSweepResult obs_sweep_cpu(ObsSweep& sweep) {
  check_sweep(sweep);
  sweep.block = sweep.block.contiguous();
  if (sweep.mask.defined()) sweep.mask = sweep.mask.to(at::kCPU).contiguous();
  const int64_t rows = sweep.block.size(0), count = sweep.block.size(1);
  auto result = allocate_result(sweep);
  result.losses = at::zeros({rows}, sweep.block.options());
  auto hinv = sweep.hinv.to(at::kCPU).contiguous();
  const float* H = hinv.data_ptr<float>();
  float* block = sweep.block.data_ptr<float>();
  bool* mask = sweep.mask.defined() ? sweep.mask.data_ptr<bool>() : nullptr;
  float* values = result.values.data_ptr<float>();
  float* errors = result.errors.data_ptr<float>();
  float* codes = result.codes.defined() ? result.codes.data_ptr<float>() : nullptr;
  float* losses = result.losses.data_ptr<float>();
  // Per-column grid parameters as raw rows: scale and zero are [rows, 1] fp32.
  std::vector<Tensor> keep_alive;
  std::vector<const float*> scale_of(codes ? count : 0), zero_of(codes ? count : 0);
  float maxq = 0;
  for (size_t i = 0; i < scale_of.size(); ++i) {
    keep_alive.push_back(sweep.grids[i]->scale.to(at::kFloat).contiguous());
    keep_alive.push_back(sweep.grids[i]->zero.to(at::kFloat).contiguous());
    scale_of[i] = keep_alive[keep_alive.size() - 2].data_ptr<float>();
    zero_of[i] = keep_alive.back().data_ptr<float>();
    maxq = static_cast<float>(sweep.grids[i]->maxq);
    if (keep_alive.back().numel() != rows) fail("obs_sweep: grid {} has {} rows for a block of {}", i, keep_alive.back().numel(), rows);
  }
  const int64_t nm_n = sweep.nm_n, nm_m = sweep.nm_m;
  const bool quantized = codes != nullptr;

  // Rows go through the sweep in panels of kPanel, transposed so that a column of the panel is one vector:
  // the panel's rows then hide each other's dependency chain (the next column waits on the division and
  // on the update of this one), and each Hinv value is loaded once for all of them. Lanes past the last
  // row are zeros and stay zeros.
  const int64_t panels = (rows + kPanel - 1) / kPanel;
  at::parallel_for(0, panels, 1, [&](int64_t begin, int64_t end) {
    std::vector<float> panel(static_cast<size_t>(count * kPanel));
    std::vector<float> score(static_cast<size_t>(std::max<int64_t>(nm_m, 1)));
    std::vector<int64_t> order(score.size());
    for (int64_t p = begin; p < end; ++p) {
      const int64_t r0 = p * kPanel, lanes = std::min(kPanel, rows - r0);
      float* t = panel.data();
      std::fill(panel.begin(), panel.end(), 0.0f);
      for (int64_t l = 0; l < lanes; ++l)
        for (int64_t i = 0; i < count; ++i) t[i * kPanel + l] = block[(r0 + l) * count + i];
      double loss[kPanel] = {};
      bool pruned[kPanel] = {};
      float scale[kPanel], zero[kPanel], err[kPanel];
      std::fill(scale, scale + kPanel, 1.0f);
      std::fill(zero, zero + kPanel, 0.0f);
      for (int64_t i = 0; i < count; ++i) {
        const float* hinv_row = H + i * count;
        const float d = hinv_row[i];
        if (nm_n > 0 && i % nm_m == 0) {
          for (int64_t l = 0; l < lanes; ++l) {
            for (int64_t k = 0; k < nm_m; ++k) {
              const float dk = H[(i + k) * count + i + k];
              const float w = t[(i + k) * kPanel + l];
              score[k] = (w * w) / (dk * dk);
              order[k] = k;
            }
            // Ties go by position; the reference's topk leaves their order unspecified (equal scores are
            // rare except for weights already zero, where either choice gives the same values). NaN last.
            std::stable_sort(order.begin(), order.begin() + nm_m, [&](int64_t a, int64_t b) {
              const bool a_nan = score[a] != score[a], b_nan = score[b] != score[b];
              if (a_nan || b_nan) return !a_nan && b_nan;
              return score[a] < score[b];
            });
            for (int64_t k = 0; k < nm_n; ++k) mask[(r0 + l) * count + i + order[k]] = true;
          }
        }
        for (int64_t l = 0; l < lanes; ++l) {
          pruned[l] = mask && mask[(r0 + l) * count + i];
          if (codes) {
            scale[l] = scale_of[i][r0 + l];
            zero[l] = zero_of[i][r0 + l];
          }
        }
        const float* column = t + i * kPanel;
        float q[kPanel], code[kPanel];
#pragma omp simd
        for (int64_t l = 0; l < kPanel; ++l) {
          const float kept = pruned[l] ? 0.0f : column[l];
          code[l] = quantize_to_code(kept, scale[l], zero[l], maxq);
          q[l] = quantized ? code_to_value(code[l], scale[l], zero[l]) : kept;
          const float diff = column[l] - q[l];
          loss[l] += static_cast<double>((diff * diff) / (d * d));
          err[l] = diff / d;
        }
        for (int64_t l = 0; l < lanes; ++l) {
          values[(r0 + l) * count + i] = q[l];
          errors[(r0 + l) * count + i] = err[l];
          if (quantized) codes[(r0 + l) * count + i] = code[l];
        }
        for (int64_t j = i + 1; j < count; ++j) {
          const float h = hinv_row[j];
          float* target = t + j * kPanel;
#pragma omp simd
          for (int64_t l = 0; l < kPanel; ++l) target[l] -= err[l] * h;
        }
      }
      for (int64_t l = 0; l < lanes; ++l) losses[r0 + l] = static_cast<float>(loss[l]);
    }
  });
  return result;
}

ObsSweepResult obs_sweep(ObsSweep& sweep) {
  if (sweep.block.device().is_cpu() && sweep.block.scalar_type() == at::kFloat) return obs_sweep_cpu(sweep);
  return obs_sweep_reference(sweep);
}

}  // namespace kick::compress::detail
