#include "nncompress/report/compress_report.h"

#include <cstdio>
#include <map>

#include "nncompress/analysis/model_stats.h"
#include "nncompress/report/html.h"
#include "nncompress/report/model_report.h"

namespace nnc {
namespace {

bool isChannelLayer(const Node& n) {
  return n.isOp("Conv") || n.isOp("ConvTranspose") || n.isOp("Gemm") || n.isOp("MatMul");
}

// Output channels of a layer: dim 1 of its output (the last dim for MatMul).
int64_t outputChannels(const Node& n) {
  const Value* out = n.output(0);
  if (!out || !out->type().shape || out->type().shape->size() < 2) return 0;
  const auto& shape = *out->type().shape;
  const Dim& d = n.isOp("MatMul") ? shape.back() : shape[1];
  return d.isKnown() ? d.value : 0;
}

std::string fixed(double v, int digits) {
  char buf[48];
  std::snprintf(buf, sizeof buf, "%.*f", digits, v);
  return buf;
}

}  // namespace

std::vector<LayerChannels> layerChannels(const Model& before, const Model& after) {
  std::map<std::string, int64_t> after_channels;
  for (const auto& n : after.graph->nodes())
    if (isChannelLayer(*n)) after_channels[layerName(n.get())] = outputChannels(*n);
  std::vector<LayerChannels> rows;
  for (const auto& n : before.graph->nodes()) {
    if (!isChannelLayer(*n)) continue;
    const std::string name = layerName(n.get());
    auto it = after_channels.find(name);
    rows.push_back({name, outputChannels(*n), it == after_channels.end() ? 0 : it->second});
  }
  return rows;
}

std::string compressReportHtml(const CompressReportInput& in) {
  const CompressResult& r = *in.result;
  html::HtmlPage page("nncompress compress: " + in.model_path);

  const ModelStats before = computeModelStats(*in.original->graph);
  std::vector<std::pair<std::string, std::string>> summary = {
      {"model", in.model_path},
      {"baseline " + in.quality_name, fixed(100 * r.baseline_quality, 2) + "%"},
      {"size before", humanBytes(double(in.original_bytes))},
      {"params before", humanCount(double(before.params))},
      {"MACs before", humanCount(double(before.macs))},
  };
  if (in.output) {
    const ModelStats after = computeModelStats(*in.output->graph);
    summary.push_back({"final " + in.quality_name,
                       fixed(100 * r.best_quality, 2) + "% (drop " +
                           fixed(100 * (r.baseline_quality - r.best_quality), 2) + " points)"});
    summary.push_back({"size after", humanBytes(double(r.best_bytes)) + " (" +
                                         fixed(double(in.original_bytes) / r.best_bytes, 1) +
                                         "x smaller)"});
    summary.push_back({"params after", humanCount(double(after.params))});
    summary.push_back({"MACs after", humanCount(double(after.macs))});
  } else {
    summary.push_back({"result", "no compressed model met the accuracy demand"});
  }
  summary.push_back({"targets met", r.met_size && in.output ? "yes" : "no"});
  page.addSection("Summary", html::summaryTable(summary));

  // Trajectory: every candidate measured, accepted and rejected apart.
  html::LineSeries accepted{"accepted", {}}, rejected{"rejected", {}};
  for (const CompressStep& s : r.steps) {
    if (s.kind == "sensitivity") continue;
    html::LinePoint p{double(s.bytes), 100 * s.quality, s.kind + ": " + s.description};
    (s.accepted ? accepted : rejected).points.push_back(p);
  }
  page.addSection(
      "Accuracy vs size",
      html::lineChart({accepted, rejected}, {"Every candidate measured", "file size (bytes)",
                                             in.quality_name + " (%)", true}));

  if (in.output) {
    const auto channels = layerChannels(*in.original, *in.output);
    std::vector<std::string> labels;
    html::BarSeries b{"before", {}}, a{"after", {}};
    html::Table table{
        {"layer", "channels before", "channels after", "kept %"}, {}, {false, true, true, true}};
    for (const LayerChannels& c : channels) {
      labels.push_back(c.layer);
      b.values.push_back(double(c.before));
      a.values.push_back(double(c.after));
      table.rows.push_back({c.layer, std::to_string(c.before), std::to_string(c.after),
                            c.before ? fixed(100.0 * c.after / c.before, 1) : "-"});
    }
    page.addSection("Channels per layer",
                    html::barChart(labels, {b, a}, {"Output channels", "channels", false}) +
                        html::table(table));
  }

  if (!r.sensitivity.empty()) {
    std::vector<std::string> labels;
    html::BarSeries drop{"quality drop (points)", {}};
    for (const auto& [layer, d] : r.sensitivity) {
      labels.push_back(layer + (r.best_bits.count(layer) ? " (low bits)" : ""));
      drop.values.push_back(100 * d);
    }
    page.addSection("Quantization sensitivity",
                    "<p class=\"note\">Quality lost with each layer alone at low-bit weights "
                    "(the rest at 8 bits); the least sensitive are lowered first.</p>" +
                        html::barChart(labels, {drop}, {"Sensitivity per layer", "points", false}));
  }

  html::Table steps{{"#", "step", "what", "size", in.quality_name + " %", "accepted"},
                    {},
                    {true, false, false, true, true, false}};
  for (size_t i = 0; i < r.steps.size(); ++i) {
    const CompressStep& s = r.steps[i];
    steps.rows.push_back({std::to_string(i), s.kind, s.description, std::to_string(s.bytes),
                          fixed(100 * s.quality, 2), s.accepted ? "yes" : "no"});
  }
  page.addSection("Steps", html::table(steps));
  return page.render();
}

}  // namespace nnc
