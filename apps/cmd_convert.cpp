// kick convert: writes any model kick loads (GGUF, llama2.c, HF folder) as an HF safetensors folder that
// transformers and kick load, in the chosen dtype. GGUF's quantized tensors come out dequantized.
#include <cstdio>

#include "common.hpp"

namespace kick::app {

void register_convert(CLI::App& app) {
  auto* cmd = app.add_subcommand("convert", "write a model as an HF safetensors folder (config.json, tokenizer files)");
  struct Args {
    ModelArgs model;
    std::string out;
    bool overwrite = false;
  };
  auto args = std::make_shared<Args>();
  add_model_options(*cmd, args->model);
  cmd->add_option("-o,--out", args->out, "output folder (refused if it exists, unless --overwrite)")->required();
  cmd->add_flag("--overwrite", args->overwrite, "replace an existing output folder");
  cmd->callback([args] {
    if (std::filesystem::exists(args->out) && !args->overwrite) {
      fail("{}: already exists; pass --overwrite to replace it", args->out);
    }
    Model model = load_model(args->model);
    save_hf_checkpoint(args->out, model.to_checkpoint(), {}, args->overwrite);
    std::printf("saved %s (%s, %s)\n", args->out.c_str(), model.source().c_str(),
                dtype_name(model.options().dtype).c_str());
  });
}

}  // namespace kick::app
