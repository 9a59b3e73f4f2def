#include "nncompress/report/model_report.h"

#include <algorithm>
#include <cstdio>
#include <sstream>

namespace nnc {
namespace {

nlohmann::ordered_json shapeJson(const ValueType& type) {
  if (!type.shape) return nullptr;
  auto dims = nlohmann::ordered_json::array();
  for (const Dim& d : *type.shape) {
    if (d.isKnown())
      dims.push_back(d.value);
    else
      dims.push_back(d.param.empty() ? "?" : d.param);
  }
  return dims;
}

nlohmann::ordered_json ioJson(const Value* v) {
  nlohmann::ordered_json j;
  j["name"] = v->name();
  j["dtype"] = v->type().isTensor() ? dtypeName(v->dtype()) : "non-tensor";
  j["shape"] = shapeJson(v->type());
  return j;
}

// Column-aligned table: the first row is the header; numeric columns right-aligned.
std::string renderTable(const std::vector<std::vector<std::string>>& rows,
                        const std::vector<bool>& right_align) {
  std::vector<size_t> width(rows.empty() ? 0 : rows[0].size(), 0);
  for (const auto& r : rows)
    for (size_t c = 0; c < r.size(); ++c) width[c] = std::max(width[c], r[c].size());
  std::ostringstream os;
  for (size_t r = 0; r < rows.size(); ++r) {
    os << "  ";
    for (size_t c = 0; c < rows[r].size(); ++c) {
      const std::string& cell = rows[r][c];
      const std::string pad(width[c] - cell.size(), ' ');
      os << (right_align[c] ? pad + cell : cell + pad) << (c + 1 < rows[r].size() ? "  " : "");
    }
    os << "\n";
    if (r == 0) {
      os << "  ";
      for (size_t c = 0; c < width.size(); ++c)
        os << std::string(width[c], '-') << (c + 1 < width.size() ? "  " : "");
      os << "\n";
    }
  }
  return os.str();
}

}  // namespace

std::string opsetsText(const Model& m) {
  std::string s;
  for (const auto& op : m.opset_imports) {
    if (!s.empty()) s += ", ";
    s += (op.domain.empty() ? "ai.onnx" : op.domain) + " " + std::to_string(op.version);
  }
  return s;
}

std::string layerName(const Node* n) {
  if (!n->name().empty()) return n->name();
  return n->output(0) ? n->output(0)->name() : "(unnamed)";
}

std::string humanCount(double v) {
  char buf[32];
  if (v >= 1e9)
    std::snprintf(buf, sizeof buf, "%.2f G", v / 1e9);
  else if (v >= 1e6)
    std::snprintf(buf, sizeof buf, "%.2f M", v / 1e6);
  else if (v >= 1e3)
    std::snprintf(buf, sizeof buf, "%.2f K", v / 1e3);
  else
    std::snprintf(buf, sizeof buf, "%.0f", v);
  return buf;
}

std::string humanBytes(double b) {
  char buf[32];
  if (b >= 1024.0 * 1024 * 1024)
    std::snprintf(buf, sizeof buf, "%.2f GiB", b / (1024.0 * 1024 * 1024));
  else if (b >= 1024.0 * 1024)
    std::snprintf(buf, sizeof buf, "%.2f MiB", b / (1024.0 * 1024));
  else if (b >= 1024.0)
    std::snprintf(buf, sizeof buf, "%.1f KiB", b / 1024.0);
  else
    std::snprintf(buf, sizeof buf, "%.0f B", b);
  return buf;
}

nlohmann::ordered_json modelReportJson(const ReportInput& in, const ModelStats& stats) {
  const Model& m = *in.model;
  nlohmann::ordered_json j;
  j["model"] = in.path;
  j["file_bytes"] = in.file_bytes;
  j["external_data_bytes"] = in.external_data_bytes;
  j["ir_version"] = m.ir_version;
  auto opsets = nlohmann::ordered_json::array();
  for (const auto& op : m.opset_imports)
    opsets.push_back(
        {{"domain", op.domain.empty() ? "ai.onnx" : op.domain}, {"version", op.version}});
  j["opsets"] = opsets;
  j["producer"] = {{"name", m.producer_name}, {"version", m.producer_version}};
  auto inputs = nlohmann::ordered_json::array();
  for (const Value* v : m.graph->inputs())
    if (!v->isInitializer()) inputs.push_back(ioJson(v));
  j["inputs"] = inputs;
  auto outputs = nlohmann::ordered_json::array();
  for (const Value* v : m.graph->outputs()) outputs.push_back(ioJson(v));
  j["outputs"] = outputs;
  j["nodes"] = m.graph->numNodes();
  j["params"] = stats.params;
  j["macs"] = stats.macs;
  j["layers_with_unknown_macs"] = stats.layers_with_unknown_macs;
  nlohmann::ordered_json bytes = nlohmann::ordered_json::object();
  int64_t total_weight_bytes = 0;
  for (const auto& [dtype, b] : stats.weight_bytes_by_dtype) {
    bytes[dtype] = b;
    total_weight_bytes += b;
  }
  j["weight_bytes"] = total_weight_bytes;
  j["weight_bytes_by_dtype"] = bytes;
  nlohmann::ordered_json hist = nlohmann::ordered_json::object();
  for (const auto& [op, count] : stats.op_histogram) hist[op] = count;
  j["op_histogram"] = hist;
  auto layers = nlohmann::ordered_json::array();
  for (const LayerStats& l : stats.layers) {
    nlohmann::ordered_json row;
    row["name"] = layerName(l.node);
    row["op"] = l.node->opType();
    row["weight_shape"] = l.weight_shape ? nlohmann::ordered_json(*l.weight_shape) : nullptr;
    row["params"] = l.params;
    row["macs"] = l.macs ? nlohmann::ordered_json(*l.macs) : nullptr;
    layers.push_back(row);
  }
  j["layers"] = layers;
  if (!in.shape_inference_note.empty()) j["shape_inference_note"] = in.shape_inference_note;
  if (!in.symbolic_input_dims.empty()) j["macs_symbolic_input_dims"] = in.symbolic_input_dims;
  return j;
}

std::string modelReportText(const ReportInput& in, const ModelStats& stats) {
  const Model& m = *in.model;
  std::ostringstream os;
  os << "Model      " << in.path << "\n";
  os << "File       " << humanBytes(static_cast<double>(in.file_bytes));
  if (in.external_data_bytes)
    os << " (+ " << humanBytes(static_cast<double>(in.external_data_bytes)) << " external data)";
  os << "\n";
  os << "Format     IR " << m.ir_version << ", opsets: " << opsetsText(m) << "\n";
  if (!m.producer_name.empty())
    os << "Producer   " << m.producer_name << " " << m.producer_version << "\n";
  for (const Value* v : m.graph->inputs())
    if (!v->isInitializer())
      os << "Input      " << v->name() << ": " << v->type().toString() << "\n";
  for (const Value* v : m.graph->outputs())
    os << "Output     " << v->name() << ": " << v->type().toString() << "\n";
  os << "\nOps (" << m.graph->numNodes() << " nodes):";
  std::vector<std::pair<std::string, int64_t>> hist(stats.op_histogram.begin(),
                                                    stats.op_histogram.end());
  std::stable_sort(hist.begin(), hist.end(), [](auto& a, auto& b) { return a.second > b.second; });
  for (size_t i = 0; i < hist.size(); ++i)
    os << (i % 6 == 0 ? "\n  " : "  ") << hist[i].first << " x" << hist[i].second;
  os << "\n\nLayers:\n";
  std::vector<std::vector<std::string>> rows = {
      {"name", "op", "weight", "params", "MACs", "MACs %"}};
  for (const LayerStats& l : stats.layers) {
    char share[16] = "-";
    if (l.macs && stats.macs > 0)
      std::snprintf(share, sizeof share, "%.1f", 100.0 * *l.macs / stats.macs);
    rows.push_back({layerName(l.node), l.node->opType(),
                    l.weight_shape ? shapeToString(*l.weight_shape) : "-", std::to_string(l.params),
                    l.macs ? std::to_string(*l.macs) : (l.has_macs_rule ? "?" : "-"), share});
  }
  os << renderTable(rows, {false, false, false, true, true, true});
  os << "\nTotals\n";
  os << "  params        " << stats.params << " (" << humanCount(static_cast<double>(stats.params))
     << ")\n";
  os << "  MACs          " << stats.macs << " (" << humanCount(static_cast<double>(stats.macs))
     << ") per sample\n";
  if (stats.layers_with_unknown_macs)
    os << "  (" << stats.layers_with_unknown_macs
       << " layers with unknown shapes are not counted)\n";
  if (!in.symbolic_input_dims.empty())
    os << "  (symbolic input dims counted as 1: " << in.symbolic_input_dims
       << "; --input-shape counts MACs at a real size)\n";
  os << "  file size     "
     << humanBytes(static_cast<double>(in.file_bytes + in.external_data_bytes)) << "\n";
  for (const auto& [dtype, b] : stats.weight_bytes_by_dtype)
    os << "  weights " << dtype
       << std::string(std::max<int>(1, 8 - static_cast<int>(dtype.size())), ' ')
       << humanBytes(static_cast<double>(b)) << "\n";
  if (!in.shape_inference_note.empty()) os << "\nNote: " << in.shape_inference_note << "\n";
  return os.str();
}

nlohmann::ordered_json prunableJson(const ChannelAnalysis& a) {
  auto groups = nlohmann::ordered_json::array();
  for (const ChannelGroup& g : a.groups) {
    nlohmann::ordered_json j;
    j["id"] = g.id;
    j["channels"] = g.channels;
    j["prunable"] = g.prunable;
    j["reason"] = g.reason;
    j["approximate"] = g.approximate;
    if (g.approximate) j["approximate_reason"] = g.approximate_reason;
    j["macs"] = g.macs;
    j["macs_share"] = a.total_macs > 0 ? static_cast<double>(g.macs) / a.total_macs : 0.0;
    j["params"] = g.params;
    auto sources = nlohmann::ordered_json::array();
    for (const Node* n : g.sources) sources.push_back(layerName(n));
    j["sources"] = sources;
    auto members = nlohmann::ordered_json::array();
    for (const GroupMember& m : g.members) {
      nlohmann::ordered_json mj;
      mj["tensor"] = m.value->name();
      mj["axis"] = m.axis;
      mj["role"] = memberRoleName(m.role);
      if (m.node) mj["node"] = layerName(m.node);
      if (!m.mapping.isIdentity())
        mj["mapping"] = {
            {"offset", m.mapping.outer_offset + m.mapping.inner_offset * m.mapping.repeat},
            {"repeat", m.mapping.repeat},
            {"tiles", m.mapping.tiles},
            {"tile_stride", m.mapping.tile_stride}};
      if (!m.mapping.table.empty()) mj["mapping"] = {{"table", m.mapping.table}};
      members.push_back(mj);
    }
    j["members"] = members;
    groups.push_back(j);
  }
  auto barriers = nlohmann::ordered_json::array();
  for (const ChannelBarrier& b : a.barriers)
    barriers.push_back({{"layer", b.node ? layerName(b.node) : "(graph)"},
                        {"tensor", b.value},
                        {"reason", b.reason}});
  const double share = a.total_macs > 0 ? static_cast<double>(a.prunable_macs) / a.total_macs : 0.0;
  const double exact =
      a.total_macs > 0 ? static_cast<double>(a.exact_prunable_macs) / a.total_macs : 0.0;
  return {{"prunable_macs_share", share},
          {"exact_prunable_macs_share", exact},
          {"groups", groups},
          {"barriers", barriers}};
}

std::string prunableText(const ChannelAnalysis& a) {
  std::ostringstream os;
  int prunable = 0;
  for (const ChannelGroup& g : a.groups)
    if (g.prunable) ++prunable;
  os << "\nChannel groups: " << a.groups.size() << " (" << prunable
     << " prunable; the layers they shrink hold "
     << (a.total_macs > 0 ? 100 * a.prunable_macs / a.total_macs : 0) << "% of MACs; "
     << (a.total_macs > 0 ? 100 * a.exact_prunable_macs / a.total_macs : 0)
     << "% through exact groups only)\n";
  std::vector<std::vector<std::string>> rows = {
      {"id", "channels", "MACs %", "members", "sources", "prunable"}};
  for (const ChannelGroup& g : a.groups) {
    char share[16];
    std::snprintf(share, sizeof share, "%.1f",
                  a.total_macs > 0 ? 100.0 * g.macs / a.total_macs : 0.0);
    std::string sources;
    for (size_t i = 0; i < g.sources.size() && i < 3; ++i)
      sources += (i ? ", " : "") + layerName(g.sources[i]);
    if (g.sources.size() > 3) sources += ", +" + std::to_string(g.sources.size() - 3);
    rows.push_back({std::to_string(g.id), std::to_string(g.channels), share,
                    std::to_string(g.members.size()), sources,
                    !g.prunable     ? "no: " + g.reason
                    : g.approximate ? "approximate: " + g.approximate_reason
                                    : "yes"});
  }
  os << renderTable(rows, {true, true, true, true, false, false});
  if (!a.barriers.empty()) {
    os << "\nNot prunable (barriers):\n";
    for (const ChannelBarrier& b : a.barriers)
      os << "  "
         << (b.node ? layerName(b.node) + " (" + b.node->opType() + ")" : std::string("(graph)"))
         << ": " << b.reason << "\n";
  }
  return os.str();
}

}  // namespace nnc
