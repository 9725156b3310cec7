// kick/compress.hpp: pruning and weight quantization as pure functions of (weight, statistics, config),
// the statistics accumulators they need, and (compress/calibration.cpp) the one layer-by-layer
// calibration driver that serves every method.
#pragma once

#include <nlohmann/json.hpp>

#include <functional>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "kick/core.hpp"

namespace kick::compress {

// ---------- configurations ----------

// Unstructured ratio, or N:M (n zeros in every group of m consecutive input columns of a row).
struct SparsityConfig {
  double ratio = 0.5;
  int64_t n = 0, m = 0;  // n:m when m > 0 (2:4 means 2 zeros per 4)
  bool structured() const { return m > 0; }
  void validate() const;  // throws: ratio outside [0, 1), n >= m, n < 1 ...
  std::string describe() const;  // "50%" or "2:4"
};

struct QuantizerConfig {
  int bits = 4;              // 2..8
  int64_t group_size = -1;   // -1: one scale per output row; else columns per group (must divide in)
  bool symmetric = false;    // symmetric min/max (zero at the midpoint) or asymmetric
  void validate(int64_t in_features = -1) const;
};

struct SparseGptConfig {
  SparsityConfig sparsity;
  double percdamp = 0.01;
  int64_t blocksize = 128;
  std::optional<QuantizerConfig> quantize;  // joint sparsify + quantize
};

struct GptqConfig {
  QuantizerConfig quant;
  double percdamp = 0.01;
  int64_t blocksize = 128;
  bool act_order = false;
  bool static_groups = false;
};

struct AwqConfig {
  QuantizerConfig quant{4, 128, false};  // the driver sets this from CompressionPlan::quant
  int64_t grid = 20;
  bool clip = true;
  int64_t clip_grid = 20;
  double max_shrink = 0.5;
  int64_t clip_samples = 512;  // input tokens used by the clipping search
};

// ---------- results ----------

struct LayerStats {
  double sparsity = 0;          // fraction of zeros in the result
  double error = 0;             // method-specific reconstruction error (see each function)
  double damping = 0;           // damping actually used (after retries)
  int64_t cholesky_retries = 0;
  double seconds = 0;
  nlohmann::json to_json() const;
};

struct PruneResult {
  Tensor weight;  // pruned (and for SparseGPT updated) weight, same shape/dtype as input
  Tensor mask;    // bool, true where the weight was pruned (set to zero)
  LayerStats stats;
};

// Integer representation of a quantized weight [out, in]: codes in [0, 2^bits - 1], per-group
// scale and zero, and g_idx (group of every input column; act-order permutes it).
struct QuantizedWeight {
  Tensor codes;    // uint8 [out, in]
  Tensor scales;   // fp32 [out, groups]
  Tensor zeros;    // fp32 [out, groups] (integer-valued)
  Tensor g_idx;    // int32 [in]
  int bits = 4;
  Tensor dequantize() const;  // fp32 [out, in]
};

struct QuantResult {
  Tensor weight;  // dequantized, same shape/dtype as the input
  QuantizedWeight packed;
  LayerStats stats;
};

// ---------- statistics (accumulated apart from the solvers) ----------

// Running mean of 2 X X^T over calibration tokens (SparseGPT/GPTQ's H), and of the squared column
// norms of X (Wanda's scaler), and mean |x| per channel (AWQ), from inputs [..., in].
class InputStatistics {
 public:
  // channel_moments: also keep squared_norms and mean_abs (a pass over the input each).
  explicit InputStatistics(int64_t in_features, bool hessian = true, at::Device device = at::kCPU,
                           bool channel_moments = true);
  void add(const Tensor& input);
  Tensor hessian() const;             // [in, in] fp32: (2 / n) sum x x^T (a new tensor each call)
  Tensor squared_norms() const;       // [in] fp32: sum over tokens of x^2 / n (Wanda's scaler_row)
  Tensor mean_abs() const;            // [in] fp32: mean |x| (AWQ)
  int64_t in_features() const { return in_features_; }
  int64_t tokens() const { return tokens_; }
  int64_t nonfinite() const { return nonfinite_; }

