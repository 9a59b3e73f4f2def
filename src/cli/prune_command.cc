#include <spdlog/spdlog.h>

#include <algorithm>
#include <filesystem>
#include <iostream>
#include <nlohmann/json.hpp>

#include "data_options.h"
#include "finetune_run.h"
#include "input_shapes.h"
#include "model_totals.h"
#include "nncompress/analysis/channel_groups.h"
#include "nncompress/analysis/model_stats.h"
#include "nncompress/cli/commands.h"
#include "nncompress/onnx_io/file_util.h"
#include "nncompress/onnx_io/model_io.h"
#include "nncompress/pipeline/taylor_stats.h"
#include "nncompress/prune/allocation.h"
#include "nncompress/prune/criteria.h"
#include "nncompress/prune/feature_stats.h"
#include "nncompress/prune/iterative.h"
#include "nncompress/prune/recovery.h"
#include "nncompress/report/compress_report.h"
#include "nncompress/report/html.h"
#include "nncompress/report/model_report.h"
#include "progress.h"

namespace nnc::cli {
namespace {

std::string percent(int64_t after, int64_t before) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%+.1f%%", before ? 100.0 * (after - before) / before : 0.0);
  return buf;
}

// What the options ask for, checked before the model is loaded.
struct PruneSetup {
  AllocationMode mode = AllocationMode::kUniform;
  RecoveryReference reference{};
  StatsNeeds needs;
  bool has_data = false;
};

StatusOr<PruneSetup> checkPruneOptions(const PruneOptions& o) {
  const int targets = (o.ratio >= 0) + (o.target_macs >= 0) + (o.target_params >= 0);
  if (targets != 1)
    return invalidArgument(
        "prune needs exactly one of --ratio R (fraction of channels to remove), --target-macs F "
        "or --target-params F (fraction of MACs / params to keep)");
  PruneSetup setup;
  NNC_ASSIGN_OR_RETURN(setup.mode, parseAllocationMode(o.allocation));
  NNC_ASSIGN_OR_RETURN(const CriterionInfo* info, findCriterion(o.method));
  NNC_RETURN_IF_ERROR(checkRecoveryMode(o.recover));
  NNC_ASSIGN_OR_RETURN(setup.reference, parseRecoveryReference(o.recover_reference));
  if (o.steps > 1 && o.merge) return invalidArgument("--merge works with --steps 1 only");
  const bool has_data = setup.has_data = !o.data.data.empty();
  StatsNeeds& needs = setup.needs = info->needs;
  if (o.method == "similarity-chain" && o.chain_distance == "features") needs.cosine = true;
  if (o.method == "similarity-chain" && o.merge) needs.cosine = needs.cosine || has_data;
  auto needData = [&](const std::string& what) {
    return invalidArgument(what +
                           " needs calibration samples: add --data SPEC (e.g. the training "
                           "images) and the preprocessing flags the model expects");
  };
  if ((needs.cosine || needs.consumers || needs.gradients) && !has_data)
    return needData("--method " + o.method);
  if (o.finetune_epochs > 0 && !has_data) return needData("--finetune");
  if (o.finetune_epochs < 0) return invalidArgument("--finetune must not be negative");
  if (setup.mode == AllocationMode::kSensitivity && !has_data)
    return needData("--allocation sensitivity");
  if (o.recover != "none" && !has_data) return needData("--recover " + o.recover);
  if (o.merge && o.method != "similarity-chain")
    return invalidArgument("--merge is only supported by --method similarity-chain");
  return setup;
}

Status checkExcludedLayers(const Model& model, const std::vector<std::string>& exclude) {
  for (const std::string& name : exclude) {
    bool found = false;
    for (const auto& n : model.graph->nodes())
      if (n->name() == name || (n->output(0) && n->output(0)->name() == name)) found = true;
    if (!found) return invalidArgument("--exclude '" + name + "' names no layer of the model");
  }
  return Status::ok();
}

IterativePruneOptions iterativeOptions(const PruneOptions& o, const PruneSetup& setup,
                                       const CalibrationSource* calibration,
                                       const std::vector<int64_t>* labels, Progress& progress) {
  const StatsNeeds& needs = setup.needs;
  const RecoveryReference reference = setup.reference;
  const AllocationMode mode = setup.mode;
  IterativePruneOptions io;
  io.steps = o.steps;
  io.recovery = o.recover;
  io.reference = reference;
  io.least_squares.ridge = o.ridge;
  io.log = [](const std::string& line) { spdlog::info("prune: {}", line); };
  PruneStepOptions& so = io.step;
  so.criterion = o.method;
  so.criterion_options.seed = o.seed;
  so.criterion_options.alpha = o.alpha;
  so.criterion_options.chain_importance = o.chain_importance;
  so.criterion_options.chain_distance = o.chain_distance;
  so.extra_needs = needs;
  so.merge = o.merge;
  so.calibration = calibration;
  so.gradient_stats = taylorStatsFn(labels);
  so.stats_progress = [&](int64_t d, int64_t t) { progress.update(d, t); };
  AllocationOptions& ao = so.allocation;
  ao.mode = mode;
  if (o.ratio >= 0) ao.ratio = o.ratio;
  if (o.target_macs >= 0) ao.target_macs = o.target_macs;
  if (o.target_params >= 0) ao.target_params = o.target_params;
  ao.round_to = o.round_to;
  ao.exclude = o.exclude;
  ao.exact_only = o.exact_only;
  ao.floor = o.floor;
  ao.sensitivity_rule = o.sensitivity_rule;
  ao.log = [](const std::string& line) { spdlog::info("{}", line); };
  return io;
}

nlohmann::ordered_json recoveryJson(const PruneOptions& o, const IterativePruneResult& result,
                                    int64_t calibration_samples) {
  const AllocationResult& alloc = result.allocation;
  auto recovery_json = nlohmann::ordered_json::object();
  recovery_json["mode"] = o.recover;
  if (o.recover.find("lsq") != std::string::npos) {
    auto arr = nlohmann::ordered_json::array();
    for (const LayerRecovery& l : result.layers)
      arr.push_back(
          {{"layer", l.layer}, {"error_before", l.error_before}, {"error_after", l.error_after}});
    recovery_json["layers"] = arr;
  }
  if (o.recover != "none") recovery_json["calibration_samples"] = calibration_samples;
  if (o.steps > 1) {
    recovery_json["reference"] = o.recover_reference;
    auto steps = nlohmann::ordered_json::array();
    for (const StepRecord& r : result.steps)
      steps.push_back(
          {{"step", r.step},
           {"macs_kept", alloc.macs_before ? double(r.macs_after) / alloc.macs_before : 1.0}});
    recovery_json["steps"] = steps;
  }

  return recovery_json;
}

// One channel group of the --json output: channels before and after, what was removed, score
// summary, sensitivity curve, merges.
nlohmann::ordered_json groupJson(const ChannelGroup& g, const AllocationResult& alloc,
                                 const std::vector<MergeRecord>& merges, const PruneOptions& o) {
  const GroupKeep* keep = nullptr;
  for (const GroupKeep& k : alloc.plan)
    if (k.group_id == g.id) keep = &k;
  nlohmann::ordered_json j;
  j["id"] = g.id;
  auto sources = nlohmann::ordered_json::array();
  for (const Node* n : g.sources) sources.push_back(layerName(n));
  j["sources"] = sources;
  j["channels_before"] = g.channels;
  j["channels_after"] = keep ? static_cast<int64_t>(keep->keep.size()) : g.channels;
  j["prunable"] = g.prunable;
  if (!g.prunable) j["reason"] = g.reason;
  if (g.prunable && groupExcluded(g, o.exclude)) j["excluded"] = true;
  if (g.approximate) {
    j["approximate"] = true;
    j["approximate_reason"] = g.approximate_reason;
    if (g.prunable && o.exact_only) j["excluded"] = true;
  }
  std::vector<int64_t> removed;
  if (keep) {
    std::vector<bool> kept(g.channels, false);
    for (int64_t c : keep->keep) kept[c] = true;
    for (int64_t c = 0; c < g.channels; ++c)
      if (!kept[c]) removed.push_back(c);
  }
  j["removed"] = removed;
  auto sc = alloc.scores.find(g.id);
  if (sc != alloc.scores.end() && !sc->second.empty()) {
    const auto& s = sc->second;
    double kept_min = 1e300, removed_max = -1e300, sum = 0;
    for (int64_t c = 0; c < g.channels; ++c) {
      sum += s[c];
      const bool is_removed = std::binary_search(removed.begin(), removed.end(), c);
      if (is_removed)
        removed_max = std::max(removed_max, s[c]);
      else
        kept_min = std::min(kept_min, s[c]);
    }
    nlohmann::ordered_json summary;
    summary["min"] = *std::min_element(s.begin(), s.end());
    summary["max"] = *std::max_element(s.begin(), s.end());
    summary["mean"] = sum / s.size();
    if (!removed.empty()) summary["removed_max"] = removed_max;
    if (kept_min < 1e300) summary["kept_min"] = kept_min;
    j["scores"] = summary;
  }
  auto sens = alloc.sensitivity.find(g.id);
  if (sens != alloc.sensitivity.end()) {
    auto arr = nlohmann::ordered_json::array();
    for (const SensitivityPoint& p : sens->second)
      arr.push_back({{"ratio", p.ratio}, {"loss", p.loss}});
    j["sensitivity"] = arr;
  }
  auto merged = nlohmann::ordered_json::array();
  for (const MergeRecord& m : merges)
    if (m.group_id == g.id)
      merged.push_back({{"removed", m.removed}, {"into", m.into}, {"scale", m.scale}});
  if (!merged.empty()) j["merged"] = merged;
  return j;
}

Status writePruneReport(const PruneOptions& o, const Totals& before, const Totals& after,
                        const AllocationResult& alloc, int prunable,
                        const std::vector<LayerChannels>& channel_rows,
                        const nlohmann::ordered_json& groups, const std::string& macs_at) {
  html::HtmlPage page("nncompress prune: " + o.model_path);
  auto change = [](int64_t b, int64_t a, bool bytes) {
    return (bytes ? humanBytes(double(b)) : humanCount(double(b))) + " -> " +
           (bytes ? humanBytes(double(a)) : humanCount(double(a))) + " (" + percent(a, b) + ")";
  };
  page.addSection("Summary",
                  html::summaryTable({{"model", o.model_path},
                                      {"output", o.output_path},
                                      {"method", o.method + ", " + o.allocation +
                                                     " allocation, recovery " + o.recover},
                                      {"params", change(before.params, after.params, false)},
                                      {macs_at.empty() ? "MACs" : "MACs at " + macs_at,
                                       change(before.macs, after.macs, false)},
                                      {"file", change(before.file_bytes, after.file_bytes, true)},
                                      {"groups pruned", std::to_string(alloc.plan.size()) + " of " +
                                                            std::to_string(prunable)}}));
  std::vector<std::string> labels;
  html::BarSeries before_bars{"before", {}}, after_bars{"after", {}};
  html::Table layers{
      {"layer", "channels before", "channels after", "kept %"}, {}, {false, true, true, true}};
  for (const LayerChannels& c : channel_rows) {
    labels.push_back(c.layer);
    before_bars.values.push_back(double(c.before));
    after_bars.values.push_back(double(c.after));
    char kept[32];
    std::snprintf(kept, sizeof kept, "%.1f", c.before ? 100.0 * c.after / c.before : 0.0);
    layers.rows.push_back({c.layer, std::to_string(c.before), std::to_string(c.after), kept});
  }
  page.addSection("Channels per layer", html::barChart(labels, {before_bars, after_bars},
                                                       {"Output channels", "channels", false}) +
                                            html::table(layers));
  if (!alloc.sensitivity.empty()) {
    std::vector<html::LineSeries> curves;
    for (const auto& [id, points] : alloc.sensitivity) {
      html::LineSeries line{"group " + std::to_string(id), {}};
      line.points.push_back({0, 0, "group " + std::to_string(id)});
      for (const SensitivityPoint& p : points)
        line.points.push_back({p.ratio, p.loss, "group " + std::to_string(id)});
      curves.push_back(std::move(line));
    }
    page.addSection(
        "Sensitivity",
        "<p class=\"note\">Relative output error with each group alone pruned at "
        "several ratios (calibration data).</p>" +
            html::lineChart(curves, {"Sensitivity per group", "share of channels removed",
                                     "relative output error", false}));
  }
  html::Table group_table{{"group", "sources", "channels before", "channels after", "removed"},
                          {},
                          {true, false, true, true, true}};
  for (const auto& g : groups) {
    std::string sources;
    for (const auto& src : g["sources"])
      sources += (sources.empty() ? "" : ", ") + src.get<std::string>();
    group_table.rows.push_back({std::to_string(g["id"].get<int>()), sources,
                                std::to_string(g["channels_before"].get<int64_t>()),
                                std::to_string(g["channels_after"].get<int64_t>()),
                                std::to_string(g["removed"].size())});
  }
  page.addSection("Channel groups", html::table(group_table));
  Status written = writeStringAtomically(o.html_report, page.render());
  if (!written.isOk()) return written.withContext(o.html_report);
  return Status::ok();
}

void printPruneResult(const PruneOptions& o, const PruneSetup& setup,
                      const ChannelAnalysis& analysis, const AllocationResult& alloc, int prunable,
                      const Totals& before, const Totals& after, int64_t calibration_samples,
                      const nlohmann::ordered_json& recovery_json,
                      const std::optional<FinetuneResult>& tuned,
                      const nlohmann::ordered_json& groups, const std::string& macs_at) {
  if (o.json) {
    nlohmann::ordered_json j;
    j["output"] = o.output_path;
    j["method"] = o.method;
    j["allocation"] = o.allocation;
    if (o.ratio >= 0) j["ratio"] = o.ratio;
    if (o.target_macs >= 0) j["target_macs"] = o.target_macs;
    if (o.target_params >= 0) j["target_params"] = o.target_params;
    if (setup.mode == AllocationMode::kUniform) j["uniform_ratio"] = alloc.uniform_ratio;
    j["before"] = before.json();
    j["after"] = after.json();
    j["macs_kept"] = before.macs ? double(after.macs) / before.macs : 1.0;
    if (!macs_at.empty()) j["macs_counted_at"] = macs_at;
    j["params_kept"] = before.params ? double(after.params) / before.params : 1.0;
    if (setup.has_data) j["calibration_samples"] = calibration_samples;
    j["recovery"] = recovery_json;
    if (tuned) j["finetune"] = finetuneJson(*tuned);
    j["groups_pruned"] = alloc.plan.size();
    j["groups"] = groups;
    std::cout << j.dump(2) << "\n";
  } else {
    std::cout << "Pruned " << alloc.plan.size() << " of " << analysis.groups.size()
              << " channel groups (" << prunable << " prunable) with " << o.method << ", "
              << o.allocation << " allocation";
    if (o.recover != "none") std::cout << ", recovery " << o.recover;
    std::cout << "\n\n             before        after         change\n";
    auto line = [&](const char* label, int64_t b, int64_t a, bool bytes) {
      const std::string bs = bytes ? humanBytes(double(b)) : humanCount(double(b));
      const std::string as = bytes ? humanBytes(double(a)) : humanCount(double(a));
      std::printf("  %-10s %-13s %-13s %s\n", label, bs.c_str(), as.c_str(), percent(a, b).c_str());
    };
    std::fflush(stdout);
    line("params", before.params, after.params, false);
    line("MACs", before.macs, after.macs, false);
    line("file", before.file_bytes, after.file_bytes, true);
    std::fflush(stdout);
    if (!macs_at.empty()) std::cout << "  (MACs counted at " << macs_at << ")\n";
    std::cout << "\nwrote " << o.output_path << "\n";
  }
}

// Why nothing can be pruned, or empty when some group is prunable.
std::string nothingPrunable(const ChannelAnalysis& analysis, const std::string& path) {
  for (const ChannelGroup& g : analysis.groups)
    if (g.prunable) return {};
  const std::string why =
      analysis.groups.empty()
          ? "it has no channel groups: no Conv, Gemm or MatMul whose output channels could go"
          : "none of its " + std::to_string(analysis.groups.size()) +
                " channel groups is prunable; the first: " + analysis.groups[0].reason;
  return path + ": nothing can be pruned: " + why + " (`nncompress report " + path +
         " --prunable` lists every reason)";
}

// MACs of a model with symbolic sides (H, W) are counted at --input-shape or the data's sample
// size; without either they count those sides as 1, which misweighs layers at different
// resolutions, so a MAC target says so.
// Returns where they are counted ("input: H=256, W=256"), empty at 1.
StatusOr<std::string> countMacsAtInputSize(Model& model, const PruneOptions& o,
                                           data::SampleReader* reader) {
  auto sized = setCountingSizes(model, o.input_shapes, reader);
  if (!sized.isOk()) return sized.status().withContext(o.model_path);
  if (!sized->empty())
    spdlog::info("MACs are counted at {} ({})", *sized,
                 o.input_shapes.empty() ? "the data's sample size" : "--input-shape");
  if (const std::string dims = symbolicInputDims(*model.graph); !dims.empty() && o.target_macs >= 0)
    spdlog::warn(
        "{}: MACs are counted per sample with symbolic input dims at 1 ({}), so layers "
        "at different resolutions weigh as if all were 1x1; --input-shape counts them at a "
        "real size",
        o.model_path, dims);
  return *sized;
}

}  // namespace

