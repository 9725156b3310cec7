// Shared pieces of the kick subcommands: the model/device/dtype/thread options every command takes,
// and the registration functions each subcommand file defines.
#pragma once

#include <CLI/CLI.hpp>

#include <string>

#include "kick/model.hpp"

namespace kick::app {

struct ModelArgs {
  std::string model;
  std::string tokenizer;  // llama2.c tokenizer.bin when not beside the model
  std::string device = "cpu";
  std::string dtype = "fp32";
  int threads = 0;
};

// Adds --model/--tokenizer/--device/--dtype/--threads to a subcommand.
void add_model_options(CLI::App& command, ModelArgs& args);
// Applies the thread setting and loads the model, printing one line about it to stderr. `weights`: see
// LoadOptions::weights.
Model load_model(const ModelArgs& args, FileAccess weights = FileAccess::copy_on_write);
// One line on stderr when bf16 compute on this CPU goes through fp32 GEMMs (no native bf16 GEMM): bf16 then saves
// memory but no time, which users choosing it for speed should know.
void note_bf16_route(at::ScalarType dtype, const at::Device& device);

void register_inspect(CLI::App& app);
void register_generate(CLI::App& app);
void register_perplexity(CLI::App& app);
void register_bench(CLI::App& app);
void register_compress(CLI::App& app);
void register_convert(CLI::App& app);
void register_evaluate(CLI::App& app);
void register_serve(CLI::App& app);
void register_sweep(CLI::App& app);  // kick sweep and kick report

}  // namespace kick::app
