#include "nncompress/prune/iterative.h"

#include <algorithm>
#include <cmath>
#include <optional>
#include <sstream>

#include "nncompress/analysis/model_stats.h"
#include "nncompress/ir/option_error.h"
#include "nncompress/prune/feature_stats.h"
#include "nncompress/prune/surgery.h"

namespace nnc {
namespace {

std::vector<std::string> splitMode(const std::string& mode) {
  std::vector<std::string> parts;
  std::stringstream in(mode);
  std::string part;
  while (std::getline(in, part, '+')) parts.push_back(part);
  return parts;
}

}  // namespace

StatusOr<PruneStepResult> pruneStep(const Model& model, const ChannelAnalysis& analysis,
                                    const PruneStepOptions& options) {
  NNC_ASSIGN_OR_RETURN(const CriterionInfo* info, findCriterion(options.criterion));
  StatsNeeds needs = info->needs;
  needs.cosine = needs.cosine || options.extra_needs.cosine;
  needs.consumers = needs.consumers || options.extra_needs.consumers;
  needs.gradients = needs.gradients || options.extra_needs.gradients;
  CriterionOptions criterion_options = options.criterion_options;
  criterion_options.stats = nullptr;
  std::optional<FeatureStats> stats;
  if (needs.cosine || needs.consumers || needs.gradients) {
    if (!options.calibration || !options.calibration->reader)
      return invalidArgument("criterion '" + options.criterion + "' needs calibration data");
    const auto requests = statsRequestsFor(analysis, needs);
    if (needs.cosine || needs.consumers) {
      NNC_ASSIGN_OR_RETURN(stats, collectFeatureStats(model, requests, *options.calibration,
                                                      options.stats_progress));
    } else {
      stats.emplace();
    }
    if (needs.gradients) {
      if (!options.gradient_stats)
        return invalidArgument("criterion '" + options.criterion +
                               "' needs gradients, which this caller does not provide");
      std::vector<const Value*> values;
      for (const TensorStatsRequest& r : requests) values.push_back(r.value);
      NNC_RETURN_IF_ERROR(options.gradient_stats(model, values, *options.calibration, *stats)
                              .withContext("Taylor importance"));
    }
    criterion_options.stats = &*stats;
  }
  NNC_ASSIGN_OR_RETURN(auto criterion, makeCriterion(options.criterion, criterion_options));
  NNC_ASSIGN_OR_RETURN(
      AllocationResult allocation,
      allocateChannels(model, analysis, *criterion, options.allocation, options.calibration));
  Model pruned = model.clone();
  PruneStepResult result{std::move(pruned), std::move(allocation), {}};
  const ChannelAnalysis pruned_analysis = analyzeChannels(result.pruned);
  if (options.merge) {
    NNC_ASSIGN_OR_RETURN(result.merges,
                         criterion->mergeRemoved(pruned_analysis, result.allocation.plan));
  }
  NNC_RETURN_IF_ERROR(applyChannelPruning(result.pruned, pruned_analysis, result.allocation.plan));
  return result;
}

Status checkRecoveryMode(const std::string& mode) {
  for (const std::string& part : splitMode(mode))
    if (part != "none" && part != "bn" && part != "lsq")
      return invalidArgument("unknown recovery '" + mode +
                             "' (none, bn, lsq, or several joined by '+': bn+lsq)");
  if (mode.empty()) return invalidArgument("empty recovery mode");
  return Status::ok();
}

StatusOr<std::vector<LayerRecovery>> recoverPruned(const Model& reference, Model& pruned,
                                                   const ChannelAnalysis& analysis,
                                                   const std::vector<GroupKeep>& plan,
                                                   const std::string& mode,
                                                   const CalibrationSource& calibration,
                                                   const LeastSquaresOptions& least_squares) {
  NNC_RETURN_IF_ERROR(checkRecoveryMode(mode));
  std::vector<LayerRecovery> layers;
  for (const std::string& part : splitMode(mode)) {
    if (part == "bn") {
      NNC_RETURN_IF_ERROR(
          reestimateBatchNorm(pruned, calibration).withContext("BatchNorm re-estimation"));
    } else if (part == "lsq") {
      auto fitted =
          reconstructLeastSquares(reference, pruned, analysis, plan, calibration, least_squares);
      if (!fitted.isOk()) return fitted.status().withContext("least-squares reconstruction");
      layers = std::move(fitted).value();
    }
  }
  return layers;
}

StatusOr<RecoveryReference> parseRecoveryReference(const std::string& name) {
  if (name == "original") return RecoveryReference::kOriginal;
  if (name == "previous") return RecoveryReference::kPrevious;
  return invalidArgument("unknown recovery reference '" + name + "' (original, previous)");
}

namespace {

Status checkIterativeOptions(const IterativePruneOptions& options) {
  if (options.steps < 1) return invalidOption("steps", "iterative pruning needs at least 1 step");
  NNC_RETURN_IF_ERROR(checkRecoveryMode(options.recovery));
  const CalibrationSource* calibration = options.step.calibration;
  if (options.recovery != "none" && (!calibration || !calibration->reader))
    return invalidArgument("recovery needs calibration data");
  if (options.steps > 1 && options.step.merge)
    return invalidOption("merge", "merging pruned channels works with one step only");
  return Status::ok();
}

StatusOr<IterativePruneResult> pruneInOneStep(const Model& original,
                                              const ChannelAnalysis& analysis,
                                              const IterativePruneOptions& options) {
  IterativePruneResult result;
  NNC_ASSIGN_OR_RETURN(PruneStepResult step, pruneStep(original, analysis, options.step));
  result.pruned = std::move(step.pruned);
  result.allocation = std::move(step.allocation);
  result.merges = std::move(step.merges);
  if (options.recovery != "none") {
    NNC_ASSIGN_OR_RETURN(
        result.layers,
        recoverPruned(original, result.pruned, analysis, result.allocation.plan, options.recovery,
                      *options.step.calibration, options.least_squares));
  }
  result.steps.push_back({1, result.allocation.macs_after, result.allocation.params_after});
  return result;
}

// The options of step i of N: its share of the target, relative to the model it starts from,
// with every group's floor fixed in the original's channels.
PruneStepOptions stepOptions(const IterativePruneOptions& options, int i,
                             const ChannelAnalysis& analysis, const ModelStats& original_stats,
                             const ModelStats& now) {
  const AllocationOptions& target = options.step.allocation;
  PruneStepOptions step = options.step;
  AllocationOptions& a = step.allocation;
  const double share = double(i) / options.steps;
  if (target.ratio) {
    // Channels kept: 1 - r * i / N of the original; this step removes its share of what is left.
    const double before = 1.0 - *target.ratio * (i - 1) / options.steps;
    const double after = 1.0 - *target.ratio * share;
    a.ratio = std::clamp(1.0 - after / before, 0.0, 0.999);
  } else if (target.target_macs) {
    const double keep = 1.0 - (1.0 - *target.target_macs) * share;
    a.target_macs =
        std::clamp(keep * original_stats.macs / std::max<double>(1, now.macs), 1e-3, 1.0);
  } else if (target.target_params) {
    const double keep = 1.0 - (1.0 - *target.target_params) * share;
    a.target_params =
        std::clamp(keep * original_stats.params / std::max<double>(1, now.params), 1e-3, 1.0);
  }
  const bool explicit_uniform_ratio = target.mode == AllocationMode::kUniform && target.ratio;
  if (!explicit_uniform_ratio)
    for (const ChannelGroup& g : analysis.groups)
      a.min_keep[g.id] =
          std::max<int64_t>(1, static_cast<int64_t>(std::ceil(target.floor * g.channels - 1e-9)));
  return step;
}

// Cumulative keep-lists in the original's channel indices, per group id.
using CumulativeKeeps = std::map<int, std::vector<int64_t>>;

// Composes a step's plan (indices of the model it pruned) into the cumulative one.
Status composeKeeps(const std::vector<GroupKeep>& plan, const ChannelAnalysis& current_analysis,
                    int i, CumulativeKeeps& kept) {
  for (const GroupKeep& k : plan) {
    std::vector<int64_t>& cumulative = kept[k.group_id];
    if (static_cast<int64_t>(cumulative.size()) != current_analysis.groups[k.group_id].channels)
      return Status(StatusCode::kInternal, "pruning step " + std::to_string(i) + ": group " +
                                               std::to_string(k.group_id) +
                                               " does not match the original's");
    std::vector<int64_t> next;
    for (int64_t c : k.keep) next.push_back(cumulative[c]);
    cumulative = std::move(next);
  }
  return Status::ok();
}

// The cumulative keeps as a plan on the original (the groups that lost channels).
std::vector<GroupKeep> cumulativePlan(const ChannelAnalysis& analysis, CumulativeKeeps& kept) {
  std::vector<GroupKeep> plan;
  for (const ChannelGroup& g : analysis.groups)
    if (static_cast<int64_t>(kept[g.id].size()) < g.channels) plan.push_back({g.id, kept[g.id]});
  return plan;
}

}  // namespace

StatusOr<IterativePruneResult> pruneIteratively(const Model& original,
                                                const ChannelAnalysis& analysis,
                                                const IterativePruneOptions& options) {
  NNC_RETURN_IF_ERROR(checkIterativeOptions(options));
  if (options.steps == 1) return pruneInOneStep(original, analysis, options);
  const bool recovers = options.recovery != "none";
  const CalibrationSource* calibration = options.step.calibration;
  IterativePruneResult result;
  const ModelStats original_stats = computeModelStats(*original.graph);
  CumulativeKeeps kept;
  for (const ChannelGroup& g : analysis.groups) {
    std::vector<int64_t> all(g.channels);
    for (int64_t c = 0; c < g.channels; ++c) all[c] = c;
    kept[g.id] = std::move(all);
  }

  Model current = original.clone();
  bool all_met = true;
  for (int i = 1; i <= options.steps; ++i) {
    const ChannelAnalysis current_analysis = analyzeChannels(current);
    if (current_analysis.groups.size() != analysis.groups.size())
      return Status(StatusCode::kInternal, "pruning step " + std::to_string(i) +
                                               ": the channel groups changed after surgery");
    const PruneStepOptions step =
        stepOptions(options, i, analysis, original_stats, computeModelStats(*current.graph));
    NNC_ASSIGN_OR_RETURN(PruneStepResult pruned, pruneStep(current, current_analysis, step));
    all_met = all_met && pruned.allocation.target_met;
    NNC_RETURN_IF_ERROR(composeKeeps(pruned.allocation.plan, current_analysis, i, kept));
    if (recovers && options.reference == RecoveryReference::kOriginal) {
      NNC_ASSIGN_OR_RETURN(
          result.layers,
          recoverPruned(original, pruned.pruned, analysis, cumulativePlan(analysis, kept),
                        options.recovery, *calibration, options.least_squares));
    } else if (recovers) {
      NNC_ASSIGN_OR_RETURN(result.layers, recoverPruned(current, pruned.pruned, current_analysis,
                                                        pruned.allocation.plan, options.recovery,
                                                        *calibration, options.least_squares));
    }
    result.steps.push_back({i, pruned.allocation.macs_after, pruned.allocation.params_after});
    if (options.log)
      options.log("step " + std::to_string(i) + "/" + std::to_string(options.steps) + ": " +
                  std::to_string(pruned.allocation.plan.size()) + " groups pruned, MACs kept " +
                  std::to_string(double(pruned.allocation.macs_after) / original_stats.macs));
    current = std::move(pruned.pruned);
  }

  result.pruned = std::move(current);
  result.allocation.params_before = original_stats.params;
  result.allocation.macs_before = original_stats.macs;
  result.allocation.params_after = result.steps.back().params_after;
  result.allocation.macs_after = result.steps.back().macs_after;
  result.allocation.target_met = all_met;
  result.allocation.plan = cumulativePlan(analysis, kept);
  return result;
}

}  // namespace nnc
