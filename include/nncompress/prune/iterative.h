#pragma once
// Pruning in steps with recovery after each step (what `compress` does, also for `prune`):
//
//   model_0 = original
//   for i = 1..N:  score model_{i-1} (statistics measured on it), allocate so that model_i keeps
//                  A_i = 1 - (1 - F) * i / N of the ORIGINAL MACs/params (F: the final target),
//                  surgery, then recovery against a reference:
//                    original  the unpruned model's outputs, with the cumulative plan (channel
//                              indices of the original) for the kept output channels
//                    previous  model_{i-1}'s outputs, with this step's plan
//
// Each step removes less, so the criterion ranks channels of a model that has already adapted
// to the earlier removals, and each least-squares refit starts from a smaller perturbation.
// One step (N = 1) is exactly the one-shot pipeline: score, allocate, surgery, recover.

#include <functional>
#include <string>
#include <vector>

#include "nncompress/prune/allocation.h"
#include "nncompress/prune/criteria.h"
#include "nncompress/prune/recovery.h"

namespace nnc {

struct PruneStepOptions {
  std::string criterion = "l1";
  // `stats` is ignored: the step collects statistics on the model it prunes when needed.
  CriterionOptions criterion_options;
  StatsNeeds extra_needs;  // statistics to collect beyond what the criterion declares
  AllocationOptions allocation;
  bool merge = false;                              // similarity-chain: fold removed units
  const CalibrationSource* calibration = nullptr;  // data-driven criteria and sensitivity
  std::function<void(int64_t, int64_t)> stats_progress;
  GradientStatsFn gradient_stats;  // criteria that need gradients (taylor)
};

struct PruneStepResult {
  Model pruned;
  AllocationResult allocation;  // plan in the channel indices of the model that was pruned
  std::vector<MergeRecord> merges;
};

// Scores the channels of `model` (`analysis` describes it), allocates and applies the surgery to
// a copy. No recovery.
StatusOr<PruneStepResult> pruneStep(const Model& model, const ChannelAnalysis& analysis,
                                    const PruneStepOptions& options);

// Recovery modes: "none", "bn", "lsq", or several applied in order joined by '+' ("bn+lsq").
Status checkRecoveryMode(const std::string& mode);

// Applies `mode` to `pruned`. Least squares fits `pruned` to `reference` (which `analysis`
// describes; `plan` in its channel indices, as reconstructLeastSquares). Returns the layers of
// the last least-squares pass (empty without one).
StatusOr<std::vector<LayerRecovery>> recoverPruned(const Model& reference, Model& pruned,
                                                   const ChannelAnalysis& analysis,
                                                   const std::vector<GroupKeep>& plan,
                                                   const std::string& mode,
                                                   const CalibrationSource& calibration,
                                                   const LeastSquaresOptions& least_squares = {});

enum class RecoveryReference { kOriginal, kPrevious };
StatusOr<RecoveryReference> parseRecoveryReference(const std::string& name);

struct IterativePruneOptions {
  PruneStepOptions step;  // the allocation target is the final one, relative to the original
  int steps = 1;
  std::string recovery = "none";
  RecoveryReference reference = RecoveryReference::kOriginal;
  LeastSquaresOptions least_squares;
  std::function<void(const std::string&)> log;
};

struct StepRecord {
  int step = 0;
  int64_t macs_after = 0, params_after = 0;
};

struct IterativePruneResult {
  Model pruned;
  // Cumulative: plan in channel indices of the original, params/MACs before = the original's,
  // after = the final model's; target_met = every step met its target. With one step this is the
  // allocation itself (scores, sensitivity); with more, scores and sensitivity are left empty
  // (they were measured on intermediate models, in their channel indices).
  AllocationResult allocation;
  std::vector<MergeRecord> merges;    // one step only
  std::vector<LayerRecovery> layers;  // of the last least-squares pass
  std::vector<StepRecord> steps;
};

// `analysis` describes `original`. Every group keeps at least ceil(floor * its ORIGINAL
// channels), whatever the step.
StatusOr<IterativePruneResult> pruneIteratively(const Model& original,
                                                const ChannelAnalysis& analysis,
                                                const IterativePruneOptions& options);

}  // namespace nnc
