// `report --report out.html`: the same facts as the text report, with charts.

#include <algorithm>
#include <cstdio>

#include "nncompress/report/html.h"
#include "nncompress/report/model_report.h"

namespace nnc {
namespace {

// Layers shown in the per-layer charts; the table below them lists every layer.
constexpr size_t kMaxChartLayers = 40;

std::string percentText(double part, double whole) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.1f", whole > 0 ? 100.0 * part / whole : 0.0);
  return buf;
}

std::string opsSection(const ModelStats& stats) {
  std::vector<std::pair<std::string, int64_t>> ops(stats.op_histogram.begin(),
                                                   stats.op_histogram.end());
  std::stable_sort(ops.begin(), ops.end(), [](auto& a, auto& b) { return a.second > b.second; });
  std::vector<std::string> labels;
  html::BarSeries counts{"nodes", {}};
  for (const auto& [op, count] : ops) {
    labels.push_back(op);
    counts.values.push_back(static_cast<double>(count));
  }
  return html::barChart(labels, {counts}, {"Nodes per op type", "nodes", false});
}

std::string layersSection(const ModelStats& stats) {
  // Charts: the heaviest layers by MACs (graph order kept among them, so the chart reads like
  // the network), with their parameter counts beside.
  std::vector<const LayerStats*> heavy;
  for (const LayerStats& l : stats.layers)
    if (l.macs.value_or(0) > 0 || l.params > 0) heavy.push_back(&l);
  if (heavy.size() > kMaxChartLayers) {
    std::vector<const LayerStats*> by_macs = heavy;
    std::stable_sort(by_macs.begin(), by_macs.end(),
                     [](auto* a, auto* b) { return a->macs.value_or(0) > b->macs.value_or(0); });
    by_macs.resize(kMaxChartLayers);
    std::vector<const LayerStats*> kept;
    for (const LayerStats* l : heavy)
      if (std::find(by_macs.begin(), by_macs.end(), l) != by_macs.end()) kept.push_back(l);
    heavy = kept;
  }
  std::vector<std::string> labels;
  html::BarSeries macs{"MACs", {}}, params{"params", {}};
  for (const LayerStats* l : heavy) {
    labels.push_back(layerName(l->node));
    macs.values.push_back(static_cast<double>(l->macs.value_or(0)));
    params.values.push_back(static_cast<double>(l->params));
  }
  std::string body;
  if (stats.layers.size() > kMaxChartLayers)
    body += "<p class=\"note\">Charts show the " + std::to_string(kMaxChartLayers) +
            " layers with the most MACs; the table lists all " +
            std::to_string(stats.layers.size()) + ".</p>";
  body += html::barChart(labels, {macs}, {"MACs per layer (one sample)", "MACs", true});
  body += html::barChart(labels, {params}, {"Parameters per layer", "params", true});

  html::Table table{{"layer", "op", "weight", "params", "MACs", "MACs %"},
                    {},
                    {false, false, false, true, true, true}};
  for (const LayerStats& l : stats.layers)
    table.rows.push_back(
        {layerName(l.node), l.node->opType(), l.weight_shape ? shapeToString(*l.weight_shape) : "-",
         std::to_string(l.params), l.macs ? std::to_string(*l.macs) : (l.has_macs_rule ? "?" : "-"),
         l.macs ? percentText(static_cast<double>(*l.macs), static_cast<double>(stats.macs))
                : "-"});
  body += html::table(table);
  return body;
}

std::string channelsSection(const ChannelAnalysis& a) {
  std::vector<std::string> labels;
  html::BarSeries channels{"channels", {}};
  html::Table table{{"group", "channels", "MACs %", "members", "sources", "prunable", "reason"},
                    {},
                    {true, true, true, true, false, false, false}};
  int prunable = 0;
  for (const ChannelGroup& g : a.groups) {
    if (g.prunable) ++prunable;
    std::string sources;
    for (size_t i = 0; i < g.sources.size() && i < 3; ++i)
      sources += (i ? ", " : "") + layerName(g.sources[i]);
    if (g.sources.size() > 3) sources += ", +" + std::to_string(g.sources.size() - 3);
    if (labels.size() < kMaxChartLayers) {
      labels.push_back("#" + std::to_string(g.id) + " " + sources + (g.prunable ? "" : " (fixed)"));
      channels.values.push_back(static_cast<double>(g.channels));
    }
    table.rows.push_back(
        {std::to_string(g.id), std::to_string(g.channels),
         percentText(static_cast<double>(g.macs), static_cast<double>(a.total_macs)),
         std::to_string(g.members.size()), sources, g.prunable ? "yes" : "no", g.reason});
  }
  std::string body =
      "<p>" + std::to_string(a.groups.size()) + " channel groups, " + std::to_string(prunable) +
      " prunable; the layers they shrink hold " +
      percentText(static_cast<double>(a.prunable_macs), static_cast<double>(a.total_macs)) +
      "% of the MACs.</p>";
  body += html::barChart(labels, {channels}, {"Channels per group", "channels", false});
  body += html::table(table);
  if (!a.barriers.empty()) {
    html::Table barriers{{"layer", "op", "tensor", "why not prunable"}, {}, {}};
    for (const ChannelBarrier& b : a.barriers)
      barriers.rows.push_back({b.node ? layerName(b.node) : "(graph)",
                               b.node ? b.node->opType() : "-", b.value, b.reason});
    body += "<h3>Not prunable</h3>" + html::table(barriers);
  }
  return body;
}

}  // namespace

std::string modelReportHtml(const ReportInput& in, const ModelStats& stats,
                            const ChannelAnalysis* channels) {
  const Model& m = *in.model;
  html::HtmlPage page("nncompress report: " + in.path);
  std::vector<std::pair<std::string, std::string>> summary = {
      {"model", in.path},
      {"file", humanBytes(static_cast<double>(in.file_bytes + in.external_data_bytes))},
      {"format", "IR " + std::to_string(m.ir_version) + ", opsets: " + opsetsText(m)},
  };
  if (!m.producer_name.empty())
    summary.push_back({"producer", m.producer_name + " " + m.producer_version});
  for (const Value* v : m.graph->inputs())
    if (!v->isInitializer()) summary.push_back({"input", v->name() + ": " + v->type().toString()});
  for (const Value* v : m.graph->outputs())
    summary.push_back({"output", v->name() + ": " + v->type().toString()});
  summary.push_back({"nodes", std::to_string(m.graph->numNodes())});
  summary.push_back({"params", std::to_string(stats.params) + " (" +
                                   humanCount(static_cast<double>(stats.params)) + ")"});
  summary.push_back({"MACs per sample", std::to_string(stats.macs) + " (" +
                                            humanCount(static_cast<double>(stats.macs)) + ")"});
  for (const auto& [dtype, bytes] : stats.weight_bytes_by_dtype)
    summary.push_back({"weights " + dtype, humanBytes(static_cast<double>(bytes))});
  if (stats.layers_with_unknown_macs)
    summary.push_back({"note", std::to_string(stats.layers_with_unknown_macs) +
                                   " layers have unknown shapes; their MACs are not counted"});
  if (!in.shape_inference_note.empty()) summary.push_back({"note", in.shape_inference_note});
  page.addSection("Summary", html::summaryTable(summary));
  page.addSection("Ops", opsSection(stats));
  page.addSection("Layers", layersSection(stats));
  if (channels) page.addSection("Channel groups", channelsSection(*channels));
  return page.render();
}

}  // namespace nnc