 private:
  Tensor h_, sq_, abs_;  // h_: only the upper triangle is kept current
  int64_t in_features_ = 0, tokens_ = 0, nonfinite_ = 0;
  at::Device device_ = at::kCPU;
  bool with_hessian_, with_moments_;
};

// ---------- methods: one file each, pure functions ----------

// Mask with exactly the requested sparsity: scores [out, in], prune the lowest. Unstructured: per row
// when per_row, else one threshold over the whole matrix. N:M: the n lowest of every m in a row.
Tensor prune_mask(const Tensor& scores, const SparsityConfig& config, bool per_row);

PruneResult magnitude_prune(const Tensor& weight, const SparsityConfig& config, bool per_row = false);
// Wanda: |W| * sqrt(squared_norms), compared within each output row.
PruneResult wanda_prune(const Tensor& weight, const Tensor& squared_norms, const SparsityConfig& config);
PruneResult sparsegpt_prune(const Tensor& weight, const Tensor& hessian, const SparseGptConfig& config);

QuantResult rtn_quantize(const Tensor& weight, const QuantizerConfig& config);
QuantResult gptq_quantize(const Tensor& weight, const Tensor& hessian, const GptqConfig& config);

// The Hessian as SparseGPT and GPTQ consume it, prepared once and shared by every Linear that reads the
// same input (q/k/v, gate/up): its dead columns, the column order (act order) and the damped inverse
// factor. The overloads below give the same bits as the ones taking H, which prepare it themselves.
struct PreparedHessian {
  Tensor dead;    // [in] bool: columns whose H diagonal is 0 (never see input); their weights become 0
  bool any_dead = false;
  Tensor perm;    // act order: columns by descending diag(H), else undefined
  Tensor upper;   // [in, in] upper Cholesky factor of (H + damp I)^-1, in `perm` order
  double percdamp = 0;  // as requested (the config must ask for the same)
  double damping = 0;   // as used, after retries
  int64_t retries = 0;
  bool act_order = false;
  int64_t in_features() const { return upper.defined() ? upper.size(0) : 0; }
};
PreparedHessian prepare_hessian(const Tensor& hessian, double percdamp, bool act_order = false);
PruneResult sparsegpt_prune(const Tensor& weight, const PreparedHessian& hessian, const SparseGptConfig& config);
QuantResult gptq_quantize(const Tensor& weight, const PreparedHessian& hessian, const GptqConfig& config);

// AWQ on one group of Linears sharing an input x_sample [tokens, in]: the per-input-channel scale s
// (weights multiplied by s, inputs divided by s) that minimises the quantized group's output error,
// searched on a grid of alpha in [0, 1): s = mean|x|^alpha normalised.
struct AwqScaleResult {
  Tensor scales;      // [in] fp32
  double best_alpha = 0;
  double error = 0;   // output MSE at the best alpha
  double error_at_1 = 0;  // output MSE with no scaling
};
AwqScaleResult awq_search_scales(const std::vector<Tensor>& weights, const Tensor& x_sample, const AwqConfig& config);
// Clipping: per-row (per-group) max value shrink that minimises quantized output error.
Tensor awq_search_clip(const Tensor& weight, const Tensor& x_sample, const AwqConfig& config);  // [out, groups] max_val
// Quantize with clipped ranges (RTN within [-max_val, max_val]).
QuantResult awq_quantize(const Tensor& weight, const Tensor& clip_max, const QuantizerConfig& config);

// Relative reconstruction error on calibration inputs: ||(W - W') X^T||_F^2 / ||W X^T||_F^2 via H.
double output_error(const Tensor& original, const Tensor& compressed, const Tensor& hessian);

}  // namespace kick::compress

// ---------- calibration and the layer-by-layer driver (compress/calibration.cpp, compress/driver.cpp) ----------

namespace kick {
class Model;
class Tokenizer;
}  // namespace kick

