// The LLaMA-family decoder: RMSNorm, rotary embeddings (HF rotate-half layout), grouped-query
// attention over a preallocated KV cache, SwiGLU MLP, tied or untied head.
#include <algorithm>
#include <cmath>
#include <limits>

#include <ATen/Parallel.h>

#include "kick/model.hpp"

namespace kick {

namespace {

std::string layer_prefix(int64_t i) { return fmt::format("model.layers.{}.", i); }

Tensor take(std::map<std::string, Tensor>& tensors, const std::string& name, const std::string& source) {
  auto it = tensors.find(name);
  if (it == tensors.end()) fail("{}: missing tensor {}", source, name);
  Tensor t = std::move(it->second);
  tensors.erase(it);
  return t;
}

Tensor place(const Tensor& t, const ModelOptions& options) {
  return t.to(options.device, options.dtype).contiguous();
}

// x @ W^T. A single row (every decoding step) goes through matrix-vector: BLAS's M=1 GEMM path is about
// 6x slower than its GEMV on this machine (fp32, 1536x576: 0.153 ms vs 0.024 ms). In bf16 on CPU, LibTorch's
// GEMV is a scalar loop (slower than oneDNN's M=1 matmul), so kick's own gemv_bf16 does it. Other bf16 products on a
// CPU without a native bf16 GEMM go through fp32 (linear_routed).
Tensor project(const Tensor& x, const Tensor& weight) {
  const int64_t in = x.size(-1);
  if (x.numel() == in) {
    auto sizes = x.sizes().vec();
    sizes.back() = weight.size(0);
    if (gemv_bf16_applies(weight, x)) return gemv_bf16(weight, x).view(sizes);
    if (x.scalar_type() == at::kFloat) return at::mv(weight, x.reshape({in})).view(sizes);
  }
  return linear_routed(x, weight);
}

// Query rows per attention block: a block's scores (heads x rows x keys, fp32) stay a few MB even at 2048
// keys, and each block skips the keys after its last row.
constexpr int64_t kAttentionQueryBlock = 128;

// Up to this many rows, Model::head of a bf16 model on CPU computes fp32 logits (linear_bf16_fp32: one pass over
// the head matrix for all rows, which beats the bf16 GEMM's rounding at no cost for a batch's last tokens).
constexpr int64_t kFp32HeadMaxRows = 64;

}  // namespace

// softmax(q k^T / sqrt(d) + mask) v with grouped-query heads, causal. q: [B, heads, T, d]; k, v:
// [B, kv_heads, S, d] (S = past + T); mask: [B, 1, T, S] additive, or undefined for plain causal.
// Query head h reads kv head h / (heads / kv_heads), as HF's repeat_kv does, without copying K/V: the
// group's query heads are folded into the rows of one matmul. Queries go in blocks of query_block rows,
// each multiplying only the keys it may see (past + up to its last row), which halves the work of a
// long prefill. Returns [B, heads, T, d].
Tensor grouped_causal_attention(const Tensor& q, const Tensor& k, const Tensor& v, const Tensor& additive_mask,
                                int64_t num_kv_heads, int64_t query_block) {
  if (tiled_attention_applies(q, k, v)) return grouped_causal_attention_tiled(q, k, v, additive_mask, num_kv_heads);
  return grouped_causal_attention_batched(q, k, v, additive_mask, num_kv_heads, query_block);
}

namespace {
// The prompt length from which the tiled form pays: a decoding step's tiles would be a few rows each, and one
// batched product per block does them with far fewer calls.
constexpr int64_t kTiledMinQueries = 16;
// Bytes of scores per tile. Measured on a bf16 MMLU batch (docs/performance.md): 64 KB tiles were 30% slower
// than 1-4 MB ones, which tied; larger tiles make fewer, taller products.
constexpr int64_t kTileScoreBytes = 2 * 1024 * 1024;
// The fewest rows the causal-waste cap below leaves a tile, so that short prompts are not cut into slivers (on 8 x 512
// tokens, 32-row tiles were already slower than 64-row ones: 29.2 against 27.7 ms, docs/performance.md).
constexpr int64_t kMinCausalTileRows = 16;
}  // namespace

bool tiled_attention_applies(const Tensor& q, const Tensor& k, const Tensor& v) {
  return q.device().is_cpu() && q.size(2) >= kTiledMinQueries &&
         (q.scalar_type() == at::kFloat || q.scalar_type() == at::kBFloat16) &&
         k.scalar_type() == q.scalar_type() && v.scalar_type() == q.scalar_type() && k.stride(-1) == 1 &&
         v.stride(-1) == 1;
}

// One task per (batch row, kv head, query tile), each running its two products and the softmax on one thread
// (inside the parallel region ATen does not fork again). The batched form instead runs each product over every
// head of a block, threaded inside, and writes all the block's scores to memory between the steps (27 MB per
// block in a bf16 MMLU batch of 8 x 300 tokens after a 1,200-token prefix); the tiled form was 7% faster on
// whole MMLU batches.
Tensor grouped_causal_attention_tiled(const Tensor& q, const Tensor& k, const Tensor& v, const Tensor& additive_mask,
                                      int64_t num_kv_heads, int64_t tile_rows) {
  const int64_t b = q.size(0), heads = q.size(1), t = q.size(2), d = q.size(3);
  const int64_t s = k.size(2), past = s - t, group = heads / num_kv_heads;
  const auto q_grouped = (q * (1.0 / std::sqrt(static_cast<double>(d)))).view({b, num_kv_heads, group, t, d});
  auto out = at::empty({b, num_kv_heads, group, t, d}, q.options());
  // bf16 on a CPU without a native bf16 GEMM: the products run in fp32 on inputs widened once here, and their
  // results are rounded to bf16 where the native product rounds them (scores before the softmax, the output).
  const bool through_fp32 = bf16_gemm_through_fp32(q);
  const Tensor q_product = through_fp32 ? q_grouped.to(at::kFloat) : q_grouped;
  const Tensor k_product = through_fp32 ? k.to(at::kFloat) : k;
  const Tensor v_product = through_fp32 ? v.to(at::kFloat) : v;
  const int64_t score_row_bytes = group * s * static_cast<int64_t>(q.element_size());
  if (tile_rows <= 0) {
    tile_rows = std::clamp<int64_t>(kTileScoreBytes / std::max<int64_t>(1, score_row_bytes), std::min<int64_t>(8, t), t);
    // At least 4 tasks per thread, so that one sequence with few kv heads (SmolLM2: 3) still fills every core.
    const int64_t tasks_wanted = 4 * static_cast<int64_t>(at::get_num_threads());
    const int64_t rows_for_tasks = (b * num_kv_heads * t + tasks_wanted - 1) / tasks_wanted;
    // A tile multiplies every key up to its last row, so it computes about rows^2 / 2 masked scores: a fraction
    // rows / (2 past + t) of the causal work over the whole prompt. At most an eighth of it: without a past (a
    // calibration window of 512 tokens) 2 MB tiles of 341 rows had computed 55% more than the causal work.
    tile_rows = std::min(tile_rows, std::max(kMinCausalTileRows, (2 * past + t) / 8));
    tile_rows = std::max<int64_t>(std::min<int64_t>(8, t), std::min(tile_rows, rows_for_tasks));
  }
  const int64_t blocks = (t + tile_rows - 1) / tile_rows;
  at::parallel_for(0, b * num_kv_heads * blocks, 1, [&](int64_t begin, int64_t end) {
    for (int64_t item = begin; item < end; ++item) {
      const int64_t row = item / (num_kv_heads * blocks), head = item / blocks % num_kv_heads, block = item % blocks;
      const int64_t start = block * tile_rows, rows = std::min(tile_rows, t - start), visible = past + start + rows;
      auto q_tile = q_product[row][head].narrow(1, start, rows).reshape({group * rows, d});
      auto scores = at::mm(q_tile, k_product[row][head].narrow(0, 0, visible).t());
      if (through_fp32) scores = scores.to(at::kBFloat16);
      if (additive_mask.defined()) {
        scores.view({group, rows, visible}).add_(additive_mask[row][0].narrow(0, start, rows).narrow(1, 0, visible));
      }
      softmax_cpu_(scores, additive_mask.defined() ? 0 : rows);
      const Tensor probs = through_fp32 ? scores.to(at::kFloat) : scores;
      out[row][head].narrow(1, start, rows).copy_(at::mm(probs, v_product[row][head].narrow(0, 0, visible)).view({group, rows, d}));
    }
  });
  return out.view({b, heads, t, d});
}

Tensor grouped_causal_attention_batched(const Tensor& q, const Tensor& k, const Tensor& v, const Tensor& additive_mask,
                                        int64_t num_kv_heads, int64_t query_block) {
  const int64_t b = q.size(0), heads = q.size(1), t = q.size(2), d = q.size(3);
  const int64_t s = k.size(2), past = s - t, group = heads / num_kv_heads;
  auto q_grouped = (q * (1.0 / std::sqrt(static_cast<double>(d)))).view({b, num_kv_heads, group, t, d});
  auto out = at::empty({b, num_kv_heads, group, t, d}, q.options());
  // fp32/bf16 on CPU: kick's softmax kernel, in place, with the causal square applied inside. Elsewhere (CUDA,
  // fp16) ATen's. The scores leave the matmul already rounded to the model's dtype, so converting them to fp32
  // for the softmax and back would cost two passes over the largest tensor of a long prompt and change nothing
  // beyond the final rounding. Half on CPU has no softmax kernel in LibTorch 1.13, so it still goes through fp32.
  // The additive mask (fp32) holds only 0 and -inf, exact in any dtype.
  const bool native_softmax = q.scalar_type() != at::kHalf || q.is_cuda();
  for (int64_t start = 0; start < t; start += query_block) {
    const int64_t rows = std::min(query_block, t - start), visible = past + start + rows;
    auto q_block = q_grouped.narrow(3, start, rows).reshape({b, num_kv_heads, group * rows, d});
    auto keys = k.narrow(2, 0, visible), values = v.narrow(2, 0, visible);
    auto scores = matmul_routed(q_block, keys.transpose(-1, -2));
    const bool own_softmax = softmax_cpu_applies(scores);
    if (!own_softmax && !native_softmax) scores = scores.to(at::kFloat);
    auto scores5 = scores.view({b, num_kv_heads, group, rows, visible});
    if (additive_mask.defined()) scores5.add_(additive_mask.narrow(2, start, rows).narrow(3, 0, visible).unsqueeze(1));
    Tensor probs;
    if (own_softmax) {
      softmax_cpu_(scores, additive_mask.defined() ? 0 : rows);
      probs = scores;
    } else {
      if (!additive_mask.defined() && rows > 1) {
        // Only the block's own last `rows` keys can lie in its rows' future: mask that square, not every key.
        auto future = at::ones({rows, rows}, scores.options().dtype(at::kBool)).triu(1);
        scores5.narrow(4, visible - rows, rows).masked_fill_(future, -std::numeric_limits<float>::infinity());
      }
      probs = at::softmax(scores, -1).to(v.scalar_type());
    }
    out.narrow(3, start, rows).copy_(matmul_routed(probs, values).view({b, num_kv_heads, group, rows, d}));
  }
  return out.view({b, heads, t, d});
}

// ---------------- KVCache ----------------

KVCache::KVCache(const ModelConfig& config, int64_t batch, int64_t capacity, const ModelOptions& options)
    : batch_(batch), capacity_(capacity) {
  if (batch <= 0 || capacity <= 0) fail("KV cache: batch ({}) and capacity ({}) must be positive", batch, capacity);
  auto opts = at::TensorOptions().device(options.device).dtype(options.dtype);
  for (int64_t l = 0; l < config.num_layers; ++l) {
    keys_.push_back(at::zeros({batch, config.num_kv_heads, capacity, config.head_dim}, opts));
    values_.push_back(at::zeros({batch, config.num_kv_heads, capacity, config.head_dim}, opts));
  }
}

void KVCache::truncate(int64_t length) {
  if (length < 0 || length > length_) fail("KV cache: cannot truncate {} positions to {}", length_, length);
  length_ = length;
}

void KVCache::copy_prefix_from(const KVCache& source, int64_t src_row, int64_t length) {
  if (length > capacity_ || length > source.length_) fail("KV cache: prefix of {} does not fit", length);
  for (size_t l = 0; l < keys_.size(); ++l) {
    keys_[l].narrow(2, 0, length).copy_(source.keys_[l].narrow(0, src_row, 1).narrow(2, 0, length));
    values_[l].narrow(2, 0, length).copy_(source.values_[l].narrow(0, src_row, 1).narrow(2, 0, length));
  }
  length_ = length;
}

void KVCache::keep_rows(const std::vector<int64_t>& rows) {
  if (rows.empty()) fail("KV cache: cannot keep zero rows");
  for (int64_t r : rows) {
    if (r < 0 || r >= batch_) fail("KV cache: row {} is outside the batch of {}", r, batch_);
  }
  auto index = at::tensor(rows, at::TensorOptions().dtype(at::kLong)).to(keys_.front().device());
  for (size_t l = 0; l < keys_.size(); ++l) {
    keys_[l] = keys_[l].index_select(0, index);
    values_[l] = values_[l].index_select(0, index);
  }
  batch_ = static_cast<int64_t>(rows.size());
}

std::pair<Tensor, Tensor> KVCache::append(int64_t layer, const Tensor& keys, const Tensor& values) {
  int64_t t = keys.size(2);
  if (length_ + t > capacity_) {
    fail("KV cache: {} + {} positions exceed its capacity of {}", length_, t, capacity_);
  }
  auto& k = keys_.at(static_cast<size_t>(layer));
  auto& v = values_.at(static_cast<size_t>(layer));
  k.narrow(2, length_, t).copy_(keys);
  v.narrow(2, length_, t).copy_(values);
  return {k.narrow(2, 0, length_ + t), v.narrow(2, 0, length_ + t)};
}

void KVCache::advance(int64_t tokens) { length_ += tokens; }

// ---------------- DecoderLayer ----------------

DecoderLayer::DecoderLayer(int64_t index, const ModelConfig& config)
    : index_(index),
      num_heads_(config.num_heads),
      num_kv_heads_(config.num_kv_heads),
      head_dim_(config.head_dim),
      eps_(config.rms_norm_eps) {}

Tensor& DecoderLayer::linear(const std::string& name) {
  return const_cast<Tensor&>(static_cast<const DecoderLayer&>(*this).linear(name));
}

const Tensor& DecoderLayer::linear(const std::string& name) const {
  if (name == "self_attn.q_proj") return q_proj;
  if (name == "self_attn.k_proj") return k_proj;
  if (name == "self_attn.v_proj") return v_proj;
  if (name == "self_attn.o_proj") return o_proj;
  if (name == "mlp.gate_proj") return gate_proj;
  if (name == "mlp.up_proj") return up_proj;
  if (name == "mlp.down_proj") return down_proj;
  fail("layer {}: no linear named '{}' (expected one of self_attn.q_proj/k_proj/v_proj/o_proj, "
       "mlp.gate_proj/up_proj/down_proj)", index_, name);
}

Tensor DecoderLayer::attention(const Tensor& normed, const AttentionInputs& attn, KVCache* cache,
                               const LinearInputHook& hook) const {
  const int64_t b = normed.size(0), t = normed.size(1);
  if (hook) {
    hook(index_, "self_attn.q_proj", normed);
    hook(index_, "self_attn.k_proj", normed);
    hook(index_, "self_attn.v_proj", normed);
  }
  auto q = project(normed, q_proj).view({b, t, num_heads_, head_dim_});
  auto k = project(normed, k_proj).view({b, t, num_kv_heads_, head_dim_});
  apply_rotary_(q, attn.cos, attn.sin);
  apply_rotary_(k, attn.cos, attn.sin);
  q = q.transpose(1, 2);
  k = k.transpose(1, 2);
  auto v = project(normed, v_proj).view({b, t, num_kv_heads_, head_dim_}).transpose(1, 2);
  if (cache) std::tie(k, v) = cache->append(index_, k, v);
  auto out = grouped_causal_attention(q, k, v, attn.additive_mask, num_kv_heads_, kAttentionQueryBlock)
                 .transpose(1, 2)
                 .reshape({b, t, num_heads_ * head_dim_});
  if (hook) hook(index_, "self_attn.o_proj", out);
  return project(out, o_proj);
}

Tensor DecoderLayer::forward(const Tensor& hidden, const AttentionInputs& attn, KVCache* cache,
                             const LinearInputHook& hook) const {
  Tensor h;
  auto act = down_proj_input(hidden, attn, cache, hook, &h);
  return h + project(act, down_proj);
}

Tensor DecoderLayer::down_proj_input(const Tensor& hidden, const AttentionInputs& attn, KVCache* cache,
                                     const LinearInputHook& hook, Tensor* residual) const {
  *residual = hidden + attention(rms_norm(hidden, input_norm, eps_), attn, cache, hook);
  auto normed = rms_norm(*residual, post_attention_norm, eps_);
  if (hook) {
    hook(index_, "mlp.gate_proj", normed);
    hook(index_, "mlp.up_proj", normed);
  }
  auto act = silu_mul(project(normed, gate_proj), project(normed, up_proj));
  if (hook) hook(index_, "mlp.down_proj", act);
  return act;
}

void DecoderLayer::feed_linear_inputs(const Tensor& hidden, const AttentionInputs& attn,
                                      const LinearInputHook& hook) const {
  Tensor residual;
  down_proj_input(hidden, attn, nullptr, hook, &residual);
}

DecoderLayer DecoderLayer::to(at::ScalarType dtype) const {
  DecoderLayer copy = *this;
  for (Tensor* t : {&copy.input_norm, &copy.post_attention_norm, &copy.q_proj, &copy.k_proj, &copy.v_proj,
                    &copy.o_proj, &copy.gate_proj, &copy.up_proj, &copy.down_proj})
    *t = t->to(dtype);
  return copy;
}

// ---------------- Model ----------------

Model::Model(Checkpoint ckpt, const ModelOptions& options)
    : config_(ckpt.config),
      options_(options),
      vocab_(std::move(ckpt.vocab)),
      metadata_(std::move(ckpt.metadata)),
      source_(ckpt.source),
      format_(ckpt.format) {
  config_.validate(source_);
  tokenizer_ = std::shared_ptr<Tokenizer>(make_tokenizer(vocab_).release());
  auto& tensors = ckpt.tensors;
  embed_tokens_ = place(take(tensors, "model.embed_tokens.weight", source_), options);
  final_norm_ = place(take(tensors, "model.norm.weight", source_), options);
  if (config_.tie_word_embeddings) {
    lm_head_ = embed_tokens_;
    tensors.erase("lm_head.weight");
  } else {
    lm_head_ = place(take(tensors, "lm_head.weight", source_), options);
  }
  for (int64_t i = 0; i < config_.num_layers; ++i) {
    DecoderLayer layer(i, config_);
    const auto prefix = layer_prefix(i);
    layer.input_norm = place(take(tensors, prefix + "input_layernorm.weight", source_), options);
    layer.post_attention_norm = place(take(tensors, prefix + "post_attention_layernorm.weight", source_), options);
    for (const char* name : kLinearNames) {
      layer.linear(name) = place(take(tensors, prefix + name + ".weight", source_), options);
    }
    layers_.push_back(std::move(layer));
  }
  inv_freq_ = 1.0 / at::pow(config_.rope_theta,
                            at::arange(0, config_.head_dim, 2, at::TensorOptions().dtype(at::kDouble)) /
                                double(config_.head_dim));
  inv_freq_ = inv_freq_.to(at::kFloat).to(options.device);
}

Model Model::load(const std::string& path, const ModelOptions& options, const LoadOptions& load_options) {
  return Model(load_checkpoint(path, load_options), options);
}

int64_t Model::parameter_count() const {
  int64_t n = embed_tokens_.numel() + final_norm_.numel();
  if (!config_.tie_word_embeddings) n += lm_head_.numel();
  for (const auto& l : layers_) {
    n += l.input_norm.numel() + l.post_attention_norm.numel();
    for (const char* name : kLinearNames) n += l.linear(name).numel();
  }
  return n;
}

Tensor Model::embed(const Tensor& token_ids) const {
  return at::embedding(embed_tokens_, token_ids.to(options_.device, at::kLong));
}

Tensor Model::head(const Tensor& hidden) const {
  // A few rows of a bf16 model on CPU (a batch's scored positions, a decoding step) get fp32 logits from the fp32
  // normed state: bf16 logits of 10 to 20 are rounded to steps of 1/16 to 1/8, which tied the top two MMLU letters
  // in 20 of 96 questions (docs/footguns.md). Many rows (perplexity's chunks) stay with the bf16 GEMM.
  const int64_t rows = hidden.numel() / std::max<int64_t>(1, hidden.size(-1));
  if (rows <= kFp32HeadMaxRows && linear_bf16_fp32_applies(hidden, lm_head_)) {
    return linear_bf16_fp32(rms_norm(hidden.to(at::kFloat), final_norm_, config_.rms_norm_eps), lm_head_);
  }
  return project(rms_norm(hidden, final_norm_, config_.rms_norm_eps), lm_head_).to(at::kFloat);
}

AttentionInputs Model::attention_inputs(int64_t batch, int64_t new_tokens, int64_t past_length,
                                        const Tensor& attention_mask) const {
  AttentionInputs inputs;
  inputs.past_length = past_length;
  const int64_t total = past_length + new_tokens;
  auto long_opts = at::TensorOptions().dtype(at::kLong).device(options_.device);
  Tensor positions;
  if (attention_mask.defined()) {
    if (attention_mask.dim() != 2 || attention_mask.size(0) != batch || attention_mask.size(1) != total) {
      fail("attention mask: expected shape [{}, {}], got {}", batch, total, shape_string(attention_mask.sizes()));
    }
    auto mask = attention_mask.to(options_.device, at::kLong);
    positions = (mask.cumsum(1) - 1).clamp_min(0).narrow(1, past_length, new_tokens);
    // A query may see a key when it is not in the future and is a real token; every query sees itself
    // so that padding rows never softmax over nothing.
    auto q_index = at::arange(past_length, total, long_opts).view({1, new_tokens, 1});
    auto k_index = at::arange(0, total, long_opts).view({1, 1, total});
    auto allowed = (k_index <= q_index) & (mask.view({batch, 1, total}) > 0);
    allowed = allowed | (k_index == q_index);
    auto additive = at::zeros({batch, new_tokens, total},
                              at::TensorOptions().dtype(at::kFloat).device(options_.device));
    additive.masked_fill_(allowed.logical_not(), -std::numeric_limits<float>::infinity());
    inputs.additive_mask = additive.unsqueeze(1);
  } else {
    positions = at::arange(past_length, total, long_opts).view({1, new_tokens}).expand({batch, new_tokens});
  }
  if (total > config_.max_position) {
    fail("{}: sequence of {} tokens exceeds the model's context of {}", source_, total, config_.max_position);
  }
  auto freqs = positions.to(at::kFloat).unsqueeze(-1) * inv_freq_.view({1, 1, -1});
  auto emb = at::cat({freqs, freqs}, -1);
  inputs.cos = emb.cos();
  inputs.sin = emb.sin();
  return inputs;
}

Tensor Model::forward_hidden(const Tensor& token_ids, KVCache* cache, const Tensor& attention_mask) const {
  at::NoGradGuard no_grad;
  if (token_ids.dim() != 2) fail("forward: token ids must be [batch, tokens], got {}", shape_string(token_ids.sizes()));
  const int64_t b = token_ids.size(0), t = token_ids.size(1);
  const int64_t past = cache ? cache->length() : 0;
  if (cache && cache->batch() != b) fail("forward: batch {} does not match the KV cache's {}", b, cache->batch());
  auto inputs = attention_inputs(b, t, past, attention_mask);
  auto hidden = embed(token_ids);
  for (const auto& layer : layers_) hidden = layer.forward(hidden, inputs, cache);
  if (cache) cache->advance(t);
  return hidden;
}

Tensor Model::forward(const Tensor& token_ids, KVCache* cache, const Tensor& attention_mask) const {
  at::NoGradGuard no_grad;
  return head(forward_hidden(token_ids, cache, attention_mask));
}

Tensor Model::forward_last(const Tensor& token_ids, KVCache* cache, const Tensor& attention_mask) const {
  at::NoGradGuard no_grad;
  auto hidden = forward_hidden(token_ids, cache, attention_mask);
  return head(hidden.narrow(1, hidden.size(1) - 1, 1)).squeeze(1);
}

KVCache Model::make_cache(int64_t batch, int64_t capacity) const {
  return KVCache(config_, batch, std::min(capacity, config_.max_position), options_);
}

Checkpoint Model::to_checkpoint() const {
  Checkpoint ckpt;
  ckpt.config = config_;
  ckpt.vocab = vocab_;
  ckpt.metadata = metadata_;
  ckpt.source = source_;
  ckpt.format = format_;
  auto cpu = [](const Tensor& t) { return t.to(at::kCPU).contiguous(); };
  ckpt.tensors["model.embed_tokens.weight"] = cpu(embed_tokens_);
  ckpt.tensors["model.norm.weight"] = cpu(final_norm_);
  if (!config_.tie_word_embeddings) ckpt.tensors["lm_head.weight"] = cpu(lm_head_);
  for (const auto& layer : layers_) {
    const auto prefix = layer_prefix(layer.index());
    ckpt.tensors[prefix + "input_layernorm.weight"] = cpu(layer.input_norm);
    ckpt.tensors[prefix + "post_attention_layernorm.weight"] = cpu(layer.post_attention_norm);
    for (const char* name : kLinearNames) ckpt.tensors[prefix + name + ".weight"] = cpu(layer.linear(name));
  }
  return ckpt;
}

}  // namespace kick
