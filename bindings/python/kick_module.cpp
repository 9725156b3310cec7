// bindings/python/kick_module.cpp: the `kick` Python module (pybind11, LibTorch's own tensor casters): load a
// model, compress it or a single weight with given statistics, save it, run a task. Tensors go in and out as
// torch.Tensor without copies where the dtype allows; results come back as Python dicts (the same JSON the
// C++ tools write). kick::Error becomes kick.Error; nothing else catches library errors.
#include <torch/extension.h>

#include <pybind11/stl.h>

#include "kick/compress.hpp"
#include "kick/evaluate.hpp"
#include "kick/io.hpp"
#include "kick/model.hpp"

namespace py = pybind11;
using namespace kick;

namespace {

py::object to_python(const nlohmann::json& value) { return py::module::import("json").attr("loads")(value.dump()); }

// A loaded model and what compressing it did, so `save` can write a self-describing folder.
struct PyModel {
  std::shared_ptr<Model> model;
  std::string path;
  std::vector<compress::CompressionPlan> stages;
  std::vector<compress::CompressionReport> reports;
  std::shared_ptr<compress::CalibrationData> calibration;
  compress::CalibrationConfig calibration_config;  // what `calibration` was drawn with
};

PyModel load_model(const std::string& path, const std::string& device, const std::string& dtype, int threads) {
  configure_threads(threads);
  ModelOptions options;
  options.device = parse_device(device);
  options.dtype = parse_dtype(dtype);
  const std::string resolved = resolve_model_path(path);
  PyModel m;
  m.model = std::make_shared<Model>(Model::load(resolved, options));
  m.path = resolved;
  return m;
}

compress::SparsityConfig sparsity_config(double sparsity, const std::string& pattern) {
  compress::SparsityConfig c;
  c.ratio = sparsity;
  if (!pattern.empty()) {
    const auto colon = pattern.find(':');
    if (colon == std::string::npos) fail("pattern: '{}' is not N:M", pattern);
    c.n = std::stoll(pattern.substr(0, colon));
    c.m = std::stoll(pattern.substr(colon + 1));
  }
  c.validate();
  return c;
}

py::dict prune_result(const compress::PruneResult& r) {
  py::dict d;
  d["weight"] = r.weight;
  d["mask"] = r.mask;
  d["stats"] = to_python(r.stats.to_json());
  return d;
}

py::dict quant_result(const compress::QuantResult& r) {
  py::dict d;
  d["weight"] = r.weight;
  d["codes"] = r.packed.codes;
  d["scales"] = r.packed.scales;
  d["zeros"] = r.packed.zeros;
  d["g_idx"] = r.packed.g_idx;
  d["stats"] = to_python(r.stats.to_json());
  return d;
}

}  // namespace

