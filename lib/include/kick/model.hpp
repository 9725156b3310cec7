// kick/model.hpp: the LLaMA-family decoder on LibTorch, exposed layer by layer for calibration
// (embed -> layers -> head), with a preallocated KV cache, batched forward with padding masks,
// generation, log-likelihood scoring, perplexity and chat templates.
#pragma once

#include <array>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "kick/io.hpp"
#include "kick/tokenizer.hpp"

namespace kick {

struct ModelOptions {
  at::Device device = at::Device(at::kCPU);
  at::ScalarType dtype = at::kFloat;  // weights and activations; norms, softmax and logits run in fp32
};

// The seven Linear weights of a decoder layer, by their HF names relative to the layer.
inline constexpr std::array<const char*, 7> kLinearNames = {
    "self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj", "self_attn.o_proj",
    "mlp.gate_proj",    "mlp.up_proj",      "mlp.down_proj"};

class KVCache;

// What every layer of one forward call shares: rotary tables for the new tokens' positions and the
// additive attention mask over past + new keys (undefined = plain causal, no padding).
struct AttentionInputs {
  Tensor cos, sin;       // [B, T, head_dim], fp32
  Tensor additive_mask;  // [B, 1, T, S] fp32, 0 or -inf (exact in any dtype), or undefined
  int64_t past_length = 0;
};

// Called with (layer index, linear name, input to that Linear) during DecoderLayer::forward when set;
// calibration statistics hook in here.
using LinearInputHook = std::function<void(int64_t layer, const std::string& linear, const Tensor& input)>;

// Causal grouped-query attention, softmax(q k^T / sqrt(d) + mask) v. q: [B, heads, T, d]; k, v:
// [B, kv_heads, past + T, d]; additive_mask: [B, 1, T, past + T] or undefined (plain causal). Queries are
// processed query_block rows at a time against only the keys they may see. Returns [B, heads, T, d].
Tensor grouped_causal_attention(const Tensor& q, const Tensor& k, const Tensor& v, const Tensor& additive_mask,
                                int64_t num_kv_heads, int64_t query_block);
// Its two forms, which it picks between (exposed for tests): on CPU for fp32/bf16 prompts of 16 queries or more,
// one single-threaded task per (batch row, kv head, query tile of tile_rows rows; 0 = about 2 MB of scores);
// elsewhere one batched product per query block.
bool tiled_attention_applies(const Tensor& q, const Tensor& k, const Tensor& v);
Tensor grouped_causal_attention_tiled(const Tensor& q, const Tensor& k, const Tensor& v, const Tensor& additive_mask,
                                      int64_t num_kv_heads, int64_t tile_rows = 0);
Tensor grouped_causal_attention_batched(const Tensor& q, const Tensor& k, const Tensor& v, const Tensor& additive_mask,
                                        int64_t num_kv_heads, int64_t query_block);

// y = W x for one decoding step in bf16 on CPU (W [N, K] contiguous, x K values), fp32 accumulation, vectorized
// and threaded; the naive reference is at::mv. gemv_bf16_applies says whether the inputs qualify.
bool gemv_bf16_applies(const Tensor& weight, const Tensor& x);
Tensor gemv_bf16(const Tensor& weight, const Tensor& x);
// x [..., K] (any float dtype, read as fp32) times a bf16 CPU matrix W [N, K]^T, accumulated and returned in fp32
// [..., N]: a few rows' logits without rounding them to bf16. One pass over W for all rows, so it is meant for a
// handful of rows; the naive reference is at::linear in fp32 on the same values.
bool linear_bf16_fp32_applies(const Tensor& x, const Tensor& weight);
Tensor linear_bf16_fp32(const Tensor& x, const Tensor& weight);

// bf16 products on CPUs without a native bf16 GEMM (bf16_gemm_cpu.cpp). LibTorch runs bf16 GEMMs in oneDNN only
// on x86 with AVX-512 BW/VL/DQ, and elsewhere in a scalar loop 30-90x slower than fp32. cpu_bf16_gemm_native says
// which this CPU is (KICK_BF16_GEMM=native|fp32|auto overrides; set_cpu_bf16_gemm_native sets it for tests and
// returns the previous value). On the others, bf16 products go through the fp32 GEMM: inputs widened exactly, fp32
// accumulation, one rounding to bf16, as oneDNN computes them. matmul_routed and linear_routed are at::matmul and
// at::linear with that routing; the *_through_fp32 forms are the fp32 route itself.
bool cpu_bf16_gemm_native();
bool set_cpu_bf16_gemm_native(bool native);
bool bf16_gemm_through_fp32(at::ScalarType dtype, const at::Device& device);  // bf16 on a CPU without a native one
bool bf16_gemm_through_fp32(const Tensor& t);
Tensor matmul_through_fp32(const Tensor& a, const Tensor& b);
Tensor linear_through_fp32(const Tensor& x, const Tensor& weight);
Tensor matmul_routed(const Tensor& a, const Tensor& b);
Tensor linear_routed(const Tensor& x, const Tensor& weight);

class DecoderLayer {
 public:
  DecoderLayer(int64_t index, const ModelConfig& config);
  // hidden: [B, T, H]. With a cache, keys/values of the new tokens are written at past_length.
  Tensor forward(const Tensor& hidden, const AttentionInputs& attention, KVCache* cache = nullptr,
                 const LinearInputHook& hook = nullptr) const;
  // Runs the layer only as far as every Linear's input has been passed to the hook (calibration
  // capture): down_proj and the residual after it are not computed.
  void feed_linear_inputs(const Tensor& hidden, const AttentionInputs& attention, const LinearInputHook& hook) const;
  // A copy with every weight in `dtype` (the calibration forward's precision).
  DecoderLayer to(at::ScalarType dtype) const;
  // "self_attn.q_proj" ... "mlp.down_proj": the [out, in] weight, modifiable in place.
  Tensor& linear(const std::string& name);
  const Tensor& linear(const std::string& name) const;
  int64_t index() const { return index_; }

