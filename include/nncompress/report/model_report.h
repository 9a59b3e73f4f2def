#pragma once
// `nncompress report`: what a model is made of, for people (aligned table) and scripts (JSON,
// schema in docs/report-json.md).

#include <nlohmann/json.hpp>
#include <string>

#include "nncompress/analysis/channel_groups.h"
#include "nncompress/analysis/model_stats.h"
#include "nncompress/ir/graph.h"

namespace nnc {

struct ReportInput {
  const Model* model = nullptr;
  std::string path;
  int64_t file_bytes = 0;
  int64_t external_data_bytes = 0;
  std::string shape_inference_note;
  // Symbolic input dims past the batch axis that MACs count as 1 ("input: H, W"); empty when
  // every such dim is static or pinned by --input-shape.
  std::string symbolic_input_dims;
};

nlohmann::ordered_json modelReportJson(const ReportInput& input, const ModelStats& stats);
std::string modelReportText(const ReportInput& input, const ModelStats& stats);

// Channel groups and barriers (`report --prunable`).
nlohmann::ordered_json prunableJson(const ChannelAnalysis& analysis);
std::string prunableText(const ChannelAnalysis& analysis);

// The whole report as one self-contained HTML page (`report --report out.html`): summary, op
// histogram, per-layer params/MACs charts and a sortable table, and with `channels` the channel
// groups (prunable or not, and why).
std::string modelReportHtml(const ReportInput& input, const ModelStats& stats,
                            const ChannelAnalysis* channels);

// A node's name for people: its name, or its first output's name when it has none.
std::string layerName(const Node* node);
std::string opsetsText(const Model& model);

// "1.23 M" style numbers for people.
std::string humanCount(double value);
std::string humanBytes(double bytes);

}  // namespace nnc
