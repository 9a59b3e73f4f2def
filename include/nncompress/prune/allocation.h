#pragma once
// How many channels each group keeps (the criterion then says which).
//
//   uniform      every group loses the same fraction r of its channels; with a MACs/params
//                target, r is searched (bisection over trial surgeries) until the target holds.
//   global       scores normalised per group (divided by the group's mean score) and ranked
//                across all groups; the lowest go first, each group keeping at least `floor` of
//                its channels; the number removed is searched until the target holds.
//   sensitivity  each group alone is pruned at several ratios and the relative output error of
//                the model on calibration samples, E||y - y0||^2 / E||y0||^2, is measured; on
//                the loss curves (made monotone, linearly interpolated) each group then takes
//                the ratio maximising lambda * (its share of the MACs) * ratio - loss(ratio),
//                lambda searched until the target holds (least summed loss for the target);
//                or, with sensitivity_rule "threshold", the largest ratio whose loss stays under
//                a common threshold (as in Distiller/NNI sensitivity pruning).
// The result of every candidate plan is computed exactly from the channel groups
// (analysis/plan_cost), without applying it.

#include <map>
#include <optional>

#include "nncompress/prune/criteria.h"
#include "nncompress/prune/recovery.h"

namespace nnc {

enum class AllocationMode { kUniform, kGlobal, kSensitivity };
StatusOr<AllocationMode> parseAllocationMode(const std::string& name);

struct AllocationOptions {
  AllocationMode mode = AllocationMode::kUniform;
  // Exactly one target: fraction of channels to remove (per group for uniform, of all prunable
  // channels otherwise), or fraction of the model's MACs / params to keep.
  std::optional<double> ratio, target_macs, target_params;
  int64_t round_to = 1;
  std::vector<std::string> exclude;
  bool exact_only = false;  // leave approximate groups (ChannelGroup::approximate) whole
  double floor = 0.1;       // every group keeps at least this fraction (and one channel)
  // Per group id: channels the group keeps at least, on top of `floor` (pruning in steps keeps
  // the floor of the group's original width).
  std::map<int, int64_t> min_keep;
  std::vector<double> sensitivity_ratios = {0.25, 0.5, 0.75};
  int64_t sensitivity_samples = 256;
  // "cost": per group maximise lambda * share * ratio - loss(ratio) (share of the MACs/params the
  // target counts), lambda searched; "threshold": every group the largest ratio whose loss stays
  // under a common threshold tau, tau searched.
  std::string sensitivity_rule = "cost";
  std::function<void(const std::string&)> log;  // progress lines
};

struct SensitivityPoint {
  double ratio = 0;
  double loss = 0;  // relative output error
};

struct AllocationResult {
  std::vector<GroupKeep> plan;
  std::map<int, std::vector<double>> scores;  // per scored group
  std::map<int, std::vector<SensitivityPoint>> sensitivity;
  int64_t params_before = 0, macs_before = 0, params_after = 0, macs_after = 0;
  bool target_met = true;
  double uniform_ratio = 0;  // the ratio uniform allocation settled on
};

// Rounds a kept count to a multiple of `round_to` (nearest, at least round_to, at most all).
int64_t roundKeep(int64_t keep, int64_t channels, int64_t round_to);

// `calibration` is needed only for sensitivity allocation.
StatusOr<AllocationResult> allocateChannels(const Model& model, const ChannelAnalysis& analysis,
                                            Criterion& criterion, const AllocationOptions& options,
                                            const CalibrationSource* calibration = nullptr);

// Params and MACs of `model` after applying `plan` (analysis/plan_cost: no trial surgery).
std::pair<int64_t, int64_t> paramsAndMacsAfter(const Model& model, const ChannelAnalysis& analysis,
                                               const std::vector<GroupKeep>& plan);

}  // namespace nnc
