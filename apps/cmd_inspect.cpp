// kick inspect: what a model file holds: architecture, tensor table, dtypes, parameter count, tokenizer.
#include <cstdio>
#include <map>

#include "common.hpp"

namespace kick::app {

void register_inspect(CLI::App& app) {
  auto* cmd = app.add_subcommand("inspect", "show a model's architecture, tensors and tokenizer");
  auto path = std::make_shared<std::string>();
  auto tokenizer_path = std::make_shared<std::string>();
  auto show_all = std::make_shared<bool>(false);
  cmd->add_option("model", *path, "model: HF folder, .gguf, llama2.c .bin, or a known name")->required();
  cmd->add_option("--tokenizer", *tokenizer_path, "llama2.c tokenizer.bin (default: beside the model)");
  cmd->add_flag("--all", *show_all, "list every tensor (default: the first layer's and the globals)");
  cmd->callback([=] {
    LoadOptions options;
    options.tokenizer_path = *tokenizer_path;
    Checkpoint ckpt = load_checkpoint(resolve_model_path(*path), options);
    const auto& c = ckpt.config;
    std::printf("source        %s\nformat        %s\narchitecture  %s\n", ckpt.source.c_str(),
                ckpt.format.c_str(), c.architecture.c_str());
    std::printf("layers        %lld\nhidden        %lld\nintermediate  %lld\nheads         %lld (kv %lld, head_dim %lld)\n",
                (long long)c.num_layers, (long long)c.hidden_size, (long long)c.intermediate_size,
                (long long)c.num_heads, (long long)c.num_kv_heads, (long long)c.head_dim);
    std::printf("vocab         %lld\ncontext       %lld\nrope_theta    %g\nrms_norm_eps  %g\ntied head     %s\n",
                (long long)c.vocab_size, (long long)c.max_position, c.rope_theta, c.rms_norm_eps,
                c.tie_word_embeddings ? "yes" : "no");
    int64_t params = 0;
    std::map<std::string, int64_t> by_dtype;
    for (const auto& [name, t] : ckpt.tensors) {
      params += t.numel();
      by_dtype[dtype_name(t.scalar_type())] += t.numel();
    }
    std::printf("parameters    %lld (%.1fM)\n", (long long)params, double(params) / 1e6);
    for (const auto& [dtype, n] : by_dtype) std::printf("  %-10s %lld\n", dtype.c_str(), (long long)n);
    if (ckpt.metadata.contains("gguf_tensor_types")) {
      std::printf("file types    %s\n", ckpt.metadata["gguf_tensor_types"].dump().c_str());
    }
    auto tok = make_tokenizer(ckpt.vocab);
    std::printf("tokenizer     %s, %d tokens, bos %d, eos %d, add_bos %s\n", tok->kind().c_str(),
                tok->vocab_size(), tok->bos_id(), tok->eos_id(), tok->add_bos_default() ? "yes" : "no");
    std::printf("chat template %s\n", default_chat_template(ckpt.vocab).c_str());
    if (ckpt.metadata.contains("compression")) {
      std::printf("compression   %s\n", ckpt.metadata["compression"].dump().c_str());
    }
    std::printf("\n%-56s %-10s %s\n", "tensor", "dtype", "shape");
    for (const auto& [name, t] : ckpt.tensors) {
      bool global = name.find("model.layers.") != 0;
      bool first_layer = name.find("model.layers.0.") == 0;
      if (!*show_all && !global && !first_layer) continue;
      std::string shape;
      for (auto d : t.sizes()) shape += (shape.empty() ? "" : " x ") + std::to_string(d);
      std::printf("%-56s %-10s %s\n", name.c_str(), dtype_name(t.scalar_type()).c_str(), shape.c_str());
    }
    if (!*show_all) std::printf("(layers 1..%lld alike; --all lists them)\n", (long long)c.num_layers - 1);
  });
}

}  // namespace kick::app
