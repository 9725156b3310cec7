// lib/pipeline/report.cpp: a sweep's results folder read back (sweep.json + each cell's summary.json) and
// written as the paper's tables (Markdown) and as one self-contained HTML page with inline SVG charts.
#include <algorithm>
#include <cmath>
#include <fstream>
#include <map>
#include <optional>
#include <set>

#include "kick/core.hpp"
#include "kick/eval.hpp"
#include "kick/pipeline.hpp"

namespace kick::pipeline {
namespace {

nlohmann::json read_json(const std::filesystem::path& path) {
  try {
    return nlohmann::json::parse(read_file(path));
  } catch (const nlohmann::json::exception& e) {
    fail("{}: not valid JSON ({})", path.string(), e.what());
  }
}

std::string html_escape(const std::string& text) {
  std::string out;
  for (char c : text) {
    switch (c) {
      case '&': out += "&amp;"; break;
      case '<': out += "&lt;"; break;
      case '>': out += "&gt;"; break;
      case '"': out += "&quot;"; break;
      default: out += c;
    }
  }
  return out;
}

// Four significant digits, so tables stay narrow and equal the summaries to the shown precision.
std::string show(double v) { return fmt::format("{:.4g}", v); }

// The setting a label names without its method: "wanda 50%" -> "50%".
std::string setting_of(const Variant& v) {
  return v.label.size() > v.method.size() + 1 ? v.label.substr(v.method.size() + 1) : v.label;
}

const char* kColours[] = {"#1b6ca8", "#d1495b", "#66a182", "#edae49", "#8e6c8a", "#00798c", "#30638e", "#a05195"};

}  // namespace

std::string headline_metric(const TaskCell& cell, const nlohmann::json& summary) {
  if (!cell.metric.empty()) return cell.metric;
  const auto& metrics = summary.at("metrics");
  for (const char* preferred : {"perplexity", "accuracy"}) {
    if (metrics.contains(preferred)) return preferred;
  }
  // Else the task file's first metric that the summary holds (summaries sort their keys).
  try {
    for (const auto& name : eval::load_task(cell.task, cell.protocol).metrics) {
      if (metrics.contains(name)) return name;
    }
  } catch (const Error&) {  // a task file that is gone or renamed: fall back to the summary's own order
  }
  if (metrics.empty()) fail("summary of {}.{}: no metrics", cell.task, cell.protocol);
  return metrics.begin().key();
}

bool lower_is_better(const std::string& metric) { return metric == "perplexity"; }

bool matches_dense(double value, double dense, const std::string& metric, double tolerance) {
  if (lower_is_better(metric)) return value <= dense * (1.0 + tolerance);
  return value >= dense - std::fabs(dense) * tolerance;
}

const ReportCell* ReportData::find(const std::string& key, const TaskCell& task) const {
  for (const auto& c : cells) {
    if (c.variant_key == key && c.task == task.task && c.protocol == task.protocol) return &c;
  }
  return nullptr;
}

ReportData collect_report(const std::filesystem::path& sweep_dir) {
  const auto manifest_path = sweep_dir / "sweep.json";
  if (!std::filesystem::exists(manifest_path)) fail("{}: not found (is {} a kick sweep folder?)", manifest_path.string(), sweep_dir.string());
  ReportData data;
  data.manifest = read_json(manifest_path);
  try {
    for (const auto& v : data.manifest.at("variants")) {
      Variant variant;
      variant.label = v.at("label");
      variant.method = v.at("method");
      variant.sparsity = v.at("sparsity");
      variant.pattern = v.at("pattern");
      variant.bits = v.at("bits");
      variant.group_size = v.at("group_size");
      variant.key = v.at("key");
      data.variants.push_back(variant);
    }
    for (const auto& t : data.manifest.at("tasks")) {
      TaskCell cell;
      cell.task = t.at("task");
      cell.protocol = t.at("protocol");
      cell.limit = t.at("limit");
      cell.metric = t.value("metric", "");
      data.tasks.push_back(cell);
    }
  } catch (const nlohmann::json::exception& e) {
    fail("{}: {}", manifest_path.string(), e.what());
  }
  for (const auto& v : data.variants) {
    for (const auto& t : data.tasks) {
      ReportCell cell{v.label, v.key, t.task, t.protocol, "", false, 0, 0, 0, 0};
      const auto path = cell_summary_path(sweep_dir, v, t);
      if (std::filesystem::exists(path)) {
        const auto summary = read_json(path);
        cell.metric = headline_metric(t, summary);
        const auto& m = summary.at("metrics");
        if (!m.contains(cell.metric)) fail("{}: no metric '{}'", path.string(), cell.metric);
        cell.present = true;
        cell.mean = m[cell.metric].at("mean");
        cell.stdev = m[cell.metric].value("stdev", 0.0);
        cell.examples = m[cell.metric].value("examples", summary.value("examples", int64_t{0}));
        cell.failed = summary.value("failed", int64_t{0});
      }
      data.cells.push_back(cell);
    }
  }
  return data;
}

std::string report_markdown(const ReportData& data) {
  std::string md = fmt::format("# {}\n\n", data.manifest.value("name", "kick sweep"));
  if (!data.manifest.value("description", "").empty()) md += data.manifest["description"].get<std::string>() + "\n\n";
  md += fmt::format("Model: `{}`. Seeds: {}. Made by kick {}.\n\n", data.manifest.value("model", ""),
                    data.manifest.value("seeds", nlohmann::json::array()).dump(), data.manifest.value("tool", ""));
  md += "Bold cells match the dense model: within 5% of it (relative), or better.\n\n";
  const Variant* dense = nullptr;
  for (const auto& v : data.variants) {
    if (v.method == "dense") dense = &v;
  }
  for (const auto& t : data.tasks) {
    const ReportCell* dense_cell = dense ? data.find(dense->key, t) : nullptr;
    std::string metric = dense_cell && dense_cell->present ? dense_cell->metric : "";
    for (const auto& c : data.cells) {
      if (metric.empty() && c.task == t.task && c.protocol == t.protocol && c.present) metric = c.metric;
    }
    md += fmt::format("## {} ({}{}), {}{}\n\n", t.task, t.protocol, t.limit > 0 ? fmt::format(", first {}", t.limit) : "",
                      metric.empty() ? "no results yet" : metric, lower_is_better(metric) ? " (lower is better)" : "");
    if (dense_cell && dense_cell->present) md += fmt::format("Dense: {}\n\n", show(dense_cell->mean));
    std::vector<std::string> methods, settings;
    std::vector<const Variant*> by_setting;  // columns: unstructured by sparsity, then N:M, then bits (most first)
    for (const auto& v : data.variants) {
      if (v.method == "dense") continue;
      if (std::find(methods.begin(), methods.end(), v.method) == methods.end()) methods.push_back(v.method);
      by_setting.push_back(&v);
    }
    std::stable_sort(by_setting.begin(), by_setting.end(), [](const Variant* a, const Variant* b) {
      auto rank = [](const Variant* v) { return v->bits > 0 ? 2 : (v->pattern.empty() ? 0 : 1); };
      if (rank(a) != rank(b)) return rank(a) < rank(b);
      if (a->bits != b->bits) return a->bits > b->bits;
      return a->sparsity < b->sparsity;
    });
    for (const auto* v : by_setting) {
      if (std::find(settings.begin(), settings.end(), setting_of(*v)) == settings.end()) settings.push_back(setting_of(*v));
    }
    if (methods.empty()) continue;
    md += "| method |";
    for (const auto& s : settings) md += " " + s + " |";
    md += "\n|---|";
    for (size_t i = 0; i < settings.size(); ++i) md += "---:|";
    md += "\n";
    for (const auto& m : methods) {
      md += "| " + m + " |";
      for (const auto& s : settings) {
        std::string text = "";
        for (const auto& v : data.variants) {
          if (v.method != m || setting_of(v) != s) continue;
          const ReportCell* c = data.find(v.key, t);
          if (!c || !c->present) {
            text = "…";
          } else {
            text = show(c->mean);
            if (dense_cell && dense_cell->present && matches_dense(c->mean, dense_cell->mean, c->metric)) text = "**" + text + "**";
          }
        }
        md += " " + text + " |";
      }
      md += "\n";
    }
    md += "\n";
  }
  md += "## Every cell\n\n| model | task | protocol | metric | mean | stdev | examples | failed |\n|---|---|---|---|---:|---:|---:|---:|\n";
  for (const auto& c : data.cells) {
    if (!c.present) {
      md += fmt::format("| {} | {} | {} | | not run yet | | | |\n", c.variant_label, c.task, c.protocol);
      continue;
    }
    md += fmt::format("| {} | {} | {} | {} | {} | {} | {} | {} |\n", c.variant_label, c.task, c.protocol, c.metric,
                      show(c.mean), show(c.stdev), c.examples, c.failed);
  }
  return md;
}

namespace {

// One SVG line chart: x in [x0, x1], y linear or log10; series of (x, y) points; an optional horizontal
// reference line with a band.
struct Series {
  std::string name, colour;
  std::vector<std::pair<double, double>> points;
  bool dashed = false;
};

std::string svg_chart(const std::string& title, const std::string& x_label, const std::string& y_label,
                      const std::vector<Series>& series, std::optional<std::pair<double, double>> band,
                      std::optional<double> reference, bool log_y, bool lines) {
  const double width = 560, height = 340, left = 70, right = 170, top = 36, bottom = 50;
  double x0 = 1e300, x1 = -1e300, y0 = 1e300, y1 = -1e300;
  auto ty = [&](double y) { return log_y ? std::log10(std::max(y, 1e-12)) : y; };
  for (const auto& s : series) {
    for (const auto& [x, y] : s.points) {
      x0 = std::min(x0, x), x1 = std::max(x1, x), y0 = std::min(y0, ty(y)), y1 = std::max(y1, ty(y));
    }
  }
  if (reference) y0 = std::min(y0, ty(*reference)), y1 = std::max(y1, ty(*reference));
  if (band) y0 = std::min(y0, ty(band->first)), y1 = std::max(y1, ty(band->second));
  if (x0 > x1) return "";
  if (x1 - x0 < 1e-12) x0 -= 0.5, x1 += 0.5;
  if (y1 - y0 < 1e-12) y0 -= 0.5, y1 += 0.5;
  const double pad = (y1 - y0) * 0.06;
  y0 -= pad, y1 += pad;
  const double plot_w = width - left - right, plot_h = height - top - bottom;
  auto px = [&](double x) { return left + (x - x0) / (x1 - x0) * plot_w; };
  auto py = [&](double y) { return top + (1.0 - (ty(y) - y0) / (y1 - y0)) * plot_h; };
  auto py_t = [&](double t) { return top + (1.0 - (t - y0) / (y1 - y0)) * plot_h; };
  std::string svg = fmt::format(
      "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{0}\" height=\"{1}\" viewBox=\"0 0 {0} {1}\" role=\"img\">"
      "<title>{2}</title><rect width=\"{0}\" height=\"{1}\" fill=\"white\"/>"
      "<text x=\"{3}\" y=\"20\" font-size=\"14\" font-weight=\"bold\">{2}</text>",
      width, height, html_escape(title), left);
  if (band) {
    const double a = py(band->second), b = py(band->first);
    svg += fmt::format("<rect x=\"{}\" y=\"{:.1f}\" width=\"{}\" height=\"{:.1f}\" fill=\"#999\" opacity=\"0.18\"/>", left,
                       std::min(a, b), plot_w, std::fabs(b - a));
  }
  // Axes and ticks: five per axis.
  svg += fmt::format("<line x1=\"{0}\" y1=\"{1}\" x2=\"{2}\" y2=\"{1}\" stroke=\"#333\"/>", left, top + plot_h, left + plot_w);
  svg += fmt::format("<line x1=\"{0}\" y1=\"{1}\" x2=\"{0}\" y2=\"{2}\" stroke=\"#333\"/>", left, top, top + plot_h);
  for (int i = 0; i <= 4; ++i) {
    const double xv = x0 + (x1 - x0) * i / 4.0, yt = y0 + (y1 - y0) * i / 4.0;
    svg += fmt::format("<text x=\"{:.1f}\" y=\"{}\" font-size=\"11\" text-anchor=\"middle\">{}</text>", px(xv), top + plot_h + 16, show(xv));
    svg += fmt::format("<text x=\"{}\" y=\"{:.1f}\" font-size=\"11\" text-anchor=\"end\">{}</text>", left - 6, py_t(yt) + 4,
                       show(log_y ? std::pow(10.0, yt) : yt));
    svg += fmt::format("<line x1=\"{}\" y1=\"{:.1f}\" x2=\"{}\" y2=\"{:.1f}\" stroke=\"#eee\"/>", left, py_t(yt), left + plot_w, py_t(yt));
  }
  svg += fmt::format("<text x=\"{:.1f}\" y=\"{}\" font-size=\"12\" text-anchor=\"middle\">{}</text>", left + plot_w / 2, height - 10,
                     html_escape(x_label));
  svg += fmt::format("<text x=\"14\" y=\"{:.1f}\" font-size=\"12\" text-anchor=\"middle\" transform=\"rotate(-90 14 {:.1f})\">{}{}</text>",
                     top + plot_h / 2, top + plot_h / 2, html_escape(y_label), log_y ? " (log scale)" : "");
  if (reference) {
    svg += fmt::format("<line x1=\"{}\" y1=\"{:.1f}\" x2=\"{}\" y2=\"{:.1f}\" stroke=\"#111\" stroke-dasharray=\"6 4\"/>", left,
                       py(*reference), left + plot_w, py(*reference));
  }
  double legend_y = top + 10;
  for (const auto& s : series) {
    auto pts = s.points;
    std::sort(pts.begin(), pts.end());
    if (lines && pts.size() > 1) {
      std::string path;
      for (const auto& [x, y] : pts) path += fmt::format("{}{:.1f},{:.1f}", path.empty() ? "M" : " L", px(x), py(y));
      svg += fmt::format("<path d=\"{}\" fill=\"none\" stroke=\"{}\" stroke-width=\"2\"{}/>", path, s.colour,
                         s.dashed ? " stroke-dasharray=\"4 3\"" : "");
    }
    for (const auto& [x, y] : pts) {
      svg += fmt::format("<circle cx=\"{:.1f}\" cy=\"{:.1f}\" r=\"3.5\" fill=\"{}\"><title>{}: {}, {}</title></circle>", px(x), py(y),
                         s.colour, html_escape(s.name), show(x), show(y));
    }
    svg += fmt::format("<rect x=\"{}\" y=\"{:.1f}\" width=\"12\" height=\"12\" fill=\"{}\"/><text x=\"{}\" y=\"{:.1f}\" font-size=\"12\">{}</text>",
                       left + plot_w + 14, legend_y - 10, s.colour, left + plot_w + 32, legend_y, html_escape(s.name));
    legend_y += 18;
  }
  if (reference) {
    svg += fmt::format("<line x1=\"{0}\" y1=\"{1:.1f}\" x2=\"{2}\" y2=\"{1:.1f}\" stroke=\"#111\" stroke-dasharray=\"6 4\"/>"
                       "<text x=\"{3}\" y=\"{4:.1f}\" font-size=\"12\">dense{5}</text>",
                       left + plot_w + 12, legend_y - 4, left + plot_w + 28, left + plot_w + 32, legend_y, band ? " (band: 5%)" : "");
  }
  return svg + "</svg>";
}

}  // namespace

std::string report_html(const ReportData& data) {
  const std::string name = data.manifest.value("name", "kick sweep");
  std::string html = "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><title>" + html_escape(name) +
                     "</title><style>body{font-family:sans-serif;max-width:1200px;margin:24px auto;color:#222}"
                     "table{border-collapse:collapse;margin:8px 0 24px}td,th{border:1px solid #ccc;padding:3px 8px;text-align:right}"
                     "th:first-child,td:first-child{text-align:left}.match{background:#e3f2e1;font-weight:bold}"
                     ".charts{display:flex;flex-wrap:wrap;gap:12px}</style></head><body>\n";
  html += "<h1>" + html_escape(name) + "</h1>\n<p>Model <code>" + html_escape(data.manifest.value("model", "")) +
          "</code>, made by kick " + html_escape(data.manifest.value("tool", "")) +
          ". Shaded cells and the grey band: within 5% of the dense model. Perplexity can look fine where the "
          "knowledge-intensive tasks have already collapsed: compare the charts side by side.</p>\n";
  const Variant* dense = nullptr;
  std::vector<std::string> methods;
  for (const auto& v : data.variants) {
    if (v.method == "dense") dense = &v;
    else if (std::find(methods.begin(), methods.end(), v.method) == methods.end()) methods.push_back(v.method);
  }
  const TaskCell* perplexity_task = nullptr;
  for (const auto& t : data.tasks) {
    if (t.task == "perplexity") perplexity_task = &t;
  }
  for (const auto& t : data.tasks) {
    const ReportCell* dense_cell = dense ? data.find(dense->key, t) : nullptr;
    const bool have_dense = dense_cell && dense_cell->present;
    std::string metric;
    for (const auto& c : data.cells) {
      if (metric.empty() && c.task == t.task && c.protocol == t.protocol && c.present) metric = c.metric;
    }
    html += fmt::format("<h2>{} ({})</h2>\n", html_escape(t.task), html_escape(t.protocol));
    if (metric.empty()) {
      html += "<p>No results yet.</p>\n";
      continue;
    }
    // Table: every variant.
    html += "<table><tr><th>model</th><th>" + html_escape(metric) + "</th><th>stdev</th><th>examples</th><th>failed</th></tr>\n";
    for (const auto& v : data.variants) {
      const ReportCell* c = data.find(v.key, t);
      if (!c || !c->present) {
        html += "<tr><td>" + html_escape(v.label) + "</td><td colspan=\"4\">not run yet</td></tr>\n";
        continue;
      }
      const bool match = have_dense && v.method != "dense" && matches_dense(c->mean, dense_cell->mean, c->metric);
      html += fmt::format("<tr><td>{}</td><td{}>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>\n", html_escape(v.label),
                          match ? " class=\"match\"" : "", show(c->mean), show(c->stdev), c->examples, c->failed);
    }
    html += "</table>\n<div class=\"charts\">";
    // Chart 1: metric against sparsity, one line per pruning method (unstructured), N:M dashed beside it.
    std::vector<Series> series;
    for (size_t mi = 0; mi < methods.size(); ++mi) {
      Series unstructured{methods[mi], kColours[mi % 8], {}, false}, nm{methods[mi] + " N:M", kColours[mi % 8], {}, true};
      for (const auto& v : data.variants) {
        if (v.method != methods[mi] || v.sparsity <= 0) continue;
        const ReportCell* c = data.find(v.key, t);
        if (!c || !c->present) continue;
        (v.pattern.empty() ? unstructured : nm).points.emplace_back(v.sparsity, c->mean);
      }
      if (have_dense && !unstructured.points.empty()) unstructured.points.emplace_back(0.0, dense_cell->mean);
      if (!unstructured.points.empty()) series.push_back(unstructured);
      if (!nm.points.empty()) series.push_back(nm);
    }
    std::optional<std::pair<double, double>> band;
    std::optional<double> reference;
    if (have_dense) {
      reference = dense_cell->mean;
      band = lower_is_better(metric) ? std::make_pair(dense_cell->mean, dense_cell->mean * 1.05)
                                     : std::make_pair(dense_cell->mean - std::fabs(dense_cell->mean) * 0.05, dense_cell->mean);
    }
    if (!series.empty()) {
      html += svg_chart(fmt::format("{}: {} against sparsity", t.task, metric), "sparsity", metric, series, band, reference,
                        lower_is_better(metric), true);
    }
    // Chart 2: perplexity (x) against this task's metric (y), every compressed model a point.
    if (perplexity_task && &t != perplexity_task) {
      std::vector<Series> scatter;
      for (size_t mi = 0; mi < methods.size(); ++mi) {
        Series s{methods[mi], kColours[mi % 8], {}, false};
        for (const auto& v : data.variants) {
          if (v.method != methods[mi]) continue;
          const ReportCell* p = data.find(v.key, *perplexity_task);
          const ReportCell* c = data.find(v.key, t);
          if (p && p->present && c && c->present) s.points.emplace_back(std::log10(p->mean), c->mean);
        }
        if (!s.points.empty()) scatter.push_back(s);
      }
      const ReportCell* dense_ppl = dense ? data.find(dense->key, *perplexity_task) : nullptr;
      if (have_dense && dense_ppl && dense_ppl->present) scatter.push_back({"dense", "#111", {{std::log10(dense_ppl->mean), dense_cell->mean}}, false});
      if (!scatter.empty()) {
        html += svg_chart(fmt::format("{} against perplexity", t.task), "log10 perplexity", metric, scatter, band, reference, false, false);
      }
    }
    html += "</div>\n";
  }
  html += "</body></html>\n";
  return html;
}

}  // namespace kick::pipeline