  Tensor input_norm, post_attention_norm;
  Tensor q_proj, k_proj, v_proj, o_proj, gate_proj, up_proj, down_proj;

 private:
  Tensor attention(const Tensor& normed, const AttentionInputs& attention, KVCache* cache,
                   const LinearInputHook& hook) const;
  // Everything before down_proj: returns its input and sets *residual to the stream it is added to.
  Tensor down_proj_input(const Tensor& hidden, const AttentionInputs& attention, KVCache* cache,
                         const LinearInputHook& hook, Tensor* residual) const;
  int64_t index_;
  int64_t num_heads_, num_kv_heads_, head_dim_;
  double eps_;
};

// Keys and values of every layer for a batch, preallocated once: [B, kv_heads, capacity, head_dim].
class KVCache {
 public:
  KVCache(const ModelConfig& config, int64_t batch, int64_t capacity, const ModelOptions& options);
  int64_t length() const { return length_; }
  int64_t capacity() const { return capacity_; }
  int64_t batch() const { return batch_; }
  // Keeps the first `length` positions (prefix reuse); never grows.
  void truncate(int64_t length);
  // Copies `source`'s first `length` positions of batch row `src_row` into every row (shared prompt prefix).
  void copy_prefix_from(const KVCache& source, int64_t src_row, int64_t length);
  // Keeps only these batch rows, in this order (generation drops finished rows so they cost nothing more).
  void keep_rows(const std::vector<int64_t>& rows);

  // Used by DecoderLayer: stores [B, kvh, T, hd] at positions [length, length + T), returns views of [0, length + T).
  std::pair<Tensor, Tensor> append(int64_t layer, const Tensor& keys, const Tensor& values);
  void advance(int64_t tokens);

