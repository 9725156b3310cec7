// Implements the shared subcommand options and model loading for the kick tool.
#include "common.hpp"

#include <ATen/Parallel.h>

#include <cstdio>

namespace kick::app {

void add_model_options(CLI::App& command, ModelArgs& args) {
  command.add_option("-m,--model", args.model,
                     "model: HF folder, .gguf, llama2.c .bin, or a known name (smollm2, stories260K)")
      ->required();
  command.add_option("--tokenizer", args.tokenizer, "llama2.c tokenizer.bin (default: beside the model)");
  command.add_option("--device", args.device, "cpu, cuda or cuda:N")->capture_default_str();
  command.add_option("--dtype", args.dtype, "fp32, bf16 or fp16")->capture_default_str();
  command.add_option("-t,--threads", args.threads, "intra-op threads (0: one per core)")->capture_default_str();
}

void note_bf16_route(at::ScalarType dtype, const at::Device& device) {
  if (bf16_gemm_through_fp32(dtype, device)) {
    std::fprintf(stderr, "kick: note: this CPU has no native bf16 GEMM (LibTorch's needs AVX-512); bf16 products run "
                         "as fp32 GEMMs with bf16 rounding, no faster than fp32\n");
  }
}

Model load_model(const ModelArgs& args, FileAccess weights) {
  configure_threads(args.threads);
  ModelOptions options;
  options.device = parse_device(args.device);
  options.dtype = parse_dtype(args.dtype);
  LoadOptions load_options;
  load_options.tokenizer_path = args.tokenizer;
  load_options.weights = weights;
  const double start = monotonic_seconds();
  Model model = Model::load(resolve_model_path(args.model), options, load_options);
  std::fprintf(stderr, "kick: loaded %s (%s, %.1fM parameters, %s on %s, %d threads) in %s\n",
               model.source().c_str(), model.tokenizer().kind().c_str(),
               double(model.parameter_count()) / 1e6, dtype_name(options.dtype).c_str(),
               options.device.str().c_str(), at::get_num_threads(),
               format_duration(monotonic_seconds() - start).c_str());
  note_bf16_route(options.dtype, options.device);
  return model;
}

}  // namespace kick::app