Status runPrune(const PruneOptions& o) {
  NNC_ASSIGN_OR_RETURN(const PruneSetup setup, checkPruneOptions(o));
  NNC_RETURN_IF_ERROR(
      checkOutputPaths(o.model_path, {{"-o", o.output_path}, {"--report", o.html_report}}));

  LoadedModelInfo load_info;
  NNC_ASSIGN_OR_RETURN(Model model, loadInputModel(o.model_path, o.strict, &load_info));
  if (size_t n = demoteInitializerInputs(model))
    spdlog::info("{} initializers listed as graph inputs are treated as constants", n);
  if (o.finetune_epochs > 0) {  // before pruning: the fine-tune would fail only at the end
    Status trainable = checkTrainable(model);
    if (!trainable.isOk()) return trainable.withContext(o.model_path + ": --finetune");
  }
  std::unique_ptr<data::SampleReader> reader;
  if (setup.has_data) {
    NNC_ASSIGN_OR_RETURN(reader, openReader(o.data, model, "calibration data"));
  }
  NNC_ASSIGN_OR_RETURN(const std::string macs_at, countMacsAtInputSize(model, o, reader.get()));
  const Totals before = totalsOf(model, load_info.file_bytes + load_info.external_data_bytes);
  const ChannelAnalysis analysis = analyzeChannels(model);
  NNC_RETURN_IF_ERROR(checkExcludedLayers(model, o.exclude));
  // A MAC or parameter target cannot be met; a ratio of nothing is (the model is written as is).
  if (const std::string why = nothingPrunable(analysis, o.model_path); !why.empty()) {
    if (o.ratio < 0) return Status(StatusCode::kTargetNotMet, why);
    spdlog::warn("{}", why);
  }

  CalibrationSource calibration;
  std::optional<std::vector<int64_t>> labels;
  if (setup.has_data) {
    calibration.reader = reader.get();
    calibration.count = std::min(o.calib_size, reader->size());
    calibration.batch = batchFor(model, *reader, o.batch);  // many exports hard-code batch 1
    calibration.num_threads = o.threads;
    NNC_ASSIGN_OR_RETURN(labels, openLabels(o.data, *reader));
  }
  Progress progress("calibration statistics");
  const IterativePruneOptions io = iterativeOptions(
      o, setup, setup.has_data ? &calibration : nullptr, labels ? &*labels : nullptr, progress);
  if (o.recover != "none")
    spdlog::info("recovery: {} on {} samples{}", o.recover, calibration.count,
                 o.steps > 1 ? " after each of " + std::to_string(o.steps) + " steps" : "");
  auto run = pruneIteratively(model, analysis, io);
  if (!run.isOk()) return run.status().withContext(o.model_path);
  IterativePruneResult& result = *run;
  const AllocationResult& alloc = result.allocation;
  if (!alloc.target_met)
    return Status(StatusCode::kTargetNotMet,
                  "the target cannot be met: even with every group at its floor (--floor " +
                      std::to_string(o.floor) + ") the model keeps " +
                      std::to_string(alloc.macs_after) + " MACs, " +
                      std::to_string(alloc.params_after) + " params");
  Model pruned = std::move(result.pruned);
  std::optional<FinetuneResult> tuned;
  if (o.finetune_epochs > 0) {
    TrainSettings ts;
    ts.batch = o.batch;
    ts.seed = o.seed;
    ts.threads = o.threads;
    ts.loss = o.finetune_loss;
    if (o.finetune_loss == "mse") ts.label_weight = 0;  // mse has no cross-entropy term
    NNC_ASSIGN_OR_RETURN(FinetuneOptions fo, finetuneOptionsFrom(ts, o.finetune_epochs));
    fo.labels = labels ? &*labels : nullptr;
    auto r = finetuneWithProgress(pruned, model, *reader, fo);
    if (!r.isOk()) return r.status().withContext(o.model_path);
    tuned = std::move(r).value();
  }
  const nlohmann::ordered_json recovery_json = recoveryJson(o, result, calibration.count);
  auto groups = nlohmann::ordered_json::array();
  int prunable = 0;
  for (const ChannelGroup& g : analysis.groups) {
    if (g.prunable) ++prunable;
    groups.push_back(groupJson(g, alloc, result.merges, o));
  }

  Totals after = totalsOf(pruned, 0);
  const std::vector<LayerChannels> channel_rows = layerChannels(model, pruned);
  // The input's weights are not needed any more (peak memory): the write gate reloads the file
  // in the rare case it needs the model the output was made from.
  model = Model{};
  auto reload = [&]() -> StatusOr<Model> {
    LoadedModelInfo info;
    NNC_ASSIGN_OR_RETURN(Model reference, loadInputModel(o.model_path, o.strict, &info));
    demoteInitializerInputs(reference);
    return reference;
  };
  WrittenModel output(o.output_path);
  NNC_RETURN_IF_ERROR(output.write(pruned, load_info, nullptr, {}, reload));
  std::error_code ec;
  after.file_bytes = static_cast<int64_t>(std::filesystem::file_size(o.output_path, ec));
  if (!o.html_report.empty())
    NNC_RETURN_IF_ERROR(
        writePruneReport(o, before, after, alloc, prunable, channel_rows, groups, macs_at));
  output.keep();
  printPruneResult(o, setup, analysis, alloc, prunable, before, after, calibration.count,
                   recovery_json, tuned, groups, macs_at);
  return Status::ok();
}

}  // namespace nnc::cli