 private:
  std::vector<Tensor> keys_, values_;
  int64_t batch_, capacity_, length_ = 0;
};

class Model {
 public:
  Model(Checkpoint checkpoint, const ModelOptions& options = {});
  // load_checkpoint + tokenizer + placement on the device in the dtype.
  static Model load(const std::string& path, const ModelOptions& options = {},
                    const LoadOptions& load_options = {});

  const ModelConfig& config() const { return config_; }
  const ModelOptions& options() const { return options_; }
  const Tokenizer& tokenizer() const { return *tokenizer_; }
  const VocabSpec& vocab() const { return vocab_; }
  const nlohmann::json& metadata() const { return metadata_; }
  const std::string& source() const { return source_; }
  int64_t parameter_count() const;

  // The calibration seam: embed, run layers one by one, then the head.
  Tensor embed(const Tensor& token_ids) const;  // [B, T] int64 -> [B, T, H]
  int64_t num_layers() const { return static_cast<int64_t>(layers_.size()); }
  DecoderLayer& layer(int64_t i) { return layers_.at(static_cast<size_t>(i)); }
  const DecoderLayer& layer(int64_t i) const { return layers_.at(static_cast<size_t>(i)); }
  Tensor head(const Tensor& hidden) const;  // final norm + lm_head, fp32 logits
  // attention_mask: [B, past + T] of 0/1 (1 = real token) or undefined (no padding).
  AttentionInputs attention_inputs(int64_t batch, int64_t new_tokens, int64_t past_length,
                                   const Tensor& attention_mask = {}) const;

  // Whole forward: token_ids [B, T] -> logits [B, T, V] (fp32). With a cache, continues from it.
  Tensor forward(const Tensor& token_ids, KVCache* cache = nullptr, const Tensor& attention_mask = {}) const;
  // Final-layer hidden states [B, T, H] before the final norm (scoring applies head() where needed).
  Tensor forward_hidden(const Tensor& token_ids, KVCache* cache = nullptr, const Tensor& attention_mask = {}) const;
  // Logits of only the last position [B, V]: what decoding needs, skipping the head elsewhere.
  Tensor forward_last(const Tensor& token_ids, KVCache* cache, const Tensor& attention_mask = {}) const;

  KVCache make_cache(int64_t batch, int64_t capacity) const;
  // The weights back as a Checkpoint (CPU, current dtype) for saving.
  Checkpoint to_checkpoint() const;