PYBIND11_MODULE(kick, m) {
  py::module::import("torch");  // its tensor type must be registered before ours cross the boundary
  m.doc() = "kick: compress LLMs (magnitude, Wanda, SparseGPT, RTN, GPTQ, AWQ) and evaluate them on LLM-KICK's tasks";
  static py::exception<Error> error(m, "Error");
  py::register_exception_translator([](std::exception_ptr p) {
    try {
      if (p) std::rethrow_exception(p);
    } catch (const Error& e) {
      error(e.what());
    }
  });
  m.attr("__version__") = version_string();

  py::class_<PyModel>(m, "Model", "A model kick loaded (LLaMA-family decoder with its tokenizer).")
      .def_property_readonly("path", [](const PyModel& p) { return p.path; })
      .def_property_readonly("num_layers", [](const PyModel& p) { return p.model->num_layers(); })
      .def_property_readonly("config", [](const PyModel& p) {
        const auto& c = p.model->config();
        return to_python({{"hidden_size", c.hidden_size}, {"intermediate_size", c.intermediate_size},
                          {"num_layers", c.num_layers}, {"num_heads", c.num_heads}, {"num_kv_heads", c.num_kv_heads},
                          {"head_dim", c.head_dim}, {"vocab_size", c.vocab_size}, {"max_position", c.max_position}});
      })
      .def("linear", [](const PyModel& p, int64_t layer, const std::string& name) {
            if (layer < 0 || layer >= p.model->num_layers()) fail("layer {} is outside 0..{}", layer, p.model->num_layers() - 1);
            return p.model->layer(layer).linear(name).clone();
          }, py::arg("layer"), py::arg("name"), "A copy of one Linear weight [out, in], e.g. linear(0, 'mlp.up_proj').")
      .def("encode", [](const PyModel& p, const std::string& text) { return p.model->tokenizer().encode(text, p.model->tokenizer().add_bos_default()); },
           py::arg("text"))
      .def("generate", [](const PyModel& p, const std::string& prompt, int64_t max_new_tokens, double temperature, uint64_t seed) {
            SamplingOptions s;
            s.max_new_tokens = max_new_tokens;
            s.temperature = temperature;
            s.seed = seed;
            py::gil_scoped_release release;
            return generate(*p.model, {p.model->tokenizer().encode(prompt, p.model->tokenizer().add_bos_default())}, s).at(0).text;
          }, py::arg("prompt"), py::arg("max_new_tokens") = 64, py::arg("temperature") = 0.0, py::arg("seed") = 0)
      .def("logits", [](const PyModel& p, const std::vector<int32_t>& ids) {
            auto t = at::tensor(std::vector<int64_t>(ids.begin(), ids.end()), at::kLong).view({1, -1});
            at::NoGradGuard no_grad;
            return p.model->forward(t.to(p.model->options().device)).squeeze(0).cpu();
          }, py::arg("ids"), "fp32 logits [T, V] of one sequence of token ids.");

  m.def("load_model", &load_model, py::arg("path"), py::arg("device") = "cpu", py::arg("dtype") = "fp32", py::arg("threads") = 0,
        "Load an HF folder, .gguf, llama2.c .bin or a known name (smollm2, stories260K).");

  m.def("compress_model",
        [](PyModel& p, const std::string& method, double sparsity, const std::string& pattern, int bits, int64_t group_size,
           bool symmetric, int64_t nsamples, int64_t seqlen, uint64_t seed, const std::string& calibration) {
          compress::CompressionPlan plan;
          plan.method = method;
          plan.sparsity = sparsity_config(sparsity, pattern);
          plan.quant.bits = bits;
          plan.quant.group_size = group_size;
          plan.quant.symmetric = symmetric;
          plan.validate(p.model->config().hidden_size, p.model->config().intermediate_size);
          if (plan.needs_calibration()) {
            compress::CalibrationConfig c;
            c.source = calibration;
            c.nsamples = nsamples;
            c.seqlen = seqlen > 0 ? seqlen : std::min<int64_t>(2048, p.model->config().max_position);
            c.seed = seed;
            // Windows are drawn again only when the request differs from the last stage's (a second stage with
            // other settings must not silently reuse the first one's windows).
            const bool same = p.calibration && p.calibration_config.source == c.source &&
                              p.calibration_config.nsamples == c.nsamples && p.calibration_config.seqlen == c.seqlen &&
                              p.calibration_config.seed == c.seed;
            if (!same) {
              p.calibration = std::make_shared<compress::CalibrationData>(compress::load_calibration(p.model->tokenizer(), c));
              p.calibration_config = c;
            }
          }
          py::gil_scoped_release release;
          auto report = compress::compress_model(*p.model, plan, p.calibration.get());
          report.packed.clear();
          p.stages.push_back(plan);
          p.reports.push_back(report);
          py::gil_scoped_acquire acquire;
          return to_python(report.to_json());
        },
        py::arg("model"), py::arg("method"), py::arg("sparsity") = 0.5, py::arg("pattern") = "", py::arg("bits") = 4,
        py::arg("group_size") = 128, py::arg("symmetric") = false, py::arg("nsamples") = 128, py::arg("seqlen") = 0,
        py::arg("seed") = 0, py::arg("calibration") = "calibration/alpaca_5000.json",
        "Compress the model in place with the layer-by-layer calibration driver (as kick compress does); returns the report.");

  m.def("save_model",
        [](const PyModel& p, const std::string& dir, bool overwrite) {
          // The source's content hash is computed here, where it is needed, not at every load (a 7B model is GBs).
          auto metadata = compress::compression_metadata(*p.model, p.stages, p.reports, p.calibration.get(), content_hash(p.path));
          compress::save_compressed_model(dir, *p.model, metadata, {}, overwrite);
        },
        py::arg("model"), py::arg("dir"), py::arg("overwrite") = false,
        "Write an HF safetensors folder with config.json, tokenizer files and compression.json (atomically).");

  m.def("prune",
        [](const std::string& method, const at::Tensor& weight, const std::optional<at::Tensor>& statistic, double sparsity,
           const std::string& pattern, double percdamp, int64_t blocksize) {
          const auto config = sparsity_config(sparsity, pattern);
          if (method == "magnitude") return prune_result(compress::magnitude_prune(weight, config));
          if (!statistic) fail("prune {}: needs its statistic ({})", method, method == "wanda" ? "squared_norms [in]" : "hessian [in, in]");
          if (method == "wanda") return prune_result(compress::wanda_prune(weight, *statistic, config));
          if (method == "sparsegpt") {
            compress::SparseGptConfig c;
            c.sparsity = config;
            c.percdamp = percdamp;
            c.blocksize = blocksize;
            return prune_result(compress::sparsegpt_prune(weight, *statistic, c));
          }
          fail("prune: unknown method '{}' (magnitude, wanda, sparsegpt)", method);
        },
        py::arg("method"), py::arg("weight"), py::arg("statistic") = py::none(), py::arg("sparsity") = 0.5, py::arg("pattern") = "",
        py::arg("percdamp") = 0.01, py::arg("blocksize") = 128,
        "Prune one weight [out, in]: wanda takes squared_norms [in], sparsegpt the Hessian [in, in]. Returns weight, mask, stats.");

  m.def("quantize",
        [](const std::string& method, const at::Tensor& weight, const std::optional<at::Tensor>& hessian, int bits, int64_t group_size,
           bool symmetric, bool act_order, bool static_groups, double percdamp, int64_t blocksize) {
          compress::QuantizerConfig q;
          q.bits = bits;
          q.group_size = group_size;
          q.symmetric = symmetric;
          q.validate(weight.size(1));
          if (method == "rtn") return quant_result(compress::rtn_quantize(weight, q));
          if (method == "gptq") {
            if (!hessian) fail("quantize gptq: needs the Hessian [in, in]");
            compress::GptqConfig c;
            c.quant = q;
            c.act_order = act_order;
            c.static_groups = static_groups;
            c.percdamp = percdamp;
            c.blocksize = blocksize;
            return quant_result(compress::gptq_quantize(weight, *hessian, c));
          }
          fail("quantize: unknown method '{}' (rtn, gptq; AWQ needs a layer's Linears together: use compress_model)", method);
        },
        py::arg("method"), py::arg("weight"), py::arg("hessian") = py::none(), py::arg("bits") = 4, py::arg("group_size") = 128,
        py::arg("symmetric") = false, py::arg("act_order") = false, py::arg("static_groups") = false, py::arg("percdamp") = 0.01,
        py::arg("blocksize") = 128, "Quantize one weight [out, in]. Returns the dequantized weight, codes, scales, zeros, g_idx, stats.");

  m.def("input_statistics",
        [](const at::Tensor& inputs) {
          compress::InputStatistics stats(inputs.size(-1), true, inputs.device());
          stats.add(inputs);
          py::dict d;
          d["hessian"] = stats.hessian();
          d["squared_norms"] = stats.squared_norms();
          d["mean_abs"] = stats.mean_abs();
          d["tokens"] = stats.tokens();
          return d;
        },
        py::arg("inputs"), "Statistics of a Linear's inputs [..., in]: hessian (2/n X X^T), squared_norms, mean_abs.");

  m.def("evaluate",
        [](const PyModel& p, const std::string& task, const std::string& protocol, int64_t limit, std::vector<uint64_t> seeds,
           int64_t batch_size, const std::string& out_dir) {
          eval::RunOptions options;
          options.limit = limit;
          if (!seeds.empty()) options.seeds = seeds;
          options.batch_size = batch_size;
          options.out_dir = out_dir;
          const auto spec = eval::load_task(task, protocol);
          const nlohmann::json provenance = {{"model", eval::model_provenance(*p.model, p.path)}};
          eval::TaskSummary summary;
          {
            py::gil_scoped_release release;
            summary = eval::evaluate_task(*p.model, spec, options, provenance);
          }
          return to_python(summary.to_json());
        },
        py::arg("model"), py::arg("task"), py::arg("protocol") = "llm-kick", py::arg("limit") = 0, py::arg("seeds") = std::vector<uint64_t>{},
        py::arg("batch_size") = 8, py::arg("out_dir"), "Run a task (resumable in out_dir); returns the summary as a dict.");
}