namespace kick::compress {

struct CalibrationConfig {
  // A file: relative paths resolve under KICK_DATA. Alpaca-style JSON arrays (instruction/input/output),
  // JSON Lines with a "text" field, or plain text.
  // Or a safetensors file of windows an earlier run saved (--save-calibration): used as they are; its
  // shape must equal [nsamples, seqlen].
  std::string source = "calibration/alpaca_5000.json";
  int64_t nsamples = 128;
  int64_t seqlen = 2048;
  uint64_t seed = 0;
};

struct CalibrationData {
  Tensor windows;       // [nsamples, seqlen] int64
  std::string source;   // resolved path
  std::string content_hash;  // FNV-1a 64 of the file bytes, hex
  int64_t corpus_tokens = 0;
  uint64_t seed = 0;
  nlohmann::json to_json() const;
};

// Joins the documents with "\n\n", tokenizes once, and draws nsamples windows of seqlen tokens at
// seeded random offsets (the references' wikitext2/c4 loaders do the same per document).
CalibrationData load_calibration(const Tokenizer& tokenizer, const CalibrationConfig& config);

struct CompressionPlan {
  std::string method;  // magnitude | wanda | sparsegpt | rtn | gptq | awq
  SparsityConfig sparsity;
  bool magnitude_per_row = false;
  QuantizerConfig quant;
  double percdamp = 0.01;
  int64_t blocksize = 128;
  bool act_order = false;
  bool static_groups = false;
  bool true_sequential = false;
  bool sparsegpt_quantize = false;  // SparseGPT with joint quantization at `quant`
  AwqConfig awq;
  int64_t forward_batch = 8;        // calibration windows per layer forward
  // dtype of the calibration forward passes (layer inputs, captured activations); statistics and
  // solves stay fp32. Unset: the model's dtype. bf16 on an fp32 model is how the references run
  // (their forward is fp16 on GPU); 1.8x faster forward passes here (docs/performance.md).
  c10::optional<at::ScalarType> calibration_dtype;
  bool awq_scale_only = false;      // AWQ: search and fold scales, leave weights unquantized (analysis)
  bool preserve_zeros = false;      // quantizing a pruned model: weights that are zero stay zero
  bool keep_packed = false;         // keep integer codes/scales/zeros of quantized Linears in the report

  bool is_pruning() const;
  bool needs_calibration() const;
  void validate(int64_t hidden_size, int64_t intermediate_size) const;
  nlohmann::json to_json() const;
};

// What one run did: per-Linear stats, faults, the time split; compression.json is built from it.
struct CompressionReport {
  nlohmann::json layers = nlohmann::json::array();
  nlohmann::json faults = nlohmann::json::array();  // NaN/Inf activations, Cholesky retries
  double seconds_forward = 0, seconds_statistics = 0, seconds_solve = 0, seconds_total = 0;
  double overall_sparsity = 0;
  std::map<std::string, QuantizedWeight> packed;  // HF Linear name (without ".weight") -> codes, when keep_packed
  nlohmann::json to_json() const;
};

using LayerProgress = std::function<void(int64_t layers_done, int64_t layers_total)>;

// Compresses every decoder layer's seven Linears in place: embed the calibration windows once, then
// per layer capture inputs, accumulate statistics (q/k/v share one, gate/up share one), solve, and
// re-run the compressed layer to produce the next layer's input.
CompressionReport compress_model(Model& model, const CompressionPlan& plan, const CalibrationData* calibration,
                                 const LayerProgress& progress = nullptr);

}  // namespace kick::compress

namespace kick::compress {

// compression.json: what was done to the model, with what, on which data, by which tool version.
nlohmann::json compression_metadata(const Model& model, const std::vector<CompressionPlan>& stages,
                                    const std::vector<CompressionReport>& reports, const CalibrationData* calibration,
                                    const std::string& source_hash);

// Saves the compressed model as an HF folder (model.safetensors, config.json, tokenizer files) with
// compression.json and, when packed is non-empty, quantized.safetensors (per Linear: .qweight uint8 codes,
// .scales, .zeros, .g_idx). Atomic: the folder appears complete or not at all.
void save_compressed_model(const std::string& dir, const Model& model, const nlohmann::json& metadata,
                           const std::map<std::string, QuantizedWeight>& packed, bool overwrite);

}  // namespace kick::compress