 private:
  ModelConfig config_;
  ModelOptions options_;
  VocabSpec vocab_;
  std::shared_ptr<Tokenizer> tokenizer_;
  nlohmann::json metadata_;
  std::string source_, format_;
  Tensor embed_tokens_, final_norm_, lm_head_;  // lm_head_ aliases embed_tokens_ when tied
  std::vector<DecoderLayer> layers_;
  Tensor inv_freq_;  // [head_dim / 2] fp32
};

// The decoder's element-wise chains (lib/model/fused_cpu.cpp): one pass each for contiguous fp32/bf16 CPU tensors,
// else their ATen references (the *_reference functions, kept for tests).
// RMSNorm in fp32 over the last dimension, returned in x's dtype.
Tensor rms_norm(const Tensor& x, const Tensor& weight, double eps);
Tensor rms_norm_reference(const Tensor& x, const Tensor& weight, double eps);
// Rotary embedding (HF rotate-half layout) in place. x: [B, T, heads, d]; cos/sin: [B, T, d] fp32, rounded to x's
// dtype before use as HF does. Bitwise equal to the reference, which takes x as [B, heads, T, d].
void apply_rotary_(Tensor& x, const Tensor& cos, const Tensor& sin);
Tensor apply_rotary_reference(const Tensor& x, const Tensor& cos, const Tensor& sin);
// silu(gate) * up, rounded after each step as the two ATen ops are.
Tensor silu_mul(const Tensor& gate, const Tensor& up);
Tensor silu_mul_reference(const Tensor& gate, const Tensor& up);
// Softmax over the last dimension in place (contiguous fp32/bf16 CPU, see softmax_cpu_applies). causal_rows = m > 0
// treats each run of m rows as a causal query block over the last m keys: row r sees n - m + (r % m) + 1 keys and
// gets exactly 0 after them. The reference is masked_fill(-inf) then at::softmax.
bool softmax_cpu_applies(const Tensor& scores);
void softmax_cpu_(Tensor& scores, int64_t causal_rows);

// --- generation ---
struct SamplingOptions {
  int64_t max_new_tokens = 256;
  std::vector<int64_t> row_max_new_tokens;  // one budget per prompt (else max_new_tokens for every row)
  double temperature = 0.0;  // 0 = greedy
  double top_p = 1.0;
  int64_t top_k = 0;  // 0 = off; applied after temperature, before top_p (transformers' order)
  uint64_t seed = 0;               // row r samples with seed + r, unless row_seeds is given
  std::vector<uint64_t> row_seeds;  // one seed per prompt: a row's sample then does not depend on its batch
  std::vector<std::string> stop;  // stop strings; the output is cut before them
  bool stop_at_eos = true;
};

struct Generation {
  std::vector<int32_t> tokens;  // generated ids (without the prompt)
  std::string text;             // decoded, cut at the first stop string
  std::string finish_reason;    // "stop", "eos", "length"
  int64_t prompt_tokens = 0;
};

// Called after each decoding step with (row, newly appended text); return false to stop early.
using TokenCallback = std::function<bool(size_t row, const std::string& piece)>;

// Batched generation with left padding; each row stops on its own, and finished rows leave the batch.
std::vector<Generation> generate(const Model& model, const std::vector<std::vector<int32_t>>& prompts,
                                 const SamplingOptions& options, const TokenCallback& on_token = nullptr);

// --- scoring ---
struct LoglikelihoodRequest {
  std::vector<int32_t> context;
  std::vector<int32_t> continuation;
};
struct LoglikelihoodResult {
  double logprob = 0;      // sum over continuation tokens
  bool is_greedy = false;  // every continuation token is the argmax
  int64_t tokens = 0;
};
// Batched (right padding), longest first; context truncated from the left to fit max_position.
std::vector<LoglikelihoodResult> loglikelihood(const Model& model,
                                               const std::vector<LoglikelihoodRequest>& requests,
                                               int64_t batch_size = 8);

struct PerplexityResult {
  double perplexity = 0;
  double mean_nll = 0;
  int64_t total_tokens = 0;   // tokens in the whole text
  int64_t windows = 0;        // windows scored
  int64_t scored_tokens = 0;  // predictions scored (windows x (seqlen - 1))
  int64_t seqlen = 0;
};
using ProgressCallback = std::function<void(int64_t done, int64_t total)>;
// The SparseGPT/GPTQ/Wanda protocol: non-overlapping windows of seqlen, each scored on its seqlen-1
// next-token predictions; PPL = exp(mean NLL). max_windows <= 0 means all.
PerplexityResult perplexity(const Model& model, const std::vector<int32_t>& ids, int64_t seqlen,
                            int64_t max_windows = 0, const ProgressCallback& progress = nullptr);

// WikiText-2 raw as the Hugging Face loader presents it: one row per line, whitespace-only lines empty,
// rows joined with "\n\n".
std::string wikitext_join(const std::string& raw_file_contents);

// --- chat templates ---
struct ChatMessage {
  std::string role;  // "system", "user", "assistant"
  std::string content;
};
std::vector<std::string> chat_template_names();
// Renders messages with a named template, ending with the assistant's turn opened when add_generation_prompt.
std::string apply_chat_template(const std::string& name, const std::vector<ChatMessage>& messages,
                                bool add_generation_prompt = true);
// The template a vocabulary was trained with: "chatml" when it has <|im_start|>, else "vicuna_v1.1".
std::string default_chat_template(const VocabSpec& vocab);
// Stop strings that end an assistant turn in a template.
std::vector<std::string> chat_template_stops(const std::string& name);

}  // namespace kick
