#include <filesystem>
#include <iostream>
#include <nlohmann/json.hpp>

#include "nncompress/analysis/channel_groups.h"
#include "nncompress/analysis/model_stats.h"
#include "nncompress/cli/commands.h"
#include "nncompress/onnx_io/model_io.h"
#include "nncompress/prune/criteria.h"
#include "nncompress/report/model_report.h"

namespace nnc::cli {
namespace {

struct Totals {
  int64_t params = 0, macs = 0, file_bytes = 0;
  nlohmann::ordered_json json() const {
    return {{"params", params}, {"macs", macs}, {"file_bytes", file_bytes}};
  }
};

Totals totalsOf(const Model& m, int64_t file_bytes) {
  const ModelStats s = computeModelStats(*m.graph);
  return {s.params, s.macs, file_bytes};
}

std::string percent(int64_t after, int64_t before) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%+.1f%%", before ? 100.0 * (after - before) / before : 0.0);
  return buf;
}

}  // namespace

Status runPrune(const PruneOptions& o) {
  if (o.ratio < 0)
    return invalidArgument("prune needs --ratio R (fraction of each group's channels to remove)");
  NNC_RETURN_IF_ERROR(checkOutputIsNotInput(o.model_path, o.output_path));
  NNC_ASSIGN_OR_RETURN(auto criterion, makeCriterion(o.method, o.seed));
  LoadedModelInfo info;
  auto loaded = loadModel(o.model_path, {}, &info);
  if (!loaded.isOk()) return loaded.status().withContext(o.model_path);
  Model model = std::move(loaded).value();
  const Totals before = totalsOf(model, info.file_bytes + info.external_data_bytes);

  const ChannelAnalysis analysis = analyzeChannels(*model.graph);
  UniformPlanOptions plan_options;
  plan_options.ratio = o.ratio;
  plan_options.round_to = o.round_to;
  plan_options.exclude = o.exclude;
  NNC_ASSIGN_OR_RETURN(std::vector<GroupKeep> plan,
                       planUniformPruning(analysis, *criterion, plan_options));
  for (const std::string& name : o.exclude) {
    bool found = false;
    for (const auto& n : model.graph->nodes())
      if (n->name() == name || (n->output(0) && n->output(0)->name() == name)) found = true;
    if (!found) return invalidArgument("--exclude '" + name + "' names no layer of the model");
  }
  Status pruned = applyChannelPruning(model, analysis, plan);
  if (!pruned.isOk()) return pruned.withContext(o.model_path);

  auto groups = nlohmann::ordered_json::array();
  int prunable = 0;
  for (const ChannelGroup& g : analysis.groups) {
    if (g.prunable) ++prunable;
    int64_t after = g.channels;
    for (const GroupKeep& k : plan)
      if (k.group_id == g.id) after = static_cast<int64_t>(k.keep.size());
    nlohmann::ordered_json j;
    j["id"] = g.id;
    auto sources = nlohmann::ordered_json::array();
    for (const Node* n : g.sources)
      sources.push_back(n->name().empty() ? n->output(0)->name() : n->name());
    j["sources"] = sources;
    j["channels_before"] = g.channels;
    j["channels_after"] = after;
    j["prunable"] = g.prunable;
    if (!g.prunable) j["reason"] = g.reason;
    groups.push_back(j);
  }
  Totals after = totalsOf(model, 0);
  Status saved = saveModelConsuming(model, o.output_path);
  if (!saved.isOk()) return saved.withContext(o.output_path);
  std::error_code ec;
  after.file_bytes = static_cast<int64_t>(std::filesystem::file_size(o.output_path, ec));

  if (o.json) {
    nlohmann::ordered_json j;
    j["output"] = o.output_path;
    j["method"] = criterion->name();
    j["ratio"] = o.ratio;
    j["before"] = before.json();
    j["after"] = after.json();
    j["groups_pruned"] = plan.size();
    j["groups"] = groups;
    std::cout << j.dump(2) << "\n";
  } else {
    std::cout << "Pruned " << plan.size() << " of " << analysis.groups.size() << " channel groups ("
              << prunable << " prunable) with " << criterion->name() << ", ratio " << o.ratio
              << "\n\n";
    std::cout << "             before        after         change\n";
    auto line = [&](const char* label, int64_t b, int64_t a, bool bytes) {
      const std::string bs = bytes ? humanBytes(double(b)) : humanCount(double(b));
      const std::string as = bytes ? humanBytes(double(a)) : humanCount(double(a));
      std::printf("  %-10s %-13s %-13s %s\n", label, bs.c_str(), as.c_str(), percent(a, b).c_str());
    };
    std::fflush(stdout);
    line("params", before.params, after.params, false);
    line("MACs", before.macs, after.macs, false);
    line("file", before.file_bytes, after.file_bytes, true);
    std::cout << "\nwrote " << o.output_path << "\n";
  }
  return Status::ok();
}

}  // namespace nnc::cli
