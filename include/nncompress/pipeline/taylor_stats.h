#pragma once
// The gradient statistics of the taylor pruning criterion (METHODS.md section 7), computed with
// the train module's tape and handed to prune through PruneStepOptions::gradient_stats.
//
// Loss, so that no labels are needed: for a classifier, the cross-entropy of the model against
// its own top-1 class (the distillation loss against the unpruned model has a zero gradient at
// the unpruned model itself; its pseudo-label term does not), or against the true labels when
// given; for any other model, sum_o 0.5 * mean(y_o^2) / var(y_o) (the first-order change of the
// normalised output energy).
// Per value a [N, C, ...] and batch b: s_c(b) = sum_{n, positions} g a with g = dLoss/da;
// taylor[c] = mean_b s_c(b)^2.

#include <vector>

#include "nncompress/prune/feature_stats.h"

namespace nnc {

Status collectTaylorStats(const Model& model, const std::vector<const Value*>& values,
                          const CalibrationSource& calibration, FeatureStats& stats,
                          const std::vector<int64_t>* labels = nullptr);

// collectTaylorStats as a GradientStatsFn (labels: per calibration sample, or nullptr).
GradientStatsFn taylorStatsFn(const std::vector<int64_t>* labels = nullptr);

}  // namespace nnc
