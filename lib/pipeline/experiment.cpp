// lib/pipeline/experiment.cpp: experiment files (data/experiments/*.yaml) parsed, validated and expanded into
// variants (the dense model and each compression setting) and task cells; content keys and folder layout.
#include <yaml-cpp/yaml.h>

#include <algorithm>
#include <cmath>
#include <set>

#include "kick/core.hpp"
#include "kick/pipeline.hpp"
#include "kick/yaml_text.hpp"

namespace kick::pipeline {
namespace {

const std::set<std::string> kPruningMethods = {"magnitude", "wanda", "sparsegpt"};
const std::set<std::string> kQuantMethods = {"rtn", "gptq", "awq"};

bool needs_calibration(const std::string& method) { return method != "magnitude" && method != "rtn"; }

void check_keys(const YAML::Node& node, const std::set<std::string>& known, const std::string& where) {
  for (const auto& kv : node) {
    // A key that is itself a list or mapping ("{method: wanda, [2:4]}") is a typo, not a name (found by fuzzing).
    if (!kv.first.IsScalar()) fail("{}: expected key names, found a {} used as a key", where, kv.first.IsSequence() ? "list" : "mapping");
    const auto key = kv.first.as<std::string>();
    if (!known.count(key)) {
      std::string list;
      for (const auto& k : known) list += (list.empty() ? "" : ", ") + k;
      fail("{}: unknown key '{}' (known: {})", where, key, list);
    }
  }
}

// A scalar or a list of scalars, as a list.
template <typename T>
std::vector<T> list_of(const YAML::Node& node, const std::string& where) {
  std::vector<T> out;
  try {
    if (node.IsSequence()) {
      for (const auto& item : node) out.push_back(item.as<T>());
    } else if (node.IsScalar()) {
      out.push_back(node.as<T>());
    } else {
      fail("{}: expected a value or a list", where);
    }
  } catch (const YAML::Exception& e) {
    fail("{}: {}", where, e.msg);
  }
  if (out.empty()) fail("{}: empty list", where);
  return out;
}

std::string percent(double ratio) {
  const double p = ratio * 100.0;
  return std::fabs(p - std::round(p)) < 1e-9 ? fmt::format("{}%", static_cast<int64_t>(std::round(p))) : fmt::format("{}%", p);
}

std::vector<Variant> expand_grid_entry(const YAML::Node& entry, const std::string& where) {
  if (!entry.IsMap()) fail("{}: expected a mapping with 'method'", where);
  check_keys(entry, {"method", "sparsity", "pattern", "bits", "group_size", "args"}, where);
  if (!entry["method"]) fail("{}: method: required", where);
  const auto method = entry["method"].as<std::string>();
  std::vector<std::string> extra;
  if (entry["args"]) extra = list_of<std::string>(entry["args"], where + ": args");
  std::vector<Variant> out;
  if (kPruningMethods.count(method)) {
    if (entry["bits"] || entry["group_size"]) fail("{}: bits/group_size: {} is a pruning method", where, method);
    if (!entry["sparsity"] && !entry["pattern"]) fail("{}: {} needs sparsity and/or pattern", where, method);
    if (entry["sparsity"]) {
      for (double s : list_of<double>(entry["sparsity"], where + ": sparsity")) {
        if (!(s > 0.0 && s < 1.0)) fail("{}: sparsity: {} is outside (0, 1)", where, s);
        Variant v;
        v.method = method;
        v.sparsity = s;
        v.label = fmt::format("{} {}", method, percent(s));
        v.compress_args = {"--method", method, "--sparsity", fmt::format("{}", s)};
        out.push_back(v);
      }
    }
    if (entry["pattern"]) {
      for (const auto& p : list_of<std::string>(entry["pattern"], where + ": pattern")) {
        const auto colon = p.find(':');
        int64_t n = 0, m = 0;
        try {
          n = std::stoll(p.substr(0, colon));
          m = std::stoll(p.substr(colon + 1));
        } catch (const std::exception&) {
          fail("{}: pattern: '{}' is not N:M", where, p);
        }
        if (colon == std::string::npos || n < 1 || m < 2 || n >= m) fail("{}: pattern: '{}' is not N:M with 0 < N < M", where, p);
        Variant v;
        v.method = method;
        v.pattern = p;
        v.sparsity = static_cast<double>(n) / static_cast<double>(m);
        v.label = fmt::format("{} {}", method, p);
        v.compress_args = {"--method", method, "--pattern", p};
        out.push_back(v);
      }
    }
  } else if (kQuantMethods.count(method)) {
    if (entry["sparsity"] || entry["pattern"]) fail("{}: sparsity/pattern: {} is a quantization method", where, method);
    if (!entry["bits"]) fail("{}: bits: required for {}", where, method);
    const int64_t group = entry["group_size"] ? list_of<int64_t>(entry["group_size"], where + ": group_size").at(0) : 128;
    for (int bits : list_of<int>(entry["bits"], where + ": bits")) {
      if (bits < 2 || bits > 8) fail("{}: bits: {} is outside 2..8", where, bits);
      Variant v;
      v.method = method;
      v.bits = bits;
      v.group_size = group;
      v.label = group > 0 ? fmt::format("{} w{}g{}", method, bits, group) : fmt::format("{} w{}", method, bits);
      v.compress_args = {"--method", method, "--bits", std::to_string(bits), "--group-size", std::to_string(group)};
      out.push_back(v);
    }
  } else {
    fail("{}: method: unknown '{}' (magnitude, wanda, sparsegpt, rtn, gptq, awq)", where, method);
  }
  for (auto& v : out) {
    v.compress_args.insert(v.compress_args.end(), extra.begin(), extra.end());
    if (!extra.empty()) {
      std::string joined;
      for (const auto& e : extra) joined += " " + e;
      v.label += joined;
    }
  }
  return out;
}

}  // namespace

nlohmann::json Variant::to_json() const {
  return {{"label", label}, {"method", method}, {"sparsity", sparsity}, {"pattern", pattern}, {"bits", bits},
          {"group_size", group_size}, {"compress_args", compress_args}, {"key", key}};
}

nlohmann::json TaskCell::to_json() const {
  return {{"task", task}, {"protocol", protocol}, {"limit", limit}, {"batch_size", batch_size}, {"metric", metric}};
}

namespace {

Experiment experiment_from_yaml(const YAML::Node& root, const std::string& file) {
  if (!root.IsMap()) fail("{}: expected a mapping of keys", file);
  check_keys(root, {"name", "version", "description", "model", "device", "dtype", "calibration", "dense", "grid", "tasks", "seeds"}, file);
  for (const char* key : {"name", "model", "tasks"}) {
    if (!root[key]) fail("{}: {}: required", file, key);
  }
  Experiment x;
  x.file = file;
  try {
    x.name = root["name"].as<std::string>();
    x.model = root["model"].as<std::string>();
    if (root["version"]) x.version = root["version"].as<int>();
    if (root["device"]) x.device = root["device"].as<std::string>();
    if (root["dtype"]) x.dtype = root["dtype"].as<std::string>();
    if (root["description"]) x.description = root["description"].as<std::string>();
    if (const auto c = root["calibration"]) {
      if (!c.IsMap()) fail("{}: calibration: expected a mapping", file);
      check_keys(c, {"nsamples", "seqlen", "seed", "source"}, file + ": calibration");
      if (c["nsamples"]) x.nsamples = c["nsamples"].as<int64_t>();
      if (c["seqlen"]) x.seqlen = c["seqlen"].as<int64_t>();
      if (c["seed"]) x.calibration_seed = c["seed"].as<uint64_t>();
      if (c["source"]) x.calibration_source = c["source"].as<std::string>();
      if (x.nsamples < 1 || x.seqlen < 2) fail("{}: calibration: nsamples >= 1 and seqlen >= 2 expected", file);
    }
    if (root["seeds"]) x.seeds = list_of<uint64_t>(root["seeds"], file + ": seeds");
  } catch (const YAML::Exception& e) {
    fail("{}:{}: {}", file, e.mark.line + 1, e.msg);
  }
  if (!root["dense"] || root["dense"].as<bool>()) {
    Variant dense;
    dense.label = "dense";
    dense.method = "dense";
    x.variants.push_back(dense);
  }
  if (const auto grid = root["grid"]) {
    if (!grid.IsSequence()) fail("{}: grid: expected a list of entries", file);
    for (size_t i = 0; i < grid.size(); ++i) {
      const std::string where = fmt::format("{}: grid[{}]", file, i);
      try {
        for (auto& v : expand_grid_entry(grid[i], where)) x.variants.push_back(std::move(v));
      } catch (const YAML::Exception& e) {
        fail("{}: {}", where, e.msg);
      }
    }
  }
  if (x.variants.empty()) fail("{}: no variants (dense: false and no grid)", file);
  std::set<std::string> labels;
  for (auto& v : x.variants) {
    if (!labels.insert(v.label).second) fail("{}: grid: '{}' appears twice", file, v.label);
    if (v.method != "dense" && needs_calibration(v.method)) {
      for (const std::string& a : {std::string("--nsamples"), std::to_string(x.nsamples), std::string("--seqlen"),
                                   std::to_string(x.seqlen), std::string("--seed"), std::to_string(x.calibration_seed)}) {
        v.compress_args.push_back(a);
      }
      if (!x.calibration_source.empty()) {
        v.compress_args.push_back("--calibration");
        v.compress_args.push_back(x.calibration_source);
      }
    }
  }
  const auto tasks = root["tasks"];
  if (!tasks.IsSequence() || tasks.size() == 0) fail("{}: tasks: expected a non-empty list", file);
  for (size_t i = 0; i < tasks.size(); ++i) {
    const std::string where = fmt::format("{}: tasks[{}]", file, i);
    const auto t = tasks[i];
    if (!t.IsMap()) fail("{}: expected a mapping with 'task'", where);
    check_keys(t, {"task", "protocol", "limit", "batch_size", "metric"}, where);
    if (!t["task"]) fail("{}: task: required", where);
    TaskCell cell;
    try {
      cell.task = t["task"].as<std::string>();
      if (t["protocol"]) cell.protocol = t["protocol"].as<std::string>();
      if (t["limit"]) cell.limit = t["limit"].as<int64_t>();
      if (t["batch_size"]) cell.batch_size = t["batch_size"].as<int64_t>();
      if (t["metric"]) cell.metric = t["metric"].as<std::string>();
    } catch (const YAML::Exception& e) {
      fail("{}: {}", where, e.msg);
    }
    if (cell.protocol != "llm-kick" && cell.protocol != "strict") fail("{}: protocol: '{}' is not llm-kick or strict", where, cell.protocol);
    if (cell.limit < 0 || cell.batch_size < 1) fail("{}: limit >= 0 and batch_size >= 1 expected", where);
    x.tasks.push_back(cell);
  }
  return x;
}

}  // namespace

Experiment parse_experiment(const std::string& yaml_text, const std::string& file) {
  const YAML::Node root = parse_yaml_text(yaml_text, file);
  try {
    return experiment_from_yaml(root, file);
  } catch (const YAML::Exception& e) {  // a value of the wrong shape anywhere the checks above did not name
    if (e.mark.is_null()) fail("{}: {}", file, e.msg);
    fail("{}:{}: {}", file, e.mark.line + 1, e.msg);
  }
}

Experiment load_experiment(const std::filesystem::path& path) {
  if (!std::filesystem::exists(path)) fail("{}: experiment file not found", path.string());
  return parse_experiment(read_file(path), path.string());
}

void assign_keys(Experiment& experiment, const std::string& model_content_hash) {
  for (auto& v : experiment.variants) {
    std::string text = model_content_hash;
    for (const auto& a : v.compress_args) text += "\n" + a;
    v.key = (v.method == "dense" ? "dense-" : "") + fnv1a64_hex(text);
  }
}

std::filesystem::path variant_model_dir(const std::filesystem::path& out, const Variant& v) { return out / "models" / v.key; }
std::filesystem::path variant_eval_dir(const std::filesystem::path& out, const Variant& v) { return out / "evals" / v.key; }
std::filesystem::path cell_summary_path(const std::filesystem::path& out, const Variant& v, const TaskCell& t) {
  return variant_eval_dir(out, v) / (t.task + "." + t.protocol) / "summary.json";
}

nlohmann::json sweep_manifest(const Experiment& experiment) {
  nlohmann::json variants = nlohmann::json::array(), tasks = nlohmann::json::array();
  for (const auto& v : experiment.variants) variants.push_back(v.to_json());
  for (const auto& t : experiment.tasks) tasks.push_back(t.to_json());
  return {{"name", experiment.name}, {"version", experiment.version}, {"description", experiment.description},
          {"model", experiment.model}, {"experiment_file", experiment.file}, {"seeds", experiment.seeds},
          {"device", experiment.device}, {"dtype", experiment.dtype},
          {"calibration", {{"nsamples", experiment.nsamples}, {"seqlen", experiment.seqlen},
                           {"seed", experiment.calibration_seed}, {"source", experiment.calibration_source}}},
          {"variants", variants}, {"tasks", tasks}, {"tool", version_string()}};
}

}  // namespace kick::pipeline
